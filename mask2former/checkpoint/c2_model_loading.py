"""Loading weights whose names do not match the model exactly (detectron2's heuristics).

Used for files marked ``"matching_heuristics": True`` (ImageNet-pretrained backbones such as
``detectron2://ImageNetPretrained/torchvision/R-50.pkl`` and converted Swin ``.pkl`` files)
and for Caffe2 / Detectron1 files (``MSRA/R-50.pkl``: ``res2_0_branch2a_w``...).

Matching rule (detectron2's): a checkpoint key matches a model key when it equals it or is
a whole-component suffix of it (``res2.0.conv1.weight`` matches
``backbone.res2.0.conv1.weight`` but ``conv1.weight`` does not match ``x_conv1.weight``);
among several matches the longest checkpoint key wins.
"""
from __future__ import annotations

import logging
import re
from typing import Dict, List, Mapping, Sequence, Tuple

import torch
from tabulate import tabulate

__all__ = ["convert_basic_c2_names", "convert_c2_detectron_names", "align_and_update_state_dicts"]

logger = logging.getLogger(__name__)

# (pattern, replacement) applied in order to C2 blob names after "_" -> "."
_C2_RENAMES: Sequence[Tuple[str, str]] = (
    (r"\.b$", ".bias"),
    (r"\.w$", ".weight"),
    # batch norm / group norm (affine and statistics) -> "norm"
    (r"bn\.s$", "norm.weight"),
    (r"bn\.bias$", "norm.bias"),
    (r"bn\.rm", "norm.running_mean"),
    (r"bn\.running.mean$", "norm.running_mean"),
    (r"bn\.riv$", "norm.running_var"),
    (r"bn\.running.var$", "norm.running_var"),
    (r"bn\.gamma$", "norm.weight"),
    (r"bn\.beta$", "norm.bias"),
    (r"gn\.s$", "norm.weight"),
    (r"gn\.bias$", "norm.bias"),
    # stem
    (r"^res\.conv1\.norm\.", "conv1.norm."),
    (r"^conv1\.", "stem.conv1."),
    # residual blocks
    (r"\.branch1\.", ".shortcut."),
    (r"\.branch2a\.", ".conv1."),
    (r"\.branch2b\.", ".conv2."),
    (r"\.branch2c\.", ".conv3."),
)


def convert_basic_c2_names(original_keys: Sequence[str]) -> List[str]:
    """Rename Caffe2 backbone blob names to detectron2 names, e.g.
    ``res2_0_branch2a_bn_s`` -> ``res2.0.conv1.norm.weight``, ``conv1_w`` -> ``stem.conv1.weight``."""
    renamed = []
    for key in original_keys:
        key = {"pred_b": "linear_b", "pred_w": "linear_w"}.get(key, key)
        key = key.replace("_", ".")
        for pattern, replacement in _C2_RENAMES:
            key = re.sub(pattern, replacement, key)
        renamed.append(key)
    return renamed


def convert_c2_detectron_names(weights: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Map Caffe2 / Detectron1 weight names to detectron2 names (backbone part).

    Returns:
        (renamed weights, renamed name -> original name)
    """
    logger.info("Remapping C2 weights ......")
    original_keys = sorted(weights.keys())
    renamed_keys = convert_basic_c2_names(original_keys)
    if len(set(renamed_keys)) != len(renamed_keys):
        duplicates = sorted({k for k in renamed_keys if renamed_keys.count(k) > 1})
        raise ValueError(f"C2 name conversion maps several checkpoint keys to the same name: {duplicates[:10]}")
    new_weights = {new: weights[old] for old, new in zip(original_keys, renamed_keys)}
    return new_weights, dict(zip(renamed_keys, original_keys))


def _is_suffix_match(model_key: str, ckpt_key: str) -> bool:
    return model_key == ckpt_key or model_key.endswith("." + ckpt_key)


def align_and_update_state_dicts(
    model_state_dict: Mapping[str, torch.Tensor],
    ckpt_state_dict: Mapping[str, torch.Tensor],
    c2_conversion: bool = True,
) -> Dict[str, torch.Tensor]:
    """Rename checkpoint entries to the model keys they match by suffix.

    Args:
        model_state_dict: the model's state dict (names and shapes are used).
        ckpt_state_dict: checkpoint name -> tensor.
        c2_conversion: first rename Caffe2 names (:func:`convert_c2_detectron_names`).

    Returns:
        A new dict: matched entries under model names; unmatched entries (and entries whose
        shape differs from their matched model key) under their checkpoint names, so that the
        caller reports them as unexpected.

    Raises:
        ValueError: one checkpoint key matches two model keys.
    """
    model_keys = sorted(model_state_dict.keys())
    if c2_conversion:
        ckpt_state_dict, original_keys = convert_c2_detectron_names(ckpt_state_dict)
    else:
        original_keys = {k: k for k in ckpt_state_dict.keys()}
    ckpt_keys = sorted(ckpt_state_dict.keys())

    matched: Dict[str, str] = {}  # checkpoint key -> model key
    result: Dict[str, torch.Tensor] = {}
    rows = []
    for key_model in model_keys:
        # Two matching suffixes of equal length would be the same string: no ties.
        best = max((k for k in ckpt_keys if _is_suffix_match(key_model, k)), key=len, default=None)
        if best is None:
            continue
        value = ckpt_state_dict[best]
        shape_model = tuple(model_state_dict[key_model].shape)
        if shape_model != tuple(value.shape):
            logger.warning(
                f"Shape of {original_keys[best]} in checkpoint is {tuple(value.shape)}, while shape of "
                f"{key_model} in model is {shape_model}; {original_keys[best]} will not be loaded."
            )
            continue
        if best in matched:
            raise ValueError(
                f"Ambiguous checkpoint key {original_keys[best]!r}: it matches both "
                f"{matched[best]!r} and {key_model!r} in the model"
            )
        matched[best] = key_model
        result[key_model] = value
        rows.append((key_model, original_keys[best], shape_model))

    if not matched:
        logger.warning("No weights in checkpoint matched with model.")
        return dict(ckpt_state_dict)
    logger.info(
        "Following weights matched with the model (by name suffix):\n"
        + tabulate(rows, headers=["Names in Model", "Names in Checkpoint", "Shapes"], tablefmt="pipe")
    )
    for key in ckpt_keys:
        if key not in matched:
            result[key] = ckpt_state_dict[key]
    return result
