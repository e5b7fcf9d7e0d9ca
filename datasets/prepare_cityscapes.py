#!/usr/bin/env python3
"""Cityscapes label files that the ``cityscapes_fine_*`` datasets read, made by cityscapesscripts.

Expects the two official archives (``gtFine_trainvaltest.zip``, ``leftImg8bit_trainvaltest.zip``)
extracted under ``$DETECTRON2_DATASETS/cityscapes``:

    cityscapes/gtFine/{train,val,test}/<city>/*_gtFine_{polygons.json,instanceIds.png,labelIds.png}
    cityscapes/leftImg8bit/{train,val,test}/<city>/*_leftImg8bit.png

and writes, with cityscapesscripts' own converters,

    gtFine/<split>/<city>/*_gtFine_labelTrainIds.png   json2labelImg(..., "trainIds") on every
                                                        polygons.json (as createTrainIdLabelImgs)
    gtFine/cityscapes_panoptic_<split>/*_panoptic.png   createPanopticImgs.convert2panoptic on the
    gtFine/cityscapes_panoptic_<split>.json             instanceIds PNGs (label ids, not trainIds)

The semantic datasets read the labelTrainIds PNGs, the panoptic ones both outputs.
"""
from __future__ import annotations

import glob
import os
from typing import Dict, Optional, Sequence

import _prepare_utils as U  # first: puts the repository root on sys.path

__all__ = ["LABEL_SPLITS", "PANOPTIC_SPLITS", "check_layout", "main", "make_panoptic", "make_train_id_labels"]

LABEL_SPLITS = ("train", "val", "test")
PANOPTIC_SPLITS = ("train", "val")  # what cityscapes_fine_panoptic_{train,val} read
_DOWNLOAD = (
    "Download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip from "
    "https://www.cityscapes-dataset.com/downloads/ and extract both into '{}'"
)


def _cityscapesscripts():
    try:
        from cityscapesscripts.preparation import createPanopticImgs, json2labelImg
    except ImportError as err:
        raise ImportError("prepare_cityscapes.py needs cityscapesscripts: pip install cityscapesscripts") from err
    return json2labelImg, createPanopticImgs


def check_layout(cityscapes_dir: str, splits: Sequence[str], pattern: str) -> Dict[str, list]:
    """``{split: sorted files gtFine/<split>/*/<pattern>}``; FileNotFoundError naming the first
    missing folder or the split without such files."""
    hint = _DOWNLOAD.format(cityscapes_dir)
    U.require_dir(cityscapes_dir, "Cityscapes", hint)
    U.require_dir(os.path.join(cityscapes_dir, "gtFine"), "Cityscapes gtFine", hint)
    found = {}
    for split in splits:
        split_dir = U.require_dir(os.path.join(cityscapes_dir, "gtFine", split), f"Cityscapes gtFine/{split}", hint)
        files = sorted(glob.glob(os.path.join(split_dir, "*", pattern)))
        if not files:
            raise FileNotFoundError(
                f"No gtFine/{split}/<city>/{pattern} files in '{split_dir}'. {hint}"
            )
        found[split] = files
    return found


def _train_id_label(polygons_json: str) -> None:
    json2labelImg, _ = _cityscapesscripts()
    out = polygons_json.replace("_polygons.json", "_labelTrainIds.png")
    try:
        json2labelImg.json2labelImg(polygons_json, out, "trainIds")
    except SystemExit:  # cityscapesscripts' printError exits
        raise ValueError(f"cityscapesscripts could not convert '{polygons_json}'") from None


def make_train_id_labels(cityscapes_dir: str, splits: Sequence[str] = LABEL_SPLITS, workers: int = 1) -> Dict[str, int]:
    """Write ``*_gtFine_labelTrainIds.png`` next to every ``*_gtFine_polygons.json``; returns
    {split: number of files}."""
    counts = {}
    for split, files in check_layout(cityscapes_dir, splits, "*_gtFine_polygons.json").items():
        U.run_tasks(_train_id_label, [(f,) for f in files], workers, desc=f"labelTrainIds {split}")
        counts[split] = len(files)
    return counts


def make_panoptic(cityscapes_dir: str, splits: Sequence[str] = PANOPTIC_SPLITS) -> Dict[str, int]:
    """Write ``gtFine/cityscapes_panoptic_<split>{/,.json}`` from the instanceIds PNGs (COCO
    panoptic format, Cityscapes label ids as category ids); returns {split: number of images}."""
    _, create_panoptic = _cityscapesscripts()
    gt_dir = os.path.join(cityscapes_dir, "gtFine")
    counts = {}
    for split, files in check_layout(cityscapes_dir, splits, "*_gtFine_instanceIds.png").items():
        try:  # prints its own progress
            create_panoptic.convert2panoptic(gt_dir, gt_dir, useTrainId=False, setNames=[split])
        except SystemExit:  # cityscapesscripts' printError: the message is printed above
            raise RuntimeError(f"cityscapesscripts' createPanopticImgs failed on gtFine/{split}") from None
        print()
        counts[split] = len(files)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = U.make_parser(__doc__)
    parser.add_argument(
        "--label-splits", nargs="*", default=list(LABEL_SPLITS), help="labelTrainIds for these (default: %(default)s)"
    )
    parser.add_argument(
        "--panoptic-splits", nargs="*", default=list(PANOPTIC_SPLITS), help="panoptic for these (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    cityscapes_dir = os.path.join(U.resolve_root(args), "cityscapes")
    for split, n in make_train_id_labels(cityscapes_dir, args.label_splits, args.workers).items():
        print(f"{split}: wrote {n} labelTrainIds PNGs")
    for split, n in make_panoptic(cityscapes_dir, args.panoptic_splits).items():
        print(f"{split}: wrote {n} panoptic PNGs and gtFine/cityscapes_panoptic_{split}.json")


if __name__ == "__main__":
    main()
