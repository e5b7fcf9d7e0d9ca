"""Built-in synthetic "shapes" dataset: coloured circles, squares, triangles and stars on
textured sky / grass / water backgrounds, with COCO-format panoptic, instance and semantic
annotations. Small enough to train a tiny Mask2Former on a CPU.

The data is written deterministically on first request into ``<root>/shapes`` (root defaults
to ``$DETECTRON2_DATASETS`` or ``datasets``); registration itself never touches the disk.
Concurrent generators are safe: each writes to a private temporary folder and renames it into
place (an atomic step); the loser discards its copy.

Layout::

    shapes/{train,val}/images/NNNNNN.jpg       RGB images
    shapes/{train,val}/panoptic/NNNNNN.png     COCO panoptic PNG (id = R + 256 G + 256^2 B, 0 = void)
    shapes/{train,val}/semantic/NNNNNN.png     contiguous class per pixel (0..6), 255 = ignore
    shapes/annotations/panoptic_{split}.json   COCO panoptic json
    shapes/annotations/instances_{split}.json  COCO instances json (exact masks as compressed RLE)
"""
from __future__ import annotations

import json
import os
import logging
import shutil
import socket
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from ...utils.catalog import DatasetCatalog, MetadataCatalog
from ...utils.panoptic_utils import id2rgb
from .coco import load_coco_json, load_sem_seg
from .coco_panoptic import load_coco_panoptic_json

__all__ = [
    "SHAPES_CATEGORIES",
    "ensure_generated",
    "ensure_shapes_dataset",
    "generate_shapes_dataset",
    "get_shapes_metadata",
    "register_all_shapes",
]

# things first, then stuff (contiguous id = position)
SHAPES_CATEGORIES: List[Dict[str, Any]] = [
    {"id": 1, "name": "circle", "isthing": 1, "color": [220, 20, 60]},
    {"id": 2, "name": "square", "isthing": 1, "color": [255, 180, 0]},
    {"id": 3, "name": "triangle", "isthing": 1, "color": [160, 0, 220]},
    {"id": 4, "name": "star", "isthing": 1, "color": [250, 250, 250]},
    {"id": 5, "name": "sky", "isthing": 0, "color": [110, 170, 230]},
    {"id": 6, "name": "grass", "isthing": 0, "color": [60, 150, 50]},
    {"id": 7, "name": "water", "isthing": 0, "color": [20, 60, 160]},
]
_SPLITS = {"train": 200, "val": 50}
_IMAGE_SIZE = 128
_MIN_VISIBLE_AREA = 12  # smaller visible objects become void / ignore
_VERSION = "shapes-v2"
_SEED = 20240601


def get_shapes_metadata() -> Dict[str, Any]:
    """Panoptic-style metadata: 4 thing classes, 7 stuff classes (things included, as
    Mask2Former's COCO panoptic), dataset id -> contiguous id maps and colours."""
    things = [c for c in SHAPES_CATEGORIES if c["isthing"]]
    return {
        "thing_classes": [c["name"] for c in things],
        "thing_colors": [list(c["color"]) for c in things],
        "stuff_classes": [c["name"] for c in SHAPES_CATEGORIES],
        "stuff_colors": [list(c["color"]) for c in SHAPES_CATEGORIES],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(things)},
        "stuff_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(SHAPES_CATEGORIES)},
    }


