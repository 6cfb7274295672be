"""Twin parameters and the fixed registry of named presets.

A preset is a :class:`TwinParams`; its ``model`` field names the device physics from the
fixed set :data:`MODELS`. Configs pick presets by name and override numeric fields; they
never name classes.

Units: positions and steps are fractions of the track (``x`` in ``[0, 1]``); a step is per
nominal pulse; ``*_spread`` fields are relative standard deviations across devices, drawn
once per device from the twin's seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MODELS = ("continuous", "multistate", "binary_dw", "binary_mtj")
"""Device physics the twin implements:

- ``continuous``: a domain wall moved by Gaussian steps, clipped at the track ends.
- ``multistate``: the same motion, but the wall settles at the nearest of ``n_states``
  pinning notches after every pulse (positions spread from device to device).
- ``binary_dw``: a binary stochastic DW synapse. Pulses set the stored drive level ``x``
  (continuous law); ``w = drive_min + x * (drive_max - drive_min)`` is the drive in the
  fitted units, and every read is a pass/no-pass trial with
  ``P(w) = (1 - a) + a * sigmoid(dx * (w - x0))``; N reads give ``Binomial(N, P) / N``.
- ``binary_mtj``: a binary MTJ. A push switches AP -> P, a pull P -> AP, each with
  ``P_sw = 1 - exp(-t / tau)``, ``tau = tau0 * exp(Delta * (1 - I / I_c0))`` and
  ``I = V * G`` of the state being switched.
"""


@dataclass(frozen=True)
class TwinParams:
    """Nominal device parameters and their device-to-device spreads."""

    model: str = "continuous"
    g_p_siemens: float = 5.0e-4
    g_ap_siemens: float = 2.5e-4
    mu_push: float = 0.01
    mu_pull: float = 0.009
    sigma_push: float = 0.004
    sigma_pull: float = 0.004
    v_th_volts: float = 0.5
    nominal_amplitude_volts: float = 1.0
    nominal_width_seconds: float = 1.0e-8
    read_noise_siemens: float = 5.0e-7
    mu_spread: float = 0.1
    sigma_spread: float = 0.1
    v_th_spread: float = 0.05
    g_spread: float = 0.03
    initial_position: float = 0.5
    initial_position_spread: float = 0.0
    # Retention (TwinArray.advance_time): the wall relaxes towards relaxation_target at
    # this rate (1/s); 0 keeps positions forever. MTJs use Neel-Arrhenius flips instead.
    relaxation_rate_per_second: float = 0.0
    relaxation_target: float = 0.5
    # multistate: number of pinning notches, evenly spaced over the track, and the
    # device-to-device spread of interior notch positions (in track fractions).
    n_states: int = 3
    notch_spread: float = 0.05
    # binary_dw: pass-probability fit (Sheffield code) and the drive range of x in [0, 1].
    pass_x0: float = 4.63168
    pass_dx: float = 2.72741
    pass_a: float = 0.97813
    drive_min: float = 2.0
    drive_max: float = 7.0
    # binary_mtj: thermal stability, attempt time, critical currents per direction.
    mtj_delta: float = 40.0
    mtj_tau0_seconds: float = 1.0e-9
    mtj_ic0_push_amps: float = 2.68e-4
    mtj_ic0_pull_amps: float = 5.36e-4
    mtj_delta_spread: float = 0.05
    mtj_ic0_spread: float = 0.03

    def validate(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown twin model '{self.model}'; known: {', '.join(MODELS)}")
        if not self.g_p_siemens > self.g_ap_siemens > 0:
            raise ValueError("need g_p_siemens > g_ap_siemens > 0")
        for name in ("mu_push", "mu_pull", "sigma_push", "sigma_pull", "read_noise_siemens",
                     "mu_spread", "sigma_spread", "v_th_spread", "g_spread",
                     "initial_position_spread", "relaxation_rate_per_second", "notch_spread",
                     "mtj_delta_spread", "mtj_ic0_spread"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative")
        if not 0 < self.v_th_volts < self.nominal_amplitude_volts:
            raise ValueError("need 0 < v_th_volts < nominal_amplitude_volts")
        for name in ("initial_position", "relaxation_target"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1]")
        if self.n_states != int(self.n_states) or self.n_states < 2:
            raise ValueError("n_states must be an integer of at least 2")
        if not 0 < self.pass_a <= 1:
            raise ValueError("pass_a must lie in (0, 1]")
        if not self.drive_max > self.drive_min:
            raise ValueError("need drive_max > drive_min")
        for name in ("mtj_delta", "mtj_tau0_seconds", "mtj_ic0_push_amps", "mtj_ic0_pull_amps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")

    def replace(self, **changes: float | str) -> TwinParams:
        """A copy with some fields changed, validated (used for config overrides)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown twin parameter(s): {', '.join(sorted(unknown))}")
        if "n_states" in changes and float(changes["n_states"]) == int(changes["n_states"]):
            changes["n_states"] = int(changes["n_states"])
        # Fields differ in type (model is a str); validate() checks the values.
        new = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        new.validate()
        return new


_MULTISTATE = TwinParams(
    model="multistate", mu_push=0.3, mu_pull=0.3, sigma_push=0.1, sigma_pull=0.1,
    n_states=3, notch_spread=0.05, initial_position=0.5,
)
"""Three notches (0, 1/2, 1): a nominal pulse moves the wall one notch with probability
Phi((mu - gap/2) / sigma) = Phi(0.5), about 0.69."""

PRESETS: dict[str, TwinParams] = {
    "continuous_dw": TwinParams(),
    "multistate_dw": _MULTISTATE,
    "multistate_dw_2": _MULTISTATE.replace(n_states=2, mu_push=0.6, mu_pull=0.6,
                                           sigma_push=0.2, sigma_pull=0.2, initial_position=0.0),
    "multistate_dw_5": _MULTISTATE.replace(n_states=5, mu_push=0.15, mu_pull=0.15,
                                           sigma_push=0.05, sigma_pull=0.05),
    # Drive level x moves by the continuous law; mu chosen so that ~50 nominal pulses
    # sweep the drive range once.
    "binary_dw_synapse": TwinParams(
        model="binary_dw", mu_push=0.02, mu_pull=0.02, sigma_push=0.006, sigma_pull=0.006,
    ),
    # Nominal pulse (1 V, 10 ns) switches an AP device with probability ~0.5 and, with the
    # larger P -> AP critical current, a P device with about the same probability.
    "binary_mtj": TwinParams(model="binary_mtj", initial_position=0.0),
}
"""Named parameter sets. Look-up by name only; configs never name classes."""
