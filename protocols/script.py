"""Protocol scripts: a YAML sequence of protocols with parameters and sweeps.

Example (``lab_configs/protocols/standard.yaml``)::

    name: standard
    lab_config: ../default.yaml     # relative to this file
    array: main
    shape: [8, 8]                   # for twins that the lab config does not size
    steps:
      - protocol: device_map
      - protocol: switching_statistics
        params: {repeats: 40}
        sweep: {n_averages: [4, 8]}  # one run per value (cartesian product over keys)

The whole script (every expanded step) is checked against the array's limits before the
first pulse. A run writes one folder with the script's metadata and one sub-folder per step.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Gt, Le
from dwlab.protocols.engine import RunResult, RunStatus, jsonable, run_protocol
from dwlab.protocols.estimate import Estimate, Target, Timing, preflight
from dwlab.protocols.protocol import Protocol
from dwlab.protocols.registry import get_protocol
from pydantic import AfterValidator

from dwlab.config import from_data, read_yaml, to_data
from dwlab.config.quantities import Finite, check_shape
from dwlab.core.device import DeviceArray
from dwlab.core.errors import ConfigError, ProtocolError
from dwlab.records import atomic_write_json, base_metadata, new_run_dir, now_iso

log = logging.getLogger(__name__)

MAX_STEPS = 10_000
"""The most steps a script may expand to (sweeps multiply)."""
MAX_DURATION_SECONDS = 30 * 86400.0


class ScriptError(ProtocolError, ConfigError):
    """A protocol script is invalid: names the file and dotted key (``file``, ``key``)."""


def _script_error(exc: ConfigError) -> ScriptError:
    error = ScriptError(exc.reason, file=exc.file, key=exc.key)
    error.args = exc.args  # all the problems found, as ConfigError worded them
    return error


@dataclass(frozen=True)
class StepConfig:
    protocol: str
    params: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    """Parameter name -> values; the step runs once per combination."""
    label: str | None = None


@dataclass(frozen=True)
class ScriptConfig:
    name: str
    lab_config: str
    """Lab config file (relative to the script) that names the array."""
    steps: list[StepConfig]
    array: str = "main"
    shape: Annotated[list[int], AfterValidator(check_shape)] | None = None
    """Shape for twin arrays that the lab config leaves unsized."""
    seed_offset: int = 0
    max_duration_seconds: Annotated[Finite, Gt(0), Le(MAX_DURATION_SECONDS)] | None = None
    """Refuse the script if its estimated duration is longer."""
    timing: Timing = field(default_factory=Timing)

    def validate(self) -> None:
        if not self.steps:
            raise ValueError("steps must list at least one protocol")


@dataclass
class ScriptStep:
    label: str
    protocol: Protocol


@dataclass
class Script:
    config: ScriptConfig
    steps: list[ScriptStep]
    path: Path | None = None

    def lab_config_path(self) -> Path:
        """The lab config it names; one that is not a file is this script's error."""
        p = Path(self.config.lab_config)
        if not (p.is_absolute() or self.path is None):
            p = self.path.parent / p
        if self.path is not None and not p.is_file():
            raise ConfigError(f"the lab config {p} is not a file", file=str(self.path),
                              key="lab_config")
        return p

    def check(self, target: Target) -> list[Estimate]:
        """Every step's estimate, refusing the script before any pulse if one breaks a limit
        or the total duration is too long (``max_duration_seconds``, else 30 days)."""
        timing = self.config.timing
        estimates = []
        for step in self.steps:
            try:
                estimates.append(step.protocol.check(target, timing=timing))
            except ProtocolError as exc:
                raise type(exc)(f"step '{step.label}': {exc}") from None
            except ValueError as exc:  # PulseLimitError keeps its type
                raise type(exc)(f"step '{step.label}': {exc}") from None
        total = sum(e.duration_seconds(timing) for e in estimates)
        limit = self.config.max_duration_seconds or MAX_DURATION_SECONDS
        if total > limit:
            raise ProtocolError(
                f"script '{self.config.name}': estimated duration {total:.1f} s exceeds "
                f"max_duration_seconds {limit:.1f} s"
            )
        return estimates


