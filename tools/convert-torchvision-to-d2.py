#!/usr/bin/env python
"""Convert a torchvision ResNet checkpoint (.pth) to a detectron2-style .pkl.

Usage:
  python tools/convert-torchvision-to-d2.py resnet50-0676ba61.pth R-50-torchvision.pkl

Then set in the config (torchvision ResNets expect RGB input, ImageNet mean/std and
the stride in the 3x3 conv):
  MODEL.WEIGHTS: R-50-torchvision.pkl
  MODEL.PIXEL_MEAN: [123.675, 116.280, 103.530]
  MODEL.PIXEL_STD: [58.395, 57.120, 57.375]
  MODEL.RESNETS.DEPTH: 50
  MODEL.RESNETS.STRIDE_IN_1X1: False
  INPUT.FORMAT: "RGB"
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mask2former.checkpoint.conversions import read_weights_file, to_d2_checkpoint  # noqa: E402
from mask2former.checkpoint.torchvision_conversion import (  # noqa: E402
    convert_torchvision_resnet_state_dict,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="torchvision ResNet state_dict (.pth)")
    parser.add_argument("output", help="output .pkl in detectron2 model-zoo format")
    args = parser.parse_args(argv)

    try:
        state_dict = read_weights_file(args.input)
    except ValueError as err:
        parser.error(str(err))
    try:
        converted = convert_torchvision_resnet_state_dict(state_dict)
    except ValueError as err:
        parser.error(f"{args.input}: {err}")
    for old, new in zip(state_dict, converted):
        print(old, "->", new)
    checkpoint = to_d2_checkpoint(converted, author="torchvision")
    with open(args.output, "wb") as f:
        pickle.dump(checkpoint, f)
    print(f"Wrote {len(checkpoint['model'])} tensors to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
