"""``dwlab config check FILE...``: validate lab config files and protocol scripts.
``dwlab config schema [-o FILE]``: the JSON schema of a lab config, for editors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dwlab.app.backends import check_arrays
from dwlab.app.commands import ExitCode
from dwlab.config import lab_json_schema, load_config, read_yaml
from dwlab.core.errors import ConfigError, ProtocolError
from dwlab.protocols.script import load_script

SCRIPT_KEYS = {"lab_config", "steps"}
"""Top-level keys only a protocol script has (a lab config has neither)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="work with lab config files")
    csub = p.add_subparsers(dest="config_command", required=True)
    check = csub.add_parser("check", help="validate lab config files and protocol scripts")
    check.add_argument("files", nargs="+",
                       help="YAML lab configs or protocol scripts (told apart by their keys)")
    check.set_defaults(func=run_check)
    schema = csub.add_parser("schema", help="print the JSON schema of a lab config")
    schema.add_argument("-o", "--output", type=Path, help="write it to this file instead")
    schema.set_defaults(func=run_schema)


def run_check(args: argparse.Namespace) -> int:
    failed = 0
    for f in args.files:
        try:
            kind = check_file(f)
        except (ConfigError, ProtocolError) as exc:
            failed += 1
            print(f"FAIL {exc}")
        else:
            print(f"ok   {f} ({kind})")
    return ExitCode.FAILED if failed else ExitCode.OK


def check_file(path: str) -> str:
    """Validate a lab config or a protocol script (with the lab config it names); says
    which it was."""
    data = read_yaml(path)
    if isinstance(data, dict) and SCRIPT_KEYS <= data.keys():
        script = load_script(path)
        check_arrays(load_config(script.lab_config_path()))
        return "protocol script"
    check_arrays(load_config(path))
    return "lab config"


def run_schema(args: argparse.Namespace) -> int:
    text = json.dumps(lab_json_schema(), indent=2) + "\n"
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text)
    return 0
