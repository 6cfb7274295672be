"""SGLDController: the ``torch.optim.Optimizer`` that trains through device arrays.

It composes the parts of :mod:`dwlab.sgld`: the mapping of tensors onto arrays
(:mod:`~dwlab.sgld.mapping`, programmed by :mod:`~dwlab.sgld.verify`), the pure pulse
planner (:mod:`~dwlab.sgld.planner`), re-centring of pairs (:mod:`~dwlab.sgld.recentre`)
and the read-back (:mod:`~dwlab.sgld.readback`); digital parameters get float SGLD or SGD.
The maths is in :mod:`dwlab.sgld.controller`'s docstring.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypedDict

import torch

from dwlab.config import ControllerConfig, MappingRule
from dwlab.core.device import DeviceArray, apply_all
from dwlab.core.errors import PlanError
from dwlab.core.schemes import Scheme
from dwlab.core.types import PulseLimits, PulseReceipt
from dwlab.sgld.joined import JoinedWeights
from dwlab.sgld.mapping import ArrayFactory, attach_weights, is_device_weight, mapping_report
from dwlab.sgld.maths import learning_rate_at, pulse_budget
from dwlab.sgld.planner import PlannedTensors, TensorToPlan, check_budget, plan_updates
from dwlab.sgld.recentre import centring_shift, recentre_pairs
from dwlab.sgld.refine import refine_steps
from dwlab.sgld.stats import EdgeWatch, StepStats, TensorUpdateStats, edge_watch
from dwlab.sgld.weight import DeviceWeight
from dwlab.sgld.workspace import Workspace


class ControllerState(TypedDict):
    """The controller's own entry (``'dwlab'``) in its ``state_dict``."""

    scheme: str
    step: int
    generators: dict[str, torch.Tensor]
    weights: dict[str, dict[str, Any]]
    """By parameter name: ``DeviceWeight.meta()``, ``last_read``, the step refinement
    (:mod:`dwlab.sgld.refine`) and the array's snapshot."""
    last_stats: dict[str, Any]


@dataclasses.dataclass
class PlannedStep:
    """The step of a set of joined tensors between planning and the apply."""

    planned: PlannedTensors
    pulses: list[int]
    """Planned pulses per tensor, re-centring included."""
    recentred: int
    edge: EdgeWatch | None


