"""``dwlab config check FILE...``: validate lab config files.
``dwlab config schema [-o FILE]``: the JSON schema of a lab config, for editors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dwlab.app.backends import check_arrays
from dwlab.app.commands import ExitCode
from dwlab.config import lab_json_schema, load_config
from dwlab.core.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="work with lab config files")
    csub = p.add_subparsers(dest="config_command", required=True)
    check = csub.add_parser("check", help="validate lab config files")
    check.add_argument("files", nargs="+", help="YAML lab config files")
    check.set_defaults(func=run_check)
    schema = csub.add_parser("schema", help="print the JSON schema of a lab config")
    schema.add_argument("-o", "--output", type=Path, help="write it to this file instead")
    schema.set_defaults(func=run_schema)


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
    return ExitCode.FAILED if failed else ExitCode.OK


def run_schema(args: argparse.Namespace) -> int:
    text = json.dumps(lab_json_schema(), indent=2) + "\n"
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text)
    return 0
