"""How well a trained run's controller knew its twin devices' steps, and how much of its
window the float reference's weights would need.

For each checkpoint of a push-pull pair run on twin arrays, the twins are rebuilt from the
snapshots the checkpoint holds (shape, seed, parameters), so each device's true push and
pull step at the run's pulse is known. The table gives the drift error: each device's
move per update at zero gradient when planned with the controller's steps (``K`` pulses
split as ``K mu-/(mu+ + mu-)`` pushes), rms over the devices, as a percentage of the largest
update ``K mu``; for the steps the controller held at the end, and for the priors its
refinement kept (the calibration, where a device never restarted).

It also judges the run's saturation count by the twin's own wall positions: the share of
walls within :data:`SATURATION_MARGIN` of the track (0.05 of its length) of an end, beside
the share the controller counts from its last reads against the nominal window, and the
share near an end that those reads do not show (devices whose own window lies inside the
nominal one: the conductance ends spread by ``g_spread`` from device to device).

``--float CHECKPOINT`` adds the share of that float run's weights (same model) lying beyond
0.9 of each tensor's pair window, where both devices of a pair would count as saturated,
for the window of the first checkpoint and for wider ones.

    python benchmarks/step_error.py RUN/push_pull_pair-7bit/checkpoint.pt [...] \\
        [--float RUN/float_sgd/checkpoint.pt]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch
from dwlab.sim.presets import TwinParams
from dwlab.sim.twin import TwinArray

from dwlab.core.types import PulseShape
from dwlab.sgld.weight import SATURATION_MARGIN


def controller_weights(path: Path) -> dict[str, dict[str, Any]]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state["optimizer"]["dwlab"]["weights"]


def true_steps(saved: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The twin's push and pull steps (S, per device) at the run's update pulse."""
    snap = saved["snapshot"]
    twin = TwinArray(tuple(snap["shape"]), TwinParams(**snap["params"]), seed=snap["seed"])
    # Bench pulses keep the nominal amplitude (the configs in lab_configs/ send 1 V).
    mu_push, _, mu_pull, _ = twin.step_moments(PulseShape(1.0, saved["pulse_width_seconds"]))
    return (mu_push * twin.g_range).double(), (mu_pull * twin.g_range).double()


def near_an_end(saved: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per device: its wall within the saturated zone of a track end (the twin's position),
    and its last read there by the nominal window (what the controller counts)."""
    x = saved["snapshot"]["position"].float()
    read = saved["last_read"].float()
    walls = (x < SATURATION_MARGIN) | (x > 1 - SATURATION_MARGIN)
    reads = (read - saved["g_mid"]).abs() > saved["g_half"] * (1 - 2 * SATURATION_MARGIN)
    return walls, reads


def drift_error(push: torch.Tensor, pull: torch.Tensor, est_push: torch.Tensor,
                est_pull: torch.Tensor) -> torch.Tensor:
    """Per device, the zero-gradient move per update planned with the estimated steps, in
    units of ``K`` times the mean true push step."""
    return (est_pull * push - est_push * pull) / (est_push + est_pull) / push.mean()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--float", type=Path, dest="float_run",
                    help="a float SGD checkpoint of the same model")
    args = ap.parse_args(argv)
    print("| checkpoint | devices | drift error, steps held (% of K mu) | "
          "drift error, refinement's priors | walls near an end (%) | "
          "reads near an end (%) | walls near an end, reads not (%) |")
    print("|---|---|---|---|---|---|---|")
    for path in args.checkpoints:
        held = priors = 0.0
        count = 0
        has_priors = True
        walls = reads = unseen = 0
        for saved in controller_weights(path).values():
            wall_near, read_near = near_an_end(saved)
            walls += int(wall_near.sum())
            reads += int(read_near.sum())
            unseen += int((wall_near & ~read_near).sum())
            push, pull = true_steps(saved)
            steps = saved["steps_siemens"].double()
            held += float(drift_error(push, pull, steps[0], steps[1]).square().sum())
            count += push.numel()
            refine = saved.get("refine")
            if refine is None:
                has_priors = False
            else:
                state = refine["state"].double()
                priors += float(drift_error(push, pull, state[3], state[4]).square().sum())
        prior_text = f"{100 * math.sqrt(priors / count):.2f}" if has_priors else "-"
        print(f"| {path} | {count:,} | {100 * math.sqrt(held / count):.2f} | {prior_text} | "
              f"{100 * walls / count:.2f} | {100 * reads / count:.2f} | "
              f"{100 * unseen / count:.2f} |")
    if args.float_run is not None:
        weights = controller_weights(args.checkpoints[0])
        model = torch.load(args.float_run, map_location="cpu", weights_only=True)["model"]
        print("\n| window (of the first checkpoint's) | float weights beyond 0.9 of it (%) |")
        print("|---|---|")
        for scale in (1.0, 7 / 6, 4 / 3):
            total = beyond = 0
            for name, saved in weights.items():
                half = 2 * saved["alpha"] * saved["g_half"] * scale  # a pair's largest |w|
                w = model[name].float()
                total += w.numel()
                beyond += int((w.abs() > 0.9 * half).sum())
            print(f"| x{scale:.3f} | {100 * beyond / total:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
