#!/usr/bin/env python
"""Convert a .pkl (detectron2 model zoo) or .pth checkpoint to .safetensors (weights only).

Usage:
  python tools/convert-to-safetensors.py model_final_f07440.pkl model_final_f07440.safetensors

The input is read without running code (restricted unpickler / torch.load(weights_only=True)).
Only the model weights are written; optimizer / scheduler / iteration entries of a trainer
checkpoint are left out (listed on stdout). The detectron2 loading flags of converted backbones
(``__author__``, ``matching_heuristics``) are kept in the file's header. Every tensor keeps its
dtype and bits. Use the output as MODEL.WEIGHTS.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mask2former.checkpoint.loading import load_checkpoint_file  # noqa: E402
from mask2former.checkpoint.safe_pickle import UnsafePickleError  # noqa: E402
from mask2former.checkpoint.safetensors_io import convert_to_safetensors  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="checkpoint (.pkl / .pth / .pt)")
    parser.add_argument("output", help="output .safetensors file")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.input):
        parser.error(f"{args.input}: no such file")
    try:
        summary = convert_to_safetensors(load_checkpoint_file(args.input), args.output, source=args.input)
    except (ValueError, RuntimeError, UnsafePickleError) as err:
        parser.error(str(err))
    print(f"Wrote {summary['num_tensors']} tensors to {args.output}")
    if summary["dropped"]:
        print(f"Left out (not model weights): {', '.join(summary['dropped'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
