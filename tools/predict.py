#!/usr/bin/env python
"""Run a model over images or a registered dataset and save the predictions in standard formats.

Usage:
  python tools/predict.py --config-file CFG.yaml --input 'images/*.jpg' --output preds/ MODEL.WEIGHTS model.pkl
  python tools/predict.py --config-file CFG.yaml --dataset coco_2017_val_panoptic --output preds/ --raw --resume

Writes under --output (see mask2former/engine/predictions.py): panoptic/*.png +
panoptic_predictions.json (COCO panoptic), instances_predictions.json (COCO results, RLE masks),
semantic/*.png (--semantic-encoding ids | cityscapes | ade20k), raw/*.npz with --raw (per-query
class logits and mask probabilities), records/*.json (per image; --resume skips images that have
one). Which outputs exist follows MODEL.MASK_FORMER.TEST.{SEMANTIC,INSTANCE,PANOPTIC}_ON.
Dataset category ids come from the metadata of --dataset, else of DATASETS.TEST[0].
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _image_items(patterns):
    files = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            files += [os.path.join(pattern, f) for f in sorted(os.listdir(pattern)) if f.lower().endswith(_IMAGE_EXTENSIONS)]
        else:
            matched = sorted(glob.glob(os.path.expanduser(pattern)))
            if not matched:
                raise FileNotFoundError(f"--input {pattern!r} matches no file")
            files += matched
    return [{"file_name": f, "image_id": os.path.splitext(os.path.basename(f))[0]} for f in files]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", help="image files, globs or folders")
    source.add_argument("--dataset", help="a registered dataset name")
    parser.add_argument("--output", required=True)
    parser.add_argument("--semantic-encoding", default="ids", choices=["ids", "cityscapes", "ade20k"])
    parser.add_argument("--raw", action="store_true", help="also write per-query logits / mask probabilities (.npz)")
    parser.add_argument("--resume", action="store_true", help="skip images already written")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)

    from mask2former.config import get_cfg
    from mask2former.data import DatasetCatalog, MetadataCatalog
    from mask2former.data.detection_utils import read_image
    from mask2former.engine.defaults import DefaultPredictor
    from mask2former.engine.predictions import PredictionWriter, RawOutputRecorder, run_predictions

    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if args.dataset:
        cfg.DATASETS.TEST = (args.dataset,)
    cfg.freeze()
    try:
        if args.dataset:
            items = [{"file_name": d["file_name"], "image_id": d.get("image_id")} for d in DatasetCatalog.get(args.dataset)]
        else:
            items = _image_items(args.input)
    except (FileNotFoundError, KeyError) as err:
        parser.error(str(err))
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0]) if len(cfg.DATASETS.TEST) else None

    predictor = DefaultPredictor(cfg)
    recorder = RawOutputRecorder(predictor.model) if args.raw else None
    writer = PredictionWriter(args.output, metadata, semantic_encoding=args.semantic_encoding, raw=args.raw)
    count = run_predictions(lambda item: predictor(read_image(item["file_name"], format="BGR")), items, writer,
                            resume=args.resume, recorder=recorder, progress=not args.no_progress)
    images = categories = None
    panoptic_json = getattr(metadata, "panoptic_json", None) if metadata is not None else None
    if panoptic_json and os.path.isfile(panoptic_json):
        with open(panoptic_json, encoding="utf-8") as f:
            gt = json.load(f)
        images, categories = gt.get("images"), gt.get("categories")
    written = writer.finalize(images=images, categories=categories)
    print(f"Predicted {count} image(s) ({len(items) - count} already done) into {args.output}: "
          + ", ".join(f"{k}={v}" for k, v in written.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
