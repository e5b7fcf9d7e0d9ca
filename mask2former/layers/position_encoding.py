"""Sine positional encoding of a 2D feature map (DETR / Mask2Former)."""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ..utils.env import cached_unless_capturing

__all__ = ["PositionEmbeddingSine", "PositionEmbeddingSine3D"]


class PositionEmbeddingSine(nn.Module):
    """Fixed sine / cosine encoding of (y, x), normalised to [0, scale] when ``normalize``."""

    def __init__(self, num_pos_feats: int = 64, temperature: int = 10000, normalize: bool = False,
                 scale: Optional[float] = None):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("normalize must be True if scale is passed")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self._cache: Dict[Tuple[int, int, int, str], torch.Tensor] = {}

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, C, H, W) features [, (B, H, W) bool padding mask] -> (B, 2 * num_pos_feats, H, W).

        Without a mask the encoding depends on the size only: it is cached per size in eager
        mode (a read-only result: callers must not modify it in place).
        """
        if mask is not None:
            return self._encode(x, mask)
        key = (x.size(0), x.size(2), x.size(3), str(x.device))
        return cached_unless_capturing(self._cache, key, lambda: self._encode(x, None))

    def _encode(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        if mask is None:
            mask = torch.zeros((x.size(0), x.size(2), x.size(3)), device=x.device, dtype=torch.bool)
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale

        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)

        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)  # (B, 2F, H, W)


class PositionEmbeddingSine3D(nn.Module):
    """Sine / cosine encoding of (t, y, x) for a clip of feature maps (video Mask2Former).

    The (y, x) part is :class:`PositionEmbeddingSine`'s ``2 * num_pos_feats`` channels; the
    time index gets its own ``2 * num_pos_feats``-frequency encoding, added to them (not
    concatenated), so the output has ``2 * num_pos_feats`` channels. With ``normalize``,
    t, y and x are each scaled to ``(0, scale]`` over the clip / frame.
    """

    def __init__(self, num_pos_feats: int = 64, temperature: int = 10000, normalize: bool = False,
                 scale: Optional[float] = None):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("normalize must be True if scale is passed")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def _frequencies(self, n: int, device: torch.device) -> torch.Tensor:
        dim_t = torch.arange(n, dtype=torch.float32, device=device)
        return self.temperature ** (2 * (dim_t // 2) / n)  # (n,)

    @staticmethod
    def _sin_cos(embed: torch.Tensor, dim_t: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W) positions -> (B, T, H, W, n): sin on even, cos on odd frequencies."""
        pos = embed[..., None] / dim_t
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=5).flatten(4)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, T, C, H, W) features [, (B, T, H, W) bool padding mask] -> (B, T, 2F, H, W)."""
        if x.dim() != 5:
            raise ValueError(f"PositionEmbeddingSine3D expects (B, T, C, H, W) input, got shape {tuple(x.shape)}")
        if mask is None:
            mask = torch.zeros((x.size(0), x.size(1), x.size(3), x.size(4)), device=x.device, dtype=torch.bool)
        not_mask = ~mask
        z_embed = not_mask.cumsum(1, dtype=torch.float32)  # (B, T, H, W)
        y_embed = not_mask.cumsum(2, dtype=torch.float32)
        x_embed = not_mask.cumsum(3, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            z_embed = z_embed / (z_embed[:, -1:, :, :] + eps) * self.scale
            y_embed = y_embed / (y_embed[:, :, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, :, -1:] + eps) * self.scale
        dim_t = self._frequencies(self.num_pos_feats, x.device)
        dim_t_z = self._frequencies(2 * self.num_pos_feats, x.device)
        pos_yx = torch.cat((self._sin_cos(y_embed, dim_t), self._sin_cos(x_embed, dim_t)), dim=4)
        pos = pos_yx + self._sin_cos(z_embed, dim_t_z)  # (B, T, H, W, 2F)
        return pos.permute(0, 1, 4, 2, 3)  # (B, T, 2F, H, W)