def _expand(step: StepConfig, index: int, file: str | None, room: int) -> list[ScriptStep]:
    """The runs of one step (one per sweep combination), at most ``room`` of them."""
    where = f"steps[{index}]"
    try:
        cls = get_protocol(step.protocol)
    except ProtocolError as exc:
        raise ScriptError(str(exc), file=file, key=f"{where}.protocol") from None
    from_data(cls.Params, step.params, file=file, key=f"{where}.params")
    names = list(step.sweep)
    for name in names:
        if not step.sweep[name]:
            raise ScriptError("a sweep needs a non-empty list of values", file=file,
                              key=f"{where}.sweep.{name}")
    if math.prod(len(step.sweep[n]) for n in names) > room:
        raise ScriptError(f"the script expands to more than {MAX_STEPS} steps", file=file,
                          key=f"{where}.sweep")
    label = step.label or step.protocol
    out = []
    for values in itertools.product(*(step.sweep[n] for n in names)):
        data = {**step.params, **dict(zip(names, values, strict=True))}
        params = from_data(cls.Params, data, file=file,
                           key=f"{where}.sweep" if names else f"{where}.params")
        protocol = cls(params)
        suffix = "".join(f"-{n}={v}" for n, v in zip(names, values, strict=True))
        out.append(ScriptStep(label + suffix, protocol))
    return out


def script_from_data(data: object, file: str | None = None, path: Path | None = None) -> Script:
    """Validate script data; every error is one ScriptError naming the file and key."""
    try:
        config = from_data(ScriptConfig, data, file=file)
        steps: list[ScriptStep] = []
        for i, step in enumerate(config.steps):
            steps.extend(_expand(step, i, file, MAX_STEPS - len(steps)))
    except ScriptError:
        raise
    except ConfigError as exc:
        raise _script_error(exc) from None
    return Script(config, steps, path)


def load_script(path: str | Path) -> Script:
    path = Path(path)
    try:
        data = read_yaml(path)
    except ConfigError as exc:
        raise _script_error(exc) from None
    return script_from_data(data, file=str(path), path=path)


@dataclass
class ScriptResult:
    folder: Path
    status: RunStatus
    steps: list[RunResult]


def run_script(script: Script, array: DeviceArray, runs_dir: str | Path, *,
               progress: bool = True, seed: int | None = None,
               extra_metadata: dict[str, object] | None = None,
               plots: bool = True) -> ScriptResult:
    """Run every step into ``runs_dir/<time>-<name>/NN-<label>``; stop at an interruption.
    ``plots=False`` skips the steps' figures.

    The whole script is checked first, so a limit breach anywhere refuses before any pulse.
    """
    info = array.describe()
    estimates = script.check(Target.from_info(info))
    for step, estimate in zip(script.steps, estimates, strict=True):
        preflight(array, info, estimate, f"step '{step.label}'")
    folder = new_run_dir(runs_dir, script.config.name)
    meta = base_metadata("protocol_script", seed=seed, script=to_data(script.config),
                         script_file=str(script.path) if script.path else None,
                         steps=[s.label for s in script.steps],
                         estimates=[e.to_data(script.config.timing) for e in estimates],
                         status="running",
                         **{k: jsonable(v) for k, v in (extra_metadata or {}).items()})
    atomic_write_json(folder / "metadata.json", meta)
    results: list[RunResult] = []
    status: RunStatus = "failed"
    try:
        for i, step in enumerate(script.steps):
            started = time.perf_counter()
            result = run_protocol(step.protocol, array, folder / f"{i:02d}-{step.label}",
                                  seed=seed, progress=progress, timing=script.config.timing,
                                  extra_metadata={"script": script.config.name,
                                                  "step": step.label}, plots=plots)
            results.append(result)
            log.info("%s step %d/%d %s: %s, %d pulses, %d device reads, %d plots, %.1f s",
                     script.config.name, i + 1, len(script.steps), step.label, result.status,
                     result.pulses, result.device_reads, len(result.plots),
                     time.perf_counter() - started)
            if result.status != "completed":
                break
        status = results[-1].status if results else "completed"  # as its last step ended
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        array.safe_state()
        meta.update(status=status, finished=now_iso(),
                    completed_steps=[r.folder.name for r in results if r.status == "completed"])
        atomic_write_json(folder / "metadata.json", meta)
    return ScriptResult(folder, status, results)
