#!/usr/bin/env python
"""Convert a Hugging Face transformers Mask2Former / MaskFormer folder to this package's format.

Usage:
  python tools/convert-hf-to-d2.py --input mask2former-swin-tiny-coco-panoptic --output out/ [--format pkl]
  python tools/convert-hf-to-d2.py --input hf://facebook/mask2former-swin-tiny-coco-panoptic --output out/

Input: a folder as ``save_pretrained`` writes it (``config.json`` + ``model.safetensors``) of
``Mask2FormerForUniversalSegmentation`` or ``MaskFormerForInstanceSegmentation`` (Swin or ResNet
backbone), or an ``hf://ORG/NAME`` already in the Hugging Face cache. Output:
  OUT_DIR/config.yaml          the network, for get_cfg().merge_from_file (any size the HF config allows)
  OUT_DIR/id2label.json        the class names
  OUT_DIR/model_final.<fmt>    the weights (pkl | pth | safetensors)
Then: ``tools/train_net.py --config-file OUT_DIR/config.yaml --eval-only MODEL.WEIGHTS OUT_DIR/model_final.pkl``
(plus DATASETS.TEST and the panoptic / instance switches for your data).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mask2former.checkpoint.hf_checkpoint import convert_hf_folder, resolve_hf_uri, write_d2_folder  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="save_pretrained folder or hf://ORG/NAME")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--format", default="pkl", choices=["pkl", "pth", "safetensors"], help="weights file format")
    args = parser.parse_args(argv)
    try:
        folder = resolve_hf_uri(args.input) if args.input.startswith("hf://") else args.input
        overrides, checkpoint, id2label = convert_hf_folder(folder)
        paths = write_d2_folder(args.output, overrides, checkpoint, id2label, fmt=args.format, source=args.input)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    print(f"Wrote {len(checkpoint['model'])} tensors to {paths['weights']}, config to {paths['config']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
