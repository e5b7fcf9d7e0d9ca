#!/usr/bin/env python
"""Export a MaskFormer / Mask2Former model to ONNX or torch.export, with its deploy.json.

Examples:
  python tools/export_model.py --config-file configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml \\
      --format onnx --output export/r50_panoptic --input-size 480x640 --opts MODEL.WEIGHTS model_final_94dc52.pkl
  python tools/export_model.py --config-file CFG --format onnx --output DIR --dynamic
  python tools/export_model.py --config-file CFG --format torch_export --output DIR --sample-image photo.jpg

The graph takes a normalised, padded (1, 3, H, W) batch and returns ``pred_logits`` and
``pred_masks``; ``deploy.json`` holds what pre- and post-processing need. Run the result
with ``mask2former.deploy.ONNXPredictor(DIR)`` or ``tools/demo.py --onnx DIR``.
See docs/deployment.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mask2former.engine.arguments import parse_input_size  # noqa: E402
from mask2former.checkpoint import DetectionCheckpointer  # noqa: E402
from mask2former.config import get_cfg  # noqa: E402
import mask2former.data  # noqa: E402,F401  (registers the built-in datasets' metadata)
from mask2former.deploy.export import UnsupportedOpError, export_model  # noqa: E402
from mask2former.deploy.onnx_predictor import shortest_edge_size  # noqa: E402
from mask2former.modeling import build_model  # noqa: E402
from mask2former.utils.logger import setup_logger  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    parser.add_argument("--format", choices=["onnx", "torch_export"], default="onnx")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder to write the model and deploy.json to")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--input-size", type=parse_input_size, metavar="HxW",
                      help="static network input (rounded up to the size divisibility); default 512x512")
    size.add_argument("--dynamic", action="store_true",
                      help="any input size (multiples of 32, padded by the predictor)")
    parser.add_argument("--sample-image", metavar="FILE",
                        help="trace on this image (resized as at test time) instead of random data")
    parser.add_argument("--opset", type=int, default=None,
                        help="ONNX opset (default 18; FaPN pixel decoders need 19 for DeformConv)")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    return parser


def sample_from_image(path: str, cfg, model, size: Optional[Tuple[int, int]]) -> torch.Tensor:
    """The normalised, padded (1, 3, H, W) batch the predictor would feed for this image."""
    import cv2

    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"--sample-image {path!r} cannot be read as an image")
    if cfg.INPUT.FORMAT == "RGB":
        image = image[:, :, ::-1]
    h, w = shortest_edge_size(*image.shape[:2], cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    image = cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=cv2.INTER_LINEAR)
    tensor = (torch.from_numpy(image.astype(np.float32).transpose(2, 0, 1)) - model.pixel_mean) / model.pixel_std
    d = max(model.size_divisibility, 1)
    ph, pw = (-(-h // d) * d, -(-w // d) * d) if size is None else size
    if h > ph or w > pw:
        raise ValueError(f"--sample-image resized to {h}x{w} does not fit --input-size {ph}x{pw}")
    padded = torch.zeros(1, 3, ph, pw)
    padded[0, :, :h, :w] = tensor
    return padded


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if not os.path.isfile(args.config_file):
        parser.error(f"--config-file {args.config_file!r} does not exist")
    if args.sample_image and not os.path.isfile(args.sample_image):
        parser.error(f"--sample-image {args.sample_image!r} does not exist")
    setup_logger(name="mask2former")
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    if cfg.MODEL.META_ARCHITECTURE != "MaskFormer":
        parser.error(f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r} cannot be exported; "
                     "only MaskFormer (mask classification) models can")

    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        print("Note: MODEL.WEIGHTS is empty, exporting random weights")
    size = args.input_size
    if args.dynamic:
        size = None
    sample = None
    if args.sample_image:
        padded = None
        if size is not None:
            d = max(model.size_divisibility, 1)
            padded = (-(-size[0] // d) * d, -(-size[1] // d) * d)
        sample = sample_from_image(args.sample_image, cfg, model, padded)
        if args.dynamic and (sample.shape[-2] % 32 or sample.shape[-1] % 32):
            parser.error("--dynamic traces on a multiple of 32: the sample image's padded size is not")
    try:
        meta = export_model(cfg, model, args.output, fmt=args.format, sample=sample,
                            input_size=size or (512, 512), dynamic=args.dynamic, opset=args.opset)
    except UnsupportedOpError as err:
        parser.exit(1, f"export_model.py: error: {err}\n")
    shape = "dynamic H x W" if meta["dynamic"] else "x".join(map(str, meta["input_size"]))
    print(f"Wrote {os.path.join(args.output, meta['model_file'])} ({args.format}, input {shape}) "
          f"and {os.path.join(args.output, 'deploy.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