class SGLDController(torch.optim.Optimizer):
    """SGLD through device arrays (or in float), as a torch optimizer.

    Build it with :func:`dwlab.sgld.controller.build_optimizer`. After ``step()``,
    ``last_stats`` (:class:`~dwlab.sgld.stats.StepStats`) says what the step did.
    """

    def __init__(
        self,
        named_params: Iterable[tuple[str, torch.Tensor]],
        cfg: ControllerConfig,
        *,
        dataset_size: int,
        array_factory: ArrayFactory | None = None,
        mapping: Sequence[MappingRule] = (),
        seed: int = 0,
    ):
        if cfg.scheme not in Scheme.names():
            raise ValueError(f"unknown scheme {cfg.scheme!r}; known: {', '.join(Scheme.names())}")
        if dataset_size is None or int(dataset_size) < 1:
            raise ValueError(f"dataset_size must be a positive integer, got {dataset_size!r}")
        named = [(n, p) for n, p in named_params if p.requires_grad]
        if not named:
            raise ValueError("the model has no trainable parameters")
        self.cfg = cfg
        self.scheme = Scheme(cfg.scheme)
        self.dataset_size = int(dataset_size)
        self.pulse_budget = pulse_budget(cfg.update_bits)
        self.seed = int(seed)
        on_devices = self.scheme.uses_devices
        device_named = [(n, p) for n, p in named if on_devices and is_device_weight(p)]
        digital_named = [(n, p) for n, p in named if not (on_devices and is_device_weight(p))]
        groups = []
        if device_named:
            groups.append({"params": [p for _, p in device_named], "kind": "device"})
        if digital_named:
            groups.append({"params": [p for _, p in digital_named], "kind": "digital"})
        super().__init__(groups, {"lr": cfg.lr})
        self.digital = digital_named
        self.weights: list[DeviceWeight] = []
        self._step_count = 0
        self._generators: dict[str, torch.Generator] = {}
        self._groups: dict[tuple[str, ...], list[JoinedWeights]] = {}
        for _, p in named:
            self._generator(p.device)
        self.last_stats = StepStats()
        if device_named:
            if array_factory is None:
                raise ValueError(f"scheme '{self.scheme}' needs an array_factory")
            self.weights = attach_weights(
                device_named, cfg, pair=self.scheme.is_pair, budget=self.pulse_budget,
                step_size=self.learning_rate(0) / self.dataset_size, factory=array_factory,
                mapping=mapping,
            )

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed + 7919 * len(self._generators))
            self._generators[key] = gen
        return self._generators[key]

    # -- the step --------------------------------------------------------------------

    def learning_rate(self, step: int | None = None) -> float:
        return learning_rate_at(
            self.cfg.lr, self.cfg.schedule, self._step_count if step is None else step
        )

    @torch.no_grad()
    def step(  # type: ignore[override]  # one signature for torch's two overloads
        self, closure: Callable[[], float] | None = None
    ) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        lr = self.learning_rate()
        prior = 1.0 / (self.dataset_size * self.cfg.prior_sigma**2)
        for group in self.param_groups:
            group["lr"] = lr
        # Checks first: nothing moves (no RNG draw, no pulse) if a gradient is not finite or
        # an array refuses the plan.
        self._check_gradients_finite()
        active = [dw for dw in self.weights if dw.param.grad is not None]
        caps = [check_budget(dw.array.describe(), self.pulse_budget, self.cfg.update_bits,
                             dw.name, dw.pulse) for dw in active]
        try:
            groups = self._joined(active)
            limits = {id(dw): cap for dw, cap in zip(active, caps, strict=True)}
            planned = [self._plan(joined, lr, prior, [limits[id(dw)] for dw in joined.weights])
                       for joined in groups]
            members = [dw for joined in groups for dw in joined.weights]
            receipts = apply_all([dw.array for dw in members],
                                 [u.plan for step in planned for u in step.planned.updates])
            updates, start = [], 0
            for joined, step in zip(groups, planned, strict=True):
                stop = start + len(joined.weights)
                updates.append(self._read_back(joined, step, receipts[start:stop]))
                start = stop
        except BaseException:
            for dw in self.weights:
                dw.array.safe_state()
            raise
        n_weights = sum(dw.n_weights for dw in active)
        largest = sum(dw.precision(self.pulse_budget)["largest_update"] * dw.n_weights
                      for dw in active) / max(1, n_weights)
        self.last_stats = StepStats.total(updates, n_weights, lr, lr / self.dataset_size,
                                          largest / max(1, self.pulse_budget))
        # Digital parameters share the chain's temperature: the one the devices realised
        # this step, else (float schemes) the configured one.
        self._digital_update(lr, prior, self.last_stats.effective_temperature
                             if n_weights else self.cfg.temperature)
        self._step_count += 1
        return loss

    def _check_gradients_finite(self) -> None:
        """Refuse NaN/inf gradients, naming the parameter (they would become pulse counts)."""
        names = {id(p): n for n, p in self.digital}
        names.update({id(dw.param): dw.name for dw in self.weights})
        grads = [(names[id(p)], p.grad) for group in self.param_groups for p in group["params"]
                 if p.grad is not None]
        if not grads:
            return
        # All gradients of one torch device and dtype end to end: one check, one sync.
        kinds: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for _, g in grads:
            kinds.setdefault((g.device, g.dtype), []).append(g.reshape(-1))
        if all(bool(torch.isfinite(torch.cat(flat)).all()) for flat in kinds.values()):
            return
        name, grad = next((n, g) for n, g in grads if not bool(torch.isfinite(g).all()))
        bad = int((~torch.isfinite(grad)).sum())
        raise PlanError(
            f"gradient of parameter '{name}' has {bad} non-finite (NaN/inf) entries at step "
            f"{self._step_count + 1}; no pulse was sent. The training diverged: lower "
            "controller.lr"
        )

    def _digital_update(self, lr: float, prior: float, temperature: float) -> None:
        noise_scale = 0.0
        if self.scheme != Scheme.FLOAT_SGD and temperature > 0:
            noise_scale = math.sqrt(2.0 * lr * temperature / self.dataset_size)
        # All parameters of one torch device and dtype at once (torch's foreach kernels,
        # one noise draw): a ResNet18 has some 60 small ones.
        kinds: dict[tuple[torch.device, torch.dtype], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for _, p in self.digital:
            if p.grad is not None:
                kinds.setdefault((p.device, p.dtype), []).append((p, p.grad))
        for (device, dtype), pairs in kinds.items():
            params, grads = [p for p, _ in pairs], [g for _, g in pairs]
            torch._foreach_mul_(params, 1.0 - lr * prior)
            torch._foreach_add_(params, grads, alpha=-lr)
            if noise_scale:
                noise = torch.randn(sum(p.numel() for p in params), device=device, dtype=dtype,
                                    generator=self._generator(device))
                parts = noise.split([p.numel() for p in params])
                torch._foreach_add_(params, [n.view(p.shape) for n, p in zip(
                    parts, params, strict=True)], alpha=noise_scale)

    def _joined(self, active: list[DeviceWeight]) -> list[JoinedWeights]:
        """The active weights end to end, one set per torch device and dtype (kept while
        the same weights are active)."""
        key = tuple(dw.name for dw in active)
        if key not in self._groups:
            by_kind: dict[tuple[torch.device, torch.dtype], list[DeviceWeight]] = {}
            for dw in active:
                by_kind.setdefault((dw.param.device, dw.param.dtype), []).append(dw)
            self._groups = {key: [JoinedWeights(members, Workspace(device))
                                  for (device, _), members in by_kind.items()]}
        return self._groups[key]

    def _plan(self, group: JoinedWeights, lr: float, prior: float, caps: list[PulseLimits]
              ) -> PlannedStep:
        """Plan the pulses of every tensor of ``group``, then re-centre the pairs and watch
        the saturated devices; nothing is sent yet."""
        shift = centring_shift(group, self.cfg.centring_gain) if group.pair else None
        tensors = []
        for (_, start, stop), dw in zip(group.segments.bounds(), group.weights, strict=True):
            grad = dw.param.grad
            assert grad is not None  # step() updates only the weights that have a gradient
            own_shift = None if shift is None else shift[start:stop].view(dw.param.shape)
            tensors.append(TensorToPlan(grad, dw.param, dw.scale(), dw.pulse, own_shift))
        planned = plan_updates(
            self.scheme, tensors, lr=lr, prior=prior, budget=self.pulse_budget,
            generator=self._generator(group.weights[0].param.device), work=group.work,
            rounding=self.cfg.rounding)
        recentred, extra = 0, [0] * len(tensors)
        if group.pair:
            recentred, extra = recentre_pairs(
                group, planned.push, planned.pull, self.cfg.recentre_margin, self.pulse_budget,
                [limits.max_pulses_per_device for limits in caps], self.cfg.centring_gain)
        pulses = [u.pulses + e for u, e in zip(planned.updates, extra, strict=True)]
        return PlannedStep(planned, pulses, recentred,
                           edge_watch(group, planned.push, planned.pull, self.pulse_budget))

    def _read_back(self, group: JoinedWeights, step: PlannedStep,
                   receipts: Sequence[PulseReceipt]) -> TensorUpdateStats:
        """After the apply: read back, write the held weights into the tensors, and say
        what the step did to them."""
        refine = self.cfg.refine_steps and all(
            dw.refine_state is not None for dw in group.weights)
        distance_before = group.distance() if refine else None
        for dw, receipt in zip(group.weights, receipts, strict=True):
            dw.accept_read(dw.read(self.cfg.read_averages, after=receipt))
        if distance_before is not None:
            refine_steps(group, step.planned.push, step.planned.pull, distance_before,
                         self.pulse_budget)
        updates = step.planned.updates
        return TensorUpdateStats(
            pulses_sent=sum(step.pulses),
            devices_clipped=sum(r.devices_clipped for r in receipts),
            saturated_devices=int(torch.count_nonzero(group.saturated(group.distance()))),
            recentred_pairs=step.recentred,
            steps_clipped=sum(u.steps_clipped for u in updates),
            temperature_weight=sum(dw.alpha**2 * dw.sigma**2 * pulses for dw, pulses in
                                   zip(group.weights, step.pulses, strict=True)),
            rounding_variance=sum(u.rounding_variance for u in updates),
            edge_drift=step.edge.drift(group) if step.edge is not None else 0.0,
            edge_devices=step.edge.count if step.edge is not None else 0,
            devices=group.n * group.rows,
        )

    # -- state -----------------------------------------------------------------------

    @property
    def arrays(self) -> dict[str, DeviceArray]:
        """Device arrays by parameter name."""
        return {dw.name: dw.array for dw in self.weights}

    @property
    def step_count(self) -> int:
        return self._step_count

    def precision_report(self) -> dict[str, float]:
        """The update precision over every device weight (weighted by weights): weight
        resolution in bits, largest update as a fraction of the window, pulse budget."""
        if not self.weights:
            return {}
        total = sum(dw.n_weights for dw in self.weights)
        rows = [(dw.n_weights, dw.precision(self.pulse_budget)) for dw in self.weights]
        out = {key: sum(n * row[key] for n, row in rows) / total
               for key in ("resolution_bits", "largest_update_fraction")}
        return {**out, "pulse_budget": float(self.pulse_budget)}

    def mapping_report(self) -> list[dict[str, object]]:
        """Per device-backed tensor: alpha, measured steps, window, implied temperature."""
        return mapping_report(self.weights, self.pulse_budget,
                              self.learning_rate() / self.dataset_size)

    def device_snapshots(self) -> dict[str, dict[str, Any]]:
        """Every array's ``snapshot()``, by parameter name (posterior samples)."""
        return {dw.name: dw.array.snapshot() for dw in self.weights}

    def load_device_snapshots(self, snapshots: Mapping[str, dict[str, Any]]) -> None:
        """Restore stored array states and rewrite the weights from what the devices hold."""
        self._check_names(snapshots, "device snapshots")
        for dw in self.weights:
            dw.array.restore(snapshots[dw.name])
            dw.accept_read(dw.read(self.cfg.read_averages))

    def _check_names(self, named: Mapping[str, object], what: str) -> None:
        expected = {dw.name for dw in self.weights}
        if set(named) != expected:
            missing = sorted(expected - set(named))
            extra = sorted(set(named) - expected)
            raise ValueError(f"{what} do not match the model: missing {missing}, extra {extra}")

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        ours: ControllerState = {
            "scheme": self.scheme.value,
            "step": self._step_count,
            "generators": {k: g.get_state() for k, g in self._generators.items()},
            "weights": {
                dw.name: {
                    **dw.meta(),
                    "steps_siemens": torch.stack((dw.mu_push, dw.mu_pull)).detach().cpu(),
                    "last_read": dw.last_read.detach().cpu().clone(),
                    "refine": None if dw.refine_state is None else {
                        "state": dw.refine_state.detach().cpu().clone(),
                        "read_variance": dw.read_variance},
                    "snapshot": dw.array.snapshot(),
                }
                for dw in self.weights
            },
            "last_stats": dataclasses.asdict(self.last_stats),
        }
        sd["dwlab"] = ours
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        ours: ControllerState | None = state_dict.pop("dwlab", None)
        if ours is None:
            raise ValueError("not a dwlab controller state (no 'dwlab' entry)")
        if ours["scheme"] != self.scheme:
            raise ValueError(
                f"state is for scheme '{ours['scheme']}', this controller runs '{self.scheme}'"
            )
        self._check_names(ours["weights"], "saved device weights")
        super().load_state_dict(state_dict)
        self._step_count = int(ours["step"])
        for key, gen_state in ours["generators"].items():
            self._generator(torch.device(key)).set_state(gen_state)
        for dw in self.weights:
            saved = ours["weights"][dw.name]
            dw.array.restore(saved["snapshot"])
            for key in ("alpha", "g_mid", "g_half", "sigma"):
                setattr(dw, key, float(saved[key]))
            dw.set_steps(*saved["steps_siemens"])
            last_read = saved["last_read"].to(dw.param.device, dw.param.dtype).clone()
            dw.accept_read(last_read)
            refine = saved.get("refine")
            if refine is not None:
                dw.refine_state = refine["state"].to(dw.param.device, dw.param.dtype).clone()
                dw.read_variance = float(refine["read_variance"])
        if "last_stats" in ours:
            self.last_stats = StepStats(**ours["last_stats"])

    def close(self) -> None:
        """Put every array in its safe state (outputs off, switches open)."""
        errors = []
        for dw in self.weights:
            try:
                dw.array.safe_state()
            except Exception as exc:  # keep going: every array must be made safe
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> SGLDController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
