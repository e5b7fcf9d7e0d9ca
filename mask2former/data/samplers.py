"""Samplers: infinite, seeded, rank-sharded training streams (resumable) and the inference split.

A training sampler yields this rank's share of one global index stream: global positions
``rank, rank + world_size, ...``. ``start`` skips the first ``start`` indices of this rank's
share, so a resumed run continues the exact same stream.
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch
from torch.utils.data.sampler import Sampler

from ..utils import comm

__all__ = ["InferenceSampler", "RepeatFactorTrainingSampler", "TrainingSampler"]


def _rank_and_world(rank: Optional[int], world_size: Optional[int]):
    rank = comm.get_rank() if rank is None else int(rank)
    world_size = comm.get_world_size() if world_size is None else int(world_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    return rank, world_size


class _InfiniteShardedSampler(Sampler):
    """Common part: seed, rank sharding and the resumable start offset."""

    def __init__(
        self, shuffle: bool, seed: Optional[int], start: int, rank: Optional[int], world_size: Optional[int]
    ):
        self._shuffle = shuffle
        if seed is None:
            seed = comm.shared_random_seed()
        self._seed = int(seed)
        self._rank, self._world_size = _rank_and_world(rank, world_size)
        self.set_start(start)

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    @property
    def start(self) -> int:
        return self._start

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's share of the stream."""
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self._start = int(start)

    def _infinite_indices(self) -> Iterator[int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        first = self._rank + self._start * self._world_size
        yield from itertools.islice(self._infinite_indices(), first, None, self._world_size)

    def state_dict(self) -> Dict[str, Any]:
        return {"seed": self._seed, "start": self._start, "shuffle": self._shuffle}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self._seed = int(state["seed"])
        self._shuffle = bool(state.get("shuffle", self._shuffle))
        self.set_start(int(state.get("start", 0)))


class TrainingSampler(_InfiniteShardedSampler):
    """Endless stream of dataset indices: a new ``torch.randperm`` every epoch (``shuffle``) or
    ``0..size-1`` repeated, from a generator seeded with ``seed`` (shared by all ranks; drawn with
    ``comm.shared_random_seed()`` when None)."""

    def __init__(
        self,
        size: int,
        shuffle: bool = True,
        seed: Optional[int] = None,
        start: int = 0,
        *,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ):
        if not isinstance(size, int):
            raise TypeError(f"TrainingSampler(size=) expects an int. Got type {type(size)}.")
        if size <= 0:
            raise ValueError(f"TrainingSampler(size=) expects a positive int. Got {size}.")
        self._size = size
        super().__init__(shuffle, seed, start, rank, world_size)

    def _infinite_indices(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self._seed)
        while True:
            if self._shuffle:
                yield from torch.randperm(self._size, generator=g).tolist()
            else:
                yield from range(self._size)


class RepeatFactorTrainingSampler(_InfiniteShardedSampler):
    """Like ``TrainingSampler`` but each image appears ``repeat_factor`` times per epoch on
    average (stochastic rounding of the fractional part, LVIS-style)."""

    def __init__(
        self,
        repeat_factors: torch.Tensor,
        *,
        shuffle: bool = True,
        seed: Optional[int] = None,
        start: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ):
        repeat_factors = torch.as_tensor(repeat_factors, dtype=torch.float32)
        self._int_part = torch.trunc(repeat_factors)
        self._frac_part = repeat_factors - self._int_part
        super().__init__(shuffle, seed, start, rank, world_size)

    @staticmethod
    def repeat_factors_from_category_frequency(
        dataset_dicts: Sequence[Dict[str, Any]], repeat_thresh: float, sqrt: bool = True
    ) -> torch.Tensor:
        """Per-image factor ``max(1, sqrt(t / f(c)))`` over the image's categories, where
        ``f(c)`` is the fraction of images containing category ``c``."""
        category_freq: Dict[int, float] = defaultdict(int)
        for d in dataset_dicts:
            for cat_id in {ann["category_id"] for ann in d["annotations"]}:
                category_freq[cat_id] += 1
        num_images = len(dataset_dicts)
        category_rep = {}
        for cat_id, count in category_freq.items():
            ratio = repeat_thresh / (count / num_images)
            category_rep[cat_id] = max(1.0, math.sqrt(ratio) if sqrt else ratio)
        factors = [
            max({category_rep[c] for c in {ann["category_id"] for ann in d["annotations"]}}, default=1.0)
            for d in dataset_dicts
        ]
        return torch.tensor(factors, dtype=torch.float32)

    def _get_epoch_indices(self, generator: torch.Generator) -> torch.Tensor:
        rands = torch.rand(len(self._frac_part), generator=generator)
        rep_factors = self._int_part + (rands < self._frac_part).float()
        indices: List[int] = []
        for dataset_index, rep_factor in enumerate(rep_factors):
            indices.extend([dataset_index] * int(rep_factor.item()))
        return torch.tensor(indices, dtype=torch.int64)

    def _infinite_indices(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self._seed)
        while True:
            indices = self._get_epoch_indices(g)
            if self._shuffle:
                yield from indices[torch.randperm(len(indices), generator=g)].tolist()
            else:
                yield from indices.tolist()


class InferenceSampler(Sampler):
    """Each rank gets one contiguous shard of ``range(size)`` (sizes differ by at most one)."""

    def __init__(self, size: int, *, rank: Optional[int] = None, world_size: Optional[int] = None):
        if size <= 0:
            raise ValueError(f"InferenceSampler(size=) expects a positive int. Got {size}.")
        self._size = size
        self._rank, self._world_size = _rank_and_world(rank, world_size)
        self._local_indices = self._get_local_indices(size, self._world_size, self._rank)

    @staticmethod
    def _get_local_indices(total_size: int, world_size: int, rank: int) -> range:
        shard_size = total_size // world_size
        left = total_size % world_size
        shard_sizes = [shard_size + int(r < left) for r in range(world_size)]
        begin = sum(shard_sizes[:rank])
        end = min(sum(shard_sizes[: rank + 1]), total_size)
        return range(begin, end)

    def __iter__(self) -> Iterator[int]:
        yield from self._local_indices

    def __len__(self) -> int:
        return len(self._local_indices)
