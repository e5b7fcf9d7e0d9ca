"""Boundary IoU and Boundary AP (Cheng et al., "Boundary IoU: Improving Object-Centric Image
Segmentation Evaluation", CVPR 2021), on top of pycocotools' ``COCOeval``.

No maintained package on the index provides it, so the published definition is implemented here:

* the boundary region of a mask is the set of its pixels within distance ``d`` of its contour,
  ``d = max(1, round(dilation_ratio * image_diagonal))`` (``dilation_ratio = 0.02`` for COCO),
  with distances measured by ``d`` erosions with a 3x3 kernel (the chessboard metric) and the image
  border counting as contour;
* Boundary IoU of two masks is the IoU of their boundary regions;
* Boundary AP is COCO mask AP with the IoU of a detection and a (non-crowd) ground truth replaced
  by ``min(mask IoU, boundary IoU)``; crowd regions keep pycocotools' mask IoU.
"""
from __future__ import annotations

from typing import Dict, List

import cv2
import numpy as np
import pycocotools.mask as mask_util
from pycocotools.cocoeval import COCOeval

__all__ = ["BoundaryCOCOeval", "boundary_iou", "mask_to_boundary", "summarize_boundary_ap"]


def _dilation(height: int, width: int, dilation_ratio: float) -> int:
    return max(1, int(round(dilation_ratio * float(np.hypot(height, width)))))


def mask_to_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """The boundary region of a binary mask.

    Args:
        mask: (H, W) binary array (bool or 0/1 integers).
        dilation_ratio: band width as a fraction of the image diagonal.
    Returns:
        (H, W) uint8 array, 1 on mask pixels within the band of the mask's contour.
    """
    mask = np.asarray(mask).astype(np.uint8)
    height, width = mask.shape
    iterations = _dilation(height, width, dilation_ratio)
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)  # border = contour
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=iterations)[1:-1, 1:-1]
    return mask - eroded


def boundary_iou(mask_a: np.ndarray, mask_b: np.ndarray, dilation_ratio: float = 0.02) -> float:
    """Boundary IoU of two (H, W) binary masks (0 when both boundaries are empty)."""
    a = mask_to_boundary(mask_a, dilation_ratio).astype(bool)
    b = mask_to_boundary(mask_b, dilation_ratio).astype(bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


class BoundaryCOCOeval(COCOeval):
    """``COCOeval(iouType="segm")`` whose IoU is ``min(mask IoU, boundary IoU)`` (Boundary AP).

    Use exactly as pycocotools' ``COCOeval``: ``evaluate()``, ``accumulate()``, ``summarize()``;
    ``stats`` then holds Boundary AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl.
    """

    def __init__(self, coco_gt, coco_dt, dilation_ratio: float = 0.02):
        super().__init__(coco_gt, coco_dt, iouType="segm")
        self.dilation_ratio = dilation_ratio
        self._boundary_cache: Dict[int, Dict] = {}

    def _boundary_rle(self, ann: Dict, is_gt: bool) -> Dict:
        """RLE of the boundary region of an annotation (its 'segmentation' is an RLE by now)."""
        key = ("gt" if is_gt else "dt", ann["id"])
        if key not in self._boundary_cache:
            mask = mask_util.decode(ann["segmentation"])
            boundary = mask_to_boundary(mask, self.dilation_ratio)
            self._boundary_cache[key] = mask_util.encode(np.asfortranarray(boundary))
        return self._boundary_cache[key]

    def computeIoU(self, imgId, catId):  # noqa: N802  (pycocotools' name)
        mask_ious = super().computeIoU(imgId, catId)
        if len(mask_ious) == 0:
            return mask_ious
        p = self.params
        if p.useCats:
            gts, dts = self._gts[imgId, catId], self._dts[imgId, catId]
        else:
            gts = [g for c in p.catIds for g in self._gts[imgId, c]]
            dts = [d for c in p.catIds for d in self._dts[imgId, c]]
        # the detection order of COCOeval.computeIoU: by score, stable, capped at maxDets
        order = np.argsort([-d["score"] for d in dts], kind="mergesort")[: p.maxDets[-1]]
        dts = [dts[i] for i in order]
        boundary_ious = np.asarray(mask_util.iou(
            [self._boundary_rle(d, False) for d in dts],
            [self._boundary_rle(g, True) for g in gts],
            [0] * len(gts),
        ))
        ious = np.array(mask_ious, dtype=np.float64)
        crowd = np.array([int(g["iscrowd"]) for g in gts], dtype=bool)
        ious[:, ~crowd] = np.minimum(ious[:, ~crowd], boundary_ious[:, ~crowd])  # (D, G)
        return ious


def summarize_boundary_ap(coco_gt, coco_dt, dilation_ratio: float = 0.02) -> List[float]:
    """Run Boundary AP end to end; returns ``COCOeval.stats`` (12 numbers, fractions)."""
    evaluator = BoundaryCOCOeval(coco_gt, coco_dt, dilation_ratio=dilation_ratio)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return list(evaluator.stats)
