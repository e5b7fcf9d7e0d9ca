"""Video dataset dicts and the clip train / test loaders.

The loaders are ``data/build.py``'s (same samplers, exact resume, per-sample seeding, workers);
only the dataset-dict collection and the default mapper differ: one dict per video, mapped by
``YTVISDatasetMapper`` into a clip. ``SOLVER.IMS_PER_BATCH`` counts videos (clips) per batch.
"""
from __future__ import annotations

import itertools
import logging
from collections import Counter
from typing import Any, Dict, List, Sequence, Union

from ..config import configurable

from ..utils.catalog import DatasetCatalog, MetadataCatalog
from .build import _train_loader_from_config, build_detection_test_loader, build_detection_train_loader
from .dataset_mappers.ytvis_dataset_mapper import YTVISDatasetMapper

__all__ = ["build_video_test_loader", "build_video_train_loader", "get_video_dataset_dicts"]

logger = logging.getLogger(__name__)


def _has_objects(video: Dict[str, Any]) -> bool:
    return any(obj.get("iscrowd", 0) == 0 for frame in video.get("annotations", []) for obj in frame)


def get_video_dataset_dicts(names: Union[str, Sequence[str]], filter_empty: bool = True) -> List[Dict[str, Any]]:
    """Concatenate the video dicts of the registered datasets ``names``; ``filter_empty`` drops
    videos without any non-crowd object. All datasets must share ``thing_classes``."""
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError("get_video_dataset_dicts: no dataset names given")
    per_dataset = [DatasetCatalog.get(name) for name in names]
    for name, dicts in zip(names, per_dataset):
        if len(dicts) == 0:
            raise ValueError(f"Dataset '{name}' is empty!")
        if "file_names" not in dicts[0]:
            raise ValueError(f"Dataset '{name}' is not a video dataset (its dicts have no 'file_names')")
    videos = list(itertools.chain.from_iterable(per_dataset))
    classes = MetadataCatalog.get(names[0]).get("thing_classes")
    for name in names[1:]:
        other = MetadataCatalog.get(name).get("thing_classes")
        if classes is not None and other is not None and list(other) != list(classes):
            raise ValueError(f"Datasets {names[0]} and {name} have different thing_classes")
    if filter_empty:
        before = len(videos)
        videos = [v for v in videos if _has_objects(v)]
        logger.info("Removed %d videos with no usable annotations. %d videos left.", before - len(videos), len(videos))
        if not videos:
            raise ValueError(f"No video with annotations in {','.join(names)}.")
    if classes is not None:
        tracks = {(v["video_id"], obj["id"]): obj["category_id"] for v in videos
                  for frame in v.get("annotations", []) for obj in frame}
        counts = Counter(tracks.values())
        if counts:
            logger.info("Distribution of object tracks among %d categories: %s", len(classes),
                        ", ".join(f"{classes[c] if 0 <= c < len(classes) else c}: {n}" for c, n in sorted(counts.items())))
    return videos


def _video_train_loader_from_config(cfg, mapper=None, *, dataset=None, sampler=None, start_iter: int = 0):
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler" and sampler is None:
        raise ValueError(f"DATALOADER.SAMPLER_TRAIN={cfg.DATALOADER.SAMPLER_TRAIN!r} is not supported for videos; "
                         "use TrainingSampler")
    if dataset is None:
        dataset = get_video_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    if mapper is None:
        mapper = YTVISDatasetMapper(cfg, True)
    return _train_loader_from_config(cfg, mapper, dataset=dataset, sampler=sampler, start_iter=start_iter)


@configurable(from_config=_video_train_loader_from_config)
def build_video_train_loader(dataset, **kwargs):
    """``build_video_train_loader(cfg, mapper=None, start_iter=k)``: the infinite, exactly
    resumable training loader of ``build_detection_train_loader`` over video dicts (default
    mapper: ``YTVISDatasetMapper(cfg, True)``); explicit arguments as that function's."""
    return build_detection_train_loader(dataset, **kwargs)


def _video_test_loader_from_config(cfg, dataset_name: Union[str, Sequence[str]], mapper=None):
    names = [dataset_name] if isinstance(dataset_name, str) else list(dataset_name)
    if mapper is None:
        mapper = YTVISDatasetMapper(cfg, False)
    return {"dataset": get_video_dataset_dicts(names, filter_empty=False), "mapper": mapper,
            "num_workers": cfg.DATALOADER.NUM_WORKERS}


@configurable(from_config=_video_test_loader_from_config)
def build_video_test_loader(dataset, **kwargs):
    """``build_video_test_loader(cfg, "ytvis_2019_val")``: one full video per batch, this
    rank's shard in dataset order (default mapper: ``YTVISDatasetMapper(cfg, False)``)."""
    return build_detection_test_loader(dataset, **kwargs)
