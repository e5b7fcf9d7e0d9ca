"""DatasetMapperTTA: one copy per TEST.AUG.MIN_SIZES (capped by MAX_SIZE), each also flipped."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from fvcore.transforms import HFlipTransform
from PIL import Image

from mask2former.config import get_cfg
from mask2former.data.dataset_mappers.dataset_mapper_tta import DatasetMapperTTA
from mask2former.data.transforms import ResizeTransform


def _input(h=40, w=60, height=80, width=120):
    """A test-mapper output: the image already resized to (h, w); the output size (height, width)."""
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 256, size=(3, h, w), dtype=np.uint8))
    return {"image": image, "height": height, "width": width, "file_name": "x.jpg", "image_id": 3}


def test_sizes_order_and_flips():
    inp = _input()
    copies = DatasetMapperTTA(min_sizes=(20, 30), max_size=40, flip=True)(inp)
    # short edge 20 of 40x60 -> 20x30; short edge 30 -> 30x45, longer edge capped at 40 -> 26.67x40
    assert [tuple(c["image"].shape[1:]) for c in copies] == [(20, 30), (20, 30), (27, 40), (27, 40)]
    flipped = [any(isinstance(t, HFlipTransform) for t in c["transforms"].transforms) for c in copies]
    assert flipped == [False, True, False, True]
    for plain, flip in zip(copies[::2], copies[1::2]):
        assert torch.equal(flip["image"], plain["image"].flip(dims=[2]))
    # the resize is PIL's bilinear resize of the (already resized) input image
    hwc = inp["image"].permute(1, 2, 0).numpy()
    expected = np.asarray(Image.fromarray(hwc).resize((30, 20), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(copies[0]["image"].numpy(), expected)
    for c in copies:  # output size and the other fields are kept
        assert (c["height"], c["width"], c["image_id"], c["file_name"]) == (80, 120, 3, "x.jpg")
    assert "transforms" not in inp and inp["image"].shape == (3, 40, 60)  # the input is not modified


def _describe(t):
    if isinstance(t, ResizeTransform):
        return ("resize", t.h, t.w, t.new_h, t.new_w)
    return (type(t).__name__,) + ((t.width,) if isinstance(t, HFlipTransform) else ())


def test_transforms_start_from_the_original_image():
    mapper = DatasetMapperTTA(min_sizes=(20,), max_size=1000, flip=True)
    plain, flipped = mapper(_input())  # the test mapper had resized 80x120 to 40x60
    assert [_describe(t) for t in flipped["transforms"].transforms] == [
        ("resize", 80, 120, 40, 60), ("resize", 40, 60, 20, 30), ("HFlipTransform", 30)]
    assert [_describe(t) for t in plain["transforms"].transforms] == [
        ("resize", 80, 120, 40, 60), ("resize", 40, 60, 20, 30)]
    plain, _ = mapper(_input(height=40, width=60))  # an input at its original size
    assert [_describe(t) for t in plain["transforms"].transforms] == [
        ("NoOpTransform",), ("resize", 40, 60, 20, 30)]


def test_from_config():
    cfg = get_cfg()
    cfg.TEST.AUG.MIN_SIZES = (32, 48, 64)
    cfg.TEST.AUG.MAX_SIZE = 100
    cfg.TEST.AUG.FLIP = False
    mapper = DatasetMapperTTA(cfg)
    assert (mapper.min_sizes, mapper.max_size, mapper.flip) == ([32, 48, 64], 100, False)
    assert [tuple(c["image"].shape[1:]) for c in mapper(_input())] == [(32, 48), (48, 72), (64, 96)]


def test_bad_inputs():
    with pytest.raises(ValueError, match="MIN_SIZES"):
        DatasetMapperTTA(min_sizes=(), max_size=10, flip=True)
    with pytest.raises(ValueError, match="MAX_SIZE=0"):
        DatasetMapperTTA(min_sizes=(10,), max_size=0, flip=True)
    with pytest.raises(KeyError, match="image"):
        DatasetMapperTTA(min_sizes=(10,), max_size=100, flip=True)({"file_name": "x.jpg"})
