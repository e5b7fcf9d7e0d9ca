"""COCO panoptic PNG encoding: segment id = R + 256 * G + 256^2 * B (panopticapi's rgb2id / id2rgb)."""
from __future__ import annotations

from typing import Union

import numpy as np

__all__ = ["id2rgb", "rgb2id"]


def rgb2id(color: Union[np.ndarray, list, tuple]) -> Union[np.ndarray, int]:
    """(H, W, 3) uint8 RGB -> (H, W) int32 segment ids; a single colour -> int."""
    if isinstance(color, np.ndarray) and color.ndim == 3:
        if color.dtype == np.uint8:
            color = color.astype(np.int32)
        return color[:, :, 0] + 256 * color[:, :, 1] + 256 * 256 * color[:, :, 2]
    return int(color[0] + 256 * color[1] + 256 * 256 * color[2])


def id2rgb(id_map: Union[np.ndarray, int]) -> Union[np.ndarray, list]:
    """(H, W) segment ids -> (H, W, 3) uint8 RGB; a single id -> [r, g, b]."""
    if isinstance(id_map, np.ndarray):
        if id_map.size and (id_map.min() < 0 or id_map.max() >= 256 ** 3):
            raise ValueError(f"Segment ids must lie in [0, 256^3), got [{id_map.min()}, {id_map.max()}]")
        id_map_copy = id_map.astype(np.int64)
        rgb_map = np.zeros(tuple(id_map.shape) + (3,), dtype=np.uint8)
        for i in range(3):
            rgb_map[..., i] = id_map_copy % 256
            id_map_copy //= 256
        return rgb_map
    color = []
    for _ in range(3):
        color.append(id_map % 256)
        id_map //= 256
    return color
