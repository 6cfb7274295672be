# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # dwlab from Python: measure, calibrate, train
#
# A lab session on the software twin, end to end, in about a minute on two cores:
# 1. characterise a 4 x 4 twin array with a protocol script (device map, read noise,
#    switching statistics),
# 2. fit the twin's parameters to those records,
# 3. train the digits network through a twin built from that calibration,
# 4. load the records into pandas / xarray.
#
# Kept as a jupytext script: `jupytext --to ipynb examples/notebook.py` makes the notebook;
# `python examples/notebook.py` runs it as it is (CI does, in `tests/test_examples.py`).
# Everything goes into `DWLAB_EXAMPLE_DIR` (default `runs/example`).

# %%
import os
from pathlib import Path

import yaml

import dwlab

REPO = Path(dwlab.__file__).resolve().parents[1]
WORK = Path(os.environ.get("DWLAB_EXAMPLE_DIR", "runs/example")).resolve()
WORK.mkdir(parents=True, exist_ok=True)
lab = dwlab.load_config(REPO / "lab_configs" / "default.yaml")
print(sorted(dwlab.PROTOCOLS))

# %% [markdown]
# ## 1. Characterise the twin
# A protocol script is data: the steps and their parameters. This one is the calibration
# script (`lab_configs/protocols/calibration.yaml`) made smaller. The whole script is
# checked against the array's pulse limits before the first pulse.

# %%
script = {
    "name": "example-calibration",
    "lab_config": str(REPO / "lab_configs" / "default.yaml"),
    "steps": [
        {"protocol": "device_map",
         "params": {"saturate_pulses": 250, "width_seconds": 2.0e-8, "n_averages": 8}},
        {"protocol": "read_noise", "params": {"reads": 30, "disturb_reads": 0}},
        {"protocol": "switching_statistics",
         "params": {"amplitudes_volts": [0.4, 0.7, 1.0, 1.3],
                    "widths_seconds": [5.0e-9, 2.0e-8], "repeats": 24, "n_averages": 4}},
    ],
}
script_path = WORK / "calibration_script.yaml"
script_path.write_text(yaml.safe_dump(script, sort_keys=False))

with dwlab.open_arrays(lab) as arrays:
    twin = arrays.array("main", shape=(4, 4))
    measured = dwlab.run_script(script_path, twin, WORK / "protocols")
print(measured.status, measured.folder)
for step in measured.steps:
    print(f"  {step.folder.name}: {step.pulses} pulses, {step.device_reads} reads, "
          f"plots {[p.name for p in step.plots]}")

# %% [markdown]
# ## 2. Calibrate
# Fits every parameter of the continuous twin with a bootstrap standard error and checks
# the fit: a twin built from it measures the same switching statistics, compared with
# held-out measurements. The verdict is PASS, MISFIT or INSUFFICIENT DATA; on twin records
# it is PASS about 95 % of the time (alpha 0.05). `dwlab calibrate` writes the file only
# on PASS unless told otherwise; this example writes it whatever the verdict
# (`write_anyway`) so that the steps below always run, and prints the verdict.

# %%
calibration_file = WORK / "lab" / "calibration.yaml"
fit = dwlab.calibrate([measured.folder], calibration_file, report_dir=WORK / "reports",
                      sim_devices=64, n_bootstrap=40, write_anyway=True)
print("verdict:", fit.verdict.verdict, "| report:", fit.report)
for reason in fit.verdict.reasons + fit.verdict.flags:
    print("  ", reason)
for name, value in fit.calibration.values().items():
    print(f"  {name:20s} {value:11.4g} ± {fit.calibration.stderr[name]:.2g}")

# %% [markdown]
# ## 3. Train through the calibrated twin
# A lab config names the calibration file (relative to the config); training overrides
# go as keyword arguments.

# %%
config = yaml.safe_load((REPO / "lab_configs" / "default.yaml").read_text())
config["name"] = "example-calibrated"
config["arrays"]["main"]["twin"] = {"preset": "continuous_dw",
                                    "calibration": calibration_file.name}
config_path = calibration_file.parent / "calibrated.yaml"
config_path.write_text(yaml.safe_dump(config, sort_keys=False))

training = dwlab.train(config_path, WORK / "training", epochs=2, width=32,
                       burn_in_epochs=1, thinning_steps=4, limit_train=1024, limit_test=180)
for result in training.results:
    print(f"  {result.label:22s} accuracy {100 * result.accuracy:.1f} %")

# %% [markdown]
# ## 4. The records, for pandas and xarray
# Every table of a run folder; the live view of the same run is `dwlab watch <folder>`.

# %%
records = dwlab.load_run(training.path)
print(list(records.tables))
epochs = records.tables["push_pull_pair-7bit/epochs"]
print(epochs[["epoch", "test_accuracy", "bma_accuracy", "samples"]])
steps = records.dataset("push_pull_pair-7bit/steps", dims=["step"])
print(steps["seconds"].attrs, steps.attrs["git_revision"])
device_map = dwlab.load_run(measured.folder)
grid = device_map.dataset(f"{measured.steps[0].folder.name}/devices", dims=["row", "column"])
print(grid["g_max_siemens"])
print("NetCDF:", records.to_netcdf())
