"""A non-parametric twin: every pulse draws its step from the steps measured on a real
device under the same pulse shape, polarity and conductance bin (a jump table).

It follows physics the parametric model lacks (heavy tails, creep, pinning, odd read
noise), as far as the records cover it. Built by :func:`build_jump_table` from the fitted
(not held-out) steps of a calibration; saved as ``.npz`` (plain arrays, read without
pickle).

- Device-to-device spread: every twin device copies one measured *source* device (drawn
  from the seed): its steps, its conductance at both ends. Correlations between a device's
  conditions are kept. The steps' deviations from their device mean are widened a little
  (:func:`_widen`, 4 % in sd for 26 steps), so that a device copied from a few dozen steps
  is on average as spread, on the log scale, as the device itself.
- Position: steps may be kept per conductance bin (``bins`` equal bins of the device's
  track; a bin with fewer than ``min_steps`` steps draws from the ``min_steps`` measured
  nearest to it in position instead). The default is one bin: the standard protocol
  re-centres the walls every few repeats, so its steps sample little of the track, and on
  the pinning records of ``benchmarks/calibration_verdicts.py`` (seed 0) position bins did
  worse than none: 9 of 24 conditions failed the held-out check with 8 bins, 0 with one.
- Memory (a Markov state per device): a wall held by a pinning site returns, on the next
  push, as far as the pull before it took it back, so a step depends on the step before it.
  Every measured step is stored with the step that preceded it on its device (its *key*);
  the twin remembers each device's last step and draws among the ``neighbours`` measured
  steps whose keys are nearest to it in rank. For devices without memory the key carries
  no information and this is a draw from a part of the pool. 12 neighbours by default:
  with 4, heavy-tailed devices locked onto a recorded outlier (``heavy_tails`` seed 0).
- Read noise: replayed from the recorded traces of single reads (the ``read_noise``
  record), consecutive reads taking consecutive stretches, so noise that is not Gaussian
  or is correlated in time (telegraph noise) comes back as measured. Every twin device
  plays the traces of all source devices, one after another, each forward then backward
  (:func:`replay_sequence`, which says why), from its own random starting point: a
  100-read trace is too short a sample of a slow fluctuator to stand for one device's
  noise over a session. Noise that differs from device to device is therefore not kept.
  A measured step carries the noise of the two readings around it; the steps of each
  shape and polarity are shrunk about their device means so that their pooled
  within-device variance loses the variance the replay adds to a step. Keys are shrunk
  the same way (a twin's last step is wall motion, without read noise).
- Pulse order: pulses are applied one at a time in the hardware order
  (:func:`dwlab.core.types.interleaved`), vectorised over devices; the loop runs over
  pulses, never over devices. Arrays of ``SUMS_FROM`` devices or more follow walks drawn
  afresh per plan instead (:meth:`JumpTableArray._apply_sums`, the approximation stated
  there; ``benchmarks/jump_table_apply.py``).
- Pulse shapes: only recorded shapes; any other is refused with the recorded ones named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dwlab.sim.calibration.estimate import Calibration

from dwlab.config import LimitsConfig
from dwlab.core.device import ArrayBase
from dwlab.core.errors import DatasetError, PlanError
from dwlab.core.types import ArrayInfo, PulseLimits, PulsePlan, PulseReceipt, PulseShape, Readout

KIND = "dwlab-jump-table"
NEIGHBOURS = 12
SUMS_FROM = 65_536
"""Arrays of this many devices or more apply a plan through its sums (the fast path)."""
SUM_CLASSES = 8
SUM_SAMPLES = 64
FIELDS = ("shapes", "g_min", "g_max", "offsets", "counts", "steps", "previous", "read_traces",
          "bins", "neighbours")


@dataclass
class JumpTable:
    shapes: np.ndarray
    """(C, 2): recorded pulse shapes (amplitude volts, width seconds)."""
    g_min: np.ndarray
    """(D,): conductance of each source device at the pull end (siemens)."""
    g_max: np.ndarray
    offsets: np.ndarray
    """(D, C, 2, B): start in ``steps`` of each group; polarity index 0 push, 1 pull."""
    counts: np.ndarray
    steps: np.ndarray
    """All steps, in track fractions, signed (push steps mostly positive); each group sorted
    by ``previous``."""
    previous: np.ndarray
    """Per step: the step before it on its device (its Markov key), in track fractions."""
    read_traces: np.ndarray
    """(D, R): each source device's single reads, less their mean, in time order (siemens);
    every twin device replays all of them (:func:`replay_sequence`)."""
    bins: int
    neighbours: int = NEIGHBOURS
    """A draw picks among this many steps whose keys are nearest the device's last step."""

    @property
    def devices(self) -> int:
        return len(self.g_min)

    def shape_index(self, shape: PulseShape) -> int:
        for c, (a, w) in enumerate(self.shapes):
            if math.isclose(a, shape.amplitude_volts, rel_tol=1e-9) and math.isclose(
                    w, shape.width_seconds, rel_tol=1e-9):
                return c
        recorded = ", ".join(f"{a:g} V x {w:g} s" for a, w in self.shapes)
        raise PlanError(f"the jump table has no steps for pulses of "
                        f"{shape.amplitude_volts:g} V x {shape.width_seconds:g} s; "
                        f"recorded: {recorded}")

    def nearest_shape(self, shape: PulseShape) -> PulseShape:
        """The recorded shape nearest ``shape`` (amplitude first, then log width)."""
        a, w = self.shapes[:, 0], self.shapes[:, 1]
        cost = np.abs(a - shape.amplitude_volts) * 1e3 + np.abs(np.log(w / shape.width_seconds))
        c = int(np.argmin(cost))
        return PulseShape(float(a[c]), float(w[c]))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {k: np.asarray(getattr(self, k)) for k in FIELDS}
        arrays["kind"] = np.array(KIND)
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> JumpTable:
        """Read a table written by :meth:`save`; :class:`DatasetError` names what is wrong."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if "kind" not in data or str(data["kind"]) != KIND:
                    raise DatasetError(f"{path}: not a jump table (kind '{KIND}' missing)")
                values = {k: data[k] for k in FIELDS}
        except (OSError, ValueError, KeyError) as exc:
            raise DatasetError(f"{path}: unreadable jump table ({exc})") from None
        table = cls(values["shapes"], values["g_min"], values["g_max"], values["offsets"],
                    values["counts"], values["steps"].astype(np.float32),
                    values["previous"].astype(np.float32), values["read_traces"],
                    int(values["bins"]), int(values["neighbours"]))
        d, c, b = table.devices, len(table.shapes), table.bins
        if (table.offsets.shape != (d, c, 2, b) or table.counts.shape != (d, c, 2, b)
                or (table.counts < 1).any() or table.neighbours < 1
                or (table.offsets + table.counts > len(table.steps)).any()
                or table.previous.shape != table.steps.shape
                or table.read_traces.shape[0] != d or table.read_traces.shape[1] < 2
                or not (table.g_max > table.g_min).all()):
            raise DatasetError(f"{path}: inconsistent jump table")
        return table


def _read_noise_shrink(groups: list[np.ndarray], read_var: np.ndarray) -> float:
    """The factor that shrinks a condition's steps about their device means so that their
    within-device variance, pooled over devices, loses ``read_var`` (per device, in track
    fractions squared). Pooled, because one device's variance from a few steps is too noisy:
    clipping each at zero would leave read noise in the conditions without wall motion."""
    within = np.array([g.var(ddof=1) for g in groups])
    total = float(within.mean())
    return float(np.sqrt(max(total - float(read_var.mean()), 0.0) / total)) if total > 0 else 1.0


def _widen(n: int) -> float:
    """The factor on the deviations of a device's ``n`` recorded steps about their mean
    that makes a twin device drawing from them as spread, on the log scale, as the device
    itself. A pool of ``n`` steps has ``(n - 1) / n`` of their sample variance, and the log
    of a sample variance falls short of the log variance by ``log((n - 1) / 2) -
    digamma((n - 1) / 2)`` (about ``1 / (n - 1)``; Gaussian steps) on average: without this,
    twin devices copying 26 steps each were 0.08 narrower in mean log variance than the
    devices, which the held-out variance test sees (``creep`` seed 4, ``telegraph`` seed 1).
    The mean variance comes out about ``1 / n`` too large instead."""
    from scipy.special import digamma

    if n < 2:
        return 1.0
    half = (n - 1) / 2
    return math.sqrt(n / (n - 1) * math.exp(math.log(half) - float(digamma(half))))


def replay_sequence(traces: np.ndarray) -> np.ndarray:
    """One period of the read noise every twin device replays: each trace forward, then
    backward without repeating either end, the traces in order of their first read and
    then back (no wrap, and each trace starts near where the one before it ended).

    Played in a loop, a trace whose slow fluctuator ends in the other level than it
    started would add a level jump at every wrap, a jump never measured; joined at random,
    two traces would add one at every join. All traces, not the source's own alone: a
    trace of 100 reads is a short sample of a slow fluctuator (one in seven, flipping every
    50 reads, never flips in it), while over a session every device's steps see it flip."""
    order = np.argsort(traces[:, 0], kind="stable")
    order = np.concatenate([order, order[-2:0:-1]])
    return np.concatenate([np.concatenate([t, t[-2:0:-1]]) for t in traces[order]])


