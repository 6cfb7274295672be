"""``dwlab virtual-lab --config FILE``: serve a virtual copy of a config's instruments on
127.0.0.1, so that the config can be rehearsed through SCPI before the real bench.

Any config with a hardware array will do: its ``virtual_lab`` section when it has one, else
a twin standing in for the array (``dwlab.app.simulate``). The lab serves on ``--base-port``
and the two after it, else on the config's own loopback ports where it names them, else on
free ports; the output shows each instrument's configured address and the loopback address
serving it, and ``--write-config`` writes the config with those addresses, for the clients
(``dwlab train``, ``dwlab protocols run --config``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from dwlab.app.commands import ExitCode
from dwlab.config import load_config, socket_port
from dwlab.core.instruments import ROLES
from dwlab.records import atomic_write_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("virtual-lab",
                       help="serve simulated instruments (SCPI over TCP on 127.0.0.1)")
    p.add_argument("--config", required=True, type=Path,
                   help="lab config with a hardware array (bench or virtual-lab config)")
    p.add_argument("--array", help="the hardware array to serve (when there are several)")
    p.add_argument("--base-port", type=int, default=None,
                   help="serve on this port and the next two (default: the config's "
                        "loopback ports, else free ports)")
    p.add_argument("--write-config", type=Path, metavar="PATH",
                   help="write the config with its instruments at the served addresses")
    p.add_argument("--serve-seconds", type=float, default=None,
                   help="stop after this long (default: until Ctrl-C)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dwlab.app.backends import start_virtual_lab
    from dwlab.app.simulate import client_config, with_virtual_copy

    if args.base_port is not None and not 1024 <= args.base_port <= 65533:
        print("error: --base-port must lie in 1024..65533", file=sys.stderr)
        return ExitCode.USAGE
    original = load_config(args.config)
    loaded = with_virtual_copy(original, args.array)
    served = loaded.config.virtual_lab
    assert served is not None  # with_virtual_copy gives it one
    hardware = original.config.arrays[served.array].hardware
    assert hardware is not None
    configured = {role: getattr(hardware.instruments, role).resource for role in ROLES}
    if args.base_port is not None:
        ports = {role: args.base_port + i for i, role in enumerate(ROLES)}
    else:  # the config's own loopback ports when it names them, else free ones
        ports = {role: socket_port(resource) or 0 for role, resource in configured.items()}
    lab = start_virtual_lab(loaded, ports)
    try:
        print(f"virtual lab (serial {lab.serial}) for array '{served.array}' of "
              f"{args.config}: twin {served.twin.preset}, shape {lab.twin.shape}", flush=True)
        for role in ROLES:
            print(f"  {role:6s} {configured[role]}  ->  {lab.resources[role]}  "
                  f"{lab.instruments[role].idn}", flush=True)
        if args.write_config is not None:
            data = client_config(original, served.array, lab.resources)
            atomic_write_text(args.write_config, yaml.safe_dump(data, sort_keys=False))
            print(f"clients: {args.write_config} (the config with these addresses)",
                  flush=True)
        print("Ctrl-C stops it.", file=sys.stderr, flush=True)
        deadline = None if args.serve_seconds is None else time.monotonic() + args.serve_seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.1)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED  # the usual way to stop it, answered as everywhere
    finally:
        lab.stop()
    return ExitCode.OK
