"""The dwlab error tree.

Every error dwlab raises derives from :class:`DwlabError` and from the builtin it
resembles, so callers may catch either::

    DwlabError
    ├── ConfigError(ValueError)            bad lab config: names file and dotted key
    ├── PlanError(ValueError)              malformed pulse plan (shape, dtype, sign)
    ├── PulseLimitError(ValueError)        a plan or protocol exceeds the array's limits
    ├── DatasetError(OSError)              dataset missing or corrupt: says where and how to get it
    ├── CheckpointError(RuntimeError)      checkpoint unreadable or inconsistent
    ├── ProtocolError(ValueError)          bad protocol parameters or script
    └── InstrumentError(RuntimeError)      an instrument misbehaved
        ├── InstrumentTimeoutError(TimeoutError)
        ├── InstrumentConnectionError(ConnectionError)
        └── InstrumentReplyError           garbled reply or error-queue entry
"""

from __future__ import annotations


class DwlabError(Exception):
    """Base of every dwlab error."""


class ConfigError(DwlabError, ValueError):
    """A lab config is invalid. ``file`` and ``key`` (dotted path) say where."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        where = []
        if file:
            where.append(str(file))
        if key:
            where.append(f"key '{key}'")
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.reason = message


class PlanError(DwlabError, ValueError):
    """A pulse plan is malformed (wrong shape, negative or non-integer counts)."""


class PulseLimitError(DwlabError, ValueError):
    """A pulse plan or protocol would exceed the configured limits. Raised before any I/O."""


class DatasetError(DwlabError, OSError):
    """A dataset is missing or corrupt."""


class CheckpointError(DwlabError, RuntimeError):
    """A checkpoint is unreadable or does not match the run."""


class ProtocolError(DwlabError, ValueError):
    """A characterisation protocol or protocol script is invalid."""


class InstrumentError(DwlabError, RuntimeError):
    """An instrument did not behave as expected."""


class InstrumentTimeoutError(InstrumentError, TimeoutError):
    """An instrument did not answer in time."""


class InstrumentConnectionError(InstrumentError, ConnectionError):
    """The connection to an instrument failed or dropped."""


class InstrumentReplyError(InstrumentError):
    """An instrument sent a reply that cannot be parsed, or reported an error."""
