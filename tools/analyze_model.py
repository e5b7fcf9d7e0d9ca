#!/usr/bin/env python
"""Count parameters, inference FLOPs and activations of a config's model, or print its structure.

Examples:
  python tools/analyze_model.py --config-file configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml \\
      --tasks parameter flop --input-size 800x1200
  python tools/analyze_model.py --config-file CFG --tasks structure

FLOPs / activations are counted with fvcore (jit tracing) for the whole model in eval mode on
one image at a time, post-processing included, as detectron2's analyze_model does: the
model gets ``[{"image": (3, H, W), "height": H, "width": W}]``. The images are random, of
``--input-size`` (default: INPUT.MIN_SIZE_TEST x 1.5 times that, capped by MAX_SIZE_TEST,
e.g. 800x1200 for COCO), so no dataset is needed. Like detectron2, element-wise ops are not
counted; ops without a FLOP formula are listed once at the end instead of warned about.
One FLOP here is one multiply-add (fvcore's convention, as in the papers' "GFLOPs").
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

with warnings.catch_warnings():  # fvcore.nn scripts a loss at import: torch deprecation chatter
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import (ActivationCountAnalysis, FlopCountAnalysis, flop_count_table,
                           parameter_count, parameter_count_table)
    from fvcore.nn.jit_handles import get_shape

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mask2former.engine.arguments import parse_input_size  # noqa: E402
from mask2former.checkpoint import DetectionCheckpointer  # noqa: E402
from mask2former.config import get_cfg  # noqa: E402
from mask2former.modeling import build_model  # noqa: E402
import mask2former.data  # noqa: E402,F401  (registers the built-in datasets' metadata)

TASKS = ("parameter", "flop", "activation", "structure")

# Element-wise / data-movement ops detectron2's analysis does not count (its _IGNORED_OPS).
IGNORED_OPS = (
    "aten::add", "aten::add_", "aten::argmax", "aten::argsort", "aten::batch_norm",
    "aten::constant_pad_nd", "aten::div", "aten::div_", "aten::exp", "aten::log2",
    "aten::max_pool2d", "aten::meshgrid", "aten::mul", "aten::mul_", "aten::neg",
    "aten::nonzero_numpy", "aten::reciprocal", "aten::repeat_interleave", "aten::rsub",
    "aten::sigmoid", "aten::sigmoid_", "aten::softmax", "aten::sort", "aten::sqrt", "aten::sub",
    "torchvision::nms",
)


def matmul_flop(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs of mm / matmul, also in the ``out=`` form (a third input fvcore rejects)."""
    a, b = (get_shape(v) for v in inputs[:2])
    if a[-1] != b[-2 if len(b) > 1 else 0]:
        raise ValueError(f"matmul shapes do not chain: {a} x {b}")
    return int(np.prod(a)) * (b[-1] if len(b) > 1 else 1)


def attention_flop(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs of scaled_dot_product_attention: q @ k^T and attn @ v, as the two bmm of the
    nn.MultiheadAttention the official code ran (query (..., Lq, d), key (..., Lk, d),
    value (..., Lk, dv))."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    rows = int(np.prod(q[:-1]))  # batch x heads x Lq
    return rows * k[-2] * q[-1] + rows * k[-2] * v[-1]


class InferenceWrapper(nn.Module):
    """``model([{"image", "height", "width"}])[0]`` with the outputs flattened to tensors."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        height, width = image.shape[-2:]
        out = self.model([{"image": image, "height": height, "width": width}])[0]
        return flatten_outputs(out)


def flatten_outputs(out: Dict[str, Any]) -> Tuple[torch.Tensor, ...]:
    """Tensors of one image's result dict (semantic map, panoptic ids, instance fields)."""
    tensors: List[torch.Tensor] = []
    if "sem_seg" in out:
        tensors.append(out["sem_seg"])
    if "panoptic_seg" in out:
        tensors.append(out["panoptic_seg"][0])
    if "instances" in out:
        for value in out["instances"].get_fields().values():
            value = getattr(value, "tensor", value)
            if isinstance(value, torch.Tensor):
                tensors.append(value)
    return tuple(tensors)


def default_input_size(cfg) -> Tuple[int, int]:
    short = cfg.INPUT.MIN_SIZE_TEST
    return short, min(int(round(short * 1.5)), cfg.INPUT.MAX_SIZE_TEST)


def random_images(num: int, size: Tuple[int, int], device: str, seed: int = 0) -> List[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(3, *size, generator=gen) * 255).round().to(device) for _ in range(num)]


def _quiet(analysis):
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False) \
        .tracer_warnings("none")


