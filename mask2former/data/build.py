"""Dataset-dict collection and the train / test data loaders.

The training loader is resumable exactly: sample ``p`` of this rank's stream is always the same
dataset index (the sampler is seeded) mapped with the same augmentation randomness (python,
numpy and torch RNGs are re-seeded from ``(seed, global position)`` before mapping it, where
the global position ``rank + world_size * p`` is the sample's place in the one-process stream),
whatever the number of workers -- and whatever the number of processes. ``TrainDataLoader.state_dict()`` records the next stream position and the
positions waiting in the aspect-ratio buckets; ``load_state_dict`` continues from there.
"""
from __future__ import annotations

import copy
import itertools
import logging
import random
from collections import Counter
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.utils.data as torchdata

from ..config import configurable
from ..utils import comm
from ..utils.env import seed_all_rng

from ..utils.catalog import DatasetCatalog, MetadataCatalog
from .samplers import InferenceSampler, RepeatFactorTrainingSampler, TrainingSampler

__all__ = [
    "MapDataset",
    "TrainDataLoader",
    "build_batch_data_loader",
    "build_detection_test_loader",
    "build_detection_train_loader",
    "filter_images_with_only_crowd_annotations",
    "get_detection_dataset_dicts",
    "trivial_batch_collator",
]

logger = logging.getLogger(__name__)


def trivial_batch_collator(batch: List[Any]) -> List[Any]:
    """Return the list of mapped dicts as is (models take a list of dicts)."""
    return batch


