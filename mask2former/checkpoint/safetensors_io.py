"""``.safetensors`` checkpoints: reading and atomic writing, through the ``safetensors`` package.

A ``.safetensors`` file holds only named tensors and a ``str -> str`` header, so loading one can
never run code: the recommended format for sharing weights.

Layout written by :func:`save_safetensors_checkpoint` (``SOLVER.CHECKPOINT_FORMAT: safetensors``):

* ``<name>.safetensors``: the model's ``state_dict`` (every tensor bitwise as in memory; tensors
  sharing storage are stored as separate copies). The header keeps the per-module versions
  (``_metadata``) as JSON under ``mask2former.module_versions``.
* ``<name>.state.pth``: the *rest* of a trainer checkpoint (optimizer, scheduler, iteration, RNG
  and data state ...), only when there is any. It is written with ``torch.save`` and read back
  with ``torch.load(weights_only=True)`` (the same restricted loader as ``.pth`` checkpoints), so
  resuming stays exact. Both files carry the same random ``pair id`` (header entry
  ``mask2former.state_pair_id`` / sidecar key ``__pair_id__``); a sidecar from a different save
  (e.g. a crash between the two writes) is refused with an error naming both files.

A ``.safetensors`` file without a sidecar (``model_final`` to share, a converted checkpoint, a
Hugging Face ``model.safetensors``) is a plain weights file.
"""
from __future__ import annotations

import json
import os
import uuid
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch

from .file_io import atomic_write, torch_load_weights_only

__all__ = [
    "SIDECAR_SUFFIX",
    "convert_to_safetensors",
    "load_safetensors_checkpoint",
    "save_safetensors_checkpoint",
    "sidecar_path",
    "state_dict_to_safetensors_bytes",
]

SIDECAR_SUFFIX = ".state.pth"
_VERSIONS_KEY = "mask2former.module_versions"
_PAIR_KEY = "mask2former.state_pair_id"
_PAIR_FIELD = "__pair_id__"
# detectron2 loading flags of converted third-party weights, kept in the header
_AUTHOR_KEY = "mask2former.author"
_HEURISTICS_KEY = "mask2former.matching_heuristics"


def sidecar_path(safetensors_path: str) -> str:
    """``dir/model_0000099.safetensors`` -> ``dir/model_0000099.state.pth``."""
    stem = safetensors_path[: -len(".safetensors")] if safetensors_path.endswith(".safetensors") else safetensors_path
    return stem + SIDECAR_SUFFIX


def _tensors_for_saving(state_dict: Mapping[str, Any], source: str) -> "OrderedDict[str, torch.Tensor]":
    """CPU, contiguous tensors; entries sharing storage get their own copy (safetensors refuses aliases)."""
    tensors: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    seen_storages = set()
    for key, value in state_dict.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: entry {key!r} is a {type(value).__name__}; .safetensors stores tensors only")
        value = value.detach().to("cpu").contiguous()
        storage = (value.untyped_storage().data_ptr(), value.untyped_storage().nbytes()) if value.numel() else None
        if storage is not None and storage in seen_storages:
            value = value.clone()
        elif storage is not None:
            seen_storages.add(storage)
        tensors[key] = value
    return tensors


def state_dict_to_safetensors_bytes(
    state_dict: Mapping[str, Any], *, metadata: Optional[Dict[str, str]] = None, source: str = "<state dict>"
) -> bytes:
    """Serialise a state dict (tensors or numpy arrays) to ``.safetensors`` bytes.

    ``state_dict._metadata`` (module versions, as ``nn.Module.state_dict`` records them) is kept in
    the header; ``metadata`` adds further ``str -> str`` header entries.
    """
    from safetensors.torch import save

    header = {"format": "pt"}
    versions = getattr(state_dict, "_metadata", None)
    if versions:
        header[_VERSIONS_KEY] = json.dumps({k: dict(v) for k, v in versions.items()}, sort_keys=True)
    header.update(metadata or {})
    return save(_tensors_for_saving(state_dict, source), metadata=header)


