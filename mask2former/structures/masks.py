"""Binary masks: ``BitMasks`` (N, H, W) bool, polygon rasterisation and mask -> box."""
from __future__ import annotations

from typing import Any, Iterator, List, Sequence, Union

import numpy as np
import pycocotools.mask as mask_util
import torch

from .boxes import Boxes

__all__ = ["BitMasks", "masks_to_boxes", "polygons_to_bitmask"]


def polygons_to_bitmask(polygons: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Rasterise the union of COCO-style polygons (each flat [x0, y0, x1, y1, ...]) to (H, W) bool."""
    if len(polygons) == 0:
        return np.zeros((height, width), dtype=bool)
    polygons = [np.asarray(p, dtype=np.float64).reshape(-1) for p in polygons]
    for i, p in enumerate(polygons):
        if p.size < 6 or p.size % 2 != 0:
            raise ValueError(
                f"Polygon {i} must have an even number (>= 6) of coordinates, got {p.size}"
            )
    rles = mask_util.frPyObjects(polygons, height, width)
    rle = mask_util.merge(rles)
    return mask_util.decode(rle).astype(bool)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes of binary masks: (N, H, W) -> (N, 4) float32.

    A box is ``[x_min, y_min, x_max + 1, y_max + 1]`` (pixel-edge coordinates, as
    detectron2's ``BitMasks.get_bounding_boxes``); an empty mask gives ``[0, 0, 0, 0]``.
    Non-bool masks count every non-zero pixel as foreground.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks_to_boxes expects (N, H, W) masks, got shape {tuple(masks.shape)}")
    if masks.dtype != torch.bool:
        masks = masks != 0
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4, dtype=torch.float32, device=masks.device)
    # uint8 max-reductions are much faster than bool any(); the jit tracer (fvcore's FLOP
    # counter) cannot follow a dtype view, so it gets a copy.
    as_bytes = masks.to(torch.uint8) if torch.jit.is_tracing() else masks.view(torch.uint8)
    cols = as_bytes.amax(dim=1).bool()  # (N, W): columns holding any foreground
    rows = as_bytes.amax(dim=2).bool()  # (N, H)
    x0, x1 = _first_last(cols)
    y0, y1 = _first_last(rows)
    boxes = torch.stack([x0, y0, x1 + 1, y1 + 1], dim=1).to(torch.float32)  # (N, 4)
    return boxes.masked_fill_(~cols.any(dim=1, keepdim=True), 0.0)


def _first_last(flags: torch.Tensor) -> tuple:
    """First and last True index along dim 1 of (N, L) bool flags (garbage for all-False rows)."""
    length = flags.shape[1]
    index = torch.arange(length, device=flags.device)
    first = torch.where(flags, index, length).amin(dim=1)
    last = torch.where(flags, index, -1).amax(dim=1)
    return first, last


class BitMasks:
    """N binary masks of one image as an (N, H, W) bool tensor."""

    def __init__(self, tensor: Union[torch.Tensor, np.ndarray]):
        if isinstance(tensor, np.ndarray):
            tensor = torch.from_numpy(np.ascontiguousarray(tensor))
        elif not isinstance(tensor, torch.Tensor):
            raise TypeError(f"BitMasks expects a Tensor or ndarray, got {type(tensor).__name__}")
        tensor = tensor.to(torch.bool)
        if tensor.dim() != 3:
            raise ValueError(f"BitMasks expects an (N, H, W) tensor, got shape {tuple(tensor.shape)}")
        self.tensor = tensor
        self.image_size = tuple(tensor.shape[1:])

    def to(self, *args: Any, **kwargs: Any) -> "BitMasks":
        return BitMasks(self.tensor.to(*args, **kwargs))

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    def __getitem__(self, item: Union[int, slice, torch.Tensor]) -> "BitMasks":
        """Select masks; an int gives a BitMasks of length 1."""
        if isinstance(item, int):
            return BitMasks(self.tensor[item].unsqueeze(0))
        selected = self.tensor[item]
        if selected.dim() != 3:
            raise IndexError(f"Indexing BitMasks with {item!r} did not give an (N, H, W) tensor")
        return BitMasks(selected)

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield from self.tensor

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __repr__(self) -> str:
        return f"BitMasks(num_instances={len(self)}, image_size={self.image_size})"

    def nonempty(self) -> torch.Tensor:
        """(N,) bool: the mask has at least one foreground pixel."""
        return self.tensor.flatten(1).any(dim=1)

    def get_bounding_boxes(self) -> Boxes:
        """Tight boxes around each mask (empty masks give zero boxes)."""
        return Boxes(masks_to_boxes(self.tensor))

    @staticmethod
    def from_polygon_masks(
        polygon_masks: Union[Sequence[Sequence[np.ndarray]], Any], height: int, width: int
    ) -> "BitMasks":
        """Rasterise per-instance polygon lists (or an object with ``.polygons``) to (N, H, W)."""
        polygons_per_instance = getattr(polygon_masks, "polygons", polygon_masks)
        masks = [polygons_to_bitmask(p, height, width) for p in polygons_per_instance]
        if not masks:
            return BitMasks(torch.zeros(0, height, width, dtype=torch.bool))
        return BitMasks(torch.from_numpy(np.stack(masks)))

    @staticmethod
    def cat(bitmasks_list: List["BitMasks"]) -> "BitMasks":
        if not isinstance(bitmasks_list, (list, tuple)) or not all(
            isinstance(m, BitMasks) for m in bitmasks_list
        ):
            raise TypeError("BitMasks.cat expects a list of BitMasks")
        if len(bitmasks_list) == 0:
            raise ValueError("BitMasks.cat got an empty list")
        return BitMasks(torch.cat([m.tensor for m in bitmasks_list], dim=0))
