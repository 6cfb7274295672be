"""Hardware-in-the-loop throughput against the virtual lab.

For a push-pull update of every device of an 8 x 8 array (K pulses per device, both
polarities), with each device read back after its pulses, compare the grouped strategy
(pulser configured once per pulse shape; per device: route, fire, read) with a naive one
(pulser reconfigured for every device and polarity), at 0 and 1 ms added latency per
message. Messages and round trips are counted by the virtual instruments themselves.

    .venv/bin/python benchmarks/hil_throughput.py [--repeats 3] [--pulses 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from dwlab.sim.virtual_lab import VirtualLab
from tqdm import tqdm

from dwlab.app.backends import open_hardware
from dwlab.config import load_config
from dwlab.core.types import PulsePlan, PulseShape

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
    }
    path = folder / f"bench-{latency}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def is_round_trip(message: str) -> bool:
    """A message the client waits on (a query)."""
    return "?" in message or "print(" in message


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
                logs_before = {r: len(i.log) for r, i in lab.instruments.items()}
                start = time.perf_counter()
                receipt = array.apply(plan)
                seconds += time.perf_counter() - start
                new = [m for r, i in lab.instruments.items() for m in i.log[logs_before[r]:]]
                messages += len(new)
                trips += sum(is_round_trip(m) for m in new)
                updates += int(((receipt.push_applied + receipt.pull_applied) > 0).sum())
                groups += receipt.details["groups"]
        finally:
            array.close()
    return {"updates_per_s": updates / seconds, "messages": messages / updates,
            "round_trips": trips / updates, "groups": groups / repeats,
            "ms_per_apply": 1e3 * seconds / repeats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pulses", type=int, default=16, help="pulses per device (K)")
    args = parser.parse_args(argv)
    cases = [(lat, strat) for lat in (0.0, 0.001) for strat in ("grouped", "naive")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for latency, strategy in tqdm(cases, desc="hil", file=sys.stderr):
            path = write_config(Path(tmp), latency)
            rows.append((latency, strategy, measure(path, strategy, args.pulses, args.repeats)))
    devices = SHAPE[0] * SHAPE[1]
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