# --------------------------------------------------------------------------- drawing
def _texture(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 texture of a stuff class."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    noise = rng.normal(0, 6, size=(h, w, 1)).astype(np.float32)
    if kind == "sky":
        base = np.stack([110 + 0.3 * yy, 170 + 0.2 * yy, 235 - 0.1 * yy], axis=-1)
    elif kind == "grass":
        blades = 25 * np.sin(xx * rng.uniform(0.8, 1.4) + rng.uniform(0, 6)) * (rng.random((h, w)) > 0.5)
        base = np.stack([50 + 0 * yy, 140 + blades, 45 + 0 * yy], axis=-1)
    else:  # water
        waves = 20 * np.sin(yy * rng.uniform(0.4, 0.7) + 0.15 * xx + rng.uniform(0, 6))
        base = np.stack([25 + 0 * yy, 70 + waves, 165 + waves], axis=-1)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _shape_polygon(rng: np.random.Generator, kind: str, cx: float, cy: float, r: float) -> np.ndarray:
    """(N, 2) int32 vertices of a shape of "radius" r centred at (cx, cy), randomly rotated."""
    rot = rng.uniform(0, 2 * np.pi)
    if kind == "circle":
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        radii = np.full_like(angles, r)
    elif kind == "square":
        angles = rot + np.array([0.25, 0.75, 1.25, 1.75]) * np.pi
        radii = np.full(4, r)
    elif kind == "triangle":
        angles = rot + np.array([0, 2, 4]) * np.pi / 3
        radii = np.full(3, r)
    else:  # star
        angles = rot + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    return np.round(pts).astype(np.int32)


def _make_image(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, np.ndarray, List[Dict[str, Any]]]:
    """Returns the RGB image, the (H, W) segment-id map (0 = void) and the segments
    (``id``, ``category_id`` (dataset id), ``isthing``)."""
    h = w = size
    image = np.zeros((h, w, 3), np.uint8)
    seg = np.zeros((h, w), np.int32)
    segments: List[Dict[str, Any]] = []

    # stuff: sky above a wavy horizon; below it grass and/or water split by a slanted line
    xs = np.arange(w)
    horizon = (h * rng.uniform(0.3, 0.6) + 6 * np.sin(xs * rng.uniform(0.03, 0.1) + rng.uniform(0, 6))).astype(int)
    yy, xx = np.mgrid[0:h, 0:w]
    sky = yy < horizon[None, :]
    layout = rng.integers(3)  # 0: grass, 1: water, 2: both
    if layout == 2:
        x0, slope = rng.uniform(0.3 * w, 0.7 * w), rng.uniform(-0.6, 0.6)
        left = xx < x0 + slope * (yy - h / 2)
        regions = {"grass": ~sky & left, "water": ~sky & ~left}
    else:
        regions = {"grass" if layout == 0 else "water": ~sky}
    regions = {"sky": sky, **regions}
    cat_id = {c["name"]: c["id"] for c in SHAPES_CATEGORIES}
    next_id = 1
    for name, region in regions.items():
        if not region.any():
            continue
        image[region] = _texture(rng, name, h, w)[region]
        seg[region] = next_id
        segments.append({"id": next_id, "category_id": cat_id[name], "isthing": 0})
        next_id += 1

    # things, painted in order (later ones occlude earlier ones)
    kinds = ["circle", "square", "triangle", "star"]
    for _ in range(int(rng.integers(1, 5))):
        kind = kinds[int(rng.integers(len(kinds)))]
        r = float(rng.uniform(0.08, 0.22) * size)
        cx, cy = rng.uniform(r * 0.5, w - r * 0.5), rng.uniform(r * 0.5, h - r * 0.5)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [_shape_polygon(rng, kind, cx, cy, r)], 1)
        color = rng.integers(0, 256, size=3)
        shade = rng.normal(0, 5, size=(h, w, 1))
        painted = np.clip(color[None, None, :] + shade, 0, 255).astype(np.uint8)
        m = mask.astype(bool)
        image[m] = painted[m]
        seg[m] = next_id
        segments.append({"id": next_id, "category_id": cat_id[kind], "isthing": 1})
        next_id += 1

    # drop segments whose visible part became too small: void pixels
    kept = []
    for s in segments:
        area = int((seg == s["id"]).sum())
        if area < _MIN_VISIBLE_AREA:
            seg[seg == s["id"]] = 0
        else:
            kept.append(s)
    return image, seg, kept


