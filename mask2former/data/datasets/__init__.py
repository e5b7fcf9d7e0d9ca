"""Dataset loaders and registration helpers; importing this package registers the built-in
datasets (COCO, ADE20K, Cityscapes, Mapillary Vistas, COCO-Stuff, shapes) lazily under
``$DETECTRON2_DATASETS`` (default ``datasets``)."""
import os

from .builtin import (
    register_all_ade20k,
    register_all_ade20k_full,
    register_all_ade20k_instance,
    register_all_ade20k_panoptic,
    register_all_builtin,
    register_all_cityscapes,
    register_all_cityscapes_panoptic,
    register_all_coco,
    register_all_coco_panoptic_annos_sem_seg,
    register_all_coco_stuff_10k,
    register_all_mapillary_vistas,
    register_all_mapillary_vistas_panoptic,
    register_all_shapes,
)
from .cityscapes import load_cityscapes_instances, load_cityscapes_panoptic, load_cityscapes_semantic
from .coco import load_coco_json, load_sem_seg, register_coco_instances, register_sem_seg
from .coco_panoptic import (
    load_coco_panoptic_json,
    register_coco_panoptic,
    register_coco_panoptic_annos_sem_seg,
    register_panoptic_with_sem_seg,
)
from .shapes import ensure_shapes_dataset, generate_shapes_dataset, get_shapes_metadata
from .shapes_video import ensure_shapes_video_dataset, generate_shapes_video_dataset, get_shapes_video_metadata
from .ytvis import load_ytvis_json, register_ytvis_instances

__all__ = [k for k in globals() if not k.startswith("_") and k != "os"]

_root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
register_all_builtin(_root)
