"""``dwlab config check FILE...``: validate lab config files."""

from __future__ import annotations

import argparse

from dwlab.app.backends import check_arrays
from dwlab.config import load_config
from dwlab.core.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="work with lab config files")
    csub = p.add_subparsers(dest="config_command", required=True)
    check = csub.add_parser("check", help="validate lab config files")
    check.add_argument("files", nargs="+", help="YAML lab config files")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    failed = 0
    for f in args.files:
        try:
            check_arrays(load_config(f))
        except ConfigError as exc:
            failed += 1
            print(f"FAIL {exc}")
        else:
            print(f"ok   {f}")
    return 1 if failed else 0
