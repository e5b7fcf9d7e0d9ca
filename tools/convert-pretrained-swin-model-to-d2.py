#!/usr/bin/env python
"""Convert an official Swin Transformer ImageNet checkpoint (.pth) to a detectron2-style .pkl.

Usage:
  python tools/convert-pretrained-swin-model-to-d2.py swin_tiny_patch4_window7_224.pth swin_tiny_patch4_window7_224.pkl

Then set MODEL.WEIGHTS to the .pkl (the Swin configs under configs/**/swin/ expect it).
The names are kept as they are; the checkpointer matches them to ``backbone.*`` by suffix.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mask2former.checkpoint.conversions import convert_official_swin_checkpoint  # noqa: E402
from mask2former.checkpoint.convert_cli import run_converter  # noqa: E402


def main(argv=None) -> int:
    return run_converter(
        argv, description=__doc__.splitlines()[0],
        input_help="official Swin checkpoint (.pth holding {'model': state_dict})",
        convert=lambda checkpoint, args: convert_official_swin_checkpoint(checkpoint),
    )


if __name__ == "__main__":
    sys.exit(main())
