"""The allocator setting that keeps freed memory between training steps."""

from __future__ import annotations

import ctypes.util
import sys

import pytest

from dwlab.app.training import memory


@pytest.mark.skipif(not sys.platform.startswith("linux") or not ctypes.util.find_library("c"),
                    reason="glibc's mallopt is Linux-only")
def test_glibc_takes_the_setting_once_per_process(monkeypatch):
    monkeypatch.setattr(memory, "_applied", None)
    assert memory.keep_freed_memory() is True
    monkeypatch.setattr(memory.ctypes, "CDLL", None)  # a second call must not touch libc
    assert memory.keep_freed_memory() is True


def test_other_platforms_are_left_alone(monkeypatch):
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.keep_freed_memory() is False
