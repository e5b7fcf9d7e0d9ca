"""Fixtures for the data-layer tests: tiny datasets written to temporary folders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mask2former.data.datasets.shapes import generate_shapes_dataset
from mask2former.utils.panoptic_utils import id2rgb


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory) -> Path:
    """A small shapes dataset (4 train / 2 val images of 64x64)."""
    out = tmp_path_factory.mktemp("shapes_root") / "shapes"
    generate_shapes_dataset(str(out), splits={"train": 4, "val": 2}, image_size=64)
    return out


@pytest.fixture()
def hand_made(tmp_path: Path) -> dict:
    """Two 20x30 images with one square thing (id 1) on a stuff background (id 2), written by
    hand in the three annotation formats. Returns the paths and the expected values."""
    h, w = 20, 30
    (tmp_path / "images").mkdir()
    (tmp_path / "pan").mkdir()
    (tmp_path / "sem").mkdir()
    images, pan_annos, inst_annos = [], [], []
    for i in range(2):
        img = np.full((h, w, 3), 40 * (i + 1), np.uint8)
        Image.fromarray(img).save(tmp_path / "images" / f"im{i}.jpg")
        seg = np.full((h, w), 1, np.int32)  # segment 1: stuff
        x0, y0 = 4 + 10 * i, 5
        seg[y0 : y0 + 8, x0 : x0 + 8] = 2  # segment 2: the square
        Image.fromarray(id2rgb(seg)).save(tmp_path / "pan" / f"im{i}.png")
        sem = np.where(seg == 2, 0, 1).astype(np.uint8)
        sem[0, 0] = 255
        Image.fromarray(sem).save(tmp_path / "sem" / f"im{i}.png")
        images.append({"id": 10 + i, "file_name": f"im{i}.jpg", "height": h, "width": w})
        pan_annos.append(
            {
                "image_id": 10 + i,
                "file_name": f"im{i}.png",
                "segments_info": [
                    {"id": 1, "category_id": 7, "iscrowd": 0},
                    {"id": 2, "category_id": 3, "iscrowd": 0},
                ],
            }
        )
        poly = [x0, y0, x0 + 8, y0, x0 + 8, y0 + 8, x0, y0 + 8]
        inst_annos.append(
            {"id": 100 + i, "image_id": 10 + i, "category_id": 3, "segmentation": [poly],
             "bbox": [x0, y0, 8, 8], "area": 64.0, "iscrowd": 0}
        )
    cats = [{"id": 3, "name": "box", "isthing": 1}, {"id": 7, "name": "floor", "isthing": 0}]
    (tmp_path / "panoptic.json").write_text(json.dumps({"images": images, "annotations": pan_annos, "categories": cats}))
    (tmp_path / "instances.json").write_text(
        json.dumps({"images": images, "annotations": inst_annos, "categories": [cats[0]]})
    )
    return {"root": tmp_path, "h": h, "w": w}
