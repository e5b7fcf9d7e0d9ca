#!/usr/bin/env python
"""Convert an official Swin Transformer ImageNet checkpoint (.pth) to a detectron2-style .pkl.

Usage:
  python tools/convert-pretrained-swin-model-to-d2.py swin_tiny_patch4_window7_224.pth swin_tiny_patch4_window7_224.pkl

Then set MODEL.WEIGHTS to the .pkl (the Swin configs under configs/**/swin/ expect it).
The names are kept as they are; the checkpointer matches them to ``backbone.*`` by suffix.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mask2former.checkpoint.conversions import convert_official_swin_checkpoint, read_weights_file  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="official Swin checkpoint (.pth holding {'model': state_dict})")
    parser.add_argument("output", help="output .pkl in detectron2 model-zoo format")
    args = parser.parse_args(argv)

    try:
        checkpoint = read_weights_file(args.input)
    except ValueError as err:
        parser.error(str(err))
    try:
        converted = convert_official_swin_checkpoint(checkpoint)
    except ValueError as err:
        parser.error(f"{args.input}: {err}")
    with open(args.output, "wb") as f:
        pickle.dump(converted, f)
    print(f"Wrote {len(converted['model'])} tensors to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
