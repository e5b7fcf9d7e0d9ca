#!/usr/bin/env python
"""Boundary AP of COCO-format instance predictions (as the official Mask2Former tool).

    python tools/evaluate_coco_boundary_ap.py --gt-json-file instances_val2017.json \
        --dt-json-file output/inference/coco_instances_results.json

The detections file is what ``COCOEvaluator`` writes (``coco_instances_results.json``: a list of
``{"image_id", "category_id", "segmentation" (RLE), "score"}``). Boundary IoU follows its
published definition (mask2former/evaluation/boundary_iou.py); prints pycocotools' summary table.
"""
import argparse
import json
import os
import sys

from pycocotools.coco import COCO

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mask2former.evaluation.boundary_iou import summarize_boundary_ap  # noqa: E402

_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt-json-file", required=True, help="COCO instances ground-truth json")
    parser.add_argument("--dt-json-file", required=True, help="COCO results json of the predictions")
    parser.add_argument("--dilation-ratio", type=float, default=0.02,
                        help="boundary band width as a fraction of the image diagonal (0.02 for COCO)")
    args = parser.parse_args(argv)
    for flag, path in (("--gt-json-file", args.gt_json_file), ("--dt-json-file", args.dt_json_file)):
        if not os.path.isfile(path):
            parser.error(f"{flag} {path!r} does not exist")
    coco_gt = COCO(args.gt_json_file)
    with open(args.dt_json_file) as f:
        detections = json.load(f)
    if not isinstance(detections, list):
        parser.error(f"--dt-json-file {args.dt_json_file!r} must hold a list of detections")
    if not detections:
        print(f"No detections in {args.dt_json_file}: Boundary AP is 0")
        return {name: 0.0 for name in _NAMES}
    coco_dt = coco_gt.loadRes(detections)
    stats = summarize_boundary_ap(coco_gt, coco_dt, dilation_ratio=args.dilation_ratio)
    results = {name: 100.0 * value for name, value in zip(_NAMES, stats)}
    print("Boundary AP: " + ", ".join(f"{k}={v:.2f}" for k, v in results.items()))
    return results


if __name__ == "__main__":
    main()
