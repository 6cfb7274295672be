"""The push-pull SGLD controller: a ``torch.optim.Optimizer`` that trains through devices.

Every weight tensor with ``dim >= 2`` (convolutions, linear layers) lives on its own
:class:`~dwlab.core.device.DeviceArray`, one device per weight (``w = alpha * (G - G_ref)``) or a
differential pair (``w = alpha * (G+ - G-)``, array shape ``(2, *w.shape)``). Biases and norm
parameters stay digital. The SGLD parametrisation and the temperature mapping are in
:mod:`dwlab.sgld.maths`: ``eps = lr / N``; drift ``-lr * (grad L_batch + theta / (N prior^2))``;
weight noise variance per step ``2 * eps * T``.

One step, per device-backed tensor:

1. desired weight change ``dw = -lr_t * (grad + theta / (N prior_sigma^2))``;
2. converted into pulse counts with a per-device budget ``K = 2^bits - 1``, rounded
   stochastically (unbiased) or to the nearest count (``ControllerConfig.rounding``). Under
   bench precision (the default) every pulse is the array's nominal pulse, so ``K`` sets
   both the largest update and its noise; under the fixed-range ablation the pulse has the
   width at which ``K`` mean steps span ``update_range`` of the conductance range
   (:func:`dwlab.sgld.maths.update_pulse`). Every device is compensated with its own
   measured push and pull step:

   - ``push_pull``: ``n+ + n- = K`` on every device, ``n+`` chosen so the mean conductance
     change ``n+ mu+ - n- mu-`` equals ``dw / alpha`` (push/pull asymmetry compensated with the
     step sizes measured while programming). The noise ``K sigma^2`` does not depend on the
     gradient: it is the Langevin noise.
   - ``push_pull_pair``: each device of the pair is a push-pull device of its own, device
     ``+`` aiming at ``+dw / 2`` and device ``-`` at ``-dw / 2``, so the pair's mean does not
     drift at zero gradient whatever the asymmetry of its devices. A pair with a device within
     ``recentre_margin`` of a track end is re-centred: both devices get the same extra
     common-mode count, which leaves the weight's mean unchanged (counted as events).
   - ``gradient_only``: ``n = round(dw / (alpha mu))`` in ``[-K, K]``, ``n+ = max(n, 0)``,
     ``n- = max(-n, 0)``: the naive scheme, whose noise grows with the gradient and vanishes
     at zero gradient.

3. the plan is applied, the devices are read back (from the apply's receipt where the array
   measured them right after their pulses, so each device is read once per step), and the
   weights the devices actually hold are written into the parameters, so any torch model
   trains unchanged.

Digital parameters get float SGLD with the same step size (``float_sgld`` and the digital
part of the device schemes) or SGD with the prior as weight decay (``float_sgd``). Their
temperature is the configured one under ``float_sgld``; under a device scheme it is the one
the devices realised in the same step (``last_stats.effective_temperature``), so the whole
model samples one tempered posterior.

Weight scale (``ControllerConfig.weight_scale``). The default, 'range', sets ``alpha`` per
tensor from its initial weights so that ``weight_range`` standard deviations fill half the
conductance window: the weights must fit the window or training saturates, whatever the
temperature. The device physics then *implies* the temperature, reported every step in
``last_stats.effective_temperature``. 'temperature' sets ``alpha`` from the mapping
``eps T = alpha^2 K c sigma_G^2 / 2`` (``c`` = 1, or 2 for pairs) so the devices realise the
configured temperature exactly; the window then follows. With a decaying schedule the
physical noise per step stays fixed, so the effective temperature rises as ``eps`` falls.

Where each part lives: :mod:`~dwlab.sgld.mapping` (tensor to array, ``alpha``),
:mod:`~dwlab.sgld.verify` (program-and-verify), :mod:`~dwlab.sgld.planner` (counts from
gradients, pure), :mod:`~dwlab.sgld.recentre`, :mod:`~dwlab.sgld.readback`,
:mod:`~dwlab.sgld.stats` (:class:`StepStats`), :mod:`~dwlab.sgld.optimizer`
(:class:`SGLDController`, composing them).

Core module: it never imports ``dwlab.sim``, ``dwlab.drivers`` or ``dwlab.app.backends``;
arrays come from the injected ``array_factory``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dwlab.config import ControllerConfig, MappingRule
from dwlab.sgld.mapping import ArrayFactory
from dwlab.sgld.optimizer import SGLDController
from dwlab.sgld.stats import StepStats

__all__ = ["ArrayFactory", "SGLDController", "StepStats", "build_optimizer"]


def build_optimizer(
    model: torch.nn.Module,
    cfg: ControllerConfig,
    *,
    dataset_size: int,
    array_factory: ArrayFactory | None = None,
    mapping: Sequence[MappingRule] = (),
    seed: int = 0,
) -> SGLDController:
    """The controller for ``model``: device weights on arrays from ``array_factory``.

    ``cfg.dataset_size``, when set, overrides ``dataset_size`` (SGLD's N). ``seed`` seeds the
    controller's own random draws (stochastic rounding, software noise).
    """
    n = cfg.dataset_size if cfg.dataset_size is not None else dataset_size
    return SGLDController(
        model.named_parameters(), cfg, dataset_size=n, array_factory=array_factory,
        mapping=mapping, seed=seed,
    )