def _bbox_xywh(mask: np.ndarray) -> List[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _mask_rle(mask: np.ndarray) -> Dict[str, Any]:
    """Exact COCO compressed RLE of a binary mask (JSON-serialisable)."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def generate_shapes_dataset(
    out_dir: str,
    splits: Optional[Dict[str, int]] = None,
    image_size: int = _IMAGE_SIZE,
    seed: int = _SEED,
) -> None:
    """Write the dataset into ``out_dir`` (created; must not exist). Deterministic."""
    splits = dict(_SPLITS if splits is None else splits)
    os.makedirs(os.path.join(out_dir, "annotations"))
    contiguous = {c["id"]: i for i, c in enumerate(SHAPES_CATEGORIES)}
    pan_categories = [dict(c) for c in SHAPES_CATEGORIES]
    inst_categories = [{"id": c["id"], "name": c["name"], "supercategory": "shape"} for c in SHAPES_CATEGORIES if c["isthing"]]
    for split_index, (split, count) in enumerate(sorted(splits.items())):
        for sub in ("images", "panoptic", "semantic"):
            os.makedirs(os.path.join(out_dir, split, sub))
        images, pan_annos, inst_annos = [], [], []
        ann_id = 1
        for i in range(count):
            rng = np.random.default_rng([seed, split_index, i])
            image, seg, segments = _make_image(rng, image_size)
            stem = f"{i:06d}"
            image_id = i + 1
            Image.fromarray(image).save(os.path.join(out_dir, split, "images", stem + ".jpg"), quality=95)
            Image.fromarray(id2rgb(seg)).save(os.path.join(out_dir, split, "panoptic", stem + ".png"))
            semantic = np.full(seg.shape, 255, np.uint8)
            segments_info = []
            for s in segments:
                m = seg == s["id"]
                semantic[m] = contiguous[s["category_id"]]
                area = int(m.sum())
                bbox = _bbox_xywh(m)
                segments_info.append(
                    {"id": s["id"], "category_id": s["category_id"], "iscrowd": 0, "area": area, "bbox": bbox}
                )
                if s["isthing"]:
                    inst_annos.append(
                        {
                            "id": ann_id,
                            "image_id": image_id,
                            "category_id": s["category_id"],
                            "segmentation": _mask_rle(m),
                            "area": float(area),
                            "bbox": bbox,
                            "iscrowd": 0,
                        }
                    )
                    ann_id += 1
            Image.fromarray(semantic).save(os.path.join(out_dir, split, "semantic", stem + ".png"))
            images.append({"id": image_id, "file_name": stem + ".jpg", "height": image_size, "width": image_size})
            pan_annos.append({"image_id": image_id, "file_name": stem + ".png", "segments_info": segments_info})
        with open(os.path.join(out_dir, "annotations", f"panoptic_{split}.json"), "w") as f:
            json.dump({"images": images, "annotations": pan_annos, "categories": pan_categories}, f)
        with open(os.path.join(out_dir, "annotations", f"instances_{split}.json"), "w") as f:
            json.dump({"images": images, "annotations": inst_annos, "categories": inst_categories}, f)
    with open(os.path.join(out_dir, "VERSION"), "w") as f:
        f.write(_VERSION + "\n")


def ensure_shapes_dataset(root: str, **generate_kwargs: Any) -> str:
    """Generate ``<root>/shapes`` unless it already exists; returns its path. Safe under races.

    ``generate_kwargs`` go to ``generate_shapes_dataset`` (tests use smaller splits)."""
    return ensure_generated(root, "shapes", _VERSION, generate_shapes_dataset, **generate_kwargs)


def ensure_generated(root: str, dirname: str, version: str, generate: Any, **generate_kwargs: Any) -> str:
    """Make ``<root>/<dirname>`` with ``generate(out_dir, **generate_kwargs)`` unless it holds a
    ``VERSION`` file reading ``version`` (an older version is replaced); returns its path.
    ``generate`` must write the ``VERSION`` file last. Safe under races: each process generates
    into a private folder and renames it into place."""
    target = os.path.join(root, dirname)
    version_file = os.path.join(target, "VERSION")
    remove_stale_tmp_dirs(root, dirname)  # of a generation interrupted earlier
    if os.path.isfile(version_file):
        with open(version_file) as f:
            if f.read().strip() == version:
                return target
        _retire_outdated(root, target, dirname)
    os.makedirs(root, exist_ok=True)
    tmp_parent = _owned_tmp_dir(root, dirname)
    tmp = os.path.join(tmp_parent, dirname)
    try:
        generate(tmp, **generate_kwargs)
        try:
            os.rename(tmp, target)  # atomic; fails if another process got there first
        except OSError:
            if not os.path.isfile(os.path.join(target, "VERSION")):
                raise
    finally:
        shutil.rmtree(tmp_parent, ignore_errors=True)
    return target


_OWNER_FILE = "OWNER"  # "<host> <pid>" of the process that created a temp folder
_UNOWNED_STALE_S = 3600  # a temp folder without an owner file (interrupted at its creation)


def _owned_tmp_dir(root: str, dirname: str) -> str:
    """A private ``.<dirname>-tmp-*`` folder in ``root``, marked with this process as its owner."""
    path = tempfile.mkdtemp(prefix=f".{dirname}-tmp-", dir=root)
    with open(os.path.join(path, _OWNER_FILE), "w") as f:
        f.write(f"{socket.gethostname()} {os.getpid()}\n")
    return path


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists but is not ours, or not a pid: keep the folder
    return True


def _is_stale(path: str) -> bool:
    """Its owner process (on this host) is gone; or it has no owner and is older than an hour."""
    try:
        with open(os.path.join(path, _OWNER_FILE)) as f:
            host, pid = f.read().split()
        if host == socket.gethostname():
            return not _process_alive(int(pid))
    except (OSError, ValueError):
        pass
    try:
        return time.time() - os.path.getmtime(path) > _UNOWNED_STALE_S
    except OSError:
        return False


def remove_stale_tmp_dirs(root: str, dirname: str = "shapes") -> List[str]:
    """Delete the ``.<dirname>-tmp-*`` folders an interrupted generation left in ``root`` (their
    process is gone); those of a generation still running are kept. Returns the deleted paths."""
    if not os.path.isdir(root):
        return []
    removed = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.startswith(f".{dirname}-tmp-") and os.path.isdir(path) and _is_stale(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        logging.getLogger(__name__).warning("Removed %d folder(s) of an interrupted %s generation: %s",
                                            len(removed), dirname, removed)
    return removed


def _retire_outdated(root: str, target: str, dirname: str = "shapes") -> None:
    """Move an older generator version's data out of the way (atomic rename, then delete)."""
    trash = _owned_tmp_dir(root, dirname)
    try:
        os.rename(target, os.path.join(trash, "old"))
    except OSError:
        pass  # another process moved it already
    shutil.rmtree(trash, ignore_errors=True)


def _split_paths(base: str, split: str) -> Dict[str, str]:
    return {
        "image_root": os.path.join(base, split, "images"),
        "panoptic_root": os.path.join(base, split, "panoptic"),
        "sem_seg_root": os.path.join(base, split, "semantic"),
        "panoptic_json": os.path.join(base, "annotations", f"panoptic_{split}.json"),
        "json_file": os.path.join(base, "annotations", f"instances_{split}.json"),
    }


def register_all_shapes(root: str) -> None:
    """Register ``shapes_{panoptic,instance,sem_seg}_{train,val}`` (data generated on first use)."""
    base = os.path.join(root, "shapes")
    meta = get_shapes_metadata()
    for split in _SPLITS:
        p = _split_paths(base, split)

        def _panoptic(p=p):
            ensure_shapes_dataset(root)
            return load_coco_panoptic_json(p["panoptic_json"], p["image_root"], p["panoptic_root"], meta, p["sem_seg_root"])

        name = f"shapes_panoptic_{split}"
        DatasetCatalog.register(name, _panoptic)
        MetadataCatalog.get(name).set(
            evaluator_type="coco_panoptic_seg", ignore_label=255, label_divisor=1000, **p, **meta
        )

        def _instance(p=p, name=f"shapes_instance_{split}"):
            ensure_shapes_dataset(root)
            return load_coco_json(p["json_file"], p["image_root"], name)

        name = f"shapes_instance_{split}"
        DatasetCatalog.register(name, _instance)
        MetadataCatalog.get(name).set(
            json_file=p["json_file"],
            image_root=p["image_root"],
            evaluator_type="coco",
            thing_classes=meta["thing_classes"],
            thing_colors=meta["thing_colors"],
            thing_dataset_id_to_contiguous_id=meta["thing_dataset_id_to_contiguous_id"],
        )

        def _sem_seg(p=p):
            ensure_shapes_dataset(root)
            return load_sem_seg(p["sem_seg_root"], p["image_root"], gt_ext="png", image_ext="jpg")

        name = f"shapes_sem_seg_{split}"
        DatasetCatalog.register(name, _sem_seg)
        MetadataCatalog.get(name).set(
            image_root=p["image_root"],
            sem_seg_root=p["sem_seg_root"],
            evaluator_type="sem_seg",
            ignore_label=255,
            stuff_classes=meta["stuff_classes"],
            stuff_colors=meta["stuff_colors"],
        )