def flop_analysis(model: nn.Module, image: torch.Tensor) -> FlopCountAnalysis:
    """fvcore FLOP analysis of one inference (post-processing included), warnings off."""
    analysis = FlopCountAnalysis(InferenceWrapper(model), (image,))
    analysis.set_op_handle(**{op: None for op in IGNORED_OPS})
    analysis.set_op_handle(**{"aten::mm": matmul_flop, "aten::matmul": matmul_flop,
                              "aten::scaled_dot_product_attention": attention_flop})
    return _quiet(analysis)


def activation_analysis(model: nn.Module, image: torch.Tensor) -> ActivationCountAnalysis:
    analysis = ActivationCountAnalysis(InferenceWrapper(model), (image,))
    analysis.set_op_handle(**{op: None for op in IGNORED_OPS})
    return _quiet(analysis)


def _run_analyses(factory, model, images) -> Tuple[Any, Counter, List[float]]:
    """First analysis (for the per-module table), per-operator sums, per-image totals."""
    counts: Counter = Counter()
    totals: List[float] = []
    first = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer / deprecation chatter
        for image in images:
            analysis = factory(model, image)
            counts += Counter(analysis.by_operator())
            totals.append(float(analysis.total()))
            first = first or analysis
    return first, counts, totals


def _uncounted(analysis) -> str:
    ops = analysis.unsupported_ops()
    return ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())) or "none"


def do_flop(model: nn.Module, images: List[torch.Tensor], max_depth: int) -> float:
    flops, counts, totals = _run_analyses(flop_analysis, model, images)
    print(f"Flops table computed from only one input sample:\n{flop_count_table(flops, max_depth=max_depth)}")
    per_op = {k: round(v / len(images) / 1e9, 4) for k, v in counts.most_common()}
    print(f"Average GFlops for each type of operators:\n{per_op}")
    print(f"Operators not counted (element-wise, or no FLOP formula): {_uncounted(flops)}")
    print(f"Total GFlops: {np.mean(totals) / 1e9:.3f}±{np.std(totals) / 1e9:.3f}")
    return float(np.mean(totals))


def do_activation(model: nn.Module, images: List[torch.Tensor], max_depth: int) -> float:
    acts, counts, totals = _run_analyses(activation_analysis, model, images)
    print(f"Activation table computed from only one input sample:\n"
          f"{flop_count_table(acts, max_depth=max_depth)}")
    per_op = {k: round(v / len(images) / 1e6, 4) for k, v in counts.most_common()}
    print(f"Average (Million) Activations for each type of operators:\n{per_op}")
    print(f"Total (Million) Activations: {np.mean(totals) / 1e6:.3f}±{np.std(totals) / 1e6:.3f}")
    return float(np.mean(totals))


def do_parameter(model: nn.Module, max_depth: int) -> int:
    print(f"Parameter Count:\n{parameter_count_table(model, max_depth=max_depth)}")
    total = int(parameter_count(model)[""])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"Total parameters: {total} ({trainable} trainable)")
    return total


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, required=True, help="what to analyze")
    parser.add_argument("--num-inputs", type=int, default=1,
                        help="number of random images to average FLOPs / activations over")
    parser.add_argument("--input-size", type=parse_input_size, default=None, metavar="HxW",
                        help="image size (default: MIN_SIZE_TEST x 1.5 MIN_SIZE_TEST, capped)")
    parser.add_argument("--max-depth", type=int, default=4, help="depth of the per-module tables")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if not os.path.isfile(args.config_file):
        parser.error(f"--config-file {args.config_file!r} does not exist")
    if args.num_inputs < 1:
        parser.error(f"--num-inputs must be >= 1, got {args.num_inputs}")
    logging.basicConfig(level=logging.WARNING)
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()

    torch.manual_seed(0)  # random weights, the same in every run (post-processing depends on them)
    model = build_model(cfg)
    predictor = getattr(getattr(model, "sem_seg_head", None), "predictor", None)
    if hasattr(predictor, "inference_shortcut"):
        # count as the papers do: every decoder layer predicts full-size masks (this project's
        # inference computes only the last layer's; docs/performance.md)
        predictor.inference_shortcut = False
    if cfg.MODEL.WEIGHTS:  # counts do not depend on the weights, except post-processing's few
        try:
            DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
        except FileNotFoundError as err:
            print(f"Note: analyzing randomly initialised weights ({err.__class__.__name__}: "
                  f"{str(err).splitlines()[0][:200]})")
    model.eval()
    device = str(next(model.parameters()).device)
    size = args.input_size or default_input_size(cfg)
    images = random_images(args.num_inputs, size, device)
    print(f"Config: {args.config_file}; input size {size[0]}x{size[1]}; "
          f"{args.num_inputs} random image(s); device {device}")
    with torch.no_grad():
        for task in args.tasks:
            if task == "parameter":
                do_parameter(model, args.max_depth)
            elif task == "structure":
                print(f"Model Structure:\n{model}")
            elif task == "flop":
                do_flop(model, images, args.max_depth)
            else:
                do_activation(model, images, args.max_depth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
