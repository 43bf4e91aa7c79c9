"""torchrun helpers: a single process is rank 0 of a world of 1."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init() -> tuple[int, int, int]:
    """Initialise the process group when launched by torchrun. Returns (rank, local_rank, world_size)."""
    if 'WORLD_SIZE' not in os.environ or int(os.environ['WORLD_SIZE']) == 1:
        return 0, 0, 1
    rank, local_rank, world = int(os.environ['RANK']), int(os.environ['LOCAL_RANK']), int(os.environ['WORLD_SIZE'])
    backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    if backend == 'nccl':
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend)
    return rank, local_rank, world


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (identity in a single process); for logging only."""
    if is_distributed():
        x = x.detach().clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


def gather_objects(obj: object) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` in a single process."""
    if not is_distributed():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