def save_safetensors_checkpoint(path: str, data: Mapping[str, Any], write_atomically) -> Optional[str]:
    """Write ``data`` (``{"model": state_dict, **rest}``) as ``path`` (+ sidecar when ``rest``).

    ``write_atomically(path, write_fn)`` writes one file atomically (temp file + rename). The
    sidecar is written first, the weights second, so a complete weights file always names a
    complete sidecar. Returns the sidecar path, or None when there was nothing besides ``model``.
    """
    rest = {k: v for k, v in data.items() if k != "model"}
    extra_header: Dict[str, str] = {}
    side = None
    if rest:
        pair_id = uuid.uuid4().hex
        extra_header[_PAIR_KEY] = pair_id
        side = sidecar_path(path)
        rest[_PAIR_FIELD] = pair_id
        write_atomically(side, lambda f: torch.save(rest, f))
    else:
        stale = sidecar_path(path)
        if os.path.isfile(stale):  # an older trainer checkpoint of the same name
            os.remove(stale)
    blob = state_dict_to_safetensors_bytes(data["model"], metadata=extra_header, source=path)
    write_atomically(path, lambda f: f.write(blob))
    return side


def _read_header(path: str) -> Dict[str, str]:
    from safetensors import safe_open

    with safe_open(path, framework="pt", device="cpu") as f:
        return dict(f.metadata() or {})


def load_safetensors_checkpoint(path: str) -> Dict[str, Any]:
    """Read ``path`` into detectron2's format ``{"model": state_dict, ...sidecar entries}``.

    Raises:
        ValueError: the file is not a valid ``.safetensors`` file, or its sidecar belongs to
            another save; the message names the file(s).
    """
    from safetensors.torch import load_file

    try:
        header = _read_header(path)
        tensors = load_file(path, device="cpu")
    except Exception as err:  # SafetensorError, OSError ...
        raise ValueError(f"Checkpoint file '{path}' is not a valid .safetensors file: {type(err).__name__}: {err}") from None
    state_dict: "OrderedDict[str, torch.Tensor]" = OrderedDict(tensors.items())
    if _VERSIONS_KEY in header:
        try:
            versions = json.loads(header[_VERSIONS_KEY])
        except json.JSONDecodeError as err:
            raise ValueError(f"Checkpoint file '{path}': header entry {_VERSIONS_KEY!r} is not JSON: {err}") from None
        state_dict._metadata = OrderedDict((k, dict(v)) for k, v in versions.items())  # type: ignore[attr-defined]
    loaded: Dict[str, Any] = {"model": state_dict}
    if _AUTHOR_KEY in header:
        loaded["__author__"] = header[_AUTHOR_KEY]
    if header.get(_HEURISTICS_KEY) == "true":
        loaded["matching_heuristics"] = True

    pair_id = header.get(_PAIR_KEY)
    side = sidecar_path(path)
    if pair_id is not None:
        if not os.path.isfile(side):
            raise ValueError(
                f"Checkpoint file '{path}' was saved with trainer state in '{side}', which does not exist; "
                "copy it next to the weights (or load the weights alone from a copy without the header)."
            )
        rest = torch_load_weights_only(side)
        if not isinstance(rest, Mapping) or rest.get(_PAIR_FIELD) != pair_id:
            found = rest.get(_PAIR_FIELD) if isinstance(rest, Mapping) else type(rest).__name__
            raise ValueError(
                f"Trainer state '{side}' does not belong to '{path}' (pair id {found!r} != {pair_id!r}): "
                "the two files come from different saves."
            )
        loaded.update({k: v for k, v in rest.items() if k != _PAIR_FIELD})
    return loaded


def convert_to_safetensors(checkpoint: Mapping[str, Any], dst: str, source: str = "") -> Dict[str, Any]:
    """Write the weights of a loaded checkpoint (``{"model": state_dict, ...}``, e.g. from
    :func:`.loading.load_checkpoint_file`) as a weights-only ``.safetensors`` file, atomically.

    Only ``model`` is converted; the ``__author__`` and ``matching_heuristics`` flags (converted
    ImageNet backbones rely on them) are kept in the header. Returns a summary with the number of
    tensors and the entries that were left out (optimizer, iteration ...). ``source`` names the
    input in error messages.
    """
    if not dst.endswith(".safetensors"):
        raise ValueError(f"Output file {dst!r} must end with .safetensors")
    header: Dict[str, str] = {}
    if "__author__" in checkpoint:
        header[_AUTHOR_KEY] = str(checkpoint["__author__"])
    if checkpoint.get("matching_heuristics"):
        header[_HEURISTICS_KEY] = "true"
    blob = state_dict_to_safetensors_bytes(checkpoint["model"], metadata=header, source=source)
    atomic_write(dst, lambda f: f.write(blob))
    dropped = sorted(k for k in checkpoint if k not in ("model", "__author__", "matching_heuristics"))
    return {"num_tensors": len(checkpoint["model"]), "dropped": dropped}
