"""Checkpoints: safe loading of official ``.pkl`` / ``.pth`` files, atomic saving."""
from .c2_model_loading import align_and_update_state_dicts
from .checks import CheckpointError
from .detection_checkpoint import DetectionCheckpointer, PeriodicCheckpointer
from .loading import format_incompatible_keys, load_checkpoint_file, load_state_dict_into_model
from .paths import get_cache_dir, resolve_checkpoint_path
from .safe_pickle import UnsafePickleError, load_pickle

__all__ = [
    "CheckpointError",
    "DetectionCheckpointer",
    "PeriodicCheckpointer",
    "UnsafePickleError",
    "align_and_update_state_dicts",
    "format_incompatible_keys",
    "get_cache_dir",
    "load_checkpoint_file",
    "load_pickle",
    "load_state_dict_into_model",
    "resolve_checkpoint_path",
]
