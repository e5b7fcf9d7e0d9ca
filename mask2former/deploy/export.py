"""Export a MaskFormer / Mask2Former network to ONNX or to a ``torch.export`` program.

What is exported is the network only (:class:`ExportableMaskFormer`): a normalised,
padded image batch ``images`` (B, 3, H, W) in, ``pred_logits`` (B, Q, K+1) and
``pred_masks`` (B, Q, H/4, W/4) out. Normalisation, padding, resizing and the task
post-processing stay outside the graph (data-dependent control flow does not belong in
it); :mod:`mask2former.deploy.postprocess` and :class:`mask2former.deploy.ONNXPredictor`
do them with numpy and OpenCV, driven by ``deploy.json`` (see :func:`deploy_metadata`),
written next to the model.

ONNX goes through ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` underneath,
opset 18 by default). Ops the ONNX translation cannot express, and translations into ops
newer than the chosen opset (which the exporter would otherwise write into a file no
runtime loads), raise :class:`UnsupportedOpError` naming the op and the module that calls
it; nothing is written then.
"""
from __future__ import annotations

import ast
import json
import logging
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..modeling.meta_arch.mask_former import head_outputs

__all__ = [
    "ExportableMaskFormer", "UnsupportedOpError", "deploy_metadata", "export_onnx",
    "export_torch", "export_model", "DEPLOY_JSON", "ONNX_FILE", "TORCH_EXPORT_FILE",
    "OPSET", "MIN_DYNAMIC_SIZE", "MAX_DYNAMIC_SIZE",
]

logger = logging.getLogger(__name__)

DEPLOY_JSON = "deploy.json"
ONNX_FILE = "model.onnx"
TORCH_EXPORT_FILE = "model.pt2"
OPSET = 18
FORMAT_VERSION = 1
MIN_DYNAMIC_SIZE = 64  # smallest padded side of a --dynamic export (sizes 1 would specialise)
MAX_DYNAMIC_SIZE = 4096
INPUT_NAMES = ["images"]
OUTPUT_NAMES = ["pred_logits", "pred_masks"]


class UnsupportedOpError(RuntimeError):
    """An op of the model has no translation in the target format (names op and module)."""


