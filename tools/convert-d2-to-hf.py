#!/usr/bin/env python
"""Convert a Mask2Former / MaskFormer model of this package to a Hugging Face transformers folder.

Usage:
  python tools/convert-d2-to-hf.py --config-file configs/coco/panoptic-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml \\
      --weights model_final.pkl --output hf_out/ [--id2label id2label.json] [KEY VALUE ...]

Writes OUT_DIR/config.json + OUT_DIR/model.safetensors, which
``Mask2FormerForUniversalSegmentation.from_pretrained(OUT_DIR)`` (MSDeformAttn pixel decoder) or
``MaskFormerForInstanceSegmentation.from_pretrained(OUT_DIR)`` (BasePixelDecoder + standard decoder)
loads. Swin and ResNet backbones. Class names: --id2label (a JSON {id: name}), else id2label.json
next to the config file, else the stuff_classes of DATASETS.TEST[0] when registered, else LABEL_i.
The weights are read with the safe loaders (never unpickling code).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mask2former.checkpoint import load_checkpoint_file  # noqa: E402
from mask2former.checkpoint.hf_checkpoint import write_hf_folder  # noqa: E402
from mask2former.config import get_cfg  # noqa: E402


def _class_names(cfg, config_file: str, explicit: str):
    path = explicit or os.path.join(os.path.dirname(os.path.abspath(config_file)), "id2label.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return {int(k): v for k, v in json.load(f).items()}
    if explicit:
        raise FileNotFoundError(f"--id2label {explicit}: no such file")
    if len(cfg.DATASETS.TEST):
        from mask2former.utils.catalog import MetadataCatalog

        try:
            import mask2former.data  # noqa: F401  (registers the built-in datasets)
            names = MetadataCatalog.get(cfg.DATASETS.TEST[0]).get("stuff_classes", None)
        except Exception:  # an unregistered / unavailable dataset: fall back to LABEL_i
            names = None
        if names and len(names) == cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES:
            return dict(enumerate(names))
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help=".pkl / .pth / .safetensors of this package")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--id2label", default="", help="JSON file {id: class name}")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    try:
        state = {k: torch.as_tensor(v) for k, v in load_checkpoint_file(args.weights)["model"].items()}
        paths = write_hf_folder(args.output, cfg, state, _class_names(cfg, args.config_file, args.id2label))
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    print(f"Wrote {paths['config']} and {paths['weights']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
