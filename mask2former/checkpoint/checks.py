"""What makes a checkpoint unusable, said with the file's name: the error contract of every reader.

* :func:`reading_errors` wraps a reader (``.pkl``, ``.pth``, ``.pyth``, ``.safetensors``): any
  failure becomes a :class:`CheckpointError` naming the file and the real reason -- empty, a
  text file (an HTML page saved by a failed download...), or truncated / corrupt -- except a
  refusal to run code, which stays an :class:`UnsafePickleError`.
* :func:`check_weights_usable` runs before weights reach a model: weights that match *none*
  of the model's entries (another model's checkpoint) and NaN / inf values are errors.

Why "nothing matched" and not a threshold: official ImageNet backbones
(``detectron2://ImageNetPretrained/...``, converted Swin / timm files) legitimately fill only
the backbone (10-60 % of a Mask2Former's values); a checkpoint of another model shares no
name at all. Any partial load is still reported (the load table, and the share of values
loaded) by :class:`DetectionCheckpointer`.
"""
from __future__ import annotations

import contextlib
import os
import pickle
from typing import Iterator, List, Mapping, Tuple

import torch

from .safe_pickle import UnsafePickleError

__all__ = ["CheckpointError", "check_weights_usable", "describe_unreadable", "loaded_share", "reading_errors"]

_MAX_NAMED = 10  # tensors / keys named in one message


class CheckpointError(ValueError):
    """A checkpoint cannot be used as weights; the message names the file and the reason."""


def describe_unreadable(path: str, err: BaseException) -> str:
    """Why ``path`` could not be read: empty, text, or truncated / corrupt (with ``err``)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as os_err:
        return f"it cannot be opened ({os_err})"
    if size == 0:
        return "the file is empty (0 bytes)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        hint = " (an HTML page: a failed download?)" if text.lstrip().lower().startswith(("<!doctype", "<html")) else ""
        return f"it is a text file, not a checkpoint{hint}; it starts with {text[:60]!r}"
    reason = str(err).strip().splitlines()[0] if str(err).strip() else "no further detail"
    return (f"it is truncated, corrupt or not a checkpoint ({size} bytes; "
            f"{type(err).__name__}: {reason[:300]})")


def _is_code_refusal(err: BaseException) -> bool:
    """torch.load(weights_only=True) refused a global (a pickle that would run code)."""
    return isinstance(err, pickle.UnpicklingError) and "global" in str(err).lower()


@contextlib.contextmanager
def reading_errors(path: str) -> Iterator[None]:
    """Turn any failure of a checkpoint reader for ``path`` into the documented errors:
    ``FileNotFoundError`` (missing), :class:`UnsafePickleError` (would run code),
    :class:`CheckpointError` (everything else, naming the file and the reason)."""
    try:
        yield
    except (CheckpointError, UnsafePickleError, FileNotFoundError):
        raise
    except Exception as err:  # noqa: BLE001 - readers raise many types for a bad file
        if _is_code_refusal(err):
            raise UnsafePickleError(
                f"Refusing to load checkpoint file '{path}': torch.load(weights_only=True) found "
                f"code references ({str(err).strip().splitlines()[-1][:300]}). Only tensors, plain "
                "containers, numbers, strings and numpy arrays are accepted; if you trust the file, "
                "re-save it as a plain state dict with a trusted tool.") from None
        raise CheckpointError(f"Cannot load checkpoint file '{path}': {describe_unreadable(path, err)}") from err


def loaded_share(model_state: Mapping[str, torch.Tensor], loaded_keys: List[str]) -> Tuple[int, int, float]:
    """(tensors loaded, model tensors, fraction of the model's values loaded)."""
    total = sum(int(v.numel()) for v in model_state.values())
    done = sum(int(model_state[k].numel()) for k in loaded_keys)
    return len(loaded_keys), len(model_state), (done / total if total else 1.0)


def check_weights_usable(model_state: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor],
                         *, source: str, report: str = "") -> List[str]:
    """Raise :class:`CheckpointError` when no floating-point entry of ``state_dict`` fits
    ``model_state`` (same name and shape) or when a fitting floating-point entry holds NaN / inf. Returns the fitting
    keys. ``report`` (the load table) is appended to the no-match message."""
    loadable = [k for k, v in state_dict.items()
                if k in model_state and tuple(v.shape) == tuple(model_state[k].shape)]
    # integer buffers (BatchNorm's num_batches_tracked) fit any checkpoint of a similar layout
    has_weights = any(v.is_floating_point() for v in model_state.values())
    if has_weights and not any(model_state[k].is_floating_point() for k in loadable):
        examples = ", ".join(list(state_dict)[:5]) or "none"
        raise CheckpointError(
            f"Checkpoint {source} matches none of the model's weights: 0 of {len(model_state)} model "
            f"tensors (0.0% of its values) would be loaded -- it is probably another model's "
            f"checkpoint (its first keys: {examples}).\n{report}".rstrip())
    bad = []
    for key in loadable:
        value = state_dict[key]
        if value.is_floating_point() or value.is_complex():
            finite = torch.isfinite(value)
            if not bool(finite.all()):
                bad.append(f"{key} ({int((~finite).sum())} of {value.numel()} values)")
    if bad:
        more = f" and {len(bad) - _MAX_NAMED} more" if len(bad) > _MAX_NAMED else ""
        raise CheckpointError(f"Checkpoint {source} holds NaN / inf values in {len(bad)} tensor(s): "
                              f"{', '.join(bad[:_MAX_NAMED])}{more}")
    return loadable
