"""Rename third-party ImageNet backbone weights to this package's (detectron2's) names.

Three sources:

* the official Swin Transformer release (``swin_tiny_patch4_window7_224.pth`` ...): its names
  are already those of :class:`D2SwinTransformer` (without the ``backbone.`` prefix), so the
  conversion only turns the ``{"model": state_dict}`` file into detectron2's pickled model-zoo
  format, exactly like the official ``convert-pretrained-swin-model-to-d2.py``;
* timm Swin (``timm.create_model("swin_*").state_dict()``): timm >= 0.9 keeps each patch
  merging at the *start* of the next stage (``layers.1.downsample``), the official layout at
  the *end* of the previous one (``layers.0.downsample``); the merge itself (concatenation
  order, norm, reduction) is the same;
* timm ResNet (``resnet18/34/50/101/152`` with torchvision names, the deep-stem ``resnet*c``
  (stem width 64) and ``resnet*s`` (stem width 128) variants): plain names go through the
  torchvision converter, the deep stem ``conv1.{0,1,3,4,6}`` + ``bn1`` becomes
  :class:`DeepLabStem`'s ``stem.conv{1,2,3}`` (+ ``.norm``).

Every converted file is ``{"model": {name: numpy array}, "__author__": ...,
"matching_heuristics": True}``: the checkpointer adds the ``backbone.`` prefix by suffix
matching and reports the classifier keys as unused.
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, Mapping, Optional

import numpy as np

from .torchvision_conversion import torchvision_resnet_key_to_d2

__all__ = [
    "read_weights_file",
    "convert_official_swin_checkpoint",
    "convert_timm_resnet_state_dict",
    "convert_timm_state_dict",
    "convert_timm_swin_state_dict",
    "detect_timm_architecture",
    "to_d2_checkpoint",
]

# timm deep stem (``stem_type="deep"``): Sequential index -> DeepLabStem name
_DEEP_STEM = {"conv1.0.": "stem.conv1.", "conv1.1.": "stem.conv1.norm.",
              "conv1.3.": "stem.conv2.", "conv1.4.": "stem.conv2.norm.",
              "conv1.6.": "stem.conv3.", "bn1.": "stem.conv3.norm."}


def read_weights_file(path: str) -> Any:
    """Load a third-party weights file for conversion: ``.safetensors``, or a torch file read
    with ``weights_only=True`` (never runs code). Raises ValueError naming ``path``."""
    import torch

    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file  # optional dependency, comes with timm

            return load_file(path, device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise ValueError(f"{path}: reading .safetensors needs the package safetensors "
                         "(pip install safetensors)") from None
    except Exception as err:  # torch.load raises many types for a file that is not a checkpoint
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"{path}: cannot be read as a checkpoint ({type(err).__name__}: {reason})") from None


def _unwrap(checkpoint: Any, source: str) -> Mapping[str, Any]:
    """The state dict inside a loaded checkpoint (``{"model": ...}``, ``{"state_dict": ...}``
    or the state dict itself)."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{source}: expected a state_dict or a dict holding one, "
                         f"got {type(checkpoint).__name__}")
    for key in ("model", "state_dict"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return checkpoint[key]
    return checkpoint


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def to_d2_checkpoint(state_dict: Mapping[str, Any], author: str) -> Dict[str, Any]:
    """detectron2 model-zoo format: numpy arrays, marked for the name-matching heuristics."""
    return {"model": {k: _to_numpy(v) for k, v in state_dict.items()}, "__author__": author,
            "matching_heuristics": True}


def convert_official_swin_checkpoint(checkpoint: Any) -> Dict[str, Any]:
    """A loaded official Swin ``.pth`` (``{"model": state_dict}``) -> d2 ``.pkl`` content.

    Names are kept (the official converter's behaviour): they already are the backbone's.

    Raises:
        ValueError: the checkpoint is not a Swin state dict (no ``patch_embed.proj.weight``).
    """
    state_dict = _unwrap(checkpoint, "Swin checkpoint")
    if "patch_embed.proj.weight" not in state_dict:
        raise ValueError("Not a Swin Transformer checkpoint: key 'patch_embed.proj.weight' is "
                         f"missing (first keys: {list(state_dict)[:5]})")
    return to_d2_checkpoint(state_dict, "third_party")


def convert_timm_swin_state_dict(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """timm Swin names -> official Swin names (= :class:`D2SwinTransformer` without prefix).

    Moves ``layers.{i}.downsample.*`` to ``layers.{i-1}.downsample.*`` when the file uses
    timm >= 0.9's layout, and drops what the segmentation backbone has no use for: the
    classifier (``head.*``), the final ``norm.*`` (which the suffix matching could otherwise
    hand to an unrelated ``*.norm.*`` layer of the same size) and the recomputed buffers
    ``relative_position_index`` / ``attn_mask``.
    """
    if "patch_embed.proj.weight" not in state_dict:
        raise ValueError("Not a timm Swin state_dict: key 'patch_embed.proj.weight' is missing "
                         f"(first keys: {list(state_dict)[:5]})")
    merge_at_stage_start = not any(k.startswith("layers.0.downsample.") for k in state_dict)
    converted: Dict[str, Any] = {}
    for key, value in state_dict.items():
        if key.startswith(("head.", "norm.")) or key.endswith(
                ("relative_position_index", "attn_mask")):
            continue
        match = re.match(r"layers\.(\d+)\.downsample\.(.*)", key)
        if match and merge_at_stage_start:
            stage = int(match.group(1))
            if stage == 0:
                raise ValueError(f"timm Swin key {key!r}: stage 0 cannot start with a patch merging")
            key = f"layers.{stage - 1}.downsample.{match.group(2)}"
        converted[key] = value
    return converted


def convert_timm_resnet_state_dict(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """timm ResNet names -> detectron2 ResNet names (``res2.0.conv1.norm.weight`` ...).

    Use ``MODEL.RESNETS.STRIDE_IN_1X1: False`` and, for the deep-stem variants,
    ``MODEL.RESNETS.STEM_TYPE: "deeplab"`` with ``STEM_OUT_CHANNELS`` = the width of
    ``conv1.6`` (64 for ``resnet*c``, 128 for ``resnet*s``). The classifier ``fc.*`` is dropped.

    Raises:
        ValueError: not a timm ResNet, or a variant detectron2's ResNet cannot express
            (average-pool shortcuts of ``resnet*d``, attention / SE blocks ...).
    """
    if "conv1.weight" not in state_dict and "conv1.0.weight" not in state_dict:
        raise ValueError("Not a timm ResNet state_dict: neither 'conv1.weight' nor "
                         f"'conv1.0.weight' is present (first keys: {list(state_dict)[:5]})")
    deep_stem = "conv1.0.weight" in state_dict
    converted: Dict[str, Any] = {}
    for key, value in state_dict.items():
        if key.startswith("fc."):
            continue
        if re.search(r"\.downsample\.2\.", key):
            raise ValueError(f"timm ResNet key {key!r}: average-pool shortcuts (resnet*d / "
                             "resnet*t variants) have no detectron2 ResNet equivalent")
        if not re.match(r"(conv1|bn1|layer[1-4]\.\d+\.(conv[1-3]|bn[1-3]|downsample\.[01]))\.", key):
            raise ValueError(f"timm ResNet key {key!r} has no detectron2 ResNet equivalent "
                             "(only plain / deep-stem ResNets are supported)")
        if deep_stem and not key.startswith("layer"):
            prefix = next((p for p in _DEEP_STEM if key.startswith(p)), None)
            if prefix is None:
                raise ValueError(f"timm ResNet deep-stem key {key!r} is not one of "
                                 f"{sorted(_DEEP_STEM)}")
            new_key = _DEEP_STEM[prefix] + key[len(prefix):]
        else:
            new_key = torchvision_resnet_key_to_d2(key)
        converted[new_key] = value
    return converted


def detect_timm_architecture(state_dict: Mapping[str, Any]) -> Optional[str]:
    """"swin", "resnet" or None, from the keys of a timm state dict."""
    if "patch_embed.proj.weight" in state_dict and any(k.startswith("layers.") for k in state_dict):
        return "swin"
    if ("conv1.weight" in state_dict or "conv1.0.weight" in state_dict) and \
            any(k.startswith("layer1.") for k in state_dict):
        return "resnet"
    return None


def convert_timm_state_dict(checkpoint: Any, arch: Optional[str] = None) -> Dict[str, Any]:
    """A loaded timm checkpoint (state dict, or a dict with ``model`` / ``state_dict``) ->
    d2 ``.pkl`` content; ``arch`` ("swin" / "resnet") defaults to detection from the keys."""
    state_dict = _unwrap(checkpoint, "timm checkpoint")
    arch = arch or detect_timm_architecture(state_dict)
    if arch == "swin":
        return to_d2_checkpoint(convert_timm_swin_state_dict(state_dict), "timm")
    if arch == "resnet":
        return to_d2_checkpoint(convert_timm_resnet_state_dict(state_dict), "timm")
    raise ValueError(f"Cannot tell the architecture of this timm checkpoint (arch={arch!r}); "
                     f"supported: 'swin', 'resnet' (first keys: {list(state_dict)[:5]})")
