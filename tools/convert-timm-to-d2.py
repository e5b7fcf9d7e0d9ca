#!/usr/bin/env python
"""Convert timm ImageNet weights (ResNet or Swin) to a detectron2-style .pkl for our backbones.

Usage:
  python tools/convert-timm-to-d2.py resnet50_a1_in1k.safetensors R-50-timm.pkl
  python tools/convert-timm-to-d2.py swin_tiny_patch4_window7_224.pth swin_tiny_timm.pkl --arch swin

Input: a file holding ``timm.create_model(NAME).state_dict()`` (.pth / .pt / .bin via
torch.load, or .safetensors). The architecture is detected from the keys unless --arch is given.

ResNet weights from timm expect RGB input, ImageNet mean/std and the stride in the 3x3 conv:
  MODEL.PIXEL_MEAN: [123.675, 116.280, 103.530]   MODEL.PIXEL_STD: [58.395, 57.120, 57.375]
  INPUT.FORMAT: "RGB"   MODEL.RESNETS.STRIDE_IN_1X1: False
  deep-stem variants: MODEL.RESNETS.STEM_TYPE: "deeplab", STEM_OUT_CHANNELS: 64 (resnet*c)
  or 128 (resnet*s), with MODEL.BACKBONE.NAME: "build_resnet_deeplab_backbone".
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mask2former.checkpoint.conversions import convert_timm_state_dict, read_weights_file  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="timm state_dict (.pth / .pt / .bin / .safetensors)")
    parser.add_argument("output", help="output .pkl in detectron2 model-zoo format")
    parser.add_argument("--arch", choices=["resnet", "swin"], default=None,
                        help="architecture of the weights (default: detected from the keys)")
    args = parser.parse_args(argv)

    try:
        state_dict = read_weights_file(args.input)
    except ValueError as err:
        parser.error(str(err))
    try:
        converted = convert_timm_state_dict(state_dict, args.arch)
    except ValueError as err:
        parser.error(f"{args.input}: {err}")
    with open(args.output, "wb") as f:
        pickle.dump(converted, f)
    print(f"Wrote {len(converted['model'])} tensors to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
