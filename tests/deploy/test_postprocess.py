"""numpy / OpenCV post-processing against the torch functions the model uses."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mask2former.deploy import postprocess as npp
from mask2former.modeling import postprocessing as tpp

NUM_CLASSES = 7
THING_IDS = {0, 1, 2, 3}


def _random_outputs(seed: int, q: int = 12, h: int = 40, w: int = 52):
    g = torch.Generator().manual_seed(seed)
    mask_cls = torch.randn(q, NUM_CLASSES + 1, generator=g) * 3
    # smooth blobs of both signs, mostly negative (sparse masks, as real predictions)
    low = torch.randn(q, 1, 10, 12, generator=g) * 6 - 5
    mask_pred = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return mask_cls, mask_pred


@pytest.mark.parametrize("src,dst", [((10, 13), (40, 52)), ((48, 64), (240, 320)),
                                     ((40, 52), (17, 23)), ((7, 9), (7, 30)), ((33, 1), (5, 4))])
def test_resize_bilinear_matches_f_interpolate(src, dst):
    maps = torch.randn(9, *src, generator=torch.Generator().manual_seed(0)) * 20
    expected = F.interpolate(maps[None], size=dst, mode="bilinear", align_corners=False)[0]
    actual = npp.resize_bilinear(maps.numpy(), dst)
    assert actual.shape == (9, *dst) and actual.dtype == np.float32
    # float rounding only (~1e-7 relative; cv2.resize is off by ~1e-5)
    np.testing.assert_allclose(actual, expected.numpy(), atol=1e-6 * float(expected.abs().max()), rtol=0)


def test_sem_seg_postprocess_crops_then_resizes():
    maps = torch.randn(3, 64, 64)
    expected = tpp.sem_seg_postprocess(maps, (50, 41), 77, 60)
    np.testing.assert_allclose(npp.sem_seg_postprocess(maps.numpy(), (50, 41), 77, 60), expected.numpy(),
                               atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_semantic_inference(seed):
    mask_cls, mask_pred = _random_outputs(seed)
    expected = tpp.semantic_inference(mask_cls, mask_pred)
    actual = npp.semantic_inference(mask_cls.numpy(), mask_pred.numpy())
    np.testing.assert_allclose(actual, expected.numpy(), atol=1e-5, rtol=1e-5)
    assert (actual.argmax(0) == expected.argmax(0).numpy()).all()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("require_mask_prob", [True, False])
def test_panoptic_inference_identical(seed, require_mask_prob):
    mask_cls, mask_pred = _random_outputs(seed, q=16)
    kwargs = dict(num_classes=NUM_CLASSES, object_mask_threshold=0.3, overlap_threshold=0.6,
                  thing_ids=THING_IDS, require_mask_prob=require_mask_prob)
    expected_seg, expected_info = tpp.panoptic_inference(mask_cls, mask_pred, **kwargs)
    seg, info = npp.panoptic_inference(mask_cls.numpy(), mask_pred.numpy(), **kwargs)
    assert seg.dtype == np.int32
    assert info == expected_info
    assert len(info) >= 4  # the data exercise real segments, not the empty case
    np.testing.assert_array_equal(seg, expected_seg.numpy())


def test_panoptic_merges_stuff_and_counts_by_hand():
    # 3 queries on a 1x4 image: two of stuff class 5 (merged into one segment), one thing
    mask_cls = np.full((3, NUM_CLASSES + 1), -10.0, dtype=np.float32)
    mask_cls[0, 5] = mask_cls[1, 5] = mask_cls[2, 1] = 10.0
    mask_pred = np.array([[[5, 5, -5, -5]], [[-5, -5, -5, 5]], [[-5, -5, 5, -5]]], dtype=np.float32)
    seg, info = npp.panoptic_inference(mask_cls, mask_pred, num_classes=NUM_CLASSES,
                                       object_mask_threshold=0.5, overlap_threshold=0.8,
                                       thing_ids=THING_IDS)
    assert info == [{"id": 1, "isthing": False, "category_id": 5},
                    {"id": 2, "isthing": True, "category_id": 1}]
    np.testing.assert_array_equal(seg, [[1, 1, 2, 1]])


def test_panoptic_nothing_kept_is_all_void():
    mask_cls = np.zeros((2, NUM_CLASSES + 1), dtype=np.float32)
    mask_cls[:, -1] = 10.0  # every query predicts no-object
    seg, info = npp.panoptic_inference(mask_cls, np.ones((2, 3, 4), np.float32), num_classes=NUM_CLASSES,
                                       object_mask_threshold=0.5, overlap_threshold=0.8, thing_ids=THING_IDS)
    assert info == [] and seg.shape == (3, 4) and not seg.any()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("things_only", [False, True])
def test_instance_inference_same_set(seed, things_only):
    mask_cls, mask_pred = _random_outputs(seed)
    thing_ids = THING_IDS if things_only else None
    expected = tpp.instance_inference(mask_cls, mask_pred, num_classes=NUM_CLASSES,
                                      test_topk_per_image=15, thing_ids=thing_ids)
    actual = npp.instance_inference(mask_cls.numpy(), mask_pred.numpy(), num_classes=NUM_CLASSES,
                                    test_topk_per_image=15, thing_ids=thing_ids)
    assert actual["image_size"] == tuple(expected.image_size)
    order = expected.scores.argsort(descending=True).numpy()
    assert np.all(np.diff(actual["scores"]) <= 1e-6)  # descending
    np.testing.assert_array_equal(actual["pred_classes"], expected.pred_classes.numpy()[order])
    np.testing.assert_allclose(actual["scores"], expected.scores.numpy()[order], atol=1e-6)
    np.testing.assert_array_equal(actual["pred_masks"], expected.pred_masks.numpy()[order])
    np.testing.assert_array_equal(actual["pred_boxes"], expected.pred_boxes.tensor.numpy()[order])


def test_masks_to_boxes_by_hand():
    masks = np.zeros((2, 5, 6), dtype=bool)
    masks[0, 1:3, 2:5] = True
    np.testing.assert_array_equal(npp.masks_to_boxes(masks), [[2, 1, 5, 3], [0, 0, 0, 0]])


def test_sigmoid_softmax_stable():
    x = np.array([-1000.0, -20.0, 0.0, 20.0, 1000.0], dtype=np.float32)
    np.testing.assert_allclose(npp.sigmoid(x), torch.sigmoid(torch.from_numpy(x)).numpy(), atol=1e-7)
    np.testing.assert_allclose(npp.softmax(x), torch.softmax(torch.from_numpy(x), 0).numpy(), atol=1e-7)
