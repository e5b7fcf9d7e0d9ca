"""``VideoTrainer``: ``DefaultTrainer`` for video instance segmentation (the official
``train_net_video.py``): clip loaders over YouTube-VIS-format datasets and ``YTVISEvaluator``.
Everything else (model, optimizer, schedule, AMP, checkpoints, exact resume, hooks, writers,
multi-process) is ``DefaultTrainer``'s."""
from __future__ import annotations

import os
from typing import Optional

from ..config import CfgNode
from ..data.dataset_mappers.ytvis_dataset_mapper import YTVISDatasetMapper
from ..data.video_build import build_video_test_loader, build_video_train_loader
from ..evaluation import YTVISEvaluator
from ..utils.catalog import MetadataCatalog
from .default_trainer import DefaultTrainer

__all__ = ["VideoTrainer", "is_video_config"]


def is_video_config(cfg: CfgNode) -> bool:
    """Whether ``cfg`` builds a video model (``MODEL.META_ARCHITECTURE`` VideoMaskFormer)."""
    return cfg.MODEL.META_ARCHITECTURE == "VideoMaskFormer"


class VideoTrainer(DefaultTrainer):
    """Trains on clips of ``INPUT.SAMPLING_FRAME_NUM`` frames (``SOLVER.IMS_PER_BATCH`` clips per
    batch) and evaluates whole videos with the YouTube-VIS protocol."""

    @classmethod
    def build_train_loader(cls, cfg: CfgNode, start_iter: int = 0):
        return build_video_train_loader(cfg, mapper=YTVISDatasetMapper(cfg, True), start_iter=start_iter)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        return build_video_test_loader(cfg, dataset_name, mapper=YTVISDatasetMapper(cfg, False))

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None):
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
        if evaluator_type != "ytvis":
            raise NotImplementedError(f"No video evaluator for dataset {dataset_name!r} with "
                                      f"evaluator_type={evaluator_type!r} (expected 'ytvis')")
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return YTVISEvaluator(dataset_name, output_dir=output_folder)
