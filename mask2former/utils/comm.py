"""Distributed helpers (detectron2's ``comm``): rank / world size, barriers, object gathering.

Every function also works without ``torch.distributed`` initialised (a single process).
Object collectives (``all_gather``, ``gather``) pickle arbitrary python objects and run on a
gloo group, so they never allocate GPU memory.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "all_gather",
    "forget_process_groups",
    "gather",
    "get_local_rank",
    "get_local_size",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "reduce_dict",
    "shared_random_seed",
    "synchronize",
]


def _is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if _is_dist() else 1


def get_rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    return dist.get_rank() if _is_dist() else 0


def get_local_rank() -> int:
    """Rank of this process within its machine (``LOCAL_RANK``, set by ``launch`` / torchrun)."""
    if not _is_dist():
        return 0
    return int(os.environ.get("LOCAL_RANK", 0))


def get_local_size() -> int:
    """Number of processes on this machine (``LOCAL_WORLD_SIZE``; the world size if unset)."""
    if not _is_dist():
        return 1
    return int(os.environ.get("LOCAL_WORLD_SIZE", get_world_size()))


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes (no-op for a single process)."""
    if not _is_dist() or dist.get_world_size() == 1:
        return
    if dist.get_backend() == dist.Backend.NCCL and torch.cuda.is_available():
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def _get_global_gloo_group():
    """A gloo group of all ranks for object collectives: None (the default group) when the
    default group already is gloo. No reference to the default group is cached: one kept past
    ``destroy_process_group`` is torn down at interpreter exit and can abort the process."""
    if dist.get_backend() == "nccl":
        return _gloo_group_beside_nccl()
    return None


def forget_process_groups() -> None:
    """Drop cached process groups (call before ``destroy_process_group``)."""
    _gloo_group_beside_nccl.cache_clear()


@functools.lru_cache()
def _gloo_group_beside_nccl():
    return dist.new_group(backend="gloo")


def all_gather(data: Any, group: Optional[Any] = None) -> List[Any]:
    """Gather a picklable object from every rank; returns the list ordered by rank."""
    if get_world_size() == 1:
        return [data]
    if group is None:
        group = _get_global_gloo_group()
    world_size = dist.get_world_size(group)
    if world_size == 1:
        return [data]
    output: List[Any] = [None for _ in range(world_size)]
    dist.all_gather_object(output, data, group=group)
    return output


def gather(data: Any, dst: int = 0, group: Optional[Any] = None) -> List[Any]:
    """Gather a picklable object on rank ``dst``: the list by rank there, ``[]`` elsewhere."""
    if get_world_size() == 1:
        return [data]
    if group is None:
        group = _get_global_gloo_group()
    world_size = dist.get_world_size(group)
    if world_size == 1:
        return [data]
    rank = dist.get_rank(group=group)
    if rank == dst:
        output: List[Any] = [None for _ in range(world_size)]
        dist.gather_object(data, output, dst=dst, group=group)
        return output
    dist.gather_object(data, None, dst=dst, group=group)
    return []


def shared_random_seed() -> int:
    """A random int drawn on every rank and replaced by rank 0's value (same on all ranks)."""
    ints = np.random.randint(2**31)
    return int(all_gather(ints)[0])


def reduce_dict(input_dict: Dict[str, torch.Tensor], average: bool = True) -> Dict[str, torch.Tensor]:
    """Sum (or average) scalar tensors over ranks; the result is only meaningful on rank 0."""
    world_size = get_world_size()
    if world_size < 2:
        return input_dict
    with torch.no_grad():
        names = sorted(input_dict.keys())
        values = torch.stack([input_dict[k] for k in names], dim=0)
        dist.reduce(values, dst=0)
        if dist.get_rank() == 0 and average:
            values /= world_size
        return dict(zip(names, values))
