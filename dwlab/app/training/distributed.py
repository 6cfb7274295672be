"""Training on several processes with torch.distributed: data parallel, device work sharded.

``torchrun --nproc-per-node 2 -m dwlab.app.cli train ...`` starts one process per rank
(gloo on CPU, NCCL when the model is on CUDA). A run is split into a fixed number of
``shards`` (recorded in the run folder, default the world size), and each rank takes
``shards / world_size`` of them:

- **data**: every batch is cut into ``shards`` slices; a rank runs forward and backward on
  its slices, one after another (their gradients accumulate), and the gradients are then
  summed over the ranks. One rank with two shards adds the same two slice gradients as two
  ranks with one each, so 1 and 2 ranks give bit-identical gradients; with more ranks the
  sum's order follows the reduction (equal up to float rounding). BatchNorm sees one slice
  at a time, as in any data-parallel run; its running statistics are averaged over the
  ranks after each step (equal in distribution, not bit-exact).
- **devices**: every twin array is built as ``shards`` blocks of its flat device index,
  block ``b`` a twin of its own with its own seed (:class:`ShardedArray`). A rank builds,
  pulses and reads only its blocks; the conductances are then gathered, so every rank holds
  the whole weight. Because each block's random stream belongs to the block, not to the
  rank, the devices follow the same trajectory whichever rank holds them.
  A step applies block ``b`` of every array in one twin batch that draws from the first
  array's block ``b``: still a stream of the block index, whichever rank holds it.

The plan itself (stochastic rounding of the update) is computed in full on every rank
from the summed gradient and the gathered weights, with the same seed: it is cheap next to
the device physics, and keeps every rank's model identical without further messages.

A checkpoint holds every block's state (gathered), so a run resumes on any world size that
divides its ``shards``. Rank 0 writes the run folder; the others write their (identical)
records into a scratch folder that is removed at the end. Evaluation on the test set is
not divided: every rank runs it (the ranks stay in step without a message).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from dwlab.core.device import ArrayBase, DeviceArray, apply_all
from dwlab.core.errors import ConfigError
from dwlab.core.types import ArrayInfo, PulsePlan, PulseReceipt, Readout

BLOCK_SEED_STRIDE = 1_000_003
"""Seeds of an array's device blocks: the array's own seed plus ``b * stride`` (block 0
keeps the array's seed; a prime far above any tensor index keeps the blocks of different
tensors apart)."""


@dataclass(frozen=True)
class Parallel:
    """This process's place in a run: ``rank`` of ``world_size``, and the run's fixed
    number of ``shards`` (slices of every batch and blocks of every array)."""

    rank: int = 0
    world_size: int = 1
    shards: int = 1

    def __post_init__(self) -> None:
        if self.shards < 1 or self.shards % self.world_size:
            raise ConfigError(
                f"the run is split into {self.shards} shard(s), which {self.world_size} "
                "rank(s) cannot share equally: use a world size that divides it",
                key="distributed.shards")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.shards > 1

    @property
    def active(self) -> bool:
        """Whether messages go between processes (more than one rank)."""
        return self.world_size > 1

    def my_shards(self) -> range:
        per_rank = self.shards // self.world_size
        return range(self.rank * per_rank, (self.rank + 1) * per_rank)

    # -- collectives (identity on one rank) ------------------------------------------

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.active:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def any(self, flag: bool) -> bool:
        """Whether any rank says ``flag`` (a stop requested on one stops them all)."""
        if not self.active:
            return flag
        return bool(self.sum_(torch.tensor([int(flag)], device=_comm_device())).item())

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def _comm_device() -> torch.device:
    """Where tensors for the process group live: CUDA for NCCL, the CPU for gloo."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def from_environment(torch_device: str, shards: int | None) -> Parallel:
    """This process's :class:`Parallel` from the variables torchrun sets (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), joining the process group when
    there is more than one rank. ``shards`` defaults to the world size."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        cuda = torch.device(torch_device).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return Parallel(rank, world, shards or world)


def leave() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


# -- data parallel -----------------------------------------------------------------------

def forward_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     parallel: Parallel, autocast: Any
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward over this rank's slices of the batch, gradients then summed
    over the ranks. Returns the batch's mean loss and accuracy (on every rank alike).

    Each slice's loss is weighted by its share of the batch, so the summed gradient is the
    gradient of the whole batch's mean loss (up to float rounding)."""
    slices = torch.tensor_split(torch.arange(len(y), device=y.device), parallel.shards)
    totals = torch.zeros(2, dtype=torch.float64, device=y.device)  # loss, correct
    for s in parallel.my_shards():
        idx = slices[s]
        with autocast():
            logits = model(x[idx])
            loss = F.cross_entropy(logits.float(), y[idx]) * (len(idx) / len(y))
        loss.backward()
        totals[0] += loss.detach().double()
        totals[1] += (logits.argmax(1) == y[idx]).sum()
    if parallel.active:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        # one message for all gradients
        flat = parallel.sum_(torch.cat([g.reshape(-1) for g in grads]).to(_comm_device()))
        for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            g.copy_(part.view_as(g))
        totals = parallel.sum_(totals.to(_comm_device())).to(y.device)
    return totals[0].float(), totals[1] / len(y)