def replayed_step_read_var(traces: np.ndarray, n_averages: int) -> float:
    """Variance of the difference of two consecutive ``n_averages``-read means taken from
    the traces as the twin replays them (:func:`replay_sequence`, every starting point)."""
    sequence = replay_sequence(traces)
    window = np.stack([np.roll(sequence, -k) for k in range(n_averages)]).mean(0)
    diff = np.roll(window, -n_averages) - window
    return float(np.mean(diff**2)) if traces.shape[1] > 1 else 0.0


def _previous_steps(cal: Calibration) -> dict[tuple[float, float, int, int, int], float]:
    """Every recorded step (held out or not) by (amplitude, width, polarity, device,
    repeat), in siemens: a step's key is looked up here, never drawn from."""
    out = {}
    for source in (cal.fitted, cal.heldout):
        for (a, w, s), st in source.items():
            for d, r, delta in zip(st.device.tolist(), st.repeat.tolist(), st.delta.tolist(),
                                   strict=True):
                out[(a, w, s, d, r)] = delta
    return out


def build_jump_table(cal: Calibration, bins: int = 1, min_steps: int = 12,
                     neighbours: int = NEIGHBOURS) -> JumpTable:
    """A jump table from the fitted steps of ``cal`` (devices with steps in every recorded
    condition). A bin holding fewer than ``min_steps`` steps of a device draws from the
    ``min_steps`` steps nearest it in position instead.

    A step's key is the step before it on its device in the ``switching_statistics``
    order: a pull follows the push of its repeat, a push the pull of the repeat before
    (unless the walls were re-centred in between: those pushes have no key and are left
    out)."""
    e = cal.per_device
    ranges = {int(d): (lo, hi) for d, lo, hi in zip(e["device"], e["g_min"], e["g_max"],
                                                     strict=True)}
    shapes = sorted({(k[0], k[1]) for k in cal.fitted})
    keys = [(a, w, s) for a, w in shapes for s in (1, -1)]
    covered = set(ranges)
    for k in keys:
        covered &= set(cal.fitted[k].device.tolist()) if k in cal.fitted else set()
    devices = sorted(covered)
    if not devices:
        raise DatasetError("no device has steps in every recorded condition; "
                           "cannot build a jump table")
    missing = [d for d in devices if d not in cal.read_traces]
    if missing:
        raise DatasetError(f"devices {missing} have no read_noise trace; cannot build a jump "
                           f"table")
    length = min(len(cal.read_traces[d]) for d in devices)
    traces = np.stack([cal.read_traces[d][:length] for d in devices])
    step_read_var = replayed_step_read_var(traces, int(cal.switching_params["n_averages"]))
    recenter_every = int(cal.switching_params.get("recenter_every", 1))
    recorded = _previous_steps(cal)
    n_c = len(shapes)
    offsets = np.zeros((len(devices), n_c, 2, bins), dtype=np.int64)
    counts = np.zeros_like(offsets)
    chunks: list[np.ndarray] = []
    key_chunks: list[np.ndarray] = []
    start = 0
    edges = np.arange(bins + 1) / bins
    span = {d: ranges[d][1] - ranges[d][0] for d in devices}
    read_var = np.array([step_read_var / span[d] ** 2 for d in devices])
    groups: dict[tuple[int, int], list[tuple[np.ndarray, ...]]] = {}
    for c, (a, w) in enumerate(shapes):
        for p, s in enumerate((1, -1)):
            st = cal.fitted[(a, w, s)]
            groups[c, p] = []
            for d in devices:
                on = st.device == d
                if s > 0:
                    prev = [recorded.get((a, w, -1, d, r - 1), math.nan)
                            if r % recenter_every else math.nan for r in st.repeat[on]]
                else:
                    prev = [recorded.get((a, w, 1, d, r), math.nan) for r in st.repeat[on]]
                known = np.isfinite(prev)
                order = np.argsort(st.before[on][known], kind="stable")
                groups[c, p].append(((st.delta[on][known] / span[d])[order],
                                     ((st.before[on][known] - ranges[d][0]) / span[d])[order],
                                     (np.asarray(prev)[known] / span[d])[order]))
    shrink = {k: _read_noise_shrink([g[0] for g in group], read_var)
              for k, group in groups.items()}
    for (c, p), group in groups.items():
        for i, (x_step, position, key) in enumerate(group):
            n = len(x_step)
            x_step = x_step.mean() + (x_step - x_step.mean()) * shrink[c, p] * _widen(n)
            # A key is a measured step of the other polarity, read noise and all; shrunk as
            # that polarity's steps are, it is on the scale of the twin's own last steps (a
            # twin remembers wall motion, never read noise), so a draw reaches every key.
            # Left raw, keys spread wider than any twin state and the steps whose key is
            # far out (after a fluctuator jump, say) would be drawn too rarely.
            opposite = groups[c, 1 - p][i][0]
            key = opposite.mean() + ((key - opposite.mean()) * shrink[c, 1 - p]
                                     * _widen(len(opposite)))
            # Each bin: its own steps, or the min_steps measured nearest it in position;
            # stored sorted by key, so a draw can find the keys nearest a device's last step.
            first = np.searchsorted(position, edges[:-1])
            last = np.searchsorted(position, edges[1:])
            size = min(min_steps, n)
            low = np.clip((first + last - size) // 2, 0, n - size)
            wide = last - first >= size
            pool_first = np.where(wide, first, low)
            pool_count = np.where(wide, last - first, size)
            for b in range(bins):
                pool = slice(pool_first[b], pool_first[b] + pool_count[b])
                by_key = np.argsort(key[pool], kind="stable")
                chunks.append(x_step[pool][by_key])
                key_chunks.append(key[pool][by_key])
                offsets[i, c, p, b], counts[i, c, p, b] = start, pool_count[b]
                start += pool_count[b]
    return JumpTable(np.asarray(shapes, dtype=float), np.array([ranges[d][0] for d in devices]),
                     np.array([ranges[d][1] for d in devices]), offsets, counts,
                     np.concatenate(chunks).astype(np.float32),
                     np.concatenate(key_chunks).astype(np.float32), traces, bins, neighbours)


@dataclass
class _Walks:
    """Walks of the fast path (:meth:`JumpTableArray._walk_sets`): per source device the
    key-class edges, and position, last step, lowest and highest point of every walk after
    every pair or pulse (flat, index ``(count * sources + source) * classes + class) *
    samples + sample``), or None when no device needs them."""

    edges: torch.Tensor
    at: tuple[torch.Tensor, ...] | None

    def follow(self, src: torch.Tensor, last: torch.Tensor, count: torch.Tensor,
               pick: torch.Tensor, samples: int) -> tuple[torch.Tensor, ...]:
        """Each device's displacement, last step, lowest and highest point after ``count``
        pairs or pulses of walk ``pick`` of its source and its last step's class."""
        if self.at is None:
            zero = torch.zeros_like(last)
            return zero, last, zero, zero
        sources, classes = self.edges.shape[0], self.edges.shape[1] + 1
        cls = torch.zeros_like(src)
        for edge in self.edges.T:  # a few small look-ups, not one (devices, classes) gather
            cls += edge[src] < last
        flat = (((count.clamp(max=self.at[0].numel() // (sources * classes * samples) - 1)
                  * sources + src) * classes + cls) * samples + pick)
        moved, after, low, high = (a[flat] for a in self.at)
        done = count > 0
        return (torch.where(done, moved, 0.0), torch.where(done, after, last),
                torch.where(done, low, 0.0), torch.where(done, high, 0.0))


class JumpTableArray(ArrayBase):
    """A ``DeviceArray`` whose devices replay measured steps (see the module docstring)."""

    backend = "twin"

    def __init__(self, shape: tuple[int, ...] | int, table: JumpTable, *, seed: int = 0,
                 limits: PulseLimits | None = None, nominal_pulse: PulseShape | None = None,
                 torch_device: str | torch.device = "cpu", name: str = "jump-table-twin",
                 sums_from: int = SUMS_FROM):
        self.shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        self.table, self.seed, self.name = table, int(seed), name
        self.limits = limits or LimitsConfig().pulse_limits()
        self.torch_device = torch.device(torch_device)
        first = PulseShape(float(table.shapes[0, 0]), float(table.shapes[0, 1]))
        self.nominal_pulse = nominal_pulse or first
        table.shape_index(self.nominal_pulse)
        self.limits.check_shape(self.nominal_pulse, "nominal pulse")
        dev = self.torch_device
        self.generator = torch.Generator(device=dev)
        self.generator.manual_seed(self.seed)
        self.source = torch.randint(0, table.devices, self.shape, generator=self.generator,
                                    device=dev)
        self.g_ap = torch.as_tensor(table.g_min, dtype=torch.float32, device=dev)[self.source]
        self.g_range = torch.as_tensor(table.g_max - table.g_min, dtype=torch.float32,
                                       device=dev)[self.source]
        self.x = torch.full(self.shape, 0.5, device=dev)
        self._noise = torch.as_tensor(replay_sequence(table.read_traces), dtype=torch.float32,
                                      device=dev)
        self._cursor = torch.randint(0, len(self._noise), self.shape,
                                     generator=self.generator, device=dev)
        self._steps = torch.as_tensor(table.steps, device=dev)
        self._previous = torch.as_tensor(table.previous, device=dev)
        self.last_step = torch.zeros(self.shape, device=dev)
        """Each device's last step (track fractions): the Markov state its next draw keys on."""
        self._offsets = torch.as_tensor(table.offsets.reshape(-1), device=dev)
        self._counts = torch.as_tensor(table.counts.reshape(-1), device=dev)
        self._search_steps = max(int(table.counts.max()), 1).bit_length()
        self.sums_from = sums_from
        self.pulses_applied = 0

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def describe(self) -> ArrayInfo:
        t = self.table
        c = t.shape_index(self.nominal_pulse)
        groups = [t.steps[o:o + n] for o, n in zip(t.offsets[:, c, 0].ravel(),
                                                   t.counts[:, c, 0].ravel(), strict=True)]
        push = np.concatenate(groups)
        g_range = float(np.mean(t.g_max - t.g_min))
        return ArrayInfo(
            name=self.name, backend=self.backend, shape=self.shape,
            conductance_min_siemens=float(np.mean(t.g_min)),
            conductance_max_siemens=float(np.mean(t.g_max)), limits=self.limits,
            nominal_pulse=self.nominal_pulse, step_siemens=float(push.mean()) * g_range,
            step_sigma_siemens=float(push.std()) * g_range,
            identity={"model": "jump_table", "seed": str(self.seed),
                      "source_devices": str(t.devices), "devices": str(self.size)})

    def apply(self, plan: PulsePlan) -> PulseReceipt:
        plan.check_against(self.shape, self.limits)
        t = self.table
        c_push, c_pull = t.shape_index(plan.push_shape), t.shape_index(plan.pull_shape)
        push = plan.push.to(self.torch_device).reshape(-1).long()
        pull = plan.pull.to(self.torch_device).reshape(-1).long()
        src = self.source.reshape(-1)
        x = self.x.reshape(-1).clone()
        last = self.last_step.reshape(-1).clone()
        if self.size >= self.sums_from and t.bins == 1:
            x, last, touched = self._apply_sums(src, (c_push, c_pull), push, pull, x, last)
        else:
            x, last, touched, _, _ = self._walk(src, (c_push, c_pull), push, pull, x, last)
        self.x, self.last_step = x.reshape(self.shape), last.reshape(self.shape)
        self.pulses_applied += plan.total_pulses()
        return PulseReceipt(plan.push, plan.pull, devices_clipped=int(touched.sum()),
                            details={"model": "jump_table"})

    def _walk(self, src: torch.Tensor, shapes: tuple[int, int], push: torch.Tensor,
              pull: torch.Tensor, x: torch.Tensor, last: torch.Tensor, clip: bool = True,
              trace: list[tuple[torch.Tensor, ...]] | None = None, every: int = 1,
              ) -> tuple[torch.Tensor, ...]:
        """The exact path: pulse after pulse in the hardware order, vectorised over devices.
        Returns the positions, last steps, devices that touched an end, and (with ``clip``
        off) the lowest and highest point of each walk; ``trace`` collects all four at the
        start and after every ``every`` pulses."""
        n_c, bins = len(self.table.shapes), self.table.bins
        # first flat index of each device's (shape, polarity) group; the bin is added per pulse
        base_push = ((src * n_c + shapes[0]) * 2 + 0) * bins
        base_pull = ((src * n_c + shapes[1]) * 2 + 1) * bins
        pairs = torch.minimum(push, pull)
        total = push + pull
        surplus_push = push > pull
        touched = torch.zeros_like(x, dtype=torch.bool)
        low, high = x.clone(), x.clone()
        u = torch.empty_like(x)
        if trace is not None:
            trace.append((x, last, low.clone(), high.clone()))
        for j in range(int(total.max()) if total.numel() else 0):
            up = torch.where(j < 2 * pairs, j % 2 == 0, surplus_push)
            position = (x * bins).long().clamp_(0, bins - 1) if bins > 1 else 0
            flat = torch.where(up, base_push, base_pull) + position
            u.uniform_(generator=self.generator)
            target = x + self._steps[self._nearest_keys(flat, last, u)]
            active = total > j
            if clip:
                touched |= active & ((target <= 0) | (target >= 1))
                target.clamp_(0.0, 1.0)
            moved = torch.where(active, target - x, torch.zeros_like(x))
            x = x + moved
            last = torch.where(active, moved, last)
            if not clip:
                torch.minimum(low, x, out=low)
                torch.maximum(high, x, out=high)
            if trace is not None and (j + 1) % every == 0:
                trace.append((x, last, low.clone(), high.clone()))
        return x, last, touched, low, high

    def _apply_sums(self, src: torch.Tensor, shapes: tuple[int, int], push: torch.Tensor,
                    pull: torch.Tensor, x: torch.Tensor, last: torch.Tensor,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The fast path at scale: each device follows one walk drawn afresh for this plan.

        A plan is ``p`` push-pull pairs, then ``s`` pulses of one polarity (the hardware
        order). Per source device and class of starting key (``SUM_CLASSES`` classes of
        equal rank among the recorded keys of the first pulse), ``SUM_SAMPLES`` exact
        unclipped walks of the most pairs in the plan record where they are after every
        pair; so do walks of the largest surplus of each polarity. A device takes the class
        of its own last step, one of that class's pair walks up to its ``p``, then, from
        the class of where that walk's last step leaves it, one surplus walk up to its
        ``s``. A device whose two walks would pass a track end from where it stands takes
        the exact path instead, so no clipping is missed. The approximation: the memory of
        the last step is kept to one class of ``SUM_CLASSES`` (at the start and between
        the two parts), and within one plan the devices of a source and class share its
        ``SUM_SAMPLES`` walks (each marginally exact; the next plan draws new ones)
        (``tests/test_calibration_verdict.py`` compares it with the exact path)."""
        dev, m = self.torch_device, SUM_SAMPLES
        pairs = torch.minimum(push, pull)
        surplus = (push - pull).abs()
        up = push > pull
        # pairs: one set of walks; then the surplus of each polarity
        at_pairs = self._walk_sets(shapes, 0, int(pairs.max()), True)
        at_push = self._walk_sets(shapes, 0, int(surplus[up].max()) if up.any() else 0, False)
        at_pull = self._walk_sets(shapes, 1, int(surplus[~up].max()) if (~up).any() else 0,
                                  False)
        u = torch.randint(0, m, (2, *x.shape), generator=self.generator, device=dev)
        step, new_last, low, high = at_pairs.follow(src, last, pairs, u[0], m)
        push_part = at_push.follow(src, new_last, surplus, u[1], m)
        pull_part = at_pull.follow(src, new_last, surplus, u[1], m)
        part = [torch.where(up, a, b) for a, b in zip(push_part, pull_part, strict=True)]
        low = torch.minimum(low, step + part[2])
        high = torch.maximum(high, step + part[3])
        step, new_last = step + part[0], part[1]
        near_end = (x + low <= 0) | (x + high >= 1)
        touched = torch.zeros_like(near_end)
        if bool(near_end.any()):
            idx = near_end.nonzero().squeeze(1)
            exact = self._walk(src[idx], shapes, push[idx], pull[idx], x[idx], last[idx])
            step[idx], new_last[idx], touched[idx] = exact[0] - x[idx], exact[1], exact[2]
        return x + step, new_last, touched

    def _walk_sets(self, shapes: tuple[int, int], polarity: int, length: int,
                   pairs: bool) -> _Walks:
        """``SUM_SAMPLES`` walks per source device and key class: ``length`` push-pull
        pairs (``pairs``), else ``length`` pulses of ``polarity`` (0 push, 1 pull), each
        position, last step, lowest and highest point recorded after every pair or pulse."""
        t, dev = self.table, self.torch_device
        k_cls, m, n_c = SUM_CLASSES, SUM_SAMPLES, len(t.shapes)
        sources = torch.arange(t.devices, device=dev)
        group = (sources * n_c + shapes[polarity]) * 2 + polarity   # first pulse's keys
        start, count = self._offsets[group], self._counts[group]
        ranks = torch.arange(1, k_cls, device=dev) * count[:, None] // k_cls
        edges = self._previous[start[:, None] + ranks]               # (sources, k_cls - 1)
        if length == 0:
            return _Walks(edges, None)
        v = torch.rand((t.devices, k_cls, m), generator=self.generator, device=dev)
        cls = torch.arange(k_cls, device=dev)[None, :, None]
        rank = torch.minimum(((cls + v) * count[:, None, None] / k_cls).long(),
                             count[:, None, None] - 1)
        key = self._previous[start[:, None, None] + rank].reshape(-1)
        walk_src = sources.repeat_interleave(k_cls * m)
        n = torch.full_like(walk_src, length)
        zero = torch.zeros_like(walk_src)
        push, pull = (n, n) if pairs else ((n, zero) if polarity == 0 else (zero, n))
        trace: list[tuple[torch.Tensor, ...]] = []
        self._walk(walk_src, shapes, push, pull, torch.zeros(len(walk_src), device=dev),
                   key, clip=False, trace=trace, every=2 if pairs else 1)
        return _Walks(edges, tuple(torch.stack(v).reshape(-1) for v in zip(*trace,
                                                                           strict=True)))

    def _nearest_keys(self, flat: torch.Tensor, last: torch.Tensor,
                      u: torch.Tensor) -> torch.Tensor:
        """Index of one step per device, uniform among the ``neighbours`` of its group
        (``flat``) whose keys are nearest its ``last`` step in rank (bisection over the
        sorted keys, vectorised over devices)."""
        first = self._offsets[flat]
        count = self._counts[flat]
        lo, hi = first.clone(), first + count
        top = len(self._previous) - 1
        for _ in range(self._search_steps):
            mid = (lo + hi) // 2
            below = self._previous[mid.clamp(max=top)] < last
            searching = lo < hi
            lo = torch.where(searching & below, mid + 1, lo)
            hi = torch.where(searching & ~below, mid, hi)
        k = count.clamp(max=self.table.neighbours)
        start = torch.minimum((lo - k // 2).clamp(min=0), first + count - k).clamp(min=first)
        return start + (u * k).long().clamp(max=k - 1)

    def read(self, n_averages: int = 1, devices: torch.Tensor | None = None) -> Readout:
        if int(n_averages) != n_averages or n_averages < 1:
            raise ValueError(f"n_averages must be a positive integer, got {n_averages!r}")
        n = int(n_averages)
        g = torch.addcmul(self.g_ap, self.g_range, self.x).reshape(-1)
        cursor = self._cursor.reshape(-1)
        if devices is not None:
            idx = torch.as_tensor(devices, device=self.torch_device)
            g, cursor = g[idx], cursor[idx]
        period = len(self._noise)
        reads = torch.stack([g + self._noise[(cursor + k) % period] for k in range(n)])
        if devices is None:
            self._cursor = (self._cursor + n) % period
        else:
            self._cursor.reshape(-1)[idx] = (cursor + n) % period
        shape = self.shape if devices is None else tuple(idx.shape)
        spread = reads.std(dim=0).reshape(shape) if n > 1 else None
        return Readout(reads.mean(dim=0).reshape(shape), spread, n)

    def snapshot(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": "jump_table", "seed": self.seed,
                "shape": list(self.shape), "position": self.x.detach().cpu().clone(),
                "last_step": self.last_step.detach().cpu().clone(),
                "read_cursor": self._cursor.detach().cpu().clone(),
                "generator": self.generator.get_state(), "pulses_applied": self.pulses_applied}

    def restore(self, snapshot: dict[str, Any]) -> None:
        if list(snapshot["shape"]) != list(self.shape) or snapshot["seed"] != self.seed:
            raise ValueError("snapshot belongs to a jump-table twin of another shape or seed")
        self.x = snapshot["position"].to(self.torch_device).clone()
        self.last_step = snapshot["last_step"].to(self.torch_device).clone()
        self._cursor = snapshot["read_cursor"].to(self.torch_device).clone()
        self.generator.set_state(snapshot["generator"])
        self.pulses_applied = int(snapshot["pulses_applied"])

    def safe_state(self) -> None:
        """A twin has no outputs to turn off."""
