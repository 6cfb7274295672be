"""``dwlab protocols list | show NAME | run SCRIPT [--dry-run]``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from dwlab.app.backends import build_array, limits_from_config, open_backends
from dwlab.app.commands import ExitCode
from dwlab.app.logs import show_progress
from dwlab.app.simulate import add_simulate_option, apply_simulate
from dwlab.config import load_config, to_data
from dwlab.core.errors import ConfigError, ProtocolError, PulseLimitError
from dwlab.core.types import PulseShape
from dwlab.protocols.base import Target, describe_params
from dwlab.protocols.registry import PROTOCOLS, get_protocol
from dwlab.protocols.script import Script, load_script, run_script
from dwlab.records.export import load_run
from dwlab.sim.twin import PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocols", help="characterisation protocols")
    psub = p.add_subparsers(dest="protocols_command", required=True)
    lst = psub.add_parser("list", help="list the protocols")
    lst.set_defaults(func=run_list)
    show = psub.add_parser("show", help="document one protocol's parameters and tables")
    show.add_argument("name")
    show.set_defaults(func=run_show)
    run = psub.add_parser("run", help="run a protocol script (YAML)")
    run.add_argument("script", help="protocol script, e.g. lab_configs/protocols/standard.yaml")
    run.add_argument("--dry-run", action="store_true",
                     help="check limits and print the plan and estimates; no I/O")
    run.add_argument("--runs-dir", default="runs/protocols", help="parent folder of records")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--config", type=Path,
                     help="lab config to run on instead of the script's lab_config (e.g. "
                          "the one `dwlab virtual-lab --write-config` wrote)")
    add_simulate_option(run)
    run.set_defaults(func=run_run)


def run_list(args: argparse.Namespace) -> int:
    for name in sorted(PROTOCOLS):
        print(f"{name:22s} {PROTOCOLS[name].summary}")
    return 0


def _fmt(value: object) -> str:
    return "(empty)" if value is None else str(value)


def run_show(args: argparse.Namespace) -> int:
    cls = get_protocol(args.name)
    print(f"{cls.name}: {cls.summary}\n\nparameters:")
    for p in describe_params(cls.Params):
        bounds = []
        if p["min"] is not None:
            bounds.append(f">= {p['min']:g}")
        if p["max"] is not None:
            bounds.append(f"<= {p['max']:g}")
        unit = f" [{p['unit']}]" if p["unit"] else ""
        rng = f" ({', '.join(bounds)})" if bounds else ""
        print(f"  {p['name']}{unit}: {p['type']} = {_fmt(p['default'])}{rng}")
        print(f"      {p['help']}")
    print("\nrecorded tables:")
    for table, columns in cls.tables.items():
        print(f"  {table}.csv: {', '.join(columns)}")
    return 0


def script_target(script: Script, lab_config: Path | None = None):
    """The array's static description from the lab config alone (no I/O), for dry runs;
    ``lab_config`` replaces the script's."""
    loaded = load_config(lab_config or script.lab_config_path())
    return target_of(script, loaded)


def target_of(script: Script, loaded):
    """The script's array in ``loaded``: (loaded, shape, nominal pulse)."""
    name = script.config.array
    if name not in loaded.config.arrays:  # the script's key is what is wrong
        where = (str(script.path), "array") if script.path else (str(loaded.path), "arrays")
        raise ConfigError(f"no array named '{name}' in {loaded.path}", file=where[0],
                          key=where[1])
    cfg = loaded.config.arrays[name]
    shape = tuple(cfg.shape) if cfg.shape else (
        tuple(script.config.shape) if script.config.shape else None)
    if shape is None:
        raise ProtocolError(f"{script.path}: key 'shape': the array '{name}' has no fixed "
                            "shape; give the script a 'shape'")
    if cfg.pulse is not None:
        nominal = PulseShape(cfg.pulse.amplitude_volts, cfg.pulse.width_seconds)
    elif cfg.backend == "twin" and cfg.twin.preset in PRESETS:
        preset = PRESETS[cfg.twin.preset]
        nominal = PulseShape(preset.nominal_amplitude_volts, preset.nominal_width_seconds)
    else:
        raise ConfigError("a protocol run needs the nominal pulse", file=str(loaded.path),
                          key=f"arrays.{name}.pulse")
    return loaded, shape, nominal