class ExportableMaskFormer(nn.Module):
    """A built ``MaskFormer``'s backbone + sem_seg_head as one graph with tensor outputs.

    forward: images (B, 3, H, W), normalised ``(x - pixel_mean) / pixel_std`` and padded to
    ``size_divisibility`` -> pred_logits (B, Q, K+1), pred_masks (B, Q, H/4, W/4).
    Only the last layer's prediction is computed (``head_outputs`` at inference, as the model's
    own inference): the auxiliary (deep-supervision) predictions are not in the graph.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if not all(hasattr(model, a) for a in ("backbone", "sem_seg_head", "object_mask_threshold")):
            raise TypeError(
                f"ExportableMaskFormer needs a MaskFormer model (mask classification), got "
                f"{type(model).__name__}; MODEL.META_ARCHITECTURE must be MaskFormer"
            )
        self.backbone = model.backbone
        self.sem_seg_head = model.sem_seg_head

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        outputs = head_outputs(self.sem_seg_head, self.backbone(images), training=False)
        return outputs["pred_logits"], outputs["pred_masks"]  # (B, Q, K+1), (B, Q, H/4, W/4)


# ---------------------------------------------------------------------- deploy.json
def deploy_metadata(cfg, model: nn.Module) -> Dict[str, Any]:
    """Everything the torch-free predictor needs besides the graph, as JSON-able values."""
    metadata = getattr(model, "metadata", None)
    thing_ids: Optional[List[int]] = None
    mapping = getattr(metadata, "thing_dataset_id_to_contiguous_id", None) if metadata is not None else None
    if mapping is not None:
        thing_ids = sorted(int(v) for v in mapping.values())
    if model.panoptic_on and thing_ids is None:
        model.thing_ids()  # raises the meta-architecture's clear error
    return {
        "format_version": FORMAT_VERSION,
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "input_format": cfg.INPUT.FORMAT,
        "pixel_mean": [float(v) for v in model.pixel_mean.flatten().tolist()],
        "pixel_std": [float(v) for v in model.pixel_std.flatten().tolist()],
        "size_divisibility": int(model.size_divisibility),
        "min_size_test": int(cfg.INPUT.MIN_SIZE_TEST),
        "max_size_test": int(cfg.INPUT.MAX_SIZE_TEST),
        "num_classes": int(model.sem_seg_head.num_classes),
        "num_queries": int(cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES),
        "dataset": getattr(metadata, "name", None),
        "stuff_classes": list(getattr(metadata, "stuff_classes", None) or []) or None,
        "thing_classes": list(getattr(metadata, "thing_classes", None) or []) or None,
        "thing_ids": thing_ids,
        "label_divisor": getattr(metadata, "label_divisor", None),
        "object_mask_threshold": float(model.object_mask_threshold),
        "overlap_threshold": float(model.overlap_threshold),
        "test_topk_per_image": int(model.test_topk_per_image),
        "semantic_on": bool(model.semantic_on),
        "panoptic_on": bool(model.panoptic_on),
        "instance_on": bool(model.instance_on),
        "sem_seg_postprocess_before_inference": bool(model.sem_seg_postprocess_before_inference),
        "panoptic_require_mask_prob": bool(model.panoptic_require_mask_prob),
    }


# ---------------------------------------------------------------------- export
def _dynamic_shapes(dynamic: bool) -> Optional[Tuple[Dict[int, Any]]]:
    if not dynamic:
        return None
    # plain symbols (a derived "32 * h" dim loses its name in the ONNX graph); the predictor
    # feeds multiples of the size divisibility
    h = torch.export.Dim("height", min=MIN_DYNAMIC_SIZE, max=MAX_DYNAMIC_SIZE)
    w = torch.export.Dim("width", min=MIN_DYNAMIC_SIZE, max=MAX_DYNAMIC_SIZE)
    return ({2: h, 3: w},)


def _module_of(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "<top level>"
    path, cls = list(stack.values())[-1]
    cls_name = getattr(cls, "__name__", None) or str(cls).rsplit(".", 1)[-1].strip("'>")
    return f"{path or '<root>'} ({cls_name})"


def _unsupported(program: torch.export.ExportedProgram, err: Exception) -> Optional[UnsupportedOpError]:
    """The op(s) of ``program`` that ``err`` complains about, with their modules, if found."""
    text = str(err)
    found: Dict[str, List[str]] = {}
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        name = str(node.target)  # e.g. "torchvision.deform_conv2d.default"
        short = re.sub(r"\.default$", "", name)
        candidates = {name, short, short.replace(".", "::", 1)}
        if any(c in text for c in candidates):
            found.setdefault(short.replace(".", "::", 1), []).append(_module_of(node))
    if not found:
        return None
    lines = [f"{op} in {', '.join(sorted(set(mods)))}" for op, mods in found.items()]
    return UnsupportedOpError(
        "ONNX export failed: no ONNX translation for " + "; ".join(lines)
        + ". See docs/deployment.md."
        + f"\nExporter error: {text.splitlines()[0] if text else type(err).__name__}"
    )


def _torch_export(wrapper: nn.Module, sample: Tensor, dynamic: bool) -> torch.export.ExportedProgram:
    with torch.no_grad():
        return torch.export.export(wrapper, (sample,), dynamic_shapes=_dynamic_shapes(dynamic))


def export_onnx(wrapper: nn.Module, sample: Tensor, path: str, *, dynamic: bool = False,
                opset: Optional[int] = None) -> str:
    """Write ``wrapper`` (see :class:`ExportableMaskFormer`) traced on ``sample`` to ``path``."""
    opset = opset or OPSET
    wrapper = wrapper.eval()
    program = _torch_export(wrapper, sample, dynamic)
    try:
        onnx_program = torch.onnx.export(
            program, (sample,), dynamo=True, opset_version=opset, input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES, external_data=False, verbose=False,
        )
    except Exception as err:  # the exporter's error types vary between versions
        unsupported = _unsupported(program, err)
        if unsupported is not None:
            raise unsupported from err
        raise
    _check_onnx(onnx_program.model_proto, opset)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    onnx_program.save(path)
    return path


def _onnx_node_origin(node) -> str:
    """``module.path (Class) [torch op]`` of an exported ONNX node, from the exporter's metadata."""
    props = {p.key: p.value for p in node.metadata_props}
    try:
        scopes = ast.literal_eval(props.get("pkg.torch.onnx.name_scopes", "[]"))
    except (ValueError, SyntaxError):
        scopes = []
    hierarchy = props.get("pkg.torch.onnx.class_hierarchy", "[]")
    try:
        classes = ast.literal_eval(hierarchy)
    except (ValueError, SyntaxError):
        classes = []
    path = ".".join(scopes[1:-1]) or "<root>"
    cls = classes[-2].rsplit(".", 1)[-1] if len(classes) >= 2 else "?"
    target = re.search(r"target=torch\.ops\.([\w.]+)", props.get("pkg.torch.onnx.fx_node", ""))
    op = re.sub(r"\.default$", "", target.group(1)).replace(".", "::", 1) if target else "?"
    return f"{path} ({cls}) [{op}]"


