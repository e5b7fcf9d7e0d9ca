"""Point sampling on mask logits (PointRend's helpers, as Mask2Former's losses use them).

Coordinates are normalised to ``[0, 1] x [0, 1]`` as ``(x, y)``; a point is read with
bilinear interpolation (``grid_sample(align_corners=False)``), i.e. ``(0, 0)`` is the
top-left corner of the top-left pixel, not its centre.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch.nn import functional as F

__all__ = ["point_sample", "point_sample_binary", "get_uncertain_point_coords_with_randomness",
           "calculate_uncertainty"]


def point_sample(input: torch.Tensor, point_coords: torch.Tensor, **kwargs) -> torch.Tensor:
    """Bilinearly sample ``input`` at normalised points (a ``grid_sample`` wrapper).

    Args:
        input: (N, C, H, W) feature maps.
        point_coords: (N, P, 2) or (N, Hg, Wg, 2) points in ``[0, 1]^2``, ``(x, y)`` order.
        **kwargs: forwarded to ``F.grid_sample`` (callers pass ``align_corners=False``).

    Returns:
        (N, C, P) or (N, C, Hg, Wg) sampled values.
    """
    squeeze = point_coords.dim() == 3
    if squeeze:
        point_coords = point_coords.unsqueeze(2)  # (N, P, 1, 2)
    output = F.grid_sample(input, 2.0 * point_coords - 1.0, **kwargs)
    if squeeze:
        output = output.squeeze(3)  # (N, C, P)
    return output


def point_sample_binary(masks: torch.Tensor, point_coords: torch.Tensor,
                        size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """:func:`point_sample` (``align_corners=False``, zero padding) of binary masks, read
    straight from their bool / uint8 storage: no float copy of the full-resolution masks.

    The four neighbours of every point are gathered and weighted bilinearly, the formula
    ``grid_sample`` evaluates (equal to it up to float rounding, ~1e-7).

    Args:
        masks: (M, H, W) bool / integer / float masks with values in {0, 1}.
        point_coords: (M, P, 2) points in ``[0, 1]^2``, ``(x, y)`` order.
        size: (Hs, Ws) >= (H, W): the frame the coordinates are normalised to, with the masks
            in its top-left corner and zeros elsewhere (a zero-padded batch); default (H, W).

    Returns:
        (M, P) float32 values in [0, 1].
    """
    num, height, width = masks.shape
    frame_h, frame_w = size if size is not None else (height, width)
    if frame_h < height or frame_w < width:
        raise ValueError(f"point_sample_binary: size {(frame_h, frame_w)} is smaller than the masks {(height, width)}")
    x = point_coords[..., 0].float() * frame_w - 0.5  # (M, P) pixel coordinates, centres at k + 0.5
    y = point_coords[..., 1].float() * frame_h - 0.5
    x0, y0 = x.floor(), y.floor()
    wx1, wy1 = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    flat = masks.reshape(num, height * width)
    out = torch.zeros_like(x)
    for dy, wy in ((0, 1 - wy1), (1, wy1)):
        for dx, wx in ((0, 1 - wx1), (1, wx1)):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            index = (yy.clamp(0, height - 1) * width + xx.clamp(0, width - 1))  # (M, P)
            value = flat.gather(1, index).to(out.dtype) * inside
            out += wy * wx * value
    return out


def calculate_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of class-agnostic logits (R, 1, ...): ``-|logit|`` (highest at 0)."""
    if logits.shape[1] != 1:
        raise ValueError(f"calculate_uncertainty expects (R, 1, ...) logits, got {tuple(logits.shape)}")
    return -torch.abs(logits)


def get_uncertain_point_coords_with_randomness(
    coarse_logits: torch.Tensor,
    uncertainty_func: Callable[[torch.Tensor], torch.Tensor],
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
) -> torch.Tensor:
    """PointRend's training-time point selection.

    Draw ``int(num_points * oversample_ratio)`` uniform points, keep the
    ``int(importance_sample_ratio * num_points)`` most uncertain of them and fill up with
    fresh uniform points (random draws happen in that order, as in detectron2).

    Args:
        coarse_logits: (R, C, Hm, Wm) mask logits (C = 1 for class-agnostic masks).
        uncertainty_func: maps (R, C, P) point logits to (R, 1, P) uncertainties.
        num_points: number of points P to return.
        oversample_ratio: >= 1.
        importance_sample_ratio: in [0, 1].

    Returns:
        (R, P, 2) point coordinates in ``[0, 1]^2``.
    """
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
    device = coarse_logits.device
    num_boxes = coarse_logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    point_coords = torch.rand(num_boxes, num_sampled, 2, device=device)  # (R, P*k, 2)
    point_logits = point_sample(coarse_logits, point_coords, align_corners=False)
    # Uncertainty of the *interpolated* logits, not interpolated uncertainty (PointRend).
    point_uncertainties = uncertainty_func(point_logits)  # (R, 1, P*k)
    num_uncertain_points = int(importance_sample_ratio * num_points)
    num_random_points = num_points - num_uncertain_points
    idx = torch.topk(point_uncertainties[:, 0, :], k=num_uncertain_points, dim=1)[1]
    shift = num_sampled * torch.arange(num_boxes, dtype=torch.long, device=device)
    idx += shift[:, None]
    point_coords = point_coords.view(-1, 2)[idx.view(-1), :].view(num_boxes, num_uncertain_points, 2)
    if num_random_points > 0:
        random_coords = torch.rand(num_boxes, num_random_points, 2, device=device)
        point_coords = torch.cat([point_coords, random_coords], dim=1)  # (R, P, 2)
    return point_coords
