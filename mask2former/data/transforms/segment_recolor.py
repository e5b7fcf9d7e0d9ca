"""Per-segment colour randomisation: a training augmentation for datasets whose object colours
carry no class information (the built-in shapes data paints every object in a random colour).

Without it, a small model trained on few images learns each training object's colour instead of
its shape (docs/time_to_accuracy.md): the colour of a segment is the cheapest feature that tells
the training objects apart. Giving each thing segment a fresh random colour at every use removes
that shortcut; the segment's texture and shading (its pixels' deviations from their mean
colour) are kept, so edges against the background stay as they were.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

__all__ = ["recolor_segments"]


def recolor_segments(image: np.ndarray, masks: Iterable[np.ndarray], prob: float) -> np.ndarray:
    """Give each masked segment, with probability ``prob``, a uniformly random mean colour.

    Args:
        image: (H, W, C) uint8 image (any channel order: every channel gets a random value).
        masks: (H, W) boolean masks, one per segment (later masks win where they overlap).
        prob: chance that a segment is recoloured, in [0, 1].
    Returns:
        A new (H, W, C) uint8 image: in a recoloured segment each pixel becomes
        ``pixel - mean(segment) + U(0, 255)`` per channel, clipped to [0, 255]; other pixels are
        unchanged. Randomness comes from ``np.random`` (seeded per sample by the data loader):
        per segment a uniform draw against ``prob`` (skipped when ``prob`` is 1), then the colour.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"recolor_segments: prob must lie in [0, 1], got {prob}")
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"recolor_segments: expected an (H, W, C) uint8 image, got {image.dtype} {image.shape}")
    out = image.copy()
    if prob == 0.0:
        return out
    for mask in masks:
        if prob < 1.0 and np.random.random() >= prob:
            continue
        pixels = out[mask].astype(np.float64)  # (n, C)
        if len(pixels) == 0:
            continue
        colour = np.random.randint(0, 256, size=image.shape[2])  # (C,)
        out[mask] = np.clip(np.rint(pixels - pixels.mean(axis=0) + colour), 0, 255).astype(np.uint8)
    return out