def _check_onnx(model_proto, opset: int) -> None:
    """Refuse a graph that onnx's checker rejects, e.g. an op newer than ``opset`` (which the
    exporter may emit, giving a file no runtime can load); names the op and its modules."""
    import onnx

    try:
        onnx.checker.check_model(model_proto)
    except onnx.checker.ValidationError as err:
        text = str(err)
        missing = re.search(r"No Op registered for (\w+)", text)
        if missing is None:
            raise
        op_type = missing.group(1)
        origins = sorted({_onnx_node_origin(n) for n in model_proto.graph.node if n.op_type == op_type})
        raise UnsupportedOpError(
            f"ONNX export failed: ONNX op {op_type} does not exist at opset {opset}; it comes from "
            + ", ".join(origins) + ". Export with a newer opset (--opset; DeformConv needs 19) "
            "or see docs/deployment.md."
        ) from None


def export_torch(wrapper: nn.Module, sample: Tensor, path: str, *, dynamic: bool = False) -> str:
    """Write ``torch.export.export(wrapper)`` to ``path`` (a ``.pt2`` archive)."""
    program = _torch_export(wrapper.eval(), sample, dynamic)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.export.save(program, path)
    return path


def export_model(cfg, model: nn.Module, output_dir: str, *, fmt: str = "onnx",
                 sample: Optional[Tensor] = None, input_size: Sequence[int] = (512, 512),
                 dynamic: bool = False, opset: Optional[int] = None) -> Dict[str, Any]:
    """Export a built (eval-mode) MaskFormer and write ``deploy.json`` next to it.

    Args:
        fmt: "onnx" or "torch_export".
        sample: a normalised, padded (1, 3, H, W) batch to trace with; default random of
            ``input_size`` rounded up to the size divisibility.
        dynamic: H and W are free (multiples of 32 in [64, 4096]); otherwise the graph
            takes exactly the sample's size, and the predictor pads every image to it.
        opset: ONNX opset (default :data:`OPSET`, 18); FaPN's modulated deformable conv
            becomes ONNX ``DeformConv``, which needs 19.
    Returns:
        the deploy.json contents.
    """
    if fmt not in ("onnx", "torch_export"):
        raise ValueError(f"export format must be 'onnx' or 'torch_export', got {fmt!r}")
    model = model.eval()
    meta = deploy_metadata(cfg, model)
    divisor = max(meta["size_divisibility"], 1)
    if dynamic and 32 % divisor and divisor % 32:
        raise ValueError(f"--dynamic needs a size divisibility dividing 32 or a multiple of it, got {divisor}")
    if sample is None:
        h, w = (-(-int(s) // divisor) * divisor for s in input_size)
        sample = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    if sample.dim() != 4 or sample.shape[1] != 3:
        raise ValueError(f"the export sample must be (1, 3, H, W), got {tuple(sample.shape)}")
    if dynamic and (sample.shape[-2] % 32 or sample.shape[-1] % 32):
        raise ValueError(f"a --dynamic export traces on a multiple of 32, got {tuple(sample.shape[-2:])}")
    if dynamic and type(model.backbone).__name__ == "D2SwinTransformer":
        raise ValueError(
            "--dynamic is not supported for the Swin backbone (MODEL.BACKBONE.NAME "
            "D2SwinTransformer): torch.export pins the padded window-grid sizes (floor/modulo "
            "expressions of H and W) to the traced ones; export a static --input-size"
        )
    wrapper = ExportableMaskFormer(model).eval()
    os.makedirs(output_dir, exist_ok=True)
    if fmt == "onnx":
        export_onnx(wrapper, sample, os.path.join(output_dir, ONNX_FILE), dynamic=dynamic, opset=opset)
        meta["model_file"], meta["opset"] = ONNX_FILE, opset or OPSET
    else:
        export_torch(wrapper, sample, os.path.join(output_dir, TORCH_EXPORT_FILE), dynamic=dynamic)
        meta["model_file"] = TORCH_EXPORT_FILE
    meta["format"] = fmt
    meta["dynamic"] = bool(dynamic)
    meta["input_size"] = None if dynamic else [int(sample.shape[-2]), int(sample.shape[-1])]
    with open(os.path.join(output_dir, DEPLOY_JSON), "w") as f:
        json.dump(meta, f, indent=2)
    logger.info(f"Exported {fmt} model and {DEPLOY_JSON} to {output_dir}")
    return meta