def filter_images_with_only_crowd_annotations(dataset_dicts: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Drop images whose annotations are all crowd (or that have none)."""
    num_before = len(dataset_dicts)
    kept = [
        d for d in dataset_dicts if any(ann.get("iscrowd", 0) == 0 for ann in d.get("annotations", []))
    ]
    logger.info("Removed %d images with no usable annotations. %d images left.", num_before - len(kept), len(kept))
    return kept


def _log_class_histogram(dataset_dicts: List[Dict[str, Any]], class_names: Sequence[str]) -> None:
    counts = Counter(
        ann["category_id"] for d in dataset_dicts for ann in d.get("annotations", []) if not ann.get("iscrowd", 0)
    )
    if counts:
        parts = [f"{class_names[c] if 0 <= c < len(class_names) else c}: {n}" for c, n in sorted(counts.items())]
        logger.info("Distribution of instances among %d categories: %s", len(class_names), ", ".join(parts))


def get_detection_dataset_dicts(
    names: Union[str, Sequence[str]], filter_empty: bool = True, check_consistency: bool = True
) -> List[Dict[str, Any]]:
    """Concatenate the dataset dicts of the registered datasets ``names``.

    ``filter_empty`` drops images without non-crowd annotations (instance datasets only).
    """
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise ValueError("get_detection_dataset_dicts: no dataset names given")
    dataset_dicts = [DatasetCatalog.get(name) for name in names]
    for name, dicts in zip(names, dataset_dicts):
        if len(dicts) == 0:
            raise ValueError(f"Dataset '{name}' is empty!")
    dataset_dicts = list(itertools.chain.from_iterable(dataset_dicts))

    has_instances = "annotations" in dataset_dicts[0]
    if filter_empty and has_instances:
        dataset_dicts = filter_images_with_only_crowd_annotations(dataset_dicts)
    if check_consistency and has_instances:
        classes = MetadataCatalog.get(names[0]).get("thing_classes")
        for name in names[1:]:
            other = MetadataCatalog.get(name).get("thing_classes")
            if classes is not None and other is not None and list(other) != list(classes):
                raise ValueError(f"Datasets {names[0]} and {name} have different thing_classes")
        if classes is not None:
            _log_class_histogram(dataset_dicts, classes)
    if len(dataset_dicts) == 0:
        raise ValueError(f"No valid data found in {','.join(names)}.")
    return dataset_dicts


class MapDataset(torchdata.Dataset):
    """``dataset[i]`` mapped by ``map_func``; if it returns None another index is tried."""

    def __init__(self, dataset: Sequence[Any], map_func: Callable[[Any], Any]):
        self._dataset = dataset
        self._map_func = map_func
        self._rng = random.Random(42)
        self._fallback_candidates = set(range(len(dataset)))

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, idx: int) -> Any:
        cur_idx = int(idx)
        for retry in itertools.count():
            data = self._map_func(self._dataset[cur_idx])
            if data is not None:
                self._fallback_candidates.add(cur_idx)
                return data
            self._fallback_candidates.discard(cur_idx)
            if not self._fallback_candidates:
                raise RuntimeError("The mapper returned None for every sample")
            cur_idx = self._rng.choice(sorted(self._fallback_candidates))
            if retry >= 3:
                logger.warning("Failed to apply `_map_func` for idx: %d, retry count: %d", idx, retry)


def _seed_for_sample(seed: int, rank: int, world_size: int, position: int) -> None:
    """Seed python / numpy / torch RNGs for the sample at ``position`` of ``rank``'s stream.

    Keyed by the global stream position, so a sample gets the same augmentation with any
    number of processes.
    """
    global_position = rank + world_size * position
    s = int(np.random.SeedSequence([seed & 0xFFFFFFFF, global_position]).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def _map_at(dataset, mapper, sampler, seed: int, position: int, index: int):
    """Map ``dataset[index]`` (a copy: mappers may modify it) as sample ``position``."""
    _seed_for_sample(seed, sampler.rank, sampler.world_size, position)
    return mapper(copy.deepcopy(dataset[index]))


class _MappedStream(torchdata.IterableDataset):
    """Yields ``(position, mapped dict or None)`` for this rank's sampler stream from ``start``;
    with workers, worker ``k`` maps positions ``start + k, start + k + num_workers, ...``."""

    def __init__(self, dataset, mapper, sampler, seed: int, start: int):
        self.dataset, self.mapper, self.sampler, self.seed, self.start = dataset, mapper, sampler, seed, start

    def __iter__(self) -> Iterator[Tuple[int, Any]]:
        info = torchdata.get_worker_info()
        wid, nworkers = (info.id, info.num_workers) if info is not None else (0, 1)
        sampler = copy.copy(self.sampler)
        sampler.set_start(self.start)
        for k, index in enumerate(sampler):
            if k % nworkers != wid:
                continue
            position = self.start + k
            yield position, _map_at(self.dataset, self.mapper, sampler, self.seed, position, index)


def _image_size(dataset_dict: Dict[str, Any]) -> Tuple[int, int]:
    """(height, width) of a dataset dict's image, from the dict or the file header."""
    if "height" in dataset_dict and "width" in dataset_dict:
        return int(dataset_dict["height"]), int(dataset_dict["width"])
    from PIL import Image

    from .detection_utils import _EXIF_ORIENT, _EXIF_TRANSPOSE

    with Image.open(dataset_dict["file_name"]) as img:
        w, h = img.size
        swaps = (Image.TRANSPOSE, Image.ROTATE_270, Image.TRANSVERSE, Image.ROTATE_90)
        if _EXIF_TRANSPOSE.get(img.getexif().get(_EXIF_ORIENT)) in swaps:
            w, h = h, w
    return h, w


def _worker_init(worker_id: int) -> None:
    seed_all_rng(int(torch.initial_seed() % 2**31) + worker_id)


class TrainDataLoader:
    """Infinite iterator of per-rank batches (lists of mapped dicts), optionally grouped by
    aspect ratio (w > h vs. w <= h), with exact ``state_dict`` / ``load_state_dict`` resume."""

    def __init__(
        self,
        dataset: Sequence[Dict[str, Any]],
        mapper: Callable[[Dict[str, Any]], Any],
        sampler: Union[TrainingSampler, RepeatFactorTrainingSampler],
        batch_size: int,
        *,
        aspect_ratio_grouping: bool = True,
        num_workers: int = 0,
        seed: Optional[int] = None,
        collate_fn: Optional[Callable[[List[Any]], Any]] = None,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset = dataset
        self.mapper = mapper
        self.sampler = sampler
        self.batch_size = batch_size
        self.aspect_ratio_grouping = aspect_ratio_grouping
        self.num_workers = num_workers
        self.seed = int(sampler.seed if seed is None else seed)
        self.collate_fn = collate_fn or trivial_batch_collator
        self._next_position = sampler.start
        self._buckets: List[List[Tuple[int, Any]]] = [[], []]
        self._pending_bucket_positions: Optional[List[List[int]]] = None

    def state_dict(self) -> Dict[str, Any]:
        """Where the stream stands after the last batch handed out."""
        return {
            "seed": self.seed,
            "sampler_seed": self.sampler.seed,
            "next_position": self._next_position,
            "buckets": [[p for p, _ in b] for b in self._buckets],
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue exactly where ``state`` was taken (takes effect at the next ``iter``)."""
        if int(state["sampler_seed"]) != self.sampler.seed:
            raise ValueError(
                f"Loader state was saved with sampler seed {state['sampler_seed']}, this sampler has "
                f"seed {self.sampler.seed}: the streams differ"
            )
        self.seed = int(state["seed"])
        self._next_position = int(state["next_position"])
        self._buckets = [[], []]
        self._pending_bucket_positions = [list(b) for b in state["buckets"]]

    def skip_batches(self, num_batches: int) -> None:
        """Set the state to "``num_batches`` batches already handed out" from a fresh start,
        without mapping anything: the aspect-ratio grouping is replayed from the dataset dicts'
        ``width`` / ``height`` (or the image file headers). Assumes the mapper never drops a
        sample (returns None)."""
        if num_batches < 0:
            raise ValueError(f"num_batches must be >= 0, got {num_batches}")
        position = self.sampler.start
        buckets: List[List[int]] = [[], []]
        if num_batches > 0:
            sampler = copy.copy(self.sampler)
            sampler.set_start(position)
            sizes: Dict[int, Tuple[int, int]] = {}
            done = 0
            for index in sampler:
                bucket_id = 0
                if self.aspect_ratio_grouping:
                    if index not in sizes:
                        sizes[index] = _image_size(self.dataset[index])
                    h, w = sizes[index]
                    bucket_id = 0 if w > h else 1
                buckets[bucket_id].append(position)
                position += 1
                if len(buckets[bucket_id]) == self.batch_size:
                    buckets[bucket_id] = []
                    done += 1
                    if done == num_batches:
                        break
        self.load_state_dict(
            {"seed": self.seed, "sampler_seed": self.sampler.seed, "next_position": position, "buckets": buckets}
        )

    def _index_at(self, position: int) -> int:
        sampler = copy.copy(self.sampler)
        sampler.set_start(position)
        return next(iter(sampler))

    def _restore_buckets(self) -> None:
        if self._pending_bucket_positions is None:
            return
        for bucket, positions in zip(self._buckets, self._pending_bucket_positions):
            for p in positions:
                bucket.append(
                    (p, _map_at(self.dataset, self.mapper, self.sampler, self.seed, p, self._index_at(p)))
                )
        self._pending_bucket_positions = None

    def _stream(self) -> Iterator[Tuple[int, Any]]:
        stream = _MappedStream(self.dataset, self.mapper, self.sampler, self.seed, self._next_position)
        if self.num_workers == 0:
            yield from stream
            return
        loader = torchdata.DataLoader(
            stream,
            batch_size=None,
            num_workers=self.num_workers,
            worker_init_fn=_worker_init,
            persistent_workers=False,
        )
        yield from loader

    def __iter__(self) -> Iterator[Any]:
        self._restore_buckets()
        for position, data in self._stream():
            self._next_position = position + 1
            if data is None:
                continue
            bucket_id = 0
            if self.aspect_ratio_grouping:
                bucket_id = 0 if data["width"] > data["height"] else 1
            bucket = self._buckets[bucket_id]
            bucket.append((position, data))
            if len(bucket) == self.batch_size:
                batch = [d for _, d in bucket]
                del bucket[:]
                yield self.collate_fn(batch)


def build_batch_data_loader(
    dataset: Sequence[Dict[str, Any]],
    sampler,
    total_batch_size: int,
    *,
    mapper: Callable,
    aspect_ratio_grouping: bool = False,
    num_workers: int = 0,
    collate_fn: Optional[Callable] = None,
    seed: Optional[int] = None,
    start_iter: int = 0,
) -> TrainDataLoader:
    """A ``TrainDataLoader`` whose per-rank batch is ``total_batch_size // world_size``,
    positioned after ``start_iter`` batches (exact resume)."""
    world_size = comm.get_world_size()
    if total_batch_size <= 0 or total_batch_size % world_size != 0:
        raise ValueError(
            f"Total batch size ({total_batch_size}) must be divisible by the number of processes ({world_size})."
        )
    loader = TrainDataLoader(
        dataset,
        mapper,
        sampler,
        total_batch_size // world_size,
        aspect_ratio_grouping=aspect_ratio_grouping,
        num_workers=num_workers,
        seed=seed,
        collate_fn=collate_fn,
    )
    if start_iter:
        loader.skip_batches(start_iter)
    return loader


def _train_loader_from_config(cfg, mapper=None, *, dataset=None, sampler=None, start_iter: int = 0) -> Dict[str, Any]:
    if dataset is None:
        dataset = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
        )
    if mapper is None:
        from .dataset_mappers import DatasetMapper

        mapper = DatasetMapper(cfg, True)
    seed = cfg.SEED if cfg.SEED >= 0 else None
    if sampler is None:
        name = cfg.DATALOADER.SAMPLER_TRAIN
        logger.info("Using training sampler %s", name)
        if name == "TrainingSampler":
            sampler = TrainingSampler(len(dataset), seed=seed)
        elif name == "RepeatFactorTrainingSampler":
            factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
                dataset, cfg.DATALOADER.REPEAT_THRESHOLD, sqrt=cfg.DATALOADER.get("REPEAT_SQRT", True)
            )
            sampler = RepeatFactorTrainingSampler(factors, seed=seed)
        else:
            raise ValueError(f"Unknown training sampler: {name}")
    return {
        "dataset": dataset,
        "sampler": sampler,
        "mapper": mapper,
        "total_batch_size": cfg.SOLVER.IMS_PER_BATCH,
        "aspect_ratio_grouping": cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
        "seed": seed,
        "start_iter": start_iter,
    }


@configurable(from_config=_train_loader_from_config)
def build_detection_train_loader(
    dataset: Sequence[Dict[str, Any]],
    *,
    mapper: Callable,
    sampler=None,
    total_batch_size: int,
    aspect_ratio_grouping: bool = True,
    num_workers: int = 0,
    collate_fn: Optional[Callable] = None,
    seed: Optional[int] = None,
    start_iter: int = 0,
) -> TrainDataLoader:
    """Infinite training loader: ``build_detection_train_loader(cfg, mapper=..., start_iter=k)``
    or with explicit arguments. Yields lists of ``total_batch_size // world_size`` mapped dicts;
    ``start_iter`` resumes exactly after that many batches."""
    if sampler is None:
        sampler = TrainingSampler(len(dataset), seed=seed)
    return build_batch_data_loader(
        dataset,
        sampler,
        total_batch_size,
        mapper=mapper,
        aspect_ratio_grouping=aspect_ratio_grouping,
        num_workers=num_workers,
        collate_fn=collate_fn,
        seed=seed,
        start_iter=start_iter,
    )


def _test_loader_from_config(cfg, dataset_name: Union[str, Sequence[str]], mapper=None) -> Dict[str, Any]:
    if isinstance(dataset_name, str):
        dataset_name = [dataset_name]
    dataset = get_detection_dataset_dicts(dataset_name, filter_empty=False)
    if mapper is None:
        from .dataset_mappers import DatasetMapper

        mapper = DatasetMapper(cfg, False)
    return {"dataset": dataset, "mapper": mapper, "num_workers": cfg.DATALOADER.NUM_WORKERS}


@configurable(from_config=_test_loader_from_config)
def build_detection_test_loader(
    dataset: Sequence[Dict[str, Any]],
    *,
    mapper: Callable,
    sampler: Optional[torchdata.Sampler] = None,
    batch_size: int = 1,
    num_workers: int = 0,
    collate_fn: Optional[Callable] = None,
) -> torchdata.DataLoader:
    """Inference loader over this rank's shard, in dataset order, batches of lists of dicts:
    ``build_detection_test_loader(cfg, "coco_2017_val")`` or with explicit arguments."""
    if sampler is None:
        sampler = InferenceSampler(len(dataset))
    return torchdata.DataLoader(
        MapDataset(dataset, mapper),
        batch_size=batch_size,
        sampler=sampler,
        drop_last=False,
        num_workers=num_workers,
        collate_fn=trivial_batch_collator if collate_fn is None else collate_fn,
    )
