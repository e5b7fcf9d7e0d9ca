#!/usr/bin/env python
"""PQ (and mIoU) of a semantic segmentation model, as the official Mask2Former tool computes it.

Usage:
  python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS W   # writes
      OUTPUT_DIR/inference/sem_seg_predictions.json (SemSegEvaluator's COCO-stuff results)
  python tools/evaluate_pq_for_semantic_segmentation.py --dataset-name ade20k_sem_seg_val \\
      --json-file OUTPUT_DIR/inference/sem_seg_predictions.json

Every class present in an image is one segment, in the prediction as in the ground truth
(ignored pixels are VOID), and every class counts as stuff; PQ / SQ / RQ then follow the COCO
panoptic definition (``mask2former.evaluation.panoptic_quality``). Predictions are matched to
the dataset's images by file name without extension; pixels no prediction covers get class 0,
as in the official tool. The printed mIoU is ``SemSegEvaluator``'s (classes absent from the
ground truth are left out); the official tool divides by the classes present in the ground
truth or the prediction instead. Any registered dataset with ``stuff_classes`` and
``ignore_label`` works (the official tool knows three; Cityscapes' label files work too, as
trainIds).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from collections import defaultdict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mask2former.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from mask2former.evaluation.panoptic_quality import VOID, PQStat, pq_compute_single_image  # noqa: E402
from mask2former.evaluation.sem_seg_evaluation import load_image_into_numpy_array, semantic_metrics  # noqa: E402

__all__ = ["evaluate_pq_for_semantic_segmentation", "image_pq_and_confusion", "main"]


def _stem(file_name: str) -> str:
    return os.path.splitext(os.path.basename(file_name))[0]


def image_pq_and_confusion(
    gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore_label: int, image_id: str = ""
) -> Tuple[PQStat, np.ndarray]:
    """PQ statistics and the ``(K+1, K+1)`` [pred, gt] confusion matrix of one (H, W) label map
    pair; class ``c`` becomes segment ``c + 1`` so that ignored pixels are the VOID segment 0."""
    if gt.shape != pred.shape:
        raise ValueError(f"Image {image_id}: prediction of shape {pred.shape} vs ground truth {gt.shape}")
    ignored = gt == ignore_label
    pan_gt = np.where(ignored, VOID, gt + 1)  # (H, W)
    pan_pred = pred + 1  # (H, W)
    classes, areas = np.unique(gt[~ignored], return_counts=True)
    gt_ann = {
        "image_id": image_id,
        "segments_info": [
            {"id": int(c) + 1, "category_id": int(c), "area": int(a), "iscrowd": 0}
            for c, a in zip(classes.tolist(), areas.tolist())
        ],
    }
    pred_ann = {"segments_info": [{"id": int(c) + 1, "category_id": int(c)} for c in np.unique(pred).tolist()]}
    categories = {i: {"id": i, "isthing": 0} for i in range(num_classes)}
    stat = PQStat()
    pq_compute_single_image(stat, gt_ann, pred_ann, pan_gt, pan_pred, categories)

    gt_conf = np.where(ignored, num_classes, gt)
    conf = np.bincount(
        (num_classes + 1) * pred.reshape(-1) + gt_conf.reshape(-1), minlength=(num_classes + 1) ** 2
    ).reshape(num_classes + 1, num_classes + 1)
    return stat, conf


def _evaluate_images(
    items: Sequence[Tuple[str, str, List[Dict[str, Any]]]], num_classes: int, ignore_label: int,
    dataset_id_to_contiguous_id: Optional[Mapping[int, int]],
) -> Tuple[PQStat, np.ndarray]:
    """Sum of :func:`image_pq_and_confusion` over ``(image id, gt file, predictions)`` items."""
    pq_stat = PQStat()
    conf = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    for image_id, gt_file, anns in items:
        gt = load_image_into_numpy_array(gt_file, dtype=np.int64)
        pred = np.zeros_like(gt)
        for ann in anns:
            category_id = ann["category_id"]
            if dataset_id_to_contiguous_id is not None:
                if category_id not in dataset_id_to_contiguous_id:
                    raise KeyError(f"Image {image_id}: category_id {category_id} is not in stuff_dataset_id_to_contiguous_id")
                category_id = dataset_id_to_contiguous_id[category_id]
            if not 0 <= category_id < num_classes:
                raise ValueError(f"Image {image_id}: category_id {category_id} outside [0, {num_classes})")
            pred[mask_util.decode(ann["segmentation"]) > 0] = category_id
        stat, image_conf = image_pq_and_confusion(gt, pred, num_classes, ignore_label, image_id)
        pq_stat += stat
        conf += image_conf
    return pq_stat, conf


def evaluate_pq_for_semantic_segmentation(
    dataset_name: str, predictions: Sequence[Mapping[str, Any]], *, workers: int = 0
) -> Dict[str, Any]:
    """``{"All" | "Stuff": {"pq", "sq", "rq", "n"}, "per_class": ..., "sem_seg": SemSegEvaluator
    metrics}`` (PQ values in [0, 1], sem_seg in percent) of COCO-stuff-format ``predictions``."""
    meta = MetadataCatalog.get(dataset_name)
    class_names = list(meta.stuff_classes)
    num_classes, ignore_label = len(class_names), int(meta.ignore_label)
    gt_files = {_stem(d["file_name"]): d["sem_seg_file_name"] for d in DatasetCatalog.get(dataset_name)}
    per_image: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
    for pred in predictions:
        per_image[_stem(pred["file_name"])].append(pred)
    unknown = sorted(set(per_image) - set(gt_files))
    if unknown:
        raise KeyError(f"Predictions for {len(unknown)} images not in dataset '{dataset_name}', e.g. {unknown[0]!r}")
    items = [(i, gt_files[i], per_image[i]) for i in sorted(per_image)]
    mapping = meta.get("stuff_dataset_id_to_contiguous_id", None)
    if workers > 1 and len(items) > 1:
        chunks = [items[k::workers] for k in range(workers) if items[k::workers]]
        with multiprocessing.get_context("spawn").Pool(len(chunks)) as pool:
            parts = pool.starmap(_evaluate_images, [(c, num_classes, ignore_label, mapping) for c in chunks])
        pq_stat, conf = PQStat(), np.zeros((num_classes + 1, num_classes + 1), np.int64)
        for stat, c in parts:
            pq_stat += stat
            conf += c
    else:
        pq_stat, conf = _evaluate_images(items, num_classes, ignore_label, mapping)

    categories = {i: {"id": i, "name": n, "isthing": 0} for i, n in enumerate(class_names)}
    results: Dict[str, Any] = {}
    results["All"], results["per_class"] = pq_stat.pq_average(categories, isthing=None)
    results["Stuff"], _ = pq_stat.pq_average(categories, isthing=False)
    results["sem_seg"] = semantic_metrics(conf, class_names)
    results["num_images"] = len(items)
    return results


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-name", default="ade20k_sem_seg_val", help="a registered semantic dataset")
    parser.add_argument("--json-file", required=True, help="sem_seg_predictions.json written by SemSegEvaluator")
    parser.add_argument("--workers", type=int, default=0, help="processes (0 or 1: this one)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.json_file):
        raise FileNotFoundError(f"--json-file '{args.json_file}' not found (SemSegEvaluator writes "
                                "sem_seg_predictions.json into its output_dir)")
    with open(args.json_file) as f:
        predictions = json.load(f)
    results = evaluate_pq_for_semantic_segmentation(args.dataset_name, predictions, workers=args.workers)
    print(f"{results['num_images']} images of {args.dataset_name}")
    print("{:10s}| {:>5s}  {:>5s}  {:>5s} {:>5s}".format("", "PQ", "SQ", "RQ", "N"))
    print("-" * (10 + 7 * 4))
    for name in ("All", "Stuff"):
        r = results[name]
        print(f"{name:10s}| {100 * r['pq']:5.1f}  {100 * r['sq']:5.1f}  {100 * r['rq']:5.1f} {r['n']:5d}")
    print(f"\nmIoU: {results['sem_seg']['mIoU']:.2f}")
    return results


if __name__ == "__main__":
    main()
