"""open_backends: a run closes every array it built exactly once and stops the lab it
started, on every way out; a failing close is recorded and never hides the run's error."""

from __future__ import annotations

import socket
import textwrap

import pytest
from test_virtual_lab_support import training_lab_config

from dwlab.app.backends import open_backends
from dwlab.config import load_config


class Events:
    def __init__(self):
        self.rows = []

    def write(self, event):
        self.rows.append(event)


@pytest.fixture
def twin_config(tmp_path):
    path = tmp_path / "twin.yaml"
    path.write_text(textwrap.dedent("""
        name: t
        seed: 3
        arrays:
          main: {backend: twin, twin: {preset: continuous_dw}}
    """))
    return load_config(path)


def _count_closes(array, closes, fail=False):
    def close():
        closes.append(id(array))
        if fail:
            raise OSError("the array did not answer")

    array.close = close


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_every_array_is_closed_once_whatever_ends_the_run(twin_config, error):
    closes: list[int] = []
    with pytest.raises(error), open_backends(twin_config) as backends:
        for offset in range(3):
            _count_closes(backends.array("main", (2, 3), offset), closes)
        raise error("stop")
    assert len(closes) == 3 == len(set(closes))


def test_a_failing_close_is_recorded_and_raised_after_the_others_close(twin_config):
    closes: list[int] = []
    events = Events()
    with pytest.raises(OSError, match="did not answer"), \
            open_backends(twin_config, events) as backends:
        _count_closes(backends.array("main", (2,)), closes, fail=True)
        _count_closes(backends.array("main", (2,), 1), closes)
    assert len(closes) == 2
    assert [e["event"] for e in events.rows] == ["array_close_failed"]


def test_the_runs_own_error_wins_over_a_failing_close(twin_config):
    events = Events()
    with pytest.raises(ValueError, match="the run's"), \
            open_backends(twin_config, events) as backends:
        _count_closes(backends.array("main", (2,)), [], fail=True)
        raise ValueError("the run's")
    assert [e["event"] for e in events.rows] == ["array_close_failed"]


def test_the_lab_starts_with_the_array_it_serves_and_stops_with_the_run(tmp_path):
    loaded = load_config(training_lab_config(tmp_path))
    with open_backends(loaded) as backends:
        backends.array("main", (2, 3))
        assert backends.lab is None  # a twin layer needs no lab
        chip = backends.array("chip")
        lab = backends.lab
        servers = list(lab._servers.values())
        assert len(servers) == 3
        chip.read()
    # Stopped: no server left and every listening socket closed. (Connecting to the freed
    # ports proves nothing once tests run in parallel: another test's lab may take them.)
    assert lab.ports == {}
    assert all(server.socket.fileno() == -1 for server in servers)


def test_identify_serves_the_lab_its_config_starts_and_stops_it(tmp_path, capsys):
    from dwlab.app.cli import main

    path = training_lab_config(tmp_path)
    assert main(["instruments", "identify", str(path)]) == 0
    assert capsys.readouterr().out.count("ok   chip.") == 3
    port = int(load_config(path).config.arrays["chip"].hardware.instruments.pulser
               .resource.split("::")[2])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
