"""Image preprocessing shared by the meta-architectures: normalise, then pad into one batch."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import torch

from ...structures import ImageList

__all__ = ["preprocess_images"]


def preprocess_images(
    batched_inputs: List[Dict[str, Any]],
    pixel_mean: torch.Tensor,
    pixel_std: torch.Tensor,
    size_divisibility: int,
    padding_constraints: Optional[Mapping[str, int]] = None,
) -> ImageList:
    """``image`` of every input, moved to ``pixel_mean``'s device and normalised, padded together.

    Args:
        batched_inputs: dicts with ``image`` (C, H, W) in INPUT.FORMAT order, 0-255.
        pixel_mean, pixel_std: (C, 1, 1) per-channel normalisation.
        size_divisibility: the padded size is a multiple of this (0: none).
        padding_constraints: the backbone's (``square_size`` / ``size_divisibility``), or None.
    Returns:
        ImageList whose tensor is (B, C, Hp, Wp), zero-padded at the bottom / right.
    """
    images = [(x["image"].to(pixel_mean.device) - pixel_mean) / pixel_std for x in batched_inputs]
    return ImageList.from_tensors(images, size_divisibility,
                                  padding_constraints=dict(padding_constraints or {}) or None)
