"""Training: the step-size schedule, the SGLD controller, parameter-to-array mapping and
the training host."""

from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Ge, Gt, Interval
from pydantic import Field, field_validator, model_validator

from dwlab.config.arrays import torch_device_name
from dwlab.config.convert import Schema
from dwlab.config.problems import KeyProblem
from dwlab.config.quantities import MAX_INT, Finite
from dwlab.core.schemes import Scheme

AtLeastOne = Annotated[int, Interval(ge=1, le=MAX_INT)]


class ScheduleConfig(Schema):
    """Step-size schedule (``dwlab.sgld.learning_rate_at``), with ``t`` the step count.

    constant:   ``lr_t = lr``
    polynomial: ``lr_t = lr * (1 + t / decay_steps) ** -gamma``, i.e. ``a (b + t) ** -gamma``
                with ``b = decay_steps`` and ``a = lr * b ** gamma``
    cyclic:     ``lr_t = lr / 2 * (1 + cos(pi * (t mod cycle_steps) / cycle_steps))``
                (cyclical SG-MCMC: explore at the cycle start, sample as it ends)
    anneal:     cosine decay from ``lr`` to ``floor * lr`` over ``decay_steps``, then flat:
                ``lr_t = lr * (floor + (1 - floor) / 2 * (1 + cos(pi * min(t, decay_steps)
                / decay_steps)))``: descend fast, then sample in the flat phase (set
                ``training.burn_in_epochs`` to cover the decay)
    """

    kind: Literal["constant", "polynomial", "cyclic", "anneal"] = "constant"
    gamma: Annotated[Finite, Ge(0)] = 0.55
    decay_steps: Annotated[Finite, Gt(0)] = 1000.0
    cycle_steps: AtLeastOne = 1000
    floor: Annotated[Finite, Interval(gt=0, le=1)] = 0.1
    """The flat phase's rate as a fraction of ``lr`` (``anneal``)."""


class ControllerConfig(Schema):
    """The SGLD controller (``dwlab.sgld.controller``); see its module docstring for the maths.

    ``lr`` is the step size on the *mean* minibatch loss, like SGD's: the SGLD step size on
    the potential ``U = N * L_batch + |theta|^2 / (2 prior_sigma^2)`` is ``eps = lr / N``.
    """

    # Not strict: configs write the scheme as its value ("push_pull_pair").
    scheme: Annotated[Scheme, Field(strict=False)] = Scheme.PUSH_PULL_PAIR
    """How each mapped weight tensor is updated."""
    update_bits: Annotated[int, Interval(ge=1, le=12)] = 7
    """Pulse budget per device and step ``K = 2 ** update_bits - 1``: the resolution of one
    update (``n+ - n-`` takes ``K + 1`` values)."""
    precision: Literal["bench", "fixed_range"] = "bench"
    """How the bits act. 'bench' (default), as on a bench: every update pulse is the array's
    own nominal pulse (config or calibration); ``K`` pulses then set both the largest update
    (``K`` steps) and its noise (``K`` step variances), and the weight resolution is the
    window over one step whatever the bits. 'fixed_range' (an ablation): the pulse width is
    scaled so that ``K`` pulses span ``update_range`` at every precision, so more bits mean
    finer steps at the same noise."""
    update_range: Finite | None = None
    """With ``precision: fixed_range`` only: the largest update (all ``K`` pulses of one
    polarity) as a fraction of the conductance range of one device. Small ranges need short
    pulses, so the array's ``limits.min_width_seconds`` must allow them."""
    rounding: Literal["stochastic", "nearest"] = "stochastic"
    """How a real-valued pulse count becomes whole pulses: 'stochastic' (unbiased, adds
    variance ``p (1 - p)`` steps^2 that the effective temperature counts) or 'nearest'
    (deterministic; its error is a bias, counted as its mean square)."""
    calibration_pulses: Annotated[int, Interval(ge=1, le=MAX_INT)] = 2048
    """Pulses of each polarity per device that measure each device's own push and pull
    step before programming (split into sweeps within ``max_pulses_per_device`` and a
    third of the track): the per-device asymmetry compensation rests on them."""
    refine_steps: bool = True
    """Refine each device's steps from the read-backs of training (:mod:`dwlab.sgld.refine`),
    so the calibration's error does not walk the walls; false keeps the calibration."""
    lr: Annotated[Finite, Gt(0)] = 0.05
    temperature: Annotated[Finite, Ge(0)] = 1e-4
    """SGLD temperature of float SGLD, and of the device weights when ``weight_scale`` is
    'temperature'. The digital parameters of a device scheme are sampled at the
    temperature the devices realise (``StepStats.effective_temperature``, every step)."""
    prior_sigma: Annotated[Finite, Gt(0)] = 1.0
    dataset_size: AtLeastOne | None = None
    """N in the SGLD potential; empty means the training set size."""
    weight_scale: Literal["range", "temperature"] = "range"
    """How the weight per siemens (alpha) of each mapped tensor is chosen. 'range' (default):
    from the initial weights and ``weight_range`` so the weights fit the conductance window;
    the device noise then implies the temperature, which is reported. 'temperature': alpha
    is set so that the device noise realises ``temperature`` exactly at the initial step
    size (the window then follows)."""
    weight_range: Annotated[Finite, Gt(0)] = 3.0
    """Weights are mapped so that ``weight_range`` standard deviations of the initial layer
    weights span half the conductance range (of one device, or of a pair's difference)."""
    recentre_margin: Annotated[Finite, Interval(ge=0, lt=0.5)] = 0.1
    """A differential pair with a device closer than this fraction of the conductance range
    to a track end is re-centred (both devices moved by the same common-mode count)."""
    centring_gain: Annotated[Finite, Interval(ge=0, le=1)] = 0.25
    """Every step, each differential pair aims to remove this fraction of its common-mode
    offset from the window centre, within its pulse budget (a different split of its ``K``
    pushes and pulls, so no extra pulse and no extra noise); the common mode otherwise
    diffuses freely, as nothing restores it. 0 leaves only ``recentre_margin``."""
    program_iterations: AtLeastOne = 6
    """Apply/read rounds of the program-and-verify loop that writes the initial weights."""
    read_averages: AtLeastOne = 1
    """Reads averaged for every read-back of the device weights."""
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)

    @model_validator(mode="after")
    def _update_range_is_a_fraction(self) -> ControllerConfig:
        if self.precision == "bench" and self.update_range is not None:
            raise KeyProblem("update_range", "update_range applies to precision: fixed_range "
                             "only (bench precision uses the array's own pulse)")
        if self.precision == "fixed_range" and self.update_range is None:
            raise KeyProblem("update_range", "precision: fixed_range needs an update_range")
        if self.update_range is not None and not 0 < self.update_range <= 1:
            raise KeyProblem("update_range",
                             "update_range must lie in (0, 1] (a fraction of the window)")
        return self


