"""Where dwlab's messages go: Python ``logging`` under the ``dwlab`` logger, one line per
epoch or protocol step; progress bars only on a terminal (tqdm's own detection), so a log
piped to a file holds lines, not bar redraws.

``--quiet`` keeps warnings and errors; ``--verbose`` adds debug lines with times and the
logger's name. Results (reports, tables) are printed to stdout whatever the level.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator

from tqdm import tqdm


class _TqdmAwareHandler(logging.StreamHandler):
    """Writes each record through ``tqdm.write``, so a bar on the terminal is redrawn below
    the line instead of being torn by it; to whatever ``sys.stderr`` is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never end a run
            self.handleError(record)


@contextlib.contextmanager
def command_logging(quiet: int = 0, verbose: int = 0) -> Iterator[None]:
    """For the time of one command, the ``dwlab`` loggers go to stderr at the level the
    options ask for; afterwards they are as they were (dwlab used as a library configures
    no logging of its own, and a command run in-process leaves none behind)."""
    logger = logging.getLogger("dwlab")
    handler = _TqdmAwareHandler()
    if verbose > quiet:
        level = logging.DEBUG
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        level = logging.WARNING if quiet > verbose else logging.INFO
        handler.setFormatter(logging.Formatter("%(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def add_verbosity_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """``-q/--quiet`` and ``-v/--verbose`` on ``parser``. On a subcommand they default to
    nothing, so ``dwlab -v train`` and ``dwlab train -v`` mean the same."""
    default = 0 if top else argparse.SUPPRESS
    parser.add_argument("-q", "--quiet", action="count", default=default,
                        help="only warnings and errors; no progress bar")
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="also debug messages, with times")


def show_progress(args: argparse.Namespace) -> bool:
    """Whether a command may draw progress bars (they still appear only on a terminal)."""
    return not getattr(args, "no_progress", False) and not getattr(args, "quiet", 0)

