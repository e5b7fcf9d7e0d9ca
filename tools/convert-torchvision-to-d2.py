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

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mask2former.checkpoint.conversions import to_d2_checkpoint  # noqa: E402
from mask2former.checkpoint.convert_cli import run_converter  # noqa: E402
from mask2former.checkpoint.torchvision_conversion import (  # noqa: E402
    convert_torchvision_resnet_state_dict,
)


def _convert(state_dict, args):
    converted = convert_torchvision_resnet_state_dict(state_dict)
    for old, new in zip(state_dict, converted):
        print(old, "->", new)
    return to_d2_checkpoint(converted, author="torchvision")


def main(argv=None) -> int:
    return run_converter(argv, description=__doc__.splitlines()[0],
                         input_help="torchvision ResNet state_dict (.pth)", convert=_convert)


if __name__ == "__main__":
    sys.exit(main())