def run_run(args: argparse.Namespace) -> int:
    script = load_script(args.script)
    loaded, simulated = apply_simulate(load_config(args.config or script.lab_config_path()),
                                       args.simulate)
    loaded, shape, nominal = target_of(script, loaded)
    if args.dry_run:
        return dry_run(script, loaded, shape, nominal)
    extra = {"lab_config_file": str(loaded.path), "lab_config": to_data(loaded.config),
             **({"simulated": simulated} if simulated else {})}
    with open_backends(loaded) as backends:
        array = backends.array(script.config.array, shape, script.config.seed_offset)
        result = run_script(script, array, args.runs_dir, progress=show_progress(args),
                            seed=loaded.config.seed + script.config.seed_offset,
                            extra_metadata=extra)
    load_run(result.folder).to_netcdf()
    print(f"{result.status}: {result.folder} (all tables also in records.nc)")
    for r in result.steps:
        print(f"  {r.status:11s} {r.folder.name}: {r.pulses} pulses, {r.device_reads} reads, "
              f"{len(r.plots)} plots")
    if result.status == "completed":
        return ExitCode.OK
    return ExitCode.INTERRUPTED if result.status == "interrupted" else ExitCode.FAILED


def dry_target(script: Script, loaded, shape: tuple[int, ...], nominal: PulseShape) -> Target:
    """The array's static description without any I/O: a twin is built (it is only memory);
    a hardware array's nominal values come from its config."""
    name = script.config.array
    cfg = loaded.config.arrays[name]
    if cfg.backend == "twin":
        array = build_array(loaded, name, shape=shape, seed_offset=script.config.seed_offset)
        return Target.from_info(array.describe())
    hw = cfg.hardware
    return Target(shape, limits_from_config(cfg), nominal, hw.devices.conductance_min_siemens,
                  hw.devices.conductance_max_siemens, hw.devices.step_siemens)


def check_duty(script: Script, loaded, estimates) -> None:
    """The hardware array's duty-cycle limit (pulse width over burst period), up front."""
    cfg = loaded.config.arrays[script.config.array]
    if cfg.backend != "hardware":
        return
    period = cfg.hardware.pulse_period_seconds
    for step, est in zip(script.steps, estimates, strict=True):
        for shape in est.shapes:
            duty = shape.width_seconds / period
            if duty > cfg.limits.max_duty_cycle:
                raise PulseLimitError(
                    f"step '{step.label}': width {shape.width_seconds:g} s at a period of "
                    f"{period:g} s is a duty cycle of {duty:.3g}, above the limit "
                    f"{cfg.limits.max_duty_cycle:g}")


def dry_run(script: Script, loaded, shape: tuple[int, ...], nominal: PulseShape) -> int:
    cfg = loaded.config.arrays[script.config.array]
    limits = limits_from_config(cfg)
    estimates = script.check(dry_target(script, loaded, shape, nominal))
    check_duty(script, loaded, estimates)
    timing = script.config.timing
    print(f"script {script.config.name}: array '{script.config.array}' "
          f"({cfg.backend}, shape {shape}, {math.prod(shape)} devices) from {loaded.path}")
    print(f"limits: <= {limits.max_amplitude_volts:g} V, width [{limits.min_width_seconds:g}, "
          f"{limits.max_width_seconds:g}] s, <= {limits.max_pulses_per_device} pulses/device "
          "per apply")
    print(f"{'step':40s} {'pulses':>10s} {'max/apply':>9s} {'reads':>10s} {'est. time':>10s}")
    total = 0.0
    for step, est in zip(script.steps, estimates, strict=True):
        seconds = est.duration_seconds(timing)
        total += seconds
        print(f"{step.label[:40]:40s} {est.pulses:10d} {est.max_pulses_per_apply:9d} "
              f"{est.device_reads:10d} {seconds:9.1f}s")
        shapes = ", ".join(f"{s.amplitude_volts:g} V/{s.width_seconds:g} s" for s in est.shapes)
        print(f"    shapes: {shapes}")
    print(f"total estimated time {total:.1f} s (assuming {timing.pulse_seconds:g} s per pulse, "
          f"{timing.read_seconds:g} s per device read); all steps within limits; "
          "nothing was sent")
    return 0
