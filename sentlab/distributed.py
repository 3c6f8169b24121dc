"""The collectives of a run in N processes (train.num_processes=N, data-parallel with torch DDP), as training.fit
uses them; sentlab.ranks starts the processes.

training.fit stays one loop for 1 or N processes through the few functions here: the epoch's global batches
are cut by `shard()` (rank r trains on batch[r::N], so N processes see, step for step, the examples that one
process with N times the batch size sees), `gather()` exchanges per-step numbers (loss, stop signals),
`broadcast()` sends rank 0's resume state and early-stopping decision, and `wrap()` puts DDP around the model.
Outside a process group (a one-process run never starts one) each of them is the identity.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def shard(batch: list[int], weights: list[float] | None = None) -> tuple[list[int], float]:
    """This rank's part of a global batch (batch[rank::N]) and the factor its mean loss is scaled by, so that
    DDP's average of the ranks' gradients is the gradient of the global batch's mean loss, uneven last
    batches included (n_rank * N / n_global). With `weights` (each example's class weight, train.class_weights)
    the losses are weighted means, and the factor is w_rank * N / w_global (summed weights) instead. A rank left
    without an example (a last batch smaller than N) trains on one with factor 0: it must still take part in
    the gradient all-reduce."""
    n = world_size()
    mine = batch[rank() :: n]
    if not mine:
        return batch[:1], 0.0
    if weights is None:
        return mine, len(mine) * n / len(batch)
    return mine, sum(weights[i] for i in mine) * n / sum(weights[i] for i in batch)


def gather(values: list[float]) -> torch.Tensor:
    """Every rank's `values`, one row per rank ([N, len(values)]); one collective."""
    mine = torch.tensor(values, dtype=torch.float64)
    if not dist.is_initialized():
        return mine[None]
    device = _comm_device()
    rows = [torch.empty_like(mine, device=device) for _ in range(world_size())]
    dist.all_gather(rows, mine.to(device))
    return torch.stack(rows).cpu()


def broadcast(obj):
    """Rank 0's `obj` on every rank (pickled)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]


def gather_objects(obj) -> list:
    """Every rank's `obj`, in rank order (on every rank)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap(model, device):
    """The model in DDP when there is a process group, else as it is. Only trainable parameters (LoRA and the
    head) are all-reduced; every one of them gets a gradient in every step, so find_unused_parameters stays off
    (DDP says clearly if one did not). Buffers are the same on every rank: not broadcast at each forward. DDP's
    constructor broadcasts rank 0's weights, so the randomly initialised head starts the same everywhere."""
    if not dist.is_initialized():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False, find_unused_parameters=False)


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def cpu_threads(n: int) -> int:
    """Threads per rank on the CPU: the cores shared out, so that N ranks do not oversubscribe them."""
    return max(1, len(os.sched_getaffinity(0)) // n)
