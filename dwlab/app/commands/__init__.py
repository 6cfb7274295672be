"""The ``dwlab`` subcommands, one module each, and the exit codes they all share."""

from enum import IntEnum


class ExitCode(IntEnum):
    """What ``dwlab`` returns to the shell, the same for every command."""

    OK = 0
    FAILED = 1  # a dwlab error (bad input, instrument fault, a file it cannot read or
    #             write, a checkpoint that does not fit) or the command's check failed
    USAGE = 2  # the command line itself is wrong (argparse)
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


EPILOG = """exit codes (every command):
  0    done
  1    a dwlab error (bad input, instrument fault, a file it cannot read or write,
       a checkpoint that does not fit; one line naming what and where), or the
       command's check failed (a config, an instrument, a calibration's held-out test)
  2    usage error (the command line itself)
  130  interrupted by Ctrl-C: outputs off, switches open, records closed; a training
       run first finishes its step and writes a checkpoint (--resume continues);
       a second Ctrl-C stops at once"""
