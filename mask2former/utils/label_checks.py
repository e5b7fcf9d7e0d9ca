"""Validation of ground-truth label maps, shared by the dataset mappers and the evaluators.

A bad label otherwise fails far from its cause: an id >= NUM_CLASSES as an ``IndexError`` in the
matcher (a device-side assert on a GPU), a label of another size as ``ResizeTransform expects
...``, a colour PNG as ``expand(CPUBoolType ...)``. These checks name the label file, the image
file and what is wrong, before any of that runs.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["LabelError", "check_label_size", "check_semantic_label", "to_single_channel_label"]

_MAX_IDS_SHOWN = 10


class LabelError(ValueError):
    """A ground-truth label map is unusable; the message names the label (and image) file."""


def _files(label_file: str, image_file: Optional[str]) -> str:
    return f"label {label_file!r}" + (f" (image {image_file!r})" if image_file else "")


def to_single_channel_label(label: np.ndarray, label_file: str, image_file: Optional[str] = None) -> np.ndarray:
    """(H, W) as is; (H, W, C) whose channels are all equal (a grey map saved as RGB) -> (H, W).

    Raises:
        LabelError: a colour label image (channels differ): a semantic label must hold one class
            id per pixel (a single-channel or palette PNG), not colours.
    """
    if label.ndim == 2:
        return label
    if label.ndim == 3 and all(np.array_equal(label[:, :, 0], label[:, :, c]) for c in range(1, label.shape[2])):
        return label[:, :, 0]
    if label.ndim == 3:
        raise LabelError(
            f"Semantic {_files(label_file, image_file)} is a colour image of shape {label.shape}: a semantic "
            "label must hold one class id per pixel (a single-channel 'L' or palette 'P' PNG). Convert the "
            "colours to class ids first (e.g. with the dataset's prepare_*.py script).")
    raise LabelError(f"Semantic {_files(label_file, image_file)} has shape {label.shape}; expected (H, W)")


def check_label_size(label_hw: Sequence[int], image_hw: Sequence[int], label_file: str,
                     image_file: Optional[str] = None, what: str = "Semantic") -> None:
    """Raise :class:`LabelError` when a label map's (H, W) differs from its image's."""
    if tuple(label_hw) != tuple(image_hw):
        raise LabelError(
            f"{what} {_files(label_file, image_file)} has size (h, w) = {tuple(label_hw)}, but the image is "
            f"{tuple(image_hw)}: a label map must have its image's size.")


def _ids_in_range(label: np.ndarray, num_classes: int, ignore_label: int) -> bool:
    """Fast path (two linear passes, no sort): every id is in [0, num_classes) or the ignore label."""
    low, high = label.min(), label.max()
    if low >= 0 and high < num_classes:
        return True
    if low >= 0 and high == ignore_label:  # only the ignore label can lie above the classes
        return bool((label[label >= num_classes] == ignore_label).all())
    return False


def check_semantic_label(
    label: np.ndarray,
    *,
    num_classes: Optional[int],
    ignore_label: int,
    label_file: str,
    image_file: Optional[str] = None,
    image_hw: Optional[Sequence[int]] = None,
) -> np.ndarray:
    """Validate a semantic label map and return it as (H, W).

    Args:
        label: the label as read ((H, W), or (H, W, C) from an RGB file).
        num_classes: valid ids are ``0 .. num_classes - 1`` (``None``: not checked).
        ignore_label: the id of unlabelled pixels, always allowed.
        label_file, image_file: named in the errors.
        image_hw: the image's (H, W), when the label must match it.

    Raises:
        LabelError: colour label, size mismatch, or ids outside ``[0, num_classes)`` that are
            not ``ignore_label`` (the message lists them).
    """
    label = to_single_channel_label(np.asarray(label), label_file, image_file)
    if image_hw is not None:
        check_label_size(label.shape[:2], image_hw, label_file, image_file)
    if num_classes is not None and label.size and not _ids_in_range(label, num_classes, ignore_label):
        ids = np.unique(label)
        bad = ids[((ids < 0) | (ids >= num_classes)) & (ids != ignore_label)]
        if bad.size:
            shown = [int(v) if float(v).is_integer() else float(v) for v in bad[:_MAX_IDS_SHOWN]]
            more = f" and {bad.size - _MAX_IDS_SHOWN} more" if bad.size > _MAX_IDS_SHOWN else ""
            raise LabelError(
                f"Semantic {_files(label_file, image_file)} holds ids {shown}{more} outside [0, {num_classes}) "
                f"that are not the ignore label {ignore_label}: check MODEL.SEM_SEG_HEAD.NUM_CLASSES "
                f"({num_classes}) and the dataset's ignore_label, or remap the label ids.")
    return label
