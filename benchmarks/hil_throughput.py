"""Hardware-in-the-loop throughput against the virtual lab.

For a push-pull update of every device of an 8 x 8 array (K pulses per device, both
polarities), with each device read back after its pulses, compare the grouped strategy
(pulser configured once per pulse shape; per device: route, fire, read) with a naive one
(pulser reconfigured for every device and polarity), at 0 and 1 ms added latency per
message. Messages and round trips are counted by the virtual instruments themselves.

The step case times a whole SGLD training step instead: ``optimizer.step()`` of the
controller (scheme push_pull, K = 15) for an 8 x 8 ``nn.Linear`` weight mapped onto the same
array, random gradient; with and without the array's read-back. It also counts the device
reads per step (the meter's measurement queries per device).

    .venv/bin/python benchmarks/hil_throughput.py [--repeats 3] [--pulses 16] [--case all]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from dwlab.drivers.hardware_array import HardwareArray
from dwlab.sim.virtual_lab import VirtualLab
from tqdm import tqdm

from dwlab.app.backends import open_hardware
from dwlab.config import load_config
from dwlab.core.types import PulsePlan, PulseShape
from dwlab.sgld.controller import build_optimizer

SHAPE = (8, 8)
LOOPBACK = "TCPIP::127.0.0.1::0::SOCKET"


def write_config(folder: Path, latency: float) -> Path:
    data = {
        "name": "hil-benchmark",
        "arrays": {
            "main": {"backend": "twin"},
            "chip": {
                "backend": "hardware", "shape": list(SHAPE),
                "pulse": {"amplitude_volts": 1.0, "width_seconds": 1.0e-8},
                "hardware": {
                    "instruments": {
                        "pulser": {"driver": "agilent81110a", "resource": LOOPBACK},
                        "meter": {"driver": "keithley2450", "resource": LOOPBACK},
                        "router": {"driver": "keithley707b", "resource": LOOPBACK},
                    },
                    "wiring": {"crossbar": {}, "shared_path": True},
                    "devices": {"conductance_min_siemens": 2.5e-4,
                                "conductance_max_siemens": 5.0e-4,
                                "step_siemens": 2.4e-6, "step_sigma_siemens": 1.0e-6},
                },
            },
        },
        "virtual_lab": {"array": "chip", "latency_seconds": latency},
        "mapping": [{"match": "weight", "array": "chip"}],
        "controller": {"scheme": "push_pull", "update_bits": 4},
    }
    path = folder / f"bench-{latency}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def is_round_trip(message: str) -> bool:
    """A message the client waits on (a query)."""
    return "?" in message or "print(" in message


def is_reading(message: str) -> bool:
    """A meter message that measures (2450 ``:READ?``, 2400 ``MEASURE:CURRENT?``)."""
    return message.strip().lstrip(":").upper().startswith(("READ?", "MEAS"))


def measure(path: Path, strategy: str, pulses: int, repeats: int) -> dict[str, float]:
    loaded = load_config(path)
    gen = torch.Generator().manual_seed(0)
    with VirtualLab.from_config(loaded) as lab:
        array = open_hardware(loaded, "chip", resources=lab.resources,
                              strategy=strategy, read_back=True)
        try:
            seconds = messages = trips = updates = groups = 0.0
            for _ in range(repeats):
                push = torch.randint(1, pulses, SHAPE, generator=gen)
                plan = PulsePlan.uniform(push, pulses - push, PulseShape(1.0, 1e-8))
                logs_before = lab.message_counts()
                start = time.perf_counter()
                receipt = array.apply(plan)
                seconds += time.perf_counter() - start
                new = [m for r, i in lab.instruments.items() for m in i.since(logs_before[r])]
                messages += len(new)
                trips += sum(is_round_trip(m) for m in new)
                updates += int(((receipt.push_applied + receipt.pull_applied) > 0).sum())
                groups += receipt.details["groups"]
        finally:
            array.close()
    return {"updates_per_s": updates / seconds, "messages": messages / updates,
            "round_trips": trips / updates, "groups": groups / repeats,
            "ms_per_apply": 1e3 * seconds / repeats}


def measure_step(path: Path, read_back: bool, repeats: int) -> dict[str, float]:
    """``optimizer.step()`` of the SGLD controller with its weight on the hardware array,
    built as training builds it (config's controller and mapping, arrays from a factory)."""
    loaded = load_config(path)
    torch.manual_seed(0)
    model = torch.nn.Linear(SHAPE[1], SHAPE[0], bias=False)  # weight (8, 8) -> chip
    gen = torch.Generator().manual_seed(0)
    arrays: list[HardwareArray] = []
    with VirtualLab.from_config(loaded) as lab:
        def factory(name: str, shape: tuple[int, ...], seed_offset: int) -> HardwareArray:
            arrays.append(open_hardware(loaded, name, shape, resources=lab.resources,
                                        strategy="grouped", read_back=read_back))
            return arrays[-1]

        try:
            opt = build_optimizer(model, loaded.config.controller, dataset_size=1000,
                                  array_factory=factory, mapping=loaded.config.mapping)
            seconds = messages = trips = reads = updates = 0.0
            for _ in range(repeats):
                model.weight.grad = torch.randn(SHAPE, generator=gen)
                logs_before = lab.message_counts()
                start = time.perf_counter()
                opt.step()
                seconds += time.perf_counter() - start
                new = {r: i.since(logs_before[r]) for r, i in lab.instruments.items()}
                messages += sum(len(m) for m in new.values())
                trips += sum(is_round_trip(m) for ms in new.values() for m in ms)
                reads += sum(is_reading(m) for m in new["meter"])
                receipt = arrays[0].last_receipt
                updates += int(((receipt.push_applied + receipt.pull_applied) > 0).sum())
        finally:
            for array in arrays:
                array.close()
    return {"updates_per_s": updates / seconds, "messages": messages / updates,
            "round_trips": trips / updates,
            "reads": reads / (repeats * arrays[0].size),
            "ms_per_step": 1e3 * seconds / repeats, "K": opt.pulse_budget}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pulses", type=int, default=16, help="pulses per device (K)")
    parser.add_argument("--case", choices=("apply", "step", "all"), default="all")
    args = parser.parse_args(argv)
    devices = SHAPE[0] * SHAPE[1]
    if args.case in ("apply", "all"):
        apply_table(args, devices)
    if args.case in ("step", "all"):
        step_table(args, devices)
    return 0


def apply_table(args: argparse.Namespace, devices: int) -> None:
    cases = [(lat, strat) for lat in (0.0, 0.001) for strat in ("grouped", "naive")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for latency, strategy in tqdm(cases, desc="hil", file=sys.stderr):
            path = write_config(Path(tmp), latency)
            rows.append((latency, strategy, measure(path, strategy, args.pulses, args.repeats)))
    print(f"HIL throughput on the virtual lab: {devices} devices, K={args.pulses} push-pull "
          f"pulses each, read back after pulsing, {args.repeats} applies per row")
    print(f"{'latency':>8} {'strategy':>9} {'updates/s':>10} {'msgs/update':>12} "
          f"{'round trips/update':>19} {'groups':>7} {'ms/apply':>9}")
    for latency, strategy, r in rows:
        print(f"{latency * 1e3:>6.0f}ms {strategy:>9} {r['updates_per_s']:>10.1f} "
              f"{r['messages']:>12.2f} {r['round_trips']:>19.2f} {r['groups']:>7.0f} "
              f"{r['ms_per_apply']:>9.1f}")
    print("msgs: every message received by pulser, meter and matrix (writes and queries); "
          "round trips: queries the client waited on.")


def step_table(args: argparse.Namespace, devices: int) -> None:
    cases = [(lat, rb) for lat in (0.0, 0.001) for rb in (False, True)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for latency, read_back in tqdm(cases, desc="hil step", file=sys.stderr):
            path = write_config(Path(tmp), latency)
            rows.append((latency, read_back, measure_step(path, read_back, args.repeats)))
    print(f"\nSGLD training step on the virtual lab: optimizer.step() of push_pull "
          f"K={rows[0][2]['K']:.0f} on an 8x8 Linear weight ({devices} devices), grouped, "
          f"{args.repeats} steps per row")
    print(f"{'latency':>8} {'read_back':>9} {'updates/s':>10} {'msgs/update':>12} "
          f"{'round trips/update':>19} {'reads/device':>13} {'ms/step':>8}")
    for latency, read_back, r in rows:
        print(f"{latency * 1e3:>6.0f}ms {read_back!s:>9} {r['updates_per_s']:>10.1f} "
              f"{r['messages']:>12.2f} {r['round_trips']:>19.2f} {r['reads']:>13.2f} "
              f"{r['ms_per_step']:>8.1f}")
    for line in (
        "read_back: the array measures each device right after its pulses (receipt only)",
        "updates/s: devices pulsed per second of optimizer.step() wall time",
        "msgs/update: messages received by pulser, meter and matrix per device update",
        "round trips/update: of those, queries the client waited on",
        "reads/device: meter measurement queries per device and step",
        "ms/step: wall time of one optimizer.step()",
    ):
        print(line)


if __name__ == "__main__":
    sys.exit(main())
