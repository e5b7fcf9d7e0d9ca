"""Reading checkpoint files and loading their weights into a model, with a report.

* :func:`load_checkpoint_file`: a local file -> ``{"model": state_dict, ...extra}``.
  ``.pkl`` (detectron2 model zoo or Caffe2) through the restricted unpickler, everything else
  through ``torch.load(weights_only=True)`` (numpy arrays allowed). Nothing that can run code
  is ever unpickled.
* :func:`load_state_dict_into_model`: numpy -> tensors (cast to each entry's dtype in the
  model, e.g. float16 official weights -> float32), optional name-matching heuristics,
  shape mismatches skipped, ``_metadata`` (per-module versions) kept, ``strict=False`` load.
* :func:`format_incompatible_keys`: the missing / unexpected / shape-mismatch table.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Mapping, MutableMapping, Tuple
from urllib.parse import parse_qs

import numpy as np
import torch
from fvcore.common.checkpoint import _IncompatibleKeys, _filter_reused_missing_keys, _strip_prefix_if_present
from tabulate import tabulate
from torch import nn

from .c2_model_loading import align_and_update_state_dicts
from .checks import CheckpointError, check_weights_usable, loaded_share, reading_errors
from .file_io import torch_load_weights_only
from .safe_pickle import load_pickle
from .safetensors_io import load_safetensors_checkpoint

__all__ = [
    "IncompatibleKeys",
    "load_checkpoint_file",
    "load_state_dict_into_model",
    "format_incompatible_keys",
    "torch_load_weights_only",
]

logger = logging.getLogger(__name__)

IncompatibleKeys = _IncompatibleKeys  # (missing_keys, unexpected_keys, incorrect_shapes)

# Buffers that old checkpoints may lack and that the config initialises anyway (detectron2).
_IGNORED_MISSING = ("pixel_mean", "pixel_std")


def _is_zip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def load_checkpoint_file(path: str, url_query: str = "") -> Dict[str, Any]:
    """Read a local checkpoint into detectron2's format ``{"model": state_dict, ...}``.

    ``.pkl``: detectron2 model zoo (``{"model": dict, "__author__", ...}``) as is; any other dict is
    taken as a Caffe2 / Detectron1 blob dict (``"blobs"``, ``*_momentum`` dropped) and marked
    for C2 renaming + matching heuristics. ``.pyth``: pycls (``"model_state"``). Others
    (``.pth``, ``.pt``...): ``torch.load``; a bare state dict is put under ``"model"``.
    ``.safetensors``: tensors only, plus a trainer-state sidecar (see :mod:`.safetensors_io`).
    A directory: a Hugging Face ``save_pretrained`` folder, converted (see :mod:`.hf_checkpoint`).
    ``url_query`` (from ``...pth?matching_heuristics=True``) may turn the heuristics on.

    Raises:
        FileNotFoundError, UnsafePickleError, or CheckpointError naming ``path`` and the reason
        (empty, text, truncated / corrupt, not a dict of weights), whatever the reader.
    """
    with reading_errors(path):
        return _read_checkpoint_file(path, url_query)


def _read_checkpoint_file(path: str, url_query: str) -> Dict[str, Any]:
    if os.path.isdir(path):  # a Hugging Face save_pretrained folder, converted on the fly
        from .hf_checkpoint import load_hf_checkpoint

        return load_hf_checkpoint(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file '{path}' does not exist")
    if path.endswith(".pkl") and not _is_zip(path):
        data = load_pickle(path)
        if not isinstance(data, Mapping):
            raise CheckpointError(f"Checkpoint file '{path}' holds a {type(data).__name__}, expected a dict")
        if "model" in data and ("__author__" in data or isinstance(data["model"], Mapping)):
            loaded = dict(data)
        else:
            blobs = data.get("blobs", data)
            if not isinstance(blobs, Mapping):
                raise CheckpointError(f"Checkpoint file '{path}': 'blobs' is a {type(blobs).__name__}, expected a dict")
            blobs = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
            loaded = {"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}
    elif path.endswith(".safetensors"):
        loaded = load_safetensors_checkpoint(path)  # tensors only (+ a weights_only trainer-state sidecar)
    elif path.endswith(".pyth"):
        data = torch_load_weights_only(path)
        if not isinstance(data, Mapping) or "model_state" not in data:
            raise CheckpointError(f"pycls checkpoint '{path}' has no 'model_state' entry")
        state = {k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")}
        loaded = {"model": state, "__author__": "pycls", "matching_heuristics": True}
    else:
        data = torch_load_weights_only(path)
        if not isinstance(data, Mapping):
            raise CheckpointError(f"Checkpoint file '{path}' holds a {type(data).__name__}, expected a dict")
        loaded = dict(data) if "model" in data else {"model": data}

    queries = parse_qs(url_query)
    if queries.pop("matching_heuristics", ["False"]) == ["True"]:
        loaded["matching_heuristics"] = True
    if queries:
        raise CheckpointError(f"Unsupported query {queries} in the checkpoint URL of '{path}'")
    if not isinstance(loaded["model"], Mapping):
        raise CheckpointError(f"Checkpoint file '{path}': 'model' is a {type(loaded['model']).__name__}, expected a dict")
    return loaded


def _to_tensors(state_dict: MutableMapping[str, Any], source: str) -> None:
    """numpy arrays -> tensors, in place (keeps the mapping object and its ``_metadata``)."""
    for key in list(state_dict.keys()):
        value = state_dict[key]
        if isinstance(value, np.ndarray):
            state_dict[key] = torch.from_numpy(value if value.flags.writeable else value.copy())
        elif not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"Checkpoint {source}: entry {key!r} is a {type(value).__name__}, expected a tensor or numpy array"
            )


def load_state_dict_into_model(
    model: nn.Module,
    state_dict: MutableMapping[str, Any],
    *,
    matching_heuristics: bool = False,
    c2_conversion: bool = False,
    source: str = "<state dict>",
    check: bool = True,
) -> IncompatibleKeys:
    """Load ``state_dict`` into ``model`` non-strictly and say what did not fit.

    Args:
        model: the model (already unwrapped from DDP).
        state_dict: name -> tensor / numpy array; modified in place. Its ``_metadata`` (module
            versions, as torch saves it) reaches the modules' ``_load_from_state_dict``.
        matching_heuristics: match names by suffix (:func:`align_and_update_state_dicts`).
        c2_conversion: with the heuristics, first rename Caffe2 blob names.
        source: names the checkpoint in error messages.
        check: refuse weights that match nothing in the model or hold NaN / inf
            (:func:`.checks.check_weights_usable`); the model is left untouched then.

    Returns:
        ``IncompatibleKeys(missing_keys, unexpected_keys, incorrect_shapes)``; incorrect_shapes
        holds ``(key, shape in checkpoint, shape in model)`` of entries that were skipped.
    """
    _to_tensors(state_dict, source)
    _strip_prefix_if_present(state_dict, "module.")  # saved from a DDP-wrapped model
    model_state = model.state_dict()
    if matching_heuristics:
        state_dict = align_and_update_state_dicts(model_state, state_dict, c2_conversion=c2_conversion)

    incorrect_shapes: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = []
    for key in list(state_dict.keys()):
        if key not in model_state:
            continue
        target = model_state[key]
        if isinstance(target, nn.parameter.UninitializedParameter):
            continue
        value = state_dict[key]
        if tuple(value.shape) != tuple(target.shape):
            incorrect_shapes.append((key, tuple(value.shape), tuple(target.shape)))
            del state_dict[key]
        elif value.is_floating_point() and target.is_floating_point() and value.dtype != target.dtype:
            state_dict[key] = value.to(target.dtype)  # e.g. float16 official weights -> float32

    if check:
        report = format_incompatible_keys(IncompatibleKeys(
            missing_keys=list(model_state), unexpected_keys=list(state_dict), incorrect_shapes=incorrect_shapes))
        loaded_keys = check_weights_usable(model_state, state_dict, source=source, report=_first_lines(report, 40))
        count, total, share = loaded_share(model_state, loaded_keys)
        logger.info(f"Loading {count} of {total} model tensors ({100 * share:.1f}% of its values) from {source}")
    result = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in result.missing_keys if k not in _IGNORED_MISSING]
    kept = set(_filter_reused_missing_keys(model, missing))  # shared parameters loaded under another name
    missing = [k for k in missing if k in kept]  # keep the model's order
    return IncompatibleKeys(
        missing_keys=missing, unexpected_keys=list(result.unexpected_keys), incorrect_shapes=incorrect_shapes
    )


def _first_lines(text: str, count: int) -> str:
    lines = text.splitlines()
    return "\n".join(lines[:count] + ([f"... ({len(lines) - count} more lines)"] if len(lines) > count else []))


def _group_by_module(keys: Iterable[str]) -> List[str]:
    """``a.b.weight``, ``a.b.bias`` -> ``a.b.{weight, bias}`` (order of first appearance)."""
    groups: "OrderedDict[str, List[str]]" = OrderedDict()
    for key in keys:
        prefix, _, leaf = key.rpartition(".")
        groups.setdefault(prefix, []).append(leaf)
    lines = []
    for prefix, leaves in groups.items():
        head = prefix + "." if prefix else ""
        lines.append(head + leaves[0] if len(leaves) == 1 else head + "{" + ", ".join(leaves) + "}")
    return lines


def format_incompatible_keys(incompatible: IncompatibleKeys) -> str:
    """A table (tabulate) of missing / unexpected / shape-mismatched keys; "" when all fit."""
    rows = []
    for key, shape_ckpt, shape_model in incompatible.incorrect_shapes:
        rows.append(("shape mismatch (skipped)", key, f"checkpoint {shape_ckpt} vs model {shape_model}"))
    for line in _group_by_module(incompatible.missing_keys):
        rows.append(("missing in checkpoint", line, ""))
    for line in _group_by_module(incompatible.unexpected_keys):
        rows.append(("not in model (unused)", line, ""))
    if not rows:
        return ""
    return tabulate(rows, headers=["Problem", "Keys", "Shapes"], tablefmt="pipe")
