"""Built-in synthetic "shapes_video" dataset: coloured circles, squares, triangles and stars that
move over a textured background (sky, grass or water), enter late, leave early and occlude each
other, annotated in YouTube-VIS json format. Small enough to train a tiny video Mask2Former on
a CPU; it goes through the real YouTube-VIS loader and evaluator.

The data is written deterministically on first request into ``<root>/shapes_video`` (root
defaults to ``$DETECTRON2_DATASETS`` or ``datasets``), race-safe as ``shapes``. Layout::

    shapes_video/{train,val}/JPEGImages/<video>/<frame>.jpg
    shapes_video/annotations/{train,val}.json      YouTube-VIS json (RLE masks, null when absent)
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import cv2
import numpy as np
from PIL import Image

from ...utils.catalog import DatasetCatalog, MetadataCatalog
from .shapes import SHAPES_CATEGORIES, _bbox_xywh, _mask_rle, _shape_polygon, _texture, ensure_generated
from .ytvis import load_ytvis_json

__all__ = ["ensure_shapes_video_dataset", "generate_shapes_video_dataset", "get_shapes_video_metadata",
           "register_all_shapes_video"]

THING_CATEGORIES = [c for c in SHAPES_CATEGORIES if c["isthing"]]
_SPLITS = {"train": 160, "val": 40}
_IMAGE_SIZE = 96
_NUM_FRAMES = 6
_MIN_VISIBLE_AREA = 12  # an object frame with less visible area is absent (null)
_VERSION = "shapes-video-v1"
_SEED = 20261202


def get_shapes_video_metadata() -> Dict[str, Any]:
    """The 4 thing classes (circle, square, triangle, star), their colours and ids 1..4 -> 0..3."""
    return {
        "thing_classes": [c["name"] for c in THING_CATEGORIES],
        "thing_colors": [list(c["color"]) for c in THING_CATEGORIES],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(THING_CATEGORIES)},
    }


def _make_video(rng: np.random.Generator, size: int, num_frames: int):
    """Returns T RGB frames and the objects, each ``{"category_id", "masks": [T visible (H, W)
    bool masks]}``, in painting order (later ones occlude earlier ones)."""
    background = _texture(rng, ["sky", "grass", "water"][int(rng.integers(3))], size, size)
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        category = THING_CATEGORIES[int(rng.integers(len(THING_CATEGORIES)))]
        r = float(rng.uniform(0.12, 0.25) * size)
        start = rng.uniform(r * 0.5, size - r * 0.5, size=2)
        velocity = rng.uniform(-0.06, 0.06, size=2) * size  # pixels per frame
        first = int(rng.integers(1, num_frames - 1)) if rng.random() < 0.25 else 0  # enters late
        last = int(rng.integers(first + 1, num_frames)) if rng.random() < 0.25 else num_frames - 1  # leaves early
        objects.append({
            "category": category, "radius": r, "start": start, "velocity": velocity, "span": (first, last),
            "color": rng.integers(0, 256, size=3), "shape_seed": int(rng.integers(2**31)),
        })
    frames, owner_maps = [], []
    for t in range(num_frames):
        image = background.copy()
        owner = np.full((size, size), -1, np.int32)  # index of the object seen at each pixel
        for k, obj in enumerate(objects):
            if not obj["span"][0] <= t <= obj["span"][1]:
                continue
            cx, cy = obj["start"] + t * obj["velocity"]
            mask = np.zeros((size, size), np.uint8)
            # the same generator seed each frame: the shape keeps its rotation while it moves
            polygon = _shape_polygon(np.random.default_rng(obj["shape_seed"]), obj["category"]["name"], cx, cy,
                                     obj["radius"])
            cv2.fillPoly(mask, [polygon], 1)
            m = mask.astype(bool)
            shade = rng.normal(0, 5, size=(size, size, 1))
            image[m] = np.clip(obj["color"][None, None, :] + shade, 0, 255).astype(np.uint8)[m]
            owner[m] = k
        frames.append(image)
        owner_maps.append(owner)
    result = []
    for k, obj in enumerate(objects):
        masks = [owner == k for owner in owner_maps]
        masks = [m if m.sum() >= _MIN_VISIBLE_AREA else None for m in masks]
        if any(m is not None for m in masks):
            result.append({"category_id": obj["category"]["id"], "masks": masks})
    return frames, result


def generate_shapes_video_dataset(
    out_dir: str,
    splits: Optional[Dict[str, int]] = None,
    image_size: int = _IMAGE_SIZE,
    num_frames: int = _NUM_FRAMES,
    seed: int = _SEED,
) -> None:
    """Write the dataset into ``out_dir`` (created; must not exist). Deterministic."""
    if num_frames < 3:
        raise ValueError(f"shapes_video needs at least 3 frames per video, got num_frames={num_frames}")
    splits = dict(_SPLITS if splits is None else splits)
    os.makedirs(os.path.join(out_dir, "annotations"))
    categories = [{"id": c["id"], "name": c["name"], "supercategory": "shape"} for c in THING_CATEGORIES]
    for split_index, (split, count) in enumerate(sorted(splits.items())):
        videos, annotations = [], []
        for i in range(count):
            frames, objects = _make_video(np.random.default_rng([seed, split_index, i]), image_size, num_frames)
            name = f"{i:06d}"
            os.makedirs(os.path.join(out_dir, split, "JPEGImages", name))
            file_names = [f"{name}/{t:05d}.jpg" for t in range(num_frames)]
            for frame, file_name in zip(frames, file_names):
                Image.fromarray(frame).save(os.path.join(out_dir, split, "JPEGImages", file_name), quality=95)
            video_id = i + 1
            videos.append({"id": video_id, "file_names": file_names, "height": image_size, "width": image_size,
                           "length": num_frames})
            for obj in objects:
                masks = obj["masks"]
                annotations.append({
                    "id": len(annotations) + 1,
                    "video_id": video_id,
                    "category_id": obj["category_id"],
                    "iscrowd": 0,
                    "height": image_size,
                    "width": image_size,
                    "length": 1,
                    "segmentations": [None if m is None else _mask_rle(m) for m in masks],
                    "bboxes": [None if m is None else _bbox_xywh(m) for m in masks],
                    "areas": [None if m is None else float(m.sum()) for m in masks],
                })
        with open(os.path.join(out_dir, "annotations", f"{split}.json"), "w") as f:
            json.dump({"videos": videos, "annotations": annotations, "categories": categories}, f)
    with open(os.path.join(out_dir, "VERSION"), "w") as f:
        f.write(_VERSION + "\n")


def ensure_shapes_video_dataset(root: str, **generate_kwargs: Any) -> str:
    """Generate ``<root>/shapes_video`` unless it already exists; returns its path. Safe under races.

    ``generate_kwargs`` go to ``generate_shapes_video_dataset`` (tests use smaller splits)."""
    return ensure_generated(root, "shapes_video", _VERSION, generate_shapes_video_dataset, **generate_kwargs)


def shapes_video_paths(root: str, split: str) -> Dict[str, str]:
    """``json_file`` and ``image_root`` of a split under ``root``."""
    base = os.path.join(root, "shapes_video")
    return {"json_file": os.path.join(base, "annotations", f"{split}.json"),
            "image_root": os.path.join(base, split, "JPEGImages")}


def register_all_shapes_video(root: str) -> None:
    """Register ``shapes_video_{train,val}`` (YouTube-VIS format; data generated on first use)."""
    for split in _SPLITS:
        name = f"shapes_video_{split}"
        paths = shapes_video_paths(root, split)

        def load(paths=paths, name=name) -> List[Dict[str, Any]]:
            ensure_shapes_video_dataset(root)
            return load_ytvis_json(paths["json_file"], paths["image_root"], name)

        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(evaluator_type="ytvis", **paths, **get_shapes_video_metadata())
