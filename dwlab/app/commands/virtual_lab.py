"""``dwlab virtual-lab --config FILE``: serve the config's virtual lab on 127.0.0.1."""

from __future__ import annotations

import argparse
import sys
import time

from dwlab.app.commands import ExitCode
from dwlab.config import load_config
from dwlab.core.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("virtual-lab",
                       help="serve simulated instruments (SCPI over TCP on 127.0.0.1)")
    p.add_argument("--config", required=True, help="lab config with a virtual_lab section")
    p.add_argument("--serve-seconds", type=float, default=None,
                   help="stop after this long (default: until Ctrl-C)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dwlab.app.backends import start_virtual_lab

    loaded = load_config(args.config)
    served = loaded.config.virtual_lab
    if served is None:  # start_virtual_lab refuses it too; checked here for ``served.array``
        raise ConfigError("no 'virtual_lab' section", file=str(loaded.path), key="virtual_lab")
    try:
        lab = start_virtual_lab(loaded)
    except OSError as exc:
        raise ConfigError(f"cannot listen: {exc}", file=str(loaded.path),
                          key="virtual_lab") from None
    try:
        print(f"virtual lab for array '{served.array}' (twin {lab.twin.shape}):", flush=True)
        for role, resource in lab.resources.items():
            print(f"  {role:6s} {lab.instruments[role].idn}  at {resource}", flush=True)
        print("Ctrl-C stops it.", file=sys.stderr, flush=True)
        deadline = None if args.serve_seconds is None else time.monotonic() + args.serve_seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.1)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED  # the usual way to stop it, answered as everywhere
    finally:
        lab.stop()
    return ExitCode.OK
