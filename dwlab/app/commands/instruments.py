"""``dwlab instruments identify --config CONFIG``: ask every configured instrument who it is.

Opens each instrument of each hardware array and sends only ``*IDN?``: no output, source
or switch is touched. A virtual lab the config starts itself (``autostart``) is served for
the time of the check.
"""

from __future__ import annotations

import argparse
import sys

from dwlab.app.commands import ExitCode
from dwlab.config import load_config
from dwlab.core.errors import DwlabError
from dwlab.core.instruments import ROLES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("instruments", help="talk to the instruments of a lab config")
    isub = p.add_subparsers(dest="instruments_command", required=True)
    ident = isub.add_parser("identify", help="print each instrument's identity (*IDN?)")
    ident.add_argument("config_file", nargs="?", metavar="CONFIG",
                       help="lab config YAML (or --config)")
    ident.add_argument("--config", help="lab config YAML")
    ident.add_argument("--array", help="only this hardware array")
    ident.set_defaults(func=run_identify)


def run_identify(args: argparse.Namespace) -> int:
    from dwlab.app.backends import open_backends

    if (args.config is None) == (args.config_file is None):
        print("error: give the lab config once, as --config FILE (or CONFIG)", file=sys.stderr)
        return ExitCode.USAGE
    loaded = load_config(args.config or args.config_file)
    # (a loaded config gives every hardware array its 'hardware' section)
    arrays = {name: cfg.hardware for name, cfg in loaded.config.arrays.items()
              if cfg.backend == "hardware" and cfg.hardware is not None
              and (args.array is None or name == args.array)}
    if not arrays:
        print("no hardware arrays in this config" + (f" named '{args.array}'"
                                                     if args.array else ""))
        return ExitCode.FAILED
    failed = 0
    with open_backends(loaded) as backends:  # serves the virtual lab if the config asks
        for name, hardware in arrays.items():
            for role in ROLES:
                inst = getattr(hardware.instruments, role)
                where = f"{name}.{role} ({inst.driver} at {inst.resource})"
                try:
                    adapter = backends.open_role(name, role, retries=0)
                    try:
                        identity = adapter.identify()
                        backends.check_lab_identity(role, identity)
                    finally:
                        adapter.close()
                except DwlabError as exc:
                    failed += 1
                    print(f"FAIL {where}: {exc}")
                    continue
                if len(identity.split(",")) < 4:  # *IDN? is maker,model,serial,firmware
                    failed += 1
                    print(f"FAIL {where}: the reply {identity!r} is not an instrument identity")
                else:
                    print(f"ok   {where}: {identity}")
    return ExitCode.FAILED if failed else ExitCode.OK