class MappingRule(Schema):
    """Parameters whose name matches ``match`` (fnmatch pattern) go to ``array``."""

    match: str
    array: str


class TrainingConfig(Schema):
    """The training host (``dwlab train``, ``dwlab sweep``). Paths are relative to the
    config file."""

    dataset: Literal["digits", "fashion_mnist", "cifar10"] = "digits"
    data_dir: str | None = None
    """Folder with the dataset files; empty means the default (Fashion-MNIST: the Debian
    package's folder)."""
    model: Literal["resnet18", "fc5", "mlp", "stochastic_binary"] = "mlp"
    width: Annotated[int, Interval(ge=1, le=65536)] = 64
    """ResNet18 base width, or hidden units of the flat networks."""
    epochs: AtLeastOne = 5
    batch_size: AtLeastOne = 64
    eval_batch_size: AtLeastOne = 512
    augment: bool | None = None
    """Random crop and flip; empty means the dataset's default (on for CIFAR-10 only)."""
    compare_float: bool = True
    """Also train with float SGD (same seed and epochs) and report both."""
    burn_in_epochs: Annotated[Finite, Ge(0)] = 1.0
    """The shortest burn-in. Sampling starts there, or later: see ``stationarity_z``."""
    stationarity_z: Annotated[Finite, Gt(0)] | None = 2.0
    """Sampling starts once the training loss over the last ``stationarity_window_epochs``
    is stationary: the means of the window's halves differ by at most this many
    (autocorrelation-corrected) standard errors (``dwlab.app.training.chain``). Tested at
    the end of the burn-in, then every half window. Empty: start right after the burn-in."""
    stationarity_window_epochs: Annotated[Finite, Gt(0)] = 1.0
    thinning_steps: AtLeastOne | Literal["auto"] = "auto"
    """Steps between posterior samples; 'auto': the integrated autocorrelation time of a
    random projection of the weights, measured over the window before sampling starts."""
    max_samples: AtLeastOne = 10
    """Posterior samples kept (the most recent); prediction averages over them."""
    store_device_states: bool = True
    """Keep each sample's device snapshots (the states on the arrays), not only weights."""
    bma_every_epoch: bool = True
    """Also evaluate the sample average after every epoch (one test pass per sample)."""
    checkpoint_every_steps: AtLeastOne = 200
    log_every_steps: AtLeastOne = 1
    ece_bins: AtLeastOne = 15
    limit_train: AtLeastOne | None = None
    limit_test: AtLeastOne | None = None
    runs_dir: str = "runs"
    torch_device: str = "cpu"
    """Where the model runs: cpu, cuda, cuda:1, ..."""
    bf16: bool = False
    """bf16 autocast for the forward pass (CPU with AMX/AVX512-BF16, or CUDA): about 1.8x
    as fast; gradients, weights and the device updates stay float32."""
    channels_last: bool = False
    """channels_last memory format for conv nets (helps on CUDA, not on CPU)."""

    _known_device = field_validator("torch_device")(torch_device_name)
