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

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mask2former.checkpoint.conversions import convert_timm_state_dict  # noqa: E402
from mask2former.checkpoint.convert_cli import run_converter  # noqa: E402


def _add_arguments(parser) -> None:
    parser.add_argument("--arch", choices=["resnet", "swin"], default=None,
                        help="architecture of the weights (default: detected from the keys)")


def main(argv=None) -> int:
    return run_converter(
        argv, description=__doc__.splitlines()[0],
        input_help="timm state_dict (.pth / .pt / .bin / .safetensors)",
        convert=lambda state_dict, args: convert_timm_state_dict(state_dict, args.arch),
        add_arguments=_add_arguments,
    )


if __name__ == "__main__":
    sys.exit(main())
