"""Augmentations of the YouTube-VIS clip mapper: which random decisions are shared by all frames
of a clip and which are drawn per frame.

As the official ``mask2former_video`` ``build_augmentation``: the resize is drawn once per clip
when ``INPUT.MIN_SIZE_TRAIN_SAMPLING`` is ``choice_by_clip`` / ``range_by_clip`` (per frame for
``choice`` / ``range``), the flip once per clip for ``INPUT.RANDOM_FLIP flip_by_clip`` (per frame
for ``horizontal`` / ``vertical``), the crop per frame. ``INPUT.AUGMENTATIONS`` ("brightness",
"contrast", "saturation") are drawn once per clip here (the official code draws them per frame).
"""
from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Union

import numpy as np

from .. import transforms as T

__all__ = ["ClipAugmentation", "build_ytvis_augmentation", "start_clip"]

logger = logging.getLogger(__name__)


class ClipAugmentation(T.Augmentation):
    """``aug`` with one random decision per clip: the numpy RNG state at the clip's first frame
    is replayed for every later frame (so the transform is recomputed for each frame's shape,
    with the same draws). Call ``start_clip()`` before the first frame of each clip."""

    def __init__(self, aug: T.Augmentation):
        super().__init__()
        self.aug = aug
        self._clip_state: Optional[tuple] = None

    def start_clip(self) -> None:
        self._clip_state = None

    def __call__(self, aug_input: T.AugInput):
        if self._clip_state is None:
            self._clip_state = np.random.get_state()
            return self.aug(aug_input)
        outer = np.random.get_state()
        np.random.set_state(self._clip_state)
        try:
            return self.aug(aug_input)
        finally:
            np.random.set_state(outer)

    def __repr__(self) -> str:
        return f"ClipAugmentation({self.aug!r})"

    __str__ = __repr__


def start_clip(augmentations: Sequence[Union[T.Augmentation, T.Transform]]) -> None:
    """Tell every ``ClipAugmentation`` of ``augmentations`` that a new clip begins."""
    for aug in augmentations:
        if isinstance(aug, ClipAugmentation):
            aug.start_clip()


_EXTRA = {
    "brightness": lambda: T.RandomBrightness(0.9, 1.1),
    "contrast": lambda: T.RandomContrast(0.9, 1.1),
    "saturation": lambda: T.RandomSaturation(0.9, 1.1),
}


def build_ytvis_augmentation(cfg, is_train: bool) -> List[T.Augmentation]:
    """The clip mapper's augmentations from ``cfg.INPUT`` (see the module docstring)."""
    if not is_train:
        return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]
    augs: List[T.Augmentation] = []
    if cfg.INPUT.CROP.ENABLED:
        augs.append(T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
    style = cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
    if style not in ("choice", "range", "choice_by_clip", "range_by_clip"):
        raise ValueError(f"INPUT.MIN_SIZE_TRAIN_SAMPLING must be choice, range, choice_by_clip or range_by_clip, "
                         f"got {style!r}")
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, style.replace("_by_clip", ""))
    augs.append(ClipAugmentation(resize) if style.endswith("_by_clip") else resize)
    flip = cfg.INPUT.RANDOM_FLIP
    if flip not in ("none", "horizontal", "vertical", "flip_by_clip"):
        raise ValueError(f"INPUT.RANDOM_FLIP must be none, horizontal, vertical or flip_by_clip, got {flip!r}")
    if flip == "flip_by_clip":
        augs.append(ClipAugmentation(T.RandomFlip(horizontal=True, vertical=False)))
    elif flip != "none":
        augs.append(T.RandomFlip(horizontal=flip == "horizontal", vertical=flip == "vertical"))
    for name in cfg.INPUT.AUGMENTATIONS:
        if name not in _EXTRA:
            raise ValueError(f"INPUT.AUGMENTATIONS: {name!r} is not supported; supported: {sorted(_EXTRA)}"
                             + (" (rotation is not implemented in this package)" if name == "rotation" else ""))
        augs.append(ClipAugmentation(_EXTRA[name]()))
    return augs
