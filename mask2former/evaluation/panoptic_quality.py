"""Panoptic Quality (PQ = SQ x RQ), computed as the COCO panoptic API (panopticapi) defines it.

A panoptic PNG stores segment ids as RGB (``id = R + 256 G + 256^2 B``); id 0 (VOID) is
unlabeled. Per image and category, a predicted and a ground-truth segment match when their
IoU > 0.5 (IoU computed with the prediction's VOID pixels left out of the union); crowd
ground-truth segments are never matched and are not false negatives; an unmatched prediction
that lies more than half in VOID or in a same-category crowd region is not a false positive.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from collections import defaultdict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..utils.panoptic_utils import id2rgb, rgb2id

__all__ = ["VOID", "OFFSET", "rgb2id", "id2rgb", "PQStat", "pq_compute_single_image", "pq_compute"]

logger = logging.getLogger(__name__)

VOID = 0
OFFSET = 256 * 256 * 256  # > any segment id, so gt_id * OFFSET + pred_id is a unique pair key


class _CategoryStat:
    __slots__ = ("iou", "tp", "fp", "fn")

    def __init__(self) -> None:
        self.iou = 0.0
        self.tp = 0
        self.fp = 0
        self.fn = 0

    def __iadd__(self, other: "_CategoryStat") -> "_CategoryStat":
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self


class PQStat:
    """Per-category matched-IoU sum and TP / FP / FN counts, summed over images."""

    def __init__(self) -> None:
        self.pq_per_cat: Dict[int, _CategoryStat] = defaultdict(_CategoryStat)

    def __getitem__(self, category_id: int) -> _CategoryStat:
        return self.pq_per_cat[category_id]

    def __iadd__(self, other: "PQStat") -> "PQStat":
        for label, stat in other.pq_per_cat.items():
            self.pq_per_cat[label] += stat
        return self

    def pq_average(
        self, categories: Mapping[int, Mapping[str, Any]], isthing: Optional[bool]
    ) -> Tuple[Dict[str, float], Dict[int, Dict[str, float]]]:
        """Mean PQ / SQ / RQ over the categories (things only, stuff only, or all when None).

        Categories with no TP, FP or FN are not counted (``n``) and get zeros in the per-class
        dict. With no counted category the means are 0.
        """
        pq = sq = rq = 0.0
        n = 0
        per_class: Dict[int, Dict[str, float]] = {}
        for label, info in categories.items():
            if isthing is not None and (info["isthing"] == 1) != isthing:
                continue
            stat = self.pq_per_cat[label]
            iou, tp, fp, fn = stat.iou, stat.tp, stat.fp, stat.fn
            if tp + fp + fn == 0:
                per_class[label] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
                continue
            n += 1
            pq_class = iou / (tp + 0.5 * fp + 0.5 * fn)
            sq_class = iou / tp if tp != 0 else 0
            rq_class = tp / (tp + 0.5 * fp + 0.5 * fn)
            per_class[label] = {"pq": pq_class, "sq": sq_class, "rq": rq_class}
            pq += pq_class
            sq += sq_class
            rq += rq_class
        if n == 0:
            return {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}, per_class
        return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}, per_class


def pq_compute_single_image(
    pq_stat: PQStat,
    gt_ann: Mapping[str, Any],
    pred_ann: Mapping[str, Any],
    pan_gt: np.ndarray,
    pan_pred: np.ndarray,
    categories: Mapping[int, Mapping[str, Any]],
) -> None:
    """Add one image's TP / FP / FN / IoU to ``pq_stat``.

    Args:
        gt_ann, pred_ann: COCO panoptic annotations (``image_id``, ``segments_info`` with ``id``,
            ``category_id``; ground-truth segments also ``area`` and ``iscrowd``).
        pan_gt, pan_pred: (H, W) segment-id maps of the image.
        categories: category id -> category dict with ``isthing``.
    """
    image_id = gt_ann["image_id"]
    if pan_gt.shape != pan_pred.shape:
        raise ValueError(
            f"Image {image_id}: prediction of shape {pan_pred.shape} does not match the ground "
            f"truth of shape {pan_gt.shape}"
        )
    gt_segms = {el["id"]: dict(el) for el in gt_ann["segments_info"]}
    pred_segms = {el["id"]: dict(el) for el in pred_ann["segments_info"]}

    # Areas of predicted segments, and the PNG / JSON consistency checks.
    pred_labels_set = set(pred_segms)
    labels, labels_cnt = np.unique(pan_pred, return_counts=True)
    for label, label_cnt in zip(labels.tolist(), labels_cnt.tolist()):
        if label not in pred_segms:
            if label == VOID:
                continue
            raise KeyError(
                f"In the image with ID {image_id} segment with ID {label} is presented in PNG "
                "and not presented in JSON."
            )
        pred_segms[label]["area"] = label_cnt
        pred_labels_set.remove(label)
        if pred_segms[label]["category_id"] not in categories:
            raise KeyError(
                f"In the image with ID {image_id} segment with ID {label} has unknown "
                f"category_id {pred_segms[label]['category_id']}."
            )
    if pred_labels_set:
        raise KeyError(
            f"In the image with ID {image_id} the following segment IDs {sorted(pred_labels_set)} "
            "are presented in JSON and not presented in PNG."
        )

    # Intersection of every (gt segment, predicted segment) pair.
    pan_gt_pred = pan_gt.astype(np.uint64) * OFFSET + pan_pred.astype(np.uint64)
    gt_pred_map: Dict[Tuple[int, int], int] = {}
    labels, labels_cnt = np.unique(pan_gt_pred, return_counts=True)
    for label, intersection in zip(labels.tolist(), labels_cnt.tolist()):
        gt_pred_map[(label // OFFSET, label % OFFSET)] = intersection

    # True positives: same category, IoU > 0.5 (at most one match per segment then).
    gt_matched = set()
    pred_matched = set()
    for (gt_label, pred_label), intersection in gt_pred_map.items():
        if gt_label not in gt_segms or pred_label not in pred_segms:
            continue
        gt_info = gt_segms[gt_label]
        if gt_info["iscrowd"] == 1:
            continue
        if gt_info["category_id"] != pred_segms[pred_label]["category_id"]:
            continue
        union = (
            pred_segms[pred_label]["area"]
            + gt_info["area"]
            - intersection
            - gt_pred_map.get((VOID, pred_label), 0)
        )
        iou = intersection / union
        if iou > 0.5:
            pq_stat[gt_info["category_id"]].tp += 1
            pq_stat[gt_info["category_id"]].iou += iou
            gt_matched.add(gt_label)
            pred_matched.add(pred_label)

    # False negatives: unmatched non-crowd ground truth.
    crowd_labels: Dict[int, int] = {}
    for gt_label, gt_info in gt_segms.items():
        if gt_label in gt_matched:
            continue
        if gt_info["iscrowd"] == 1:
            crowd_labels[gt_info["category_id"]] = gt_label
            continue
        pq_stat[gt_info["category_id"]].fn += 1

    # False positives: unmatched predictions not mostly inside VOID or a same-category crowd.
    for pred_label, pred_info in pred_segms.items():
        if pred_label in pred_matched:
            continue
        intersection = gt_pred_map.get((VOID, pred_label), 0)
        if pred_info["category_id"] in crowd_labels:
            intersection += gt_pred_map.get((crowd_labels[pred_info["category_id"]], pred_label), 0)
        if intersection / pred_info["area"] > 0.5:
            continue
        pq_stat[pred_info["category_id"]].fp += 1


def _read_panoptic_png(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Panoptic PNG {path} does not exist")
    return rgb2id(np.array(Image.open(path).convert("RGB"), dtype=np.uint32))


def _pq_compute_images(
    annotation_pairs: Sequence[Tuple[Mapping, Mapping]],
    gt_folder: str,
    pred_folder: str,
    categories: Mapping[int, Mapping[str, Any]],
) -> PQStat:
    pq_stat = PQStat()
    for gt_ann, pred_ann in annotation_pairs:
        pan_gt = _read_panoptic_png(os.path.join(gt_folder, gt_ann["file_name"]))
        pan_pred = _read_panoptic_png(os.path.join(pred_folder, pred_ann["file_name"]))
        pq_compute_single_image(pq_stat, gt_ann, pred_ann, pan_gt, pan_pred, categories)
    return pq_stat


def pq_compute(
    gt_json_file: str,
    pred_json_file: str,
    gt_folder: Optional[str] = None,
    pred_folder: Optional[str] = None,
    *,
    num_workers: int = 0,
) -> Dict[str, Any]:
    """PQ of COCO panoptic predictions against a ground truth, both as JSON + PNG folder.

    Folders default to the JSON path without ``.json`` (the panopticapi convention). Every
    ground-truth image needs a prediction. ``num_workers > 0`` splits images over processes.

    Returns:
        ``{"All" | "Things" | "Stuff": {"pq", "sq", "rq", "n"}, "per_class": {cat_id: {...}}}``
        with values in [0, 1].
    """
    with open(gt_json_file, "r") as f:
        gt_json = json.load(f)
    with open(pred_json_file, "r") as f:
        pred_json = json.load(f)
    gt_folder = gt_folder if gt_folder is not None else gt_json_file.replace(".json", "")
    pred_folder = pred_folder if pred_folder is not None else pred_json_file.replace(".json", "")
    for folder, what in ((gt_folder, "ground truth"), (pred_folder, "prediction")):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Folder {folder} with {what} PNGs does not exist")
    categories = {el["id"]: el for el in gt_json["categories"]}

    pred_annotations = {el["image_id"]: el for el in pred_json["annotations"]}
    pairs: List[Tuple[Mapping, Mapping]] = []
    for gt_ann in gt_json["annotations"]:
        image_id = gt_ann["image_id"]
        if image_id not in pred_annotations:
            raise KeyError(f"{pred_json_file}: no prediction for the image with id: {image_id}")
        pairs.append((gt_ann, pred_annotations[image_id]))

    if num_workers > 0 and len(pairs) > 1:
        chunks = [c.tolist() for c in np.array_split(np.arange(len(pairs)), num_workers) if len(c)]
        args = [([pairs[i] for i in c], gt_folder, pred_folder, categories) for c in chunks]
        with multiprocessing.get_context("spawn").Pool(len(chunks)) as pool:
            stats = pool.starmap(_pq_compute_images, args)
        pq_stat = PQStat()
        for s in stats:
            pq_stat += s
    else:
        pq_stat = _pq_compute_images(pairs, gt_folder, pred_folder, categories)

    results: Dict[str, Any] = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        results[name], per_class = pq_stat.pq_average(categories, isthing=isthing)
        if name == "All":
            results["per_class"] = per_class
    logger.info("PQ computed over %d images", len(pairs))
    return results
