"""The ``dwlab`` command line. Subcommands live in ``dwlab.app.commands``, one module each;
every command answers with the same exit codes (:class:`~dwlab.app.commands.ExitCode`) and
takes ``--quiet`` / ``--verbose`` (:mod:`dwlab.app.logs`)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator

from dwlab import __version__
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
    watch,
)
from dwlab.app.logs import add_verbosity_options, command_logging
from dwlab.core.errors import DwlabError

COMMAND_MODULES = [config_check, train, sweep, protocols, calibrate, instruments, virtual_lab,
                   watch]
"""Each module provides ``register(subparsers)`` that sets ``func`` on its parser."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions' line breaks and adds each option's default where it has one
    (not for flags, nor where the help already names it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
                and "default" not in text):
            text += " (default: %(default)s)"
        return text


_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")


def plain_text(text: str | None) -> str | None:
    """Docstring markup made readable in a terminal: ``x`` becomes x, :role:`a.b.x` a.b.x
    and :role:`~a.b.x` x."""
    if text is None:
        return None
    text = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2),
                     text)
    return text.replace("``", "")


def all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subcommand's parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:  # the help lines of the command list
                choice.help = plain_text(choice.help)
            for sub in dict.fromkeys(action.choices.values()):
                yield from all_parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dwlab", description="Train networks on domain-wall devices, real or simulated.",
        epilog=EPILOG, formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dwlab {__version__}")
    add_verbosity_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    # The same help conventions for every command, whoever wrote its parser.
    for p in all_parsers(parser):
        p.formatter_class = HelpFormatter
        p.description = plain_text(p.description)
        for action in p._actions:
            action.help = plain_text(action.help)
        if p is not parser:
            add_verbosity_options(p, top=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code. A usage error exits (SystemExit) with 2, as
    argparse does."""
    args = build_parser().parse_args(argv)
    try:
        with command_logging(args.quiet, args.verbose):
            return int(args.func(args) or ExitCode.OK)
    except (DwlabError, OSError) as exc:  # OSError: a file or folder dwlab cannot use
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
