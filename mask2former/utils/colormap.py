"""The Detectron colour palette (74 well-separated colours, greys removed) and random picks from it.

Colours are returned as float32 arrays in ``[0, maximum]`` (``maximum`` is 255 or 1), in BGR
order unless ``rgb=True`` -- detectron2's conventions, so code written against
``detectron2.utils.colormap`` works unchanged.
"""
from __future__ import annotations

import random
from typing import List

import numpy as np

__all__ = ["colormap", "random_color", "random_colors"]

# RGB in [0, 1], in Detectron's order.
# fmt: off
_COLORS = np.array([
    0.000, 0.447, 0.741,   0.850, 0.325, 0.098,   0.929, 0.694, 0.125,   0.494, 0.184, 0.556,
    0.466, 0.674, 0.188,   0.301, 0.745, 0.933,   0.635, 0.078, 0.184,   0.300, 0.300, 0.300,
    0.600, 0.600, 0.600,   1.000, 0.000, 0.000,   1.000, 0.500, 0.000,   0.749, 0.749, 0.000,
    0.000, 1.000, 0.000,   0.000, 0.000, 1.000,   0.667, 0.000, 1.000,   0.333, 0.333, 0.000,
    0.333, 0.667, 0.000,   0.333, 1.000, 0.000,   0.667, 0.333, 0.000,   0.667, 0.667, 0.000,
    0.667, 1.000, 0.000,   1.000, 0.333, 0.000,   1.000, 0.667, 0.000,   1.000, 1.000, 0.000,
    0.000, 0.333, 0.500,   0.000, 0.667, 0.500,   0.000, 1.000, 0.500,   0.333, 0.000, 0.500,
    0.333, 0.333, 0.500,   0.333, 0.667, 0.500,   0.333, 1.000, 0.500,   0.667, 0.000, 0.500,
    0.667, 0.333, 0.500,   0.667, 0.667, 0.500,   0.667, 1.000, 0.500,   1.000, 0.000, 0.500,
    1.000, 0.333, 0.500,   1.000, 0.667, 0.500,   1.000, 1.000, 0.500,   0.000, 0.333, 1.000,
    0.000, 0.667, 1.000,   0.000, 1.000, 1.000,   0.333, 0.000, 1.000,   0.333, 0.333, 1.000,
    0.333, 0.667, 1.000,   0.333, 1.000, 1.000,   0.667, 0.000, 1.000,   0.667, 0.333, 1.000,
    0.667, 0.667, 1.000,   0.667, 1.000, 1.000,   1.000, 0.000, 1.000,   1.000, 0.333, 1.000,
    1.000, 0.667, 1.000,   0.333, 0.000, 0.000,   0.500, 0.000, 0.000,   0.667, 0.000, 0.000,
    0.833, 0.000, 0.000,   1.000, 0.000, 0.000,   0.000, 0.167, 0.000,   0.000, 0.333, 0.000,
    0.000, 0.500, 0.000,   0.000, 0.667, 0.000,   0.000, 0.833, 0.000,   0.000, 1.000, 0.000,
    0.000, 0.000, 0.167,   0.000, 0.000, 0.333,   0.000, 0.000, 0.500,   0.000, 0.000, 0.667,
    0.000, 0.000, 0.833,   0.000, 0.000, 1.000,   0.000, 0.000, 0.000,   0.143, 0.143, 0.143,
    0.857, 0.857, 0.857,   1.000, 1.000, 1.000,
], dtype=np.float32).reshape(-1, 3)
# fmt: on


def _scaled(colors: np.ndarray, rgb: bool, maximum: int) -> np.ndarray:
    if maximum not in (1, 255):
        raise ValueError(f"maximum must be 1 or 255, got {maximum!r}")
    colors = colors * maximum
    return colors if rgb else colors[..., ::-1]


def colormap(rgb: bool = False, maximum: int = 255) -> np.ndarray:
    """All palette colours: float32 array (N, 3) in ``[0, maximum]``, BGR unless ``rgb``."""
    return _scaled(_COLORS, rgb, maximum)


def random_color(rgb: bool = False, maximum: int = 255) -> np.ndarray:
    """One palette colour drawn with ``np.random`` (seed it for repeatable pictures): (3,)."""
    return _scaled(_COLORS[np.random.randint(0, len(_COLORS))], rgb, maximum)


def random_colors(N: int, rgb: bool = False, maximum: int = 255) -> List[np.ndarray]:
    """``N`` palette colours drawn without repetition (python ``random``) while ``N`` <= 74.

    Past 74 the palette is reused: every colour appears before any appears twice.
    """
    if N < 0:
        raise ValueError(f"N must be >= 0, got {N}")
    indices: List[int] = []
    while len(indices) < N:
        indices += random.sample(range(len(_COLORS)), min(N - len(indices), len(_COLORS)))
    return [_scaled(_COLORS[i], rgb, maximum) for i in indices]
