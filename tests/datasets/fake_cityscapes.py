"""A tiny Cityscapes ``val`` split in the real on-disk format (used by the Cityscapes evaluator
and preparation tests).

    cityscapes/leftImg8bit/val/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    cityscapes/gtFine/val/<city>/<city>_<seq>_<frame>_gtFine_{labelIds,instanceIds}.png
    cityscapes/gtFine/val/<city>/<city>_<seq>_<frame>_gtFine_polygons.json

Each image is a list of axis-aligned rectangles drawn in order (later ones on top), written both
as polygons (what cityscapesscripts' preparation reads) and as the label / instance PNGs those
polygons give (PIL fills a polygon including its boundary, so a rectangle with corners
``(x0, y0)``, ``(x1, y1)`` covers columns x0..x1 and rows y0..y1). Instance ids follow Cityscapes:
``labelId * 1000 + k`` for an instance, ``labelId`` for a group (crowd) or a stuff region.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
from PIL import Image

from cityscapesscripts.helpers.labels import name2label

H, W = 48, 80


class Box(NamedTuple):
    label: str  # Cityscapes label name, "<thing>group" for a crowd
    x0: int
    y0: int
    x1: int
    y1: int
    instance: Optional[int] = None  # k of labelId * 1000 + k for things


# image stem -> rectangles, drawn in this order
SCENES: Dict[Tuple[str, str], List[Box]] = {
    ("aachen", "aachen_000000_000019"): [
        Box("road", 0, 0, W - 1, H - 1),
        Box("sky", 0, 0, W - 1, 9),
        Box("car", 5, 20, 20, 35, 0),  # 16 x 16
        Box("car", 40, 22, 55, 33, 1),  # 16 x 12
        Box("person", 60, 12, 70, 40, 0),  # 11 x 29
        Box("ego vehicle", 0, 44, W - 1, H - 1),  # void
    ],
    ("aachen", "aachen_000001_000019"): [
        Box("road", 0, 0, W - 1, H - 1),
        Box("building", 0, 0, 39, 15),
        Box("vegetation", 40, 0, W - 1, 15),
        Box("car", 2, 18, 25, 30, 0),  # 24 x 13
        Box("cargroup", 30, 18, 50, 30),  # crowd
        Box("bicycle", 55, 20, 70, 35, 0),  # 16 x 16
    ],
    ("bochum", "bochum_000000_000313"): [
        Box("sidewalk", 0, 0, W - 1, H - 1),
        Box("vegetation", 0, 0, W - 1, 11),
        Box("person", 4, 14, 15, 40, 0),  # 12 x 27
        Box("person", 20, 14, 31, 40, 1),  # 12 x 27
        Box("rider", 40, 10, 51, 35, 0),  # 12 x 26
        Box("bicycle", 38, 30, 55, 45, 1),  # 18 x 16, partly under nothing
        Box("pole", 70, 0, 73, H - 1),
    ],
}


def _label(box: Box):
    name = box.label[: -len("group")] if box.label.endswith("group") and box.label not in name2label else box.label
    return name2label[name]


def rasterize(boxes: List[Box]) -> Tuple[np.ndarray, np.ndarray]:
    """(labelIds uint8, instanceIds int32) of one scene, (H, W) each."""
    label_ids = np.zeros((H, W), np.uint8)
    instance_ids = np.zeros((H, W), np.int32)
    for box in boxes:
        label = _label(box)
        region = (slice(box.y0, box.y1 + 1), slice(box.x0, box.x1 + 1))
        label_ids[region] = label.id
        if box.instance is not None:
            instance_ids[region] = label.id * 1000 + box.instance
        else:
            instance_ids[region] = label.id
    return label_ids, instance_ids


def _polygons_json(boxes: List[Box]) -> dict:
    objects = [
        {"label": b.label, "polygon": [[b.x0, b.y0], [b.x1, b.y0], [b.x1, b.y1], [b.x0, b.y1]]} for b in boxes
    ]
    return {"imgHeight": H, "imgWidth": W, "objects": objects}


def write_fake_cityscapes(root: Path, split: str = "val") -> Dict[str, dict]:
    """Write the scenes under ``root/cityscapes``; returns stem -> {image, label_ids, instance_ids
    (arrays), gt_dir (Path)}."""
    out = {}
    rng = np.random.default_rng(0)
    for (city, stem), boxes in SCENES.items():
        image_dir = root / "cityscapes" / "leftImg8bit" / split / city
        gt_dir = root / "cityscapes" / "gtFine" / split / city
        image_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        image_file = image_dir / f"{stem}_leftImg8bit.png"
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(image_file)
        label_ids, instance_ids = rasterize(boxes)
        Image.fromarray(label_ids).save(gt_dir / f"{stem}_gtFine_labelIds.png")
        # Cityscapes stores instanceIds as 16-bit PNGs
        Image.fromarray(instance_ids.astype(np.uint16)).save(gt_dir / f"{stem}_gtFine_instanceIds.png")
        with open(gt_dir / f"{stem}_gtFine_polygons.json", "w") as f:
            json.dump(_polygons_json(boxes), f)
        out[stem] = {
            "image": str(image_file),
            "label_ids": label_ids,
            "instance_ids": instance_ids,
            "city": city,
        }
    return out
