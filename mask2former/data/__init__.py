"""Data layer: catalogs, dataset registration, augmentations, mappers, samplers and loaders.

Importing it registers the built-in datasets (lazily: nothing is read until requested).
"""
from . import datasets, transforms  # noqa: F401  (datasets: registers the built-in datasets)
from .build import (
    MapDataset,
    TrainDataLoader,
    build_batch_data_loader,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
    trivial_batch_collator,
)
from ..utils.catalog import DatasetCatalog, Metadata, MetadataCatalog
from .dataset_mappers import (
    MAPPER_BY_NAME,
    COCOInstanceNewBaselineDatasetMapper,
    COCOPanopticNewBaselineDatasetMapper,
    DatasetMapper,
    MaskFormerInstanceDatasetMapper,
    MaskFormerPanopticDatasetMapper,
    MaskFormerSemanticDatasetMapper,
    YTVISDatasetMapper,
)
from .datasets import (
    load_coco_json,
    load_coco_panoptic_json,
    load_sem_seg,
    load_ytvis_json,
    register_coco_instances,
    register_coco_panoptic,
    register_coco_panoptic_annos_sem_seg,
    register_sem_seg,
    register_ytvis_instances,
)
from .samplers import InferenceSampler, RepeatFactorTrainingSampler, TrainingSampler
from .video_build import build_video_test_loader, build_video_train_loader, get_video_dataset_dicts

__all__ = [
    "COCOInstanceNewBaselineDatasetMapper",
    "COCOPanopticNewBaselineDatasetMapper",
    "DatasetCatalog",
    "DatasetMapper",
    "InferenceSampler",
    "MAPPER_BY_NAME",
    "MapDataset",
    "MaskFormerInstanceDatasetMapper",
    "MaskFormerPanopticDatasetMapper",
    "MaskFormerSemanticDatasetMapper",
    "Metadata",
    "MetadataCatalog",
    "RepeatFactorTrainingSampler",
    "TrainDataLoader",
    "TrainingSampler",
    "YTVISDatasetMapper",
    "build_batch_data_loader",
    "build_detection_test_loader",
    "build_detection_train_loader",
    "build_video_test_loader",
    "build_video_train_loader",
    "get_detection_dataset_dicts",
    "get_video_dataset_dicts",
    "load_coco_json",
    "load_coco_panoptic_json",
    "load_sem_seg",
    "load_ytvis_json",
    "register_coco_instances",
    "register_coco_panoptic",
    "register_coco_panoptic_annos_sem_seg",
    "register_sem_seg",
    "register_ytvis_instances",
    "transforms",
    "trivial_batch_collator",
]
