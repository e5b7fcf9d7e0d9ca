"""``DetectionCheckpointer``: detectron2's checkpointer, loading safely and saving atomically.

* ``load(path)``: ``path`` may be a local file, ``detectron2://...`` or ``http(s)://...``
  (cached, see :mod:`.paths`). Official ``.pkl`` files go through the restricted unpickler,
  everything else through ``torch.load(weights_only=True)``; weights are loaded
  non-strictly with a table of missing / unexpected / shape-mismatched keys.
* ``save(name, **extra)``: ``<save_dir>/<name>.pth`` holding ``model``, every checkpointable's
  ``state_dict()`` and ``extra``; written to a temp file in the same directory and renamed,
  so a crash never leaves a truncated checkpoint. ``last_checkpoint`` is updated the same way.
  With ``save_format="safetensors"``: ``<name>.safetensors`` (model) + ``<name>.state.pth``
  (the rest), see :mod:`.safetensors_io`.
* ``resume_or_load(path, resume=True)``, ``has_checkpoint()``, ``get_checkpoint_file()``,
  ``get_all_checkpoint_files()`` come from fvcore's ``Checkpointer``.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional
from urllib.parse import urlparse

import torch
import torch.distributed as dist
from fvcore.common.checkpoint import Checkpointer
from fvcore.common.checkpoint import PeriodicCheckpointer as PeriodicCheckpointer  # re-export, uses our save()
from torch import nn

from .loading import (
    IncompatibleKeys,
    format_incompatible_keys,
    load_checkpoint_file,
    load_state_dict_into_model,
)
from .file_io import NoSpaceLeftError, atomic_write, remove_partial_files  # noqa: F401  (public here too)
from .paths import resolve_checkpoint_path, to_url
from .safetensors_io import save_safetensors_checkpoint, sidecar_path

__all__ = ["DetectionCheckpointer", "NoSpaceLeftError", "PeriodicCheckpointer", "atomic_write",
           "remove_partial_files"]

_LAST_CHECKPOINT = "last_checkpoint"
_SAVE_FORMATS = {"pth": ".pth", "safetensors": ".safetensors"}


def _is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class DetectionCheckpointer(Checkpointer):
    """Save / load a model and other checkpointables (optimizer, scheduler, trainer...).

    Args:
        model: the model; a (Distributed)DataParallel wrapper is unwrapped.
        save_dir: where ``save`` writes and ``resume_or_load`` looks for ``last_checkpoint``.
        save_to_disk: write files at all; ``None`` (default): only on the main process.
        save_format: ``"pth"`` (default) or ``"safetensors"`` (``SOLVER.CHECKPOINT_FORMAT``).
        **checkpointables: objects with ``state_dict()`` / ``load_state_dict()``, saved under
            their keyword and restored by ``load`` / ``resume_or_load(resume=True)``.
    """

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        save_to_disk: Optional[bool] = None,
        save_format: str = "pth",
        **checkpointables: Any,
    ):
        if save_format not in _SAVE_FORMATS:
            raise ValueError(f"Checkpoint save_format (SOLVER.CHECKPOINT_FORMAT) must be one of "
                             f"{sorted(_SAVE_FORMATS)}, got {save_format!r}")
        self.save_format = save_format
        super().__init__(
            model,
            save_dir,
            save_to_disk=_is_main_process() if save_to_disk is None else save_to_disk,
            **checkpointables,
        )
        self.logger = logging.getLogger(__name__)

    # ------------------------------------------------------------------ loading
    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        """Load weights (and the named checkpointables; all when None) from ``path``.

        Returns:
            what remains of the checkpoint (e.g. ``iteration`` and other ``save`` extras).
        """
        if not path:
            self.logger.info("No checkpoint found. Initializing model from scratch")
            return {}
        self.logger.info(f"[DetectionCheckpointer] Loading from {path} ...")
        query = ""
        if to_url(path) is not None:
            parsed = urlparse(path)
            query = parsed.query
            path = parsed._replace(query="").geturl()
        local = resolve_checkpoint_path(path)
        checkpoint = load_checkpoint_file(local, url_query=query)
        if "__author__" in checkpoint:
            self.logger.info(f"Reading a file from '{checkpoint['__author__']}'")
        incompatible = self._load_model(checkpoint, source=f"'{local}'")
        self._log_incompatible_keys(incompatible)

        for key in self.checkpointables if checkpointables is None else checkpointables:
            if key in checkpoint:
                self.logger.info(f"Loading {key} from {local} ...")
                self.checkpointables[key].load_state_dict(checkpoint.pop(key))
        return checkpoint

    def _load_file(self, f: str) -> Dict[str, Any]:
        """Never fvcore's unrestricted ``torch.load``: the safe readers only."""
        return load_checkpoint_file(f)

    def _load_model(self, checkpoint: Dict[str, Any], source: str = "<checkpoint>") -> IncompatibleKeys:
        state_dict = checkpoint.pop("model")
        return load_state_dict_into_model(
            self.model,
            state_dict,
            matching_heuristics=bool(checkpoint.get("matching_heuristics", False)),
            c2_conversion=checkpoint.get("__author__") == "Caffe2",
            source=source,
        )

    def _log_incompatible_keys(self, incompatible: IncompatibleKeys) -> None:
        table = format_incompatible_keys(incompatible)
        if table:
            self.logger.warning("Some model weights were not loaded from the checkpoint:\n" + table)
        else:
            self.logger.info("All model weights were loaded from the checkpoint.")

    # ------------------------------------------------------------------ saving
    def save(self, name: str, **kwargs: Any) -> None:
        """Write ``<save_dir>/<name>.pth`` (or ``.safetensors`` + sidecar) atomically and point
        ``last_checkpoint`` at it."""
        if not self.save_dir or not self.save_to_disk:
            return
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)

        basename = f"{name}{_SAVE_FORMATS[self.save_format]}"
        if os.path.basename(basename) != basename:
            raise ValueError(f"Checkpoint name {name!r} must be a plain file name, not a path")
        os.makedirs(self.save_dir, exist_ok=True)
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        if self.save_format == "safetensors":
            save_safetensors_checkpoint(save_file, data, atomic_write)
        else:
            atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Atomically write ``last_checkpoint`` (the basename of the newest checkpoint)."""
        atomic_write(
            os.path.join(self.save_dir, _LAST_CHECKPOINT),
            lambda f: f.write(last_filename_basename.encode("utf-8")),
        )

    def delete(self, name: str) -> None:
        """Remove ``<save_dir>/<name>.pth`` (``name`` with or without ``.pth``, or a path); in the
        safetensors format ``<name>.safetensors`` and its sidecar."""
        if not self.save_to_disk or not self.save_dir:
            return
        path = name if os.path.dirname(name) else os.path.join(self.save_dir, name)
        ext = _SAVE_FORMATS[self.save_format]
        if not path.endswith(ext):
            path += ext
        paths = [path, sidecar_path(path)] if ext == ".safetensors" else [path]
        for p in paths:
            if os.path.isfile(p):
                os.remove(p)

    def get_all_checkpoint_files(self) -> List[str]:
        """Checkpoint files (``.pth`` and ``.safetensors``, no sidecars) in ``save_dir``."""
        return [
            os.path.join(self.save_dir, f)
            for f in sorted(os.listdir(self.save_dir))
            if os.path.isfile(os.path.join(self.save_dir, f))
            and f.endswith((".pth", ".safetensors")) and not f.endswith(".state.pth")
        ]
