"""Hugging Face checkpoint folders and ``hf://ORG/NAME`` weights.

* :func:`read_hf_folder`: a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``,
  a sharded ``model.safetensors.index.json``, or a legacy ``pytorch_model.bin`` read with
  ``torch.load(weights_only=True)``) -> config dict, preprocessor dict, state dict.
* :func:`convert_hf_folder`: the same folder as this package's config overrides + checkpoint.
* :func:`write_d2_folder` / :func:`write_hf_folder`: the two output layouts of the converter tools.
* :func:`resolve_hf_uri`: ``hf://ORG/NAME[@REVISION]`` -> the snapshot folder in
  ``huggingface_hub``'s cache. Offline first: the cache is tried before any network access, and
  with ``HF_HUB_OFFLINE=1`` (or ``MASK2FORMER_OFFLINE=1``) it is the only place looked at.

Nothing here imports ``transformers``.
"""
from __future__ import annotations

import json
import os
import pickle
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import yaml

from .file_io import atomic_write, torch_load_weights_only
from .hf_config import d2_config_from_hf, hf_config_from_d2, id2label_from_hf
from .hf_conversion import convert_d2_to_hf_state_dict, convert_hf_to_d2_state_dict
from .safetensors_io import state_dict_to_safetensors_bytes

__all__ = [
    "HF_AUTHOR",
    "HF_FILES",
    "convert_hf_folder",
    "is_hf_folder",
    "load_hf_checkpoint",
    "read_hf_folder",
    "resolve_hf_uri",
    "write_d2_folder",
    "write_hf_folder",
]

HF_AUTHOR = "huggingface"
HF_FILES = ("config.json", "model.safetensors")
_OPTIONAL_FILES = ("preprocessor_config.json", "model.safetensors.index.json", "pytorch_model.bin")


def is_hf_folder(path: str) -> bool:
    """A directory holding a ``config.json``."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))


def _read_json(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _read_weights(folder: str) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single = os.path.join(folder, "model.safetensors")
    if os.path.isfile(single):
        return load_file(single, device="cpu")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        state: Dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(os.path.join(folder, shard), device="cpu"))
        return state
    legacy = os.path.join(folder, "pytorch_model.bin")
    if os.path.isfile(legacy):
        return dict(torch_load_weights_only(legacy))
    raise FileNotFoundError(f"{folder}: no model.safetensors (nor a sharded index or pytorch_model.bin)")


def read_hf_folder(folder: str) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]], Dict[str, torch.Tensor]]:
    """``(config.json, preprocessor_config.json or None, state dict)`` of a ``save_pretrained`` folder."""
    if not is_hf_folder(folder):
        raise FileNotFoundError(f"{folder}: not a Hugging Face model folder (no config.json)")
    config = _read_json(os.path.join(folder, "config.json"))
    pre_path = os.path.join(folder, "preprocessor_config.json")
    preprocessor = _read_json(pre_path) if os.path.isfile(pre_path) else None
    return config, preprocessor, _read_weights(folder)


def convert_hf_folder(folder: str) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[int, str]]:
    """``(config overrides, {"model": state dict, "__author__": "huggingface"}, id2label)``."""
    config, preprocessor, hf_state = read_hf_folder(folder)
    try:
        overrides = d2_config_from_hf(config, preprocessor)
        window = (config.get("backbone_config") or {}).get("window_size")
        state = convert_hf_to_d2_state_dict(hf_state, config, window_size=window)
    except ValueError as err:
        raise ValueError(f"{folder}: {err}") from None
    return overrides, {"model": state, "__author__": HF_AUTHOR}, id2label_from_hf(config)


def load_hf_checkpoint(path: str) -> Dict[str, Any]:
    """A HF folder (or ``hf://`` URI) as a checkpoint for :class:`DetectionCheckpointer`."""
    folder = resolve_hf_uri(path) if path.startswith("hf://") else path
    return convert_hf_folder(folder)[1]


def _yaml_text(overrides: Mapping, id2label: Mapping[int, str], source: str) -> str:
    names = ", ".join(f"{i}: {n}" for i, n in id2label.items())
    header = (f"# Converted from the Hugging Face model {source} by tools/convert-hf-to-d2.py.\n"
              f"# Classes (contiguous id: name; also in id2label.json): {names}\n"
              "# Panoptic / instance inference needs dataset metadata with the thing classes: register\n"
              "# it and set DATASETS.TEST and MODEL.MASK_FORMER.TEST.PANOPTIC_ON / INSTANCE_ON.\n")
    return header + yaml.safe_dump(json.loads(json.dumps(overrides)), sort_keys=False)


def write_d2_folder(out_dir: str, overrides: Mapping, checkpoint: Mapping, id2label: Mapping[int, str], *,
                    fmt: str = "pkl", source: str = "") -> Dict[str, str]:
    """Write ``config.yaml``, ``id2label.json`` and ``model_final.<fmt>`` (pkl | pth | safetensors)."""

    if fmt not in ("pkl", "pth", "safetensors"):
        raise ValueError(f"--format must be pkl, pth or safetensors, got {fmt!r}")
    os.makedirs(out_dir, exist_ok=True)
    paths = {"config": os.path.join(out_dir, "config.yaml"), "id2label": os.path.join(out_dir, "id2label.json"),
             "weights": os.path.join(out_dir, f"model_final.{fmt}")}
    text = _yaml_text(overrides, id2label, source or "folder")
    atomic_write(paths["config"], lambda f: f.write(text.encode("utf-8")))
    labels = json.dumps({str(i): n for i, n in id2label.items()}, indent=1).encode("utf-8")
    atomic_write(paths["id2label"], lambda f: f.write(labels))
    state = checkpoint["model"]
    author = str(checkpoint.get("__author__", HF_AUTHOR))
    if fmt == "safetensors":
        blob = state_dict_to_safetensors_bytes(state, metadata={"mask2former.author": author},
                                               source=paths["weights"])
        atomic_write(paths["weights"], lambda f: f.write(blob))
    elif fmt == "pth":
        atomic_write(paths["weights"], lambda f: torch.save({"model": state, "__author__": author}, f))
    else:
        numpy_state: "OrderedDict[str, Any]" = OrderedDict((k, v.numpy()) for k, v in state.items())
        numpy_state._metadata = getattr(state, "_metadata", None)  # type: ignore[attr-defined]
        data = {"model": numpy_state, "__author__": author}
        atomic_write(paths["weights"], lambda f: pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL))
    return paths


