"""Several processes, one job: dissection split over images, the feature atlas split over channels.

Everything here is PyTorch's own distributed engine: ``torchrun`` starts the processes and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; ``start`` joins them into a process group
(``gloo`` on CPUs, ``nccl`` with one GPU per process, picked by ``LOCAL_RANK``; ``INTERPVIZ_DEVICE=cpu``
keeps a GPU machine on the CPU and ``gloo``); the merges below are
collective operations (all-reduce, all-gather, barrier).

Without a process group every function here is the single-process identity: ``rank()`` is 0, ``shard`` keeps
everything, the merges return their input. So the same code runs alone and under ``torchrun``.

A process that fails takes the job down: its peers' next collective fails at once when its connection
closes, and at the latest after the process-group timeout when it hangs instead; ``RankLostError`` says so.
"""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from typing import Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist

from interpviz import settings

DEFAULT_TIMEOUT_SECONDS = 1800.0
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

Item = TypeVar("Item")


class RankLostError(ConnectionError):
    """A collective operation failed: another process of the job crashed, or did not answer within the timeout."""


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (or anything that sets its environment variables)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def is_active() -> bool:
    """Whether this process belongs to an initialized process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's number in the job, 0 .. world_size() - 1 (0 when alone)."""
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    """How many processes the job has (1 when alone)."""
    return dist.get_world_size() if is_active() else 1


def is_main() -> bool:
    """Whether this is rank 0, the process that writes reports and indexes."""
    return rank() == 0


def local_rank() -> int:
    """This process's number on its own machine (``LOCAL_RANK``, set by torchrun; 0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def backend() -> str:
    """``nccl`` where interpviz runs on CUDA GPUs (``settings.default_device``), else ``gloo``."""
    return "nccl" if settings.default_device().type == "cuda" else "gloo"


def start(timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
    """Join the process group that torchrun's environment describes; with ``nccl``, use GPU ``LOCAL_RANK``.

    ``timeout_seconds`` bounds every collective: a process whose peer hangs fails after that long.
    """
    if timeout_seconds <= 0:
        raise ValueError(f"timeout_seconds must be greater than 0, got {timeout_seconds}")
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(f"no process group to join: {', '.join(missing)} not set; start the job with torchrun")
    chosen = backend()
    device_id = None
    if chosen == "nccl":
        if local_rank() >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK is {local_rank()} but this machine has {torch.cuda.device_count()} GPUs; "
                               "start at most one process per GPU (torchrun --nproc_per_node)")
        device_id = torch.device("cuda", local_rank())
        torch.cuda.set_device(device_id)
    dist.init_process_group(chosen, timeout=datetime.timedelta(seconds=timeout_seconds), device_id=device_id)


def stop() -> None:
    """Leave the process group, if there is one."""
    if is_active():
        dist.destroy_process_group()


def device() -> torch.device | None:
    """This process's device in a process group (its own GPU with nccl, else the CPU); None when alone."""
    if not is_active():
        return None
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _lost(error: RuntimeError) -> RankLostError:
    """The error a process raises when a collective operation fails: what happened and why the job stops."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else type(error).__name__
    return RankLostError(f"rank {rank()} of {world_size()}: a collective operation failed ({first}); "
                         "another process of the job crashed, or did not answer within the process-group timeout, "
                         "so the whole job stops. Its own error is in its log")


def _on_backend_device(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of ``tensor`` where the backend can reduce it (the GPU for nccl, the CPU for gloo)."""
    return tensor.detach().to(device(), copy=True).contiguous()


def barrier() -> None:
    """Wait until every process has reached this point (nothing to wait for when alone)."""
    if not is_active():
        return
    try:
        dist.barrier()
    except RuntimeError as error:
        raise _lost(error) from error


@contextmanager
def rank_zero_first() -> Iterator[None]:
    """Rank 0 runs the block alone first (e.g. to fill a cache), then the other ranks run it."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def shard(items: Sequence[Item], padding: Item | None = None) -> list[Item]:
    """This process's share of ``items``: items r, r + N, r + 2N, ... for rank r of N (all of them when alone).

    With ``padding``, a process that has one item fewer than rank 0 gets ``padding`` at the end, so that all
    processes take the same number of steps (needed when each step is a collective operation).
    """
    mine = list(items[rank()::world_size()])
    if padding is not None and len(mine) < len(items[0::world_size()]):
        mine.append(padding)
    return mine


def all_reduce(tensor: torch.Tensor, operation: str = "sum") -> torch.Tensor:
    """``tensor`` combined elementwise over every process (``sum``, ``min`` or ``max``); a new tensor, same device."""
    if not is_active():
        return tensor
    operations = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
    combined = _on_backend_device(tensor)
    try:
        dist.all_reduce(combined, op=operations[operation])
    except RuntimeError as error:
        raise _lost(error) from error
    return combined.to(tensor.device)


def all_gather(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every process's ``tensor`` (all the same shape), in rank order, on ``tensor``'s device."""
    if not is_active():
        return [tensor]
    mine = _on_backend_device(tensor)
    gathered = [torch.empty_like(mine) for _ in range(world_size())]
    try:
        dist.all_gather(gathered, mine)
    except RuntimeError as error:
        raise _lost(error) from error
    return [part.to(tensor.device) for part in gathered]


def agree_range(low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per unit, the lowest ``low`` and highest ``high`` of every process: one range that every process uses."""
    if not is_active():
        return low, high
    negated_low, high = all_reduce(torch.stack([-low, high]), "max")
    return -negated_low, high


def merge_top_values(values: torch.Tensor, keep: int) -> torch.Tensor:
    """Per row, the ``keep`` largest of every process's ``values`` (each its own ``keep`` largest), descending."""
    if not is_active():
        return values
    padded = torch.nn.functional.pad(values, (0, keep - values.shape[1]), value=float("-inf"))
    merged = torch.cat(all_gather(padded), dim=1)
    return merged.topk(keep, dim=1).values


def merge_top_images(values: torch.Tensor, images: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the ``keep`` largest values of every process and the image numbers they belong to."""
    if not is_active():
        return values, images
    missing = keep - values.shape[1]
    all_values = torch.cat(all_gather(torch.nn.functional.pad(values, (0, missing), value=float("-inf"))), dim=1)
    all_images = torch.cat(all_gather(torch.nn.functional.pad(images, (0, missing), value=-1)), dim=1)
    count = min(keep, int((all_images[0] >= 0).sum()))
    order = all_values.topk(count, dim=1).indices
    return all_values.gather(1, order), all_images.gather(1, order)


@contextmanager
def process_group(timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> Iterator[None]:
    """Under torchrun, be in the job's process group for the block and leave it afterwards; alone, do nothing."""
    if not launched_by_torchrun():
        yield
        return
    start(timeout_seconds)
    try:
        yield
    finally:
        stop()
