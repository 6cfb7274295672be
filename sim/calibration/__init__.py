"""Fit the continuous twin's ``TwinParams`` to protocol records, with uncertainties.

Inputs are record folders written by ``dwlab.protocols`` (read as data, never imported):
- ``device_map`` -> per-device conductance at both track ends (``g_p``, ``g_ap``, ``g_spread``);
- ``read_noise`` -> per-device spread of single reads (``read_noise_siemens``);
- ``switching_statistics`` -> single-pulse steps over amplitude x width x polarity.

Model (``sim/physics/drive.py``): for device ``i`` a pulse of polarity ``s`` moves the wall by
``mu_s,i * f`` on average with spread ``sigma_s,i * sqrt(f)``, where
``f = max(A - v_th,i, 0) / (A0 - v_th,i) * w / w0`` and ``(A0, w0)`` is the reference
(nominal) pulse. Steps in siemens are divided by each device's measured range
``g_max,i - g_min,i`` to give track fractions. Each measured step also carries the read
noise of the two averaged readings around it, ``2 sigma_read^2 / n_averages``, which is
subtracted from the step variance.

Per device: ``v_th`` and the two slopes are fitted by weighted least squares on the
condition means (profiled over ``v_th``); ``sigma`` by the ratio of excess variance to drive.
Population values are device means. Device-to-device spreads are estimated without the
per-device estimation noise from the covariance of two independent halves of the repeats.
Uncertainties are bootstrap standard errors over devices (for the spreads, at least their
normal-theory standard error, since the bootstrap is optimistic with few devices). Every
``heldout_every``-th repeat is held out of the fit for the goodness-of-fit tests (per
condition, with devices as the independent units; see ``goodness``) and the verdict.

Modules: ``records`` (record loading, steps per condition), ``device_fit`` (one device's
fit), ``population`` (population values and spreads), ``estimate`` (the whole calibration
with bootstrap uncertainties), ``goodness`` (the held-out tests per condition), ``verdict``
(PASS / MISFIT / INSUFFICIENT DATA with reasons).
"""

from dwlab.sim.calibration.device_fit import Conditions, DeviceFit, fit_device
from dwlab.sim.calibration.estimate import (
    FITTED,
    UNITS,
    Calibration,
    calibrate,
    model_mean_step,
)
from dwlab.sim.calibration.goodness import ConditionCheck, compare_steps
from dwlab.sim.calibration.records import (
    ConditionKey,
    Record,
    Steps,
    load_records,
    steps_by_condition,
)

__all__ = [
    "FITTED", "UNITS", "Calibration", "ConditionCheck", "ConditionKey", "Conditions",
    "DeviceFit", "Record", "Steps", "calibrate", "compare_steps", "fit_device",
    "load_records", "model_mean_step", "steps_by_condition",
]
