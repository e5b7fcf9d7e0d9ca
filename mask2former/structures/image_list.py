"""``ImageList``: differently sized images padded into one batch tensor, plus their sizes."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch.nn import functional as F

__all__ = ["ImageList"]


class ImageList:
    """A padded batch ``tensor`` (B, ..., H, W) and each image's ``(h, w)`` before padding."""

    def __init__(self, tensor: torch.Tensor, image_sizes: List[Tuple[int, int]]):
        self.tensor = tensor
        self.image_sizes = image_sizes

    def __len__(self) -> int:
        return len(self.image_sizes)

    def __getitem__(self, idx: Union[int, slice]) -> torch.Tensor:
        """Image ``idx`` cropped back to its own size: (..., h, w)."""
        h, w = self.image_sizes[idx]
        return self.tensor[idx, ..., :h, :w]

    def to(self, *args: Any, **kwargs: Any) -> "ImageList":
        return ImageList(self.tensor.to(*args, **kwargs), self.image_sizes)

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    @staticmethod
    def from_tensors(
        tensors: Sequence[torch.Tensor],
        size_divisibility: int = 0,
        pad_value: float = 0.0,
        padding_constraints: Optional[Dict[str, int]] = None,
    ) -> "ImageList":
        """Pad ``tensors`` (each (Hi, Wi) or (C_1, ..., C_K, Hi, Wi)) to one common size.

        The common size is the per-dimension maximum, made square when
        ``padding_constraints["square_size"] > 0`` and rounded up to a multiple of the
        divisibility (``padding_constraints["size_divisibility"]`` wins over the argument).
        Images sit at the top-left corner; the rest is ``pad_value``.
        """
        if not isinstance(tensors, (tuple, list)) or len(tensors) == 0:
            raise ValueError(f"from_tensors expects a non-empty list of tensors, got {type(tensors)}")
        for i, t in enumerate(tensors):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"from_tensors: item {i} is a {type(t).__name__}, not a Tensor")
            if t.dim() < 2 or t.shape[:-2] != tensors[0].shape[:-2]:
                raise ValueError(
                    f"from_tensors: item {i} has shape {tuple(t.shape)}, incompatible with "
                    f"item 0 of shape {tuple(tensors[0].shape)} (leading dims must agree)"
                )
        image_sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        max_h = max(h for h, _ in image_sizes)
        max_w = max(w for _, w in image_sizes)

        if padding_constraints is not None:
            square_size = padding_constraints.get("square_size", 0)
            if square_size > 0:
                if square_size < max(max_h, max_w):
                    raise ValueError(
                        f"padding_constraints square_size={square_size} is smaller than the "
                        f"largest image ({max_h}x{max_w})"
                    )
                max_h = max_w = square_size
            size_divisibility = padding_constraints.get("size_divisibility", size_divisibility)
        if size_divisibility > 1:
            stride = size_divisibility
            max_h = (max_h + stride - 1) // stride * stride
            max_w = (max_w + stride - 1) // stride * stride

        if len(tensors) == 1:
            h, w = image_sizes[0]
            if (h, w) == (max_h, max_w):
                batched = tensors[0].unsqueeze(0)
            else:
                batched = F.pad(tensors[0], [0, max_w - w, 0, max_h - h], value=pad_value).unsqueeze_(0)
        else:
            shape = (len(tensors),) + tuple(tensors[0].shape[:-2]) + (max_h, max_w)
            batched = tensors[0].new_full(shape, pad_value)
            for img, pad_img in zip(tensors, batched):
                pad_img[..., : img.shape[-2], : img.shape[-1]].copy_(img)
        return ImageList(batched.contiguous(), image_sizes)
