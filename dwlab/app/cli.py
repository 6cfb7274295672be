"""The ``dwlab`` command line. Subcommands live in ``dwlab.app.commands``, one module each."""

from __future__ import annotations

import argparse
import sys

from dwlab.app.commands import (
    calibrate,
    config_check,
    instruments,
    protocols,
    sweep,
    train,
    virtual_lab,
)
from dwlab.core.errors import DwlabError

COMMAND_MODULES = [config_check, train, sweep, protocols, calibrate, instruments, virtual_lab]
"""Each module provides ``register(subparsers)`` that sets ``func`` on its parser."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dwlab", description="Train networks on domain-wall devices, real or simulated."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DwlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
