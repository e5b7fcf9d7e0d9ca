"""Turn what the visualizers are given into plain numpy arrays, names and colours.

Predictions (``Instances``, tensors), dataset annotations (polygons, RLE, boxes), panoptic
``segments_info`` and dataset metadata (class names / colours, possibly missing) are read here,
so that :mod:`.visualizer` only draws.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util

from .colormap import colormap

__all__ = [
    "annotation_box", "annotation_mask", "as_bool_masks", "class_color", "class_name",
    "instance_fields", "meta_value", "panoptic_segments", "read_label_image", "text_labels",
    "to_numpy",
]

Color = Tuple[float, float, float]
_PALETTE = colormap(rgb=True, maximum=1)


def to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "tensor") and not isinstance(x, np.ndarray):  # Boxes, BitMasks
        x = x.tensor
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _field(instances: Any, name: str) -> Any:
    return instances.get(name) if instances.has(name) else None


def instance_fields(predictions: Any) -> Tuple[Optional[List[int]], Optional[List[float]],
                                               Optional[np.ndarray], Optional[np.ndarray]]:
    """(classes, scores, masks (N, H, W) bool, boxes (N, 4) XYXY) of an ``Instances``, each
    None when absent; boxes are None too when all are empty (Mask2Former's zero boxes)."""
    classes = _field(predictions, "pred_classes")
    classes = None if classes is None else [int(c) for c in to_numpy(classes).reshape(-1)]
    scores = _field(predictions, "scores")
    scores = None if scores is None else to_numpy(scores).reshape(-1).tolist()
    masks = _field(predictions, "pred_masks")
    masks = None if masks is None else as_bool_masks(masks)
    boxes = _field(predictions, "pred_boxes")
    boxes = None if boxes is None else to_numpy(boxes).reshape(-1, 4).astype(np.float64)
    if boxes is not None and not np.any(boxes[:, 2:] > boxes[:, :2]):
        boxes = None
    return classes, scores, masks, boxes


def as_bool_masks(masks: Any) -> np.ndarray:
    masks = to_numpy(masks)
    if masks.dtype == bool:
        return masks
    if np.issubdtype(masks.dtype, np.floating):
        return masks > 0.5
    return masks != 0


def meta_value(metadata: Any, key: str, default: Any = None) -> Any:
    try:
        value = getattr(metadata, key)
    except AttributeError:
        return default
    return default if value is None else value


def class_name(metadata: Any, keys: Iterable[str], index: int) -> str:
    for key in keys:
        names = meta_value(metadata, key)
        if names is not None and 0 <= index < len(names):
            return str(names[index])
    return f"class {index}"


def class_color(metadata: Any, keys: Iterable[str], index: int) -> Color:
    for key in keys:
        colors = meta_value(metadata, key)
        if colors is not None and 0 <= index < len(colors):
            return tuple(float(v) / 255.0 for v in colors[index])
    return tuple(float(v) for v in _PALETTE[index % len(_PALETTE)])


def text_labels(classes: Optional[Sequence[int]], scores: Optional[Sequence[float]],
                 names: Optional[Sequence[str]], is_crowd: Optional[Sequence[Any]] = None
                 ) -> Optional[List[str]]:
    labels = None
    if classes is not None:
        labels = list(names) if names is not None else [str(c) for c in classes]
    if scores is not None:
        labels = [f"{s * 100:.0f}%" for s in scores] if labels is None else \
            [f"{name} {s * 100:.0f}%" for name, s in zip(labels, scores)]
    if labels is not None and is_crowd is not None:
        labels = [name + ("|crowd" if crowd else "") for name, crowd in zip(labels, is_crowd)]
    return labels


def panoptic_segments(panoptic_seg: np.ndarray, segments_info: Optional[List[dict]],
                       metadata: Any) -> List[dict]:
    """Segments present in the map, largest first, each a copy of its info plus ``area``."""
    ids, areas = np.unique(panoptic_seg, return_counts=True)
    if segments_info is None:
        divisor = meta_value(metadata, "label_divisor")
        if divisor is None:
            raise ValueError("draw_panoptic_seg: segments_info is None, so metadata.label_divisor "
                             "is needed to split ids into category and instance")
        thing_ids = set(meta_value(metadata, "thing_dataset_id_to_contiguous_id", {}).values())
        segments_info = [{"id": int(i), "category_id": int(i) // divisor,
                          "isthing": int(i) // divisor in thing_ids} for i in ids if i != -1]
    by_id = {}
    for info in segments_info:
        for key in ("id", "category_id"):
            if key not in info:
                raise ValueError(f"draw_panoptic_seg: a segments_info entry lacks '{key}': {info}")
        by_id[int(info["id"])] = info
    segments = []
    for i in np.argsort(-areas, kind="stable"):
        info = by_id.get(int(ids[i]))
        if info is not None:
            segments.append({**info, "id": int(ids[i]), "category_id": int(info["category_id"]),
                             "isthing": bool(info.get("isthing", False)), "area": int(areas[i])})
    return segments


def annotation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    if isinstance(segmentation, dict):  # RLE
        if isinstance(segmentation["counts"], list):
            segmentation = mask_util.frPyObjects(segmentation, *segmentation["size"])
        return mask_util.decode(segmentation).astype(bool)
    if isinstance(segmentation, list):  # polygons
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        rles = mask_util.frPyObjects([np.asarray(p, np.float64).reshape(-1) for p in segmentation],
                                     height, width)
        return mask_util.decode(mask_util.merge(rles)).astype(bool)
    mask = to_numpy(segmentation)
    if mask.ndim != 2:
        raise ValueError(f"Annotation 'segmentation' of unsupported type/shape: {type(segmentation)}")
    return mask != 0


def annotation_box(anno: Dict[str, Any]) -> List[float]:
    x0, y0, a, b = [float(v) for v in anno["bbox"]]
    mode = int(anno.get("bbox_mode", 0))  # BoxMode.XYXY_ABS = 0, XYWH_ABS = 1
    if mode == 1:
        return [x0, y0, x0 + a, y0 + b]
    if mode != 0:
        raise ValueError(f"Annotation bbox_mode {mode} is not supported (only XYXY_ABS / XYWH_ABS)")
    return [x0, y0, a, b]


def read_label_image(path: str, key: str, color: bool = False) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR if color else cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f"Cannot read {key} {path!r}")
    return img[:, :, ::-1] if color else img
