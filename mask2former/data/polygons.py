"""Polygon instance masks for the data pipeline (COCO polygons before rasterisation).

``PolygonMasks`` keeps detectron2's behaviour for the parts the mappers use: tight boxes of the
polygon vertices, emptiness, indexing, rasterisation.
"""
from __future__ import annotations

from typing import Any, Iterator, List, Sequence, Union

import numpy as np
import torch

from ..structures import BitMasks, Boxes

__all__ = ["PolygonMasks"]


class PolygonMasks:
    """N instances, each a list of flat float64 polygons ``[x0, y0, x1, y1, ...]``."""

    def __init__(self, polygons: Sequence[Sequence[Union[np.ndarray, Sequence[float]]]]):
        if not isinstance(polygons, (list, tuple)):
            raise ValueError(
                f"Cannot create PolygonMasks: expect a list of list of polygons per image, got {type(polygons)}"
            )

        def process_polygons(polygons_per_instance) -> List[np.ndarray]:
            if not isinstance(polygons_per_instance, (list, tuple)):
                raise ValueError(
                    "Cannot create polygons: expect a list of polygons per instance, "
                    f"got {type(polygons_per_instance)}"
                )
            result = [np.asarray(p, dtype=np.float64).reshape(-1) for p in polygons_per_instance]
            for p in result:
                if len(p) % 2 != 0 or len(p) < 6:
                    raise ValueError(f"Cannot create a polygon from {len(p)} coordinates.")
            return result

        self.polygons: List[List[np.ndarray]] = [process_polygons(p) for p in polygons]

    def to(self, *args: Any, **kwargs: Any) -> "PolygonMasks":
        return self

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def get_bounding_boxes(self) -> Boxes:
        """(N, 4) XYXY boxes spanning each instance's vertices (zeros for empty instances)."""
        boxes = torch.zeros(len(self.polygons), 4, dtype=torch.float32)
        for idx, polygons_per_instance in enumerate(self.polygons):
            if not polygons_per_instance:
                continue
            pts = np.concatenate(polygons_per_instance).reshape(-1, 2)
            minxy, maxxy = pts.min(axis=0), pts.max(axis=0)
            boxes[idx] = torch.as_tensor(np.concatenate([minxy, maxxy]), dtype=torch.float32)
        return Boxes(boxes)

    def nonempty(self) -> torch.Tensor:
        """(N,) bool: the instance has at least one polygon."""
        return torch.tensor([len(p) > 0 for p in self.polygons], dtype=torch.bool)

    def to_bitmasks(self, height: int, width: int) -> BitMasks:
        """Rasterise every instance to an (N, H, W) ``BitMasks``."""
        return BitMasks.from_polygon_masks(self.polygons, height, width)

    def __getitem__(self, item: Union[int, slice, List[int], torch.Tensor]) -> "PolygonMasks":
        if isinstance(item, int):
            selected = [self.polygons[item]]
        elif isinstance(item, slice):
            selected = self.polygons[item]
        elif isinstance(item, list):
            selected = [self.polygons[i] for i in item]
        elif isinstance(item, torch.Tensor):
            if item.dtype == torch.bool:
                if item.dim() != 1 or item.numel() != len(self):
                    raise IndexError(f"Boolean index of shape {tuple(item.shape)} for {len(self)} polygons")
                item = item.nonzero().squeeze(1)
            selected = [self.polygons[i] for i in item.cpu().tolist()]
        else:
            raise TypeError(f"Unsupported index type {type(item)} for PolygonMasks")
        return PolygonMasks(selected)

    def __iter__(self) -> Iterator[List[np.ndarray]]:
        return iter(self.polygons)

    def __len__(self) -> int:
        return len(self.polygons)

    def __repr__(self) -> str:
        return f"PolygonMasks(num_instances={len(self.polygons)})"

    def area(self) -> torch.Tensor:
        """(N,) polygon areas (shoelace formula, overlapping polygons counted twice)."""
        areas = []
        for polygons_per_instance in self.polygons:
            total = 0.0
            for p in polygons_per_instance:
                x, y = p[0::2], p[1::2]
                total += 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
            areas.append(total)
        return torch.tensor(areas, dtype=torch.float32)

    @staticmethod
    def cat(polymasks_list: List["PolygonMasks"]) -> "PolygonMasks":
        out = PolygonMasks([])
        for m in polymasks_list:
            out.polygons.extend(m.polygons)
        return out
