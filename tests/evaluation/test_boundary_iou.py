"""Boundary IoU / Boundary AP against hand counts and an independent distance-transform computation."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy import ndimage

from mask2former.evaluation.boundary_iou import BoundaryCOCOeval, boundary_iou, mask_to_boundary

THRESHOLDS = np.linspace(0.5, 0.95, 10)


def _boundary_by_distance(mask: np.ndarray, ratio: float = 0.02) -> np.ndarray:
    """Independent definition: mask pixels within chessboard distance d of a non-mask pixel,
    the outside of the image counting as non-mask."""
    d = max(1, int(round(ratio * np.hypot(*mask.shape))))
    padded = np.pad(mask.astype(bool), 1)
    distance = ndimage.distance_transform_cdt(padded, metric="chessboard")[1:-1, 1:-1]
    return mask.astype(bool) & (distance <= d)


def _square(h, w, top, left, size):
    mask = np.zeros((h, w), np.uint8)
    mask[top:top + size, left:left + size] = 1
    return mask


def test_boundary_of_a_square_by_hand():
    # 100x100 image: d = round(0.02 * 141.4) = 3, so a 10x10 square keeps its 4x4 core.
    boundary = mask_to_boundary(_square(100, 100, 20, 20, 10))
    assert boundary.sum() == 100 - 16
    assert boundary[24:26, 24:26].sum() == 0 and boundary[20, 20] == 1


def test_image_border_counts_as_contour():
    # 50x50 image filled: d = round(0.02 * 70.7) = 1, the boundary is the outer ring.
    boundary = mask_to_boundary(np.ones((50, 50), np.uint8))
    assert boundary.sum() == 50 * 50 - 48 * 48


def test_boundary_matches_the_distance_definition_on_random_blobs():
    rng = np.random.default_rng(0)
    for _ in range(5):
        blob = ndimage.binary_opening(rng.random((90, 130)) > 0.45, iterations=2).astype(np.uint8)
        np.testing.assert_array_equal(mask_to_boundary(blob).astype(bool), _boundary_by_distance(blob))


def test_boundary_iou_of_shifted_squares():
    a, b = _square(100, 100, 30, 30, 40), _square(100, 100, 30, 32, 40)
    ba, bb = _boundary_by_distance(a), _boundary_by_distance(b)
    expected = (ba & bb).sum() / (ba | bb).sum()
    assert boundary_iou(a, b) == pytest.approx(expected)
    mask_iou = (a & b).sum() / (a | b).sum()
    assert boundary_iou(a, b) < mask_iou  # the band is far more sensitive to a shift


def _load_tool():
    path = Path(__file__).resolve().parents[2] / "tools" / "evaluate_coco_boundary_ap.py"
    spec = importlib.util.spec_from_file_location("evaluate_coco_boundary_ap", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def _write_case(tmp_path: Path, gt_masks, dt_masks, scores):
    h, w = gt_masks[0].shape
    gt = {"images": [{"id": 1, "height": h, "width": w, "file_name": "1.png"}],
          "categories": [{"id": 1, "name": "thing"}], "annotations": []}
    for i, m in enumerate(gt_masks, start=1):
        rle = mask_util.encode(np.asfortranarray(m))
        gt["annotations"].append({"id": i, "image_id": 1, "category_id": 1, "iscrowd": 0,
                                  "area": float(m.sum()), "bbox": list(mask_util.toBbox(rle)),
                                  "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    dts = []
    for m, s in zip(dt_masks, scores):
        rle = mask_util.encode(np.asfortranarray(m))
        dts.append({"image_id": 1, "category_id": 1, "score": s,
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    gt_path, dt_path = tmp_path / "gt.json", tmp_path / "dt.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(dts))
    return gt_path, dt_path


def _ap(evaluator) -> float:
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats[0]


def test_boundary_ap_of_one_shifted_detection_by_hand(tmp_path):
    gt_mask, dt_mask = _square(100, 100, 30, 30, 40), _square(100, 100, 30, 32, 40)
    gt_path, dt_path = _write_case(tmp_path, [gt_mask], [dt_mask], [0.9])
    coco_gt = COCO(str(gt_path))
    coco_dt = coco_gt.loadRes(str(dt_path))
    mask_iou = (gt_mask & dt_mask).sum() / (gt_mask | dt_mask).sum()
    ba, bb = _boundary_by_distance(gt_mask), _boundary_by_distance(dt_mask)
    combined = min(mask_iou, (ba & bb).sum() / (ba | bb).sum())
    # one ground truth, one detection: AP at threshold t is 1 if the IoU reaches t, else 0
    expected_boundary_ap = np.mean(THRESHOLDS <= combined + 1e-12)
    expected_mask_ap = np.mean(THRESHOLDS <= mask_iou + 1e-12)
    assert _ap(BoundaryCOCOeval(coco_gt, coco_dt)) == pytest.approx(expected_boundary_ap)
    assert _ap(COCOeval(coco_gt, coco_dt, "segm")) == pytest.approx(expected_mask_ap)
    assert expected_boundary_ap < expected_mask_ap


def test_perfect_predictions_give_100_and_tool_reports_it(tmp_path):
    masks = [_square(120, 160, 10, 10, 30), _square(120, 160, 60, 80, 45)]
    gt_path, dt_path = _write_case(tmp_path, masks, masks, [0.9, 0.8])
    tool = _load_tool()
    results = tool.main(["--gt-json-file", str(gt_path), "--dt-json-file", str(dt_path)])
    assert results["AP"] == pytest.approx(100.0)
    assert results["AP50"] == pytest.approx(100.0)


def test_tool_names_a_missing_file(tmp_path, capsys):
    tool = _load_tool()
    with pytest.raises(SystemExit):
        tool.main(["--gt-json-file", str(tmp_path / "nope.json"), "--dt-json-file", str(tmp_path / "x.json")])
    assert "nope.json" in capsys.readouterr().err