def write_hf_folder(out_dir: str, cfg, state_dict: Mapping[str, torch.Tensor],
                    id2label: Optional[Mapping[int, str]] = None) -> Dict[str, str]:
    """Write ``config.json`` + ``model.safetensors`` that transformers' ``from_pretrained`` loads."""

    config = hf_config_from_d2(cfg, id2label)
    hf_state = convert_d2_to_hf_state_dict(state_dict, config)
    os.makedirs(out_dir, exist_ok=True)
    paths = {"config": os.path.join(out_dir, "config.json"), "weights": os.path.join(out_dir, "model.safetensors")}
    text = json.dumps(config, indent=2, sort_keys=True).encode("utf-8")
    atomic_write(paths["config"], lambda f: f.write(text))
    blob = state_dict_to_safetensors_bytes(OrderedDict(sorted(hf_state.items())), source=paths["weights"])
    atomic_write(paths["weights"], lambda f: f.write(blob))
    return paths


def _offline() -> bool:
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("MASK2FORMER_OFFLINE", ""))
    return any(v.lower() not in ("", "0", "false", "no") for v in flags)


def resolve_hf_uri(uri: str) -> str:
    """``hf://ORG/NAME[@REVISION]`` -> local snapshot folder (cache first; download only when online).

    Raises:
        FileNotFoundError: not cached (and offline or the download failed); names the repo, the
            files to fetch, the command, and the cache folder they must land in.
    """
    spec = uri[len("hf://"):]
    repo_id, _, revision = spec.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"{uri!r}: expected hf://ORG/NAME or hf://ORG/NAME@REVISION")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        raise ImportError(f"{uri!r}: resolving hf:// weights needs the package huggingface_hub "
                          "(pip install huggingface_hub)") from None
    patterns = list(HF_FILES + _OPTIONAL_FILES) + ["model-*.safetensors"]
    kwargs = dict(repo_id=repo_id, revision=revision or None, allow_patterns=patterns)
    try:
        folder = snapshot_download(local_files_only=True, **kwargs)
        if is_hf_folder(folder):
            return folder
    except Exception:  # not in the cache: LocalEntryNotFoundError and friends
        pass
    fix = (f"Download {', '.join(HF_FILES)} of https://huggingface.co/{repo_id} into the Hugging Face cache "
           f"({HF_HUB_CACHE}; set by $HF_HOME / $HF_HUB_CACHE), e.g. "
           f"`huggingface-cli download {repo_id} {' '.join(HF_FILES)}"
           f"{' --revision ' + revision if revision else ''}`, or convert a local copy with "
           "tools/convert-hf-to-d2.py.")
    if _offline():
        raise FileNotFoundError(f"{uri!r} is not in the Hugging Face cache and HF_HUB_OFFLINE / "
                                f"MASK2FORMER_OFFLINE is set. {fix}")
    try:
        folder = snapshot_download(**kwargs)
    except Exception as err:  # no network, unknown repo, gated ...
        raise FileNotFoundError(f"{uri!r} is not in the Hugging Face cache and could not be downloaded "
                                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). {fix}") from None
    if not is_hf_folder(folder):
        raise FileNotFoundError(f"{uri!r}: the downloaded snapshot {folder} has no config.json. {fix}")
    return folder