def average_buffers(model: nn.Module, parallel: Parallel) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks, which
    each updated from their own slices."""
    if not parallel.active:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            summed = parallel.sum_(buf.detach().to(_comm_device()))
            buf.copy_(summed / parallel.world_size)


# -- sharded device arrays --------------------------------------------------------------

def block_bounds(size: int, blocks: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` ranges of a flat index of ``size``: ``blocks`` of them,
    sizes differing by at most one."""
    base, extra = divmod(size, blocks)
    bounds, start = [], 0
    for b in range(blocks):
        stop = start + base + (b < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


class ShardedArray(ArrayBase):
    """One logical twin array built as ``parallel.shards`` blocks, this rank holding its
    own (see the module docstring). ``DeviceArray`` to the controller: a plan for the whole
    array is checked in full, each local block takes its slice; reads gather every block."""

    def __init__(self, shape: tuple[int, ...], parallel: Parallel,
                 blocks: dict[int, DeviceArray]):
        self.shape = tuple(shape)
        self.parallel = parallel
        self.bounds = block_bounds(int(torch.Size(shape).numel()), parallel.shards)
        self.blocks = blocks  # block index -> this rank's array
        info = next(iter(blocks.values())).describe()
        self._info = dataclasses.replace(
            info, shape=self.shape,
            identity={**info.identity, "blocks": str(parallel.shards),
                      "devices": str(self.bounds[-1][1])})
        mine = [self.bounds[b] for b in parallel.my_shards()]
        self._local = (mine[0][0], mine[-1][1])
        self._widest = max(self._rank_span(r) for r in range(parallel.world_size))

    def _rank_span(self, rank: int) -> int:
        per_rank = self.parallel.shards // self.parallel.world_size
        first, last = rank * per_rank, (rank + 1) * per_rank - 1
        return self.bounds[last][1] - self.bounds[first][0]

    def describe(self) -> ArrayInfo:
        return self._info

    def apply(self, plan: PulsePlan) -> PulseReceipt:
        return ShardedArray.apply_batch([self], [plan])[0]

    @classmethod
    def apply_batch(cls, arrays: Sequence[ShardedArray], plans: Sequence[PulsePlan]
                    ) -> list[PulseReceipt]:
        """Plans for several sharded arrays of one run: block ``b`` of every array takes its
        slice in one :func:`~dwlab.core.device.apply_all` (the twin's batch, drawing from the
        first array's block ``b``: the random streams still belong to blocks, not ranks),
        and one sum over the ranks counts every array's clipped walls."""
        parallel, blocks = arrays[0].parallel, sorted(arrays[0].blocks)
        for array, plan in zip(arrays, plans, strict=True):
            if array.parallel != parallel or sorted(array.blocks) != blocks:
                raise ValueError("sharded arrays of different runs cannot share a batch")
            plan.check_against(array.shape, array._info.limits)  # in full, before any pulse
        flat = [(plan.push.reshape(-1), plan.pull.reshape(-1)) for plan in plans]
        clipped = torch.zeros(len(arrays), dtype=torch.float64)
        for b in blocks:
            parts = []
            for array, plan, (push, pull) in zip(arrays, plans, flat, strict=True):
                start, stop = array.bounds[b]
                parts.append(PulsePlan(push[start:stop], pull[start:stop],
                                       plan.push_shape, plan.pull_shape))
            receipts = apply_all([array.blocks[b] for array in arrays], parts)
            clipped += torch.tensor([r.devices_clipped for r in receipts], dtype=torch.float64)
        clipped = parallel.sum_(clipped.to(_comm_device())).cpu()
        return [PulseReceipt(push_applied=plan.push, pull_applied=plan.pull,
                             devices_clipped=int(count), details={"blocks": parallel.shards})
                for plan, count in zip(plans, clipped.tolist(), strict=True)]

    def read(self, n_averages: int = 1, devices: torch.Tensor | None = None) -> Readout:
        """Every block read, then gathered (``devices`` selects from the full read)."""
        reads = [self.blocks[b].read(n_averages) for b in sorted(self.blocks)]
        mean = self._gather(torch.cat([r.conductance_siemens for r in reads]))
        spread = None
        if reads[0].spread_siemens is not None:
            spread = self._gather(torch.cat([r.spread_siemens for r in reads  # type: ignore[misc]
                                             ]))
        if devices is not None:
            idx = torch.as_tensor(devices, device=mean.device).reshape(-1)
            return Readout(mean.reshape(-1)[idx], None if spread is None
                           else spread.reshape(-1)[idx], n_averages)
        return Readout(mean, spread, n_averages)

    def _gather(self, local: torch.Tensor) -> torch.Tensor:
        """The full array (its shape) from every rank's contiguous part."""
        if not self.parallel.active:
            return local.reshape(self.shape)
        device = local.device
        padded = torch.zeros(self._widest, dtype=local.dtype, device=_comm_device())
        padded[:local.numel()] = local
        parts = [torch.empty_like(padded) for _ in range(self.parallel.world_size)]
        dist.all_gather(parts, padded)
        whole = torch.cat([part[:self._rank_span(r)] for r, part in enumerate(parts)])
        return whole.to(device).reshape(self.shape)

    def snapshot(self) -> dict[str, Any]:
        """Every block's snapshot (gathered from all ranks), in block order: the same on
        any world size."""
        mine = {b: array.snapshot() for b, array in self.blocks.items()}
        merged: dict[int, Any] = {}
        for part in self.parallel.gather_objects(mine):
            merged.update(part)
        return {"backend": "sharded", "shape": list(self.shape),
                "blocks": [merged[b] for b in range(self.parallel.shards)]}

    def restore(self, snapshot: dict[str, Any]) -> None:
        if (snapshot.get("backend") != "sharded" or list(snapshot["shape"]) != list(self.shape)
                or len(snapshot["blocks"]) != self.parallel.shards):
            raise ValueError(f"snapshot is not of an array of shape {self.shape} in "
                             f"{self.parallel.shards} blocks")
        for b, array in self.blocks.items():
            array.restore(snapshot["blocks"][b])

    def safe_state(self) -> None:
        for array in self.blocks.values():
            array.safe_state()


def sharded_factory(factory: Any, parallel: Parallel, twin_names: set[str]) -> Any:
    """An array factory (as the controller takes) building :class:`ShardedArray` s from
    ``factory``'s arrays; only twins sized by the controller (``twin_names``) can be split."""
    def build(name: str, shape: tuple[int, ...], seed_offset: int) -> DeviceArray:
        if name not in twin_names:
            raise ConfigError(
                f"array '{name}' cannot be split over {parallel.shards} shards: only twins "
                "sized by the controller (no fixed shape) can; train with one shard",
                key=f"arrays.{name}")
        size = int(torch.Size(shape).numel())
        bounds = block_bounds(size, parallel.shards)
        blocks = {b: factory(name, (bounds[b][1] - bounds[b][0],),
                             seed_offset + b * BLOCK_SEED_STRIDE)
                  for b in parallel.my_shards()}
        return ShardedArray(shape, parallel, blocks)
    return build


@contextmanager
def records_folder(folder: Path, parallel: Parallel) -> Iterator[Path]:
    """Where this rank writes its records: the run folder on rank 0, a scratch folder
    (removed afterwards) on the others."""
    if parallel.is_main:
        yield folder
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"dwlab-rank{parallel.rank}-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
