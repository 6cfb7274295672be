"""Run folders for pandas, xarray and NetCDF: tables typed, units and provenance as
attributes, resumed steps counted once, device maps on their crossbar layout."""

import json

import pytest
import xarray as xr

from dwlab.records import TableWriter, atomic_write_json
from dwlab.records.export import column_unit, load_run


@pytest.fixture
def run_folder(tmp_path):
    """A run folder as training writes it, with a resumed stretch, and a protocol step."""
    (tmp_path / "run").mkdir()
    (tmp_path / "map").mkdir()
    atomic_write_json(tmp_path / "metadata.json", {"kind": "train", "seed": 3,
                                                   "git_revision": "abc123",
                                                   "versions": {"dwlab": "0.1.0"}})
    with TableWriter(tmp_path / "run" / "steps.csv",
                     ["attempt", "step", "loss", "seconds"]) as t:
        t.append_rows([{"attempt": 0, "step": 1, "loss": 2.0, "seconds": 0.5},
                       {"attempt": 0, "step": 2, "loss": 1.5, "seconds": 1.0},
                       {"attempt": 1, "step": 2, "loss": 1.4, "seconds": 1.1},  # replayed
                       {"attempt": 1, "step": 3, "loss": 1.2, "seconds": 1.6}])
    step = tmp_path / "map"
    atomic_write_json(step / "metadata.json", {"kind": "protocol", "protocol": "device_map"})
    with TableWriter(step / "devices.csv", ["device", "index", "g_max_siemens"]) as t:
        t.append_rows([{"device": 2 * r + c, "index": f"{r}x{c}",
                        "g_max_siemens": 1e-4 * (2 * r + c + 1)}
                       for r in range(2) for c in range(2)])
    (tmp_path / "events.jsonl").write_text(
        json.dumps({"event": "start"}) + "\n" + json.dumps({"event": "done", "x": [1]}) + "\n")
    return tmp_path


def test_tables_load_typed_and_the_last_attempt_of_a_step_counts(run_folder):
    records = load_run(run_folder)
    assert sorted(records.tables) == ["map/devices", "run/steps"]
    steps = records.tables["run/steps"]
    assert steps["step"].tolist() == [1, 2, 3] and steps["loss"].tolist() == [2.0, 1.4, 1.2]
    assert records.events["events"]["event"].tolist() == ["start", "done"]


def test_datasets_carry_units_provenance_and_the_crossbar_layout(run_folder):
    records = load_run(run_folder)
    steps = records.dataset("run/steps", dims=["step"])
    assert steps["seconds"].attrs["units"] == "s" and "units" not in steps["loss"].attrs
    assert steps.attrs["git_revision"] == "abc123" and steps.attrs["seed"] == 3
    grid = records.dataset("map/devices", dims=["row", "column"])["g_max_siemens"]
    assert grid.dims == ("row", "column") and grid.attrs["units"] == "S"
    assert float(grid.sel(row=1, column=0)) == pytest.approx(3e-4)
    assert records.dataset("map/devices").attrs["protocol"] == "device_map"


def test_netcdf_holds_every_table_as_a_group(run_folder, tmp_path):
    path = load_run(run_folder).to_netcdf(tmp_path / "all.nc")
    with xr.open_dataset(path, group="map/devices", engine="h5netcdf") as ds:
        assert ds["g_max_siemens"].attrs["units"] == "S"
        assert ds["index"].values.tolist() == ["0x0", "0x1", "1x0", "1x1"]
    with xr.open_dataset(path, group="run/steps", engine="h5netcdf") as ds:
        assert ds["loss"].values.tolist() == [2.0, 1.4, 1.2]
        assert json.loads(ds.attrs["metadata_json"])["kind"] == "train"


def test_units_come_from_the_column_names():
    assert [column_unit(c) for c in ("width_seconds", "delta_siemens", "amplitude_volts",
                                     "seconds", "loss", "pulses_total")] == \
        ["s", "S", "V", "s", None, None]
