"""Characterisation protocols: framework, every protocol on a small twin, limits before any
pulse, script errors, dry run, clean stops, and records that survive SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from dwlab.protocols.base import ArrayClock, RealClock, Target, clock_for, run_protocol
from dwlab.protocols.registry import PROTOCOLS
from dwlab.protocols.script import load_script, run_script, script_from_data
from dwlab.sim.twin import TwinArray

from dwlab.app.cli import main
from dwlab.core.errors import InstrumentError, ProtocolError, PulseLimitError
from dwlab.records import read_table

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "lab_configs" / "protocols"

SMALL = {
    "pulse_response": {"amplitudes_volts": [0.8, 1.2], "pulses": 4},
    "switching_statistics": {"amplitudes_volts": [0.4, 1.0], "widths_seconds": [1e-8],
                             "repeats": 6, "recenter_every": 3},
    "push_pull_noise": {"budgets": [4, 8], "repeats": 2},
    "read_noise": {"reads": 10, "disturb_reads": 10},
    "retention": {"times_seconds": [0.0, 10.0, 1000.0]},
    "device_map": {"saturate_pulses": 150, "step_pulses": 5},
    "endurance": {"cycles": 6, "pulses_per_cycle": 4},
}


class Recorder:
    """A DeviceArray that forwards to a twin and counts what reached it. It has no
    ``advance_time``, like hardware. ``on_apply(n)`` runs before the n-th apply."""

    def __init__(self, twin, on_apply=None):
        self.twin = twin
        self.applies = 0
        self.reads = 0
        self.safe_states = 0
        self.on_apply = on_apply

    def describe(self):
        return self.twin.describe()

    def apply(self, plan):
        self.applies += 1
        if self.on_apply:
            self.on_apply(self.applies)
        return self.twin.apply(plan)

    def read(self, n_averages=1, devices=None):
        self.reads += 1
        return self.twin.read(n_averages, devices)

    def snapshot(self):
        return self.twin.snapshot()

    def restore(self, snapshot):
        self.twin.restore(snapshot)

    def safe_state(self):
        self.safe_states += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.safe_state()


def test_registry_covers_the_protocols_of_the_issue():
    assert set(PROTOCOLS) == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_protocol_runs_records_and_plots(name, tmp_path):
    twin = TwinArray((2, 3), seed=4)
    protocol = PROTOCOLS[name](**SMALL[name])
    result = run_protocol(protocol, twin, tmp_path / name, seed=4, progress=False)
    assert result.status == "completed"
    # The estimate is an upper bound of what was done (it is checked against the limits).
    assert 0 < result.device_reads <= result.estimate.device_reads
    assert result.pulses <= result.estimate.pulses
    meta = json.loads((tmp_path / name / "metadata.json").read_text())
    assert meta["status"] == "completed" and meta["protocol"] == name
    assert meta["seed"] == 4 and "torch" in meta["versions"] and "git_revision" in meta
    assert meta["array"]["describe"]["identity"]["seed"] == "4"
    assert meta["array"]["snapshot_before"]["shape"] == [2, 3]
    assert meta["actual"] == {"pulses": result.pulses, "device_reads": result.device_reads}
    for table, columns in protocol.tables.items():
        rows = read_table(tmp_path / name / f"{table}.csv")
        assert rows and list(rows[0]) == list(columns)
        assert {int(r["device"]) for r in rows} == set(range(6))
    assert result.plots and all(p.suffix == ".png" and p.stat().st_size > 1000
                                for p in result.plots)


def test_switching_statistics_sees_threshold_and_polarity(tmp_path):
    twin = TwinArray((4, 4), seed=1)
    run_protocol(PROTOCOLS["switching_statistics"](**SMALL["switching_statistics"]), twin,
                 tmp_path, progress=False)
    rows = read_table(tmp_path / "steps.csv")

    def mean_step(amplitude, polarity):
        d = [float(r["delta_siemens"]) for r in rows
             if float(r["amplitude_volts"]) == amplitude and int(r["polarity"]) == polarity]
        return sum(d) / len(d)

    step = twin.describe().step_siemens
    assert mean_step(1.0, +1) > 0.5 * step and mean_step(1.0, -1) < -0.5 * step
    assert abs(mean_step(0.4, +1)) < 0.1 * step  # below the 0.5 V depinning threshold


def test_push_pull_mean_follows_net_count(tmp_path):
    twin = TwinArray((4, 4), seed=2)
    run_protocol(PROTOCOLS["push_pull_noise"](budgets=[16], repeats=3), twin, tmp_path,
                 progress=False)
    rows = read_table(tmp_path / "updates.csv")
    by_net: dict[int, list[float]] = {}
    for r in rows:
        by_net.setdefault(int(r["net"]), []).append(float(r["delta_siemens"]))
    means = {n: sum(v) / len(v) for n, v in by_net.items()}
    assert sorted(means) == [-16, -8, 0, 8, 16]
    assert means[16] > means[8] > means[0] > means[-8] > means[-16]


def test_retention_uses_simulated_time_when_offered(tmp_path):
    twin = TwinArray((2, 2), seed=0)
    assert isinstance(clock_for(twin), ArrayClock)
    start = time.monotonic()
    run_protocol(PROTOCOLS["retention"](times_seconds=[0.0, 3600.0]), twin, tmp_path,
                 progress=False)
    assert time.monotonic() - start < 30
    times = sorted({float(r["time_seconds"]) for r in read_table(tmp_path / "retention.csv")})
    assert times == [0.0, 3600.0]
    assert twin.elapsed_seconds == pytest.approx(3600.0)


def test_retention_waits_real_time_without_a_clock_hook(tmp_path):
    array = Recorder(TwinArray((2, 2), seed=0))
    assert isinstance(clock_for(array), RealClock)
    start = time.monotonic()
    run_protocol(PROTOCOLS["retention"](times_seconds=[0.0, 0.2]), array, tmp_path,
                 progress=False)
    assert time.monotonic() - start >= 0.2
    times = sorted(float(r["time_seconds"]) for r in read_table(tmp_path / "retention.csv"))
    assert times[-1] >= 0.2


@pytest.mark.parametrize("protocol, params, error", [
    ("push_pull_noise", {"budgets": [5000]}, PulseLimitError),
    ("switching_statistics", {"amplitudes_volts": [1.0, 6.0]}, PulseLimitError),
    ("pulse_response", {"widths_seconds": [5e-6]}, PulseLimitError),
    ("device_map", {"devices": 99}, ProtocolError),
])
def test_over_limit_refused_before_any_pulse(protocol, params, error, tmp_path):
    array = Recorder(TwinArray((3, 3), seed=0))
    with pytest.raises(error) as info:
        run_protocol(PROTOCOLS[protocol](**params), array, tmp_path / "run", progress=False)
    assert protocol in str(info.value)
    assert array.applies == 0 and array.reads == 0
    assert not (tmp_path / "run").exists()


def test_duration_limit_refused(tmp_path):
    array = Recorder(TwinArray((3, 3), seed=0))
    with pytest.raises(ProtocolError, match="estimated duration"):
        run_protocol(PROTOCOLS["endurance"](cycles=1000), array, tmp_path / "run",
                     progress=False, max_duration_seconds=1.0)
    assert array.applies == 0


@pytest.mark.parametrize("params, fragment", [
    ({"repeats": 0}, "repeats = 0 is below the minimum 1"),
    ({"repeats": "many"}, "params.repeats"),
    ({"bogus": 1}, "unknown key 'bogus'"),
    ({"amplitudes_volts": []}, "amplitudes_volts must not be empty"),
])
def test_bad_parameters_name_the_key(params, fragment):
    with pytest.raises(ProtocolError, match=fragment.replace("(", r"\(")):
        PROTOCOLS["switching_statistics"].from_data(params)


def test_script_runs_steps_and_sweeps_into_one_folder(tmp_path):
    script = load_script(SCRIPTS / "quick.yaml")
    assert [s.label for s in script.steps] == ["pulse_response-n_averages=1",
                                              "pulse_response-n_averages=8", "read_noise"]
    result = run_script(script, TwinArray((4, 4), seed=0), tmp_path, progress=False)
    assert result.status == "completed"
    names = sorted(p.name for p in result.folder.iterdir() if p.is_dir())
    assert names == ["00-pulse_response-n_averages=1", "01-pulse_response-n_averages=8",
                     "02-read_noise"]
    meta = json.loads((result.folder / "metadata.json").read_text())
    assert meta["kind"] == "protocol_script" and meta["status"] == "completed"
    step_meta = json.loads((result.folder / names[1] / "metadata.json").read_text())
    assert step_meta["params"]["n_averages"] == 8 and step_meta["params"]["devices"] == 8


def _script(tmp_path, body: str) -> Path:
    path = tmp_path / "script.yaml"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.parametrize("body, key", [
    ("""\
     name: s
     lab_config: x.yaml
     steps:
       - protocol: read_noise
       - protocol: warp_drive
     """, "steps[1].protocol"),
    ("""\
     name: s
     lab_config: x.yaml
     steps:
       - protocol: switching_statistics
         params: {repeats: lots}
     """, "steps[0].params.repeats"),
    ("""\
     name: s
     lab_config: x.yaml
     steps:
       - protocol: endurance
         sweep: {cycles: [10, -1]}
     """, "steps[0].sweep"),
    ("""\
     name: s
     lab_config: x.yaml
     steps:
       - protocol: endurance
         sweep: {colour: [1, 2]}
     """, "steps[0].sweep.colour"),
    ("""\
     name: s
     lab_config: x.yaml
     stpes: []
     """, "stpes"),
    ("""\
     name: s
     lab_config: x.yaml
     steps:
       - {protocol: endurance, params: {cycles: 3}
     """, ""),
])
def test_malformed_script_gives_one_error_naming_file_and_key(tmp_path, body, key):
    path = _script(tmp_path, body)
    with pytest.raises(ProtocolError) as info:
        load_script(path)
    message = str(info.value)
    assert str(path) in message and key in message
    assert "\n" not in message.strip() or "YAML" in message


def test_malformed_script_through_the_cli(tmp_path, capsys):
    path = _script(tmp_path, """\
        name: s
        lab_config: x.yaml
        steps:
          - protocol: read_noise
            params: {reads: 1}
        """)
    assert main(["protocols", "run", str(path), "--dry-run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "steps[0].params" in err[0]


def test_script_refused_as_a_whole_before_any_pulse(tmp_path):
    script = script_from_data({
        "name": "s", "lab_config": "x.yaml",
        "steps": [{"protocol": "read_noise", "params": {"reads": 5, "disturb_reads": 0}},
                  {"protocol": "push_pull_noise", "params": {"budgets": [8, 9000]}}],
    })
    array = Recorder(TwinArray((2, 2), seed=0))
    with pytest.raises(PulseLimitError, match="push_pull_noise"):
        run_script(script, array, tmp_path, progress=False)
    assert array.applies == 0 and array.reads == 0 and not list(tmp_path.iterdir())


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.yaml")))
def test_checked_in_scripts_pass_a_dry_run(script, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["protocols", "run", str(SCRIPTS / script), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for step in load_script(SCRIPTS / script).steps:
        assert step.label in out
    assert "nothing was sent" in out
    assert not (tmp_path / "runs").exists()


def test_cli_runs_a_script(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["protocols", "run", str(SCRIPTS / "quick.yaml"), "--runs-dir", str(runs),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("completed") and out.count("completed") == 4
    (folder,) = runs.iterdir()
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["lab_config_file"] and meta["lab_config"]["name"] == "default-twin"


def test_list_and_show_document_declarations(capsys):
    assert main(["protocols", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in PROTOCOLS)
    for name, cls in PROTOCOLS.items():
        assert main(["protocols", "show", name]) == 0
        out = capsys.readouterr().out
        for field in cls.Params.__dataclass_fields__:
            assert f"  {field}" in out
        for columns in cls.tables.values():
            assert ", ".join(columns) in out
    assert main(["protocols", "show", "switching_statistics"]) == 0
    assert "amplitudes_volts [V]" in capsys.readouterr().out
    assert main(["protocols", "show", "nope"]) == 1


def test_stop_request_ends_between_steps_in_safe_state(tmp_path):
    """A Ctrl-C (SIGINT) during a step lets that step finish, then stops cleanly."""

    def interrupt(n):
        if n == 5:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where started in the background
    array = Recorder(TwinArray((2, 2), seed=0), on_apply=interrupt)
    protocol = PROTOCOLS["endurance"](cycles=50, pulses_per_cycle=2)
    result = run_protocol(protocol, array, tmp_path, progress=False)
    assert result.status == "interrupted"
    assert array.safe_states >= 1
    rows = read_table(tmp_path / "cycles.csv")
    assert len(rows) == 3 * 4  # cycles 0..2 finished (apply 5 was in cycle 2); 4 devices
    assert json.loads((tmp_path / "metadata.json").read_text())["status"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is before  # the run's own handler is gone


def test_instrument_error_mid_run_leaves_safe_state_and_record(tmp_path):
    def fail(n):
        if n == 7:
            raise InstrumentError("pulser stopped answering")

    array = Recorder(TwinArray((2, 2), seed=0), on_apply=fail)
    with pytest.raises(InstrumentError):
        run_protocol(PROTOCOLS["endurance"](cycles=20), array, tmp_path, progress=False)
    assert array.safe_states == 1
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["status"] == "failed" and "pulser stopped" in meta["error"]
    assert len(read_table(tmp_path / "cycles.csv")) == 3 * 4


KILL_CHILD = """
import sys, time
from dwlab.protocols.base import run_protocol
from dwlab.protocols.registry import PROTOCOLS
from dwlab.sim.twin import TwinArray

class Slow(TwinArray):
    def apply(self, plan):
        time.sleep(0.01)
        return super().apply(plan)

run_protocol(PROTOCOLS["switching_statistics"](repeats=100000, amplitudes_volts=[1.0],
             widths_seconds=[1e-8]), Slow((3, 3), seed=0), sys.argv[1], progress=False)
"""


def test_sigkill_keeps_every_completed_row(tmp_path):
    folder = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    table = folder / "steps.csv"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if table.exists() and table.read_text().count("\n") > 200:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the protocol never got going")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    rows = read_table(table)
    assert len(rows) >= 200
    # Rows of one step (push and pull for all 9 devices) are written together.
    assert len(rows) % 18 == 0
    repeats = sorted({int(r["repeat"]) for r in rows})
    assert repeats == list(range(len(rows) // 18))
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["status"] == "running"  # the kill gave no chance to finish the record
    # The same tools read the partial record.
    from dwlab.protocols.base import make_plots

    assert make_plots(PROTOCOLS["switching_statistics"](), folder)


def test_estimate_needs_no_array():
    """Estimates come from the static description alone (what --dry-run relies on)."""
    from dwlab.core.types import PulseLimits, PulseShape

    # 100 nominal steps span the range: an automatic re-centring may spend 75 pulses.
    target = Target((8, 8), PulseLimits(5.0, 1e-9, 1e-6, 64), PulseShape(1.0, 1e-8),
                    2.5e-4, 5.0e-4, 2.5e-6)
    protocol = PROTOCOLS["push_pull_noise"](budgets=[8, 32])
    assert protocol.recenter_cap(target) == 64  # 75, held to the per-apply limit
    est = protocol.estimate(target)
    assert est.max_pulses_per_apply == 64
    assert est.steps == 2 * 5 * 10 and est.device_reads >= 64 * 8 * 100
    wider = Target((8, 8), PulseLimits(5.0, 1e-9, 1e-6, 4096), PulseShape(1.0, 1e-8),
                   2.5e-4, 5.0e-4, 2.5e-6)
    assert protocol.recenter_cap(wider) == 75
    with pytest.raises(PulseLimitError, match="100 pulses to one device"):
        PROTOCOLS["push_pull_noise"](budgets=[8], recenter_max_pulses=100).check(target)
    assert PROTOCOLS["push_pull_noise"](budgets=[8, 32], recenter_max_pulses=60).check(
        target).max_pulses_per_apply == 60
