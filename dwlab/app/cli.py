"""The ``dwlab`` command line. Subcommands live in ``dwlab.app.commands``, one module each;
every command answers with the same exit codes (:class:`~dwlab.app.commands.ExitCode`)."""

from __future__ import annotations

import argparse
import sys

from dwlab.app.commands import (
    EPILOG,
    ExitCode,
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
        prog="dwlab", description="Train networks on domain-wall devices, real or simulated.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code. A usage error exits (SystemExit) with 2, as
    argparse does."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or ExitCode.OK)
    except (DwlabError, OSError) as exc:  # OSError: a file or folder dwlab cannot use
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
