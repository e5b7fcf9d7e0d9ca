"""The command-line core shared by the ``tools/convert-*-to-d2.py`` weight converters.

Every converter reads one third-party weights file (:func:`read_weights_file`: safetensors or
``torch.load(weights_only=True)``, never pickle), turns it into a detectron2-style checkpoint
``{"model": {name: numpy array}, ...}`` and writes that as a ``.pkl``; only the conversion differs.
"""
from __future__ import annotations

import argparse
import pickle
from typing import Any, Callable, Dict, Optional, Sequence

from .conversions import read_weights_file

__all__ = ["run_converter"]

Convert = Callable[[Any, argparse.Namespace], Dict[str, Any]]


def run_converter(
    argv: Optional[Sequence[str]],
    *,
    description: str,
    input_help: str,
    convert: Convert,
    add_arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None,
) -> int:
    """Parse ``input`` / ``output`` (+ ``add_arguments``), convert, write the ``.pkl``; returns 0.

    ``convert(loaded_file, args)`` returns the checkpoint dict; a ``ValueError`` it raises (or
    one from reading the file) exits with status 2 and a message naming the input file.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("input", help=input_help)
    parser.add_argument("output", help="output .pkl in detectron2 model-zoo format")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)

    try:
        loaded = read_weights_file(args.input)
    except ValueError as err:
        parser.error(str(err))
    try:
        checkpoint = convert(loaded, args)
    except ValueError as err:
        parser.error(f"{args.input}: {err}")
    with open(args.output, "wb") as f:
        pickle.dump(checkpoint, f)
    print(f"Wrote {len(checkpoint['model'])} tensors to {args.output}")
    return 0
