"""Concrete augmentations (detectron2 / Mask2Former semantics and RNG call order)."""
from __future__ import annotations

import sys
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from fvcore.transforms.transform import (
    BlendTransform,
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    PadTransform,
    Transform,
    TransformList,
    VFlipTransform,
)
from PIL import Image

from .augmentation import Augmentation
from .transform import ResizeTransform

__all__ = [
    "FixedSizeCrop",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomCrop_CategoryAreaConstraint",
    "RandomFlip",
    "RandomSaturation",
    "Resize",
    "ResizeScale",
    "ResizeShortestEdge",
]


class RandomFlip(Augmentation):
    """Flip horizontally or vertically with probability ``prob``."""

    def __init__(self, prob: float = 0.5, *, horizontal: bool = True, vertical: bool = False):
        super().__init__()
        if horizontal and vertical:
            raise ValueError("RandomFlip: cannot do both horizontal and vertical; use two RandomFlip.")
        if not horizontal and not vertical:
            raise ValueError("RandomFlip: at least one of horizontal or vertical has to be True!")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        if self._rand_range() < self.prob:
            return HFlipTransform(w) if self.horizontal else VFlipTransform(h)
        return NoOpTransform()


class Resize(Augmentation):
    """Resize to a fixed (h, w) (an int means a square)."""

    def __init__(self, shape: Union[int, Tuple[int, int]], interp: int = Image.BILINEAR):
        super().__init__()
        if isinstance(shape, int):
            shape = (shape, shape)
        shape = tuple(shape)
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        return ResizeTransform(image.shape[0], image.shape[1], self.shape[0], self.shape[1], self.interp)


class ResizeShortestEdge(Augmentation):
    """Scale the shorter edge to a sampled length, keeping the aspect ratio; the longer edge is
    capped at ``max_size``. ``sample_style="range"`` samples uniformly in [min, max];
    ``"choice"`` picks one of the given lengths. A sampled length of 0 means no resize."""

    def __init__(
        self,
        short_edge_length: Union[int, Sequence[int]],
        max_size: int = sys.maxsize,
        sample_style: str = "range",
        interp: int = Image.BILINEAR,
    ):
        super().__init__()
        if sample_style not in ("range", "choice"):
            raise ValueError(f"ResizeShortestEdge: sample_style must be 'range' or 'choice', got {sample_style!r}")
        self.is_range = sample_style == "range"
        if isinstance(short_edge_length, int):
            short_edge_length = (short_edge_length, short_edge_length)
        if self.is_range and len(short_edge_length) != 2:
            raise ValueError(
                "short_edge_length must be two values (min, max) when sample_style='range'! "
                f"Got {short_edge_length}!"
            )
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        if self.is_range:
            size = np.random.randint(self.short_edge_length[0], self.short_edge_length[1] + 1)
        else:
            size = np.random.choice(self.short_edge_length)
        if size == 0:
            return NoOpTransform()
        newh, neww = ResizeShortestEdge.get_output_shape(h, w, size, self.max_size)
        return ResizeTransform(h, w, newh, neww, self.interp)

    @staticmethod
    def get_output_shape(oldh: int, oldw: int, short_edge_length: int, max_size: int) -> Tuple[int, int]:
        """Output (h, w) for an (oldh, oldw) input, rounding to the nearest integer."""
        size = short_edge_length * 1.0
        scale = size / min(oldh, oldw)
        if oldh < oldw:
            newh, neww = size, scale * oldw
        else:
            newh, neww = scale * oldh, size
        if max(newh, neww) > max_size:
            scale = max_size * 1.0 / max(newh, neww)
            newh = newh * scale
            neww = neww * scale
        return int(newh + 0.5), int(neww + 0.5)


class ResizeScale(Augmentation):
    """Large-scale-jitter resize: fit the image into ``scale * (target_height, target_width)``
    for a scale drawn uniformly in [min_scale, max_scale], keeping the aspect ratio."""

    def __init__(
        self,
        min_scale: float,
        max_scale: float,
        target_height: int,
        target_width: int,
        interp: int = Image.BILINEAR,
    ):
        super().__init__()
        self._init(locals())

    def _get_resize(self, image: np.ndarray, scale: float) -> Transform:
        input_size = image.shape[:2]
        target_scale_size = np.multiply((self.target_height, self.target_width), scale)
        output_scale = np.minimum(
            target_scale_size[0] / input_size[0], target_scale_size[1] / input_size[1]
        )
        output_size = np.round(np.multiply(input_size, output_scale)).astype(int)
        return ResizeTransform(input_size[0], input_size[1], output_size[0], output_size[1], self.interp)

    def get_transform(self, image: np.ndarray) -> Transform:
        random_scale = np.random.uniform(self.min_scale, self.max_scale)
        return self._get_resize(image, random_scale)


class RandomCrop(Augmentation):
    """Crop a random region whose size depends on ``crop_type``:

    * "relative": (h * crop_size[0], w * crop_size[1])
    * "relative_range": uniform in [crop_size[0], 1] x [crop_size[1], 1] of (h, w)
    * "absolute": exactly crop_size (clipped to the image)
    * "absolute_range": uniform in [crop_size[0], min(h, crop_size[1])] (same for w)
    """

    _CROP_TYPES = ("relative_range", "relative", "absolute", "absolute_range")

    def __init__(self, crop_type: str, crop_size: Sequence[float]):
        super().__init__()
        if crop_type not in self._CROP_TYPES:
            raise ValueError(f"RandomCrop: crop_type must be one of {self._CROP_TYPES}, got {crop_type!r}")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        croph, cropw = self.get_crop_size((h, w))
        assert h >= croph and w >= cropw, f"Shape computation in {self} has bugs."
        h0 = np.random.randint(h - croph + 1)
        w0 = np.random.randint(w - cropw + 1)
        return CropTransform(w0, h0, cropw, croph)

    def get_crop_size(self, image_size: Tuple[int, int]) -> Tuple[int, int]:
        """(crop_h, crop_w) for an image of size (h, w)."""
        h, w = image_size
        if self.crop_type == "relative":
            ch, cw = self.crop_size
            return int(h * ch + 0.5), int(w * cw + 0.5)
        if self.crop_type == "relative_range":
            crop_size = np.asarray(self.crop_size, dtype=np.float32)
            ch, cw = crop_size + np.random.rand(2) * (1 - crop_size)
            return int(h * ch + 0.5), int(w * cw + 0.5)
        if self.crop_type == "absolute":
            return min(self.crop_size[0], h), min(self.crop_size[1], w)
        # absolute_range
        if self.crop_size[0] > self.crop_size[1]:
            raise ValueError(f"RandomCrop absolute_range needs min <= max, got {self.crop_size}")
        ch = np.random.randint(min(h, self.crop_size[0]), min(h, self.crop_size[1]) + 1)
        cw = np.random.randint(min(w, self.crop_size[0]), min(w, self.crop_size[1]) + 1)
        return ch, cw


class RandomCrop_CategoryAreaConstraint(Augmentation):
    """``RandomCrop`` that retries (up to 10 times) until no single category covers more than
    ``single_category_max_area`` of the crop (``ignored_category`` pixels are not counted);
    the last try is used if none satisfies the constraint."""

    def __init__(
        self,
        crop_type: str,
        crop_size: Sequence[float],
        single_category_max_area: float = 1.0,
        ignored_category: Optional[int] = None,
    ):
        super().__init__()
        self.crop_aug = RandomCrop(crop_type, crop_size)
        self._init(locals())

    def get_transform(self, image: np.ndarray, sem_seg: np.ndarray) -> Transform:
        if self.single_category_max_area >= 1.0:
            return self.crop_aug.get_transform(image)
        h, w = sem_seg.shape
        for _ in range(10):
            crop_size = self.crop_aug.get_crop_size((h, w))
            y0 = np.random.randint(h - crop_size[0] + 1)
            x0 = np.random.randint(w - crop_size[1] + 1)
            sem_seg_temp = sem_seg[y0 : y0 + crop_size[0], x0 : x0 + crop_size[1]]
            labels, cnt = np.unique(sem_seg_temp, return_counts=True)
            if self.ignored_category is not None:
                cnt = cnt[labels != self.ignored_category]
            if len(cnt) > 1 and np.max(cnt) < np.sum(cnt) * self.single_category_max_area:
                break
        return CropTransform(x0, y0, crop_size[1], crop_size[0])


class FixedSizeCrop(Augmentation):
    """Crop a random ``crop_size`` (h, w) window; if the image is smaller and ``pad`` is True,
    pad it at the bottom / right with ``pad_value`` (``seg_pad_value`` for segmentations)."""

    def __init__(
        self,
        crop_size: Tuple[int, int],
        pad: bool = True,
        pad_value: float = 128.0,
        seg_pad_value: int = 255,
    ):
        super().__init__()
        self._init(locals())

    def _get_crop(self, image: np.ndarray) -> Transform:
        input_size = image.shape[:2]
        output_size = self.crop_size
        max_offset = np.maximum(np.subtract(input_size, output_size), 0)
        offset = np.round(np.multiply(max_offset, np.random.uniform(0.0, 1.0))).astype(int)
        return CropTransform(
            offset[1], offset[0], output_size[1], output_size[0], input_size[1], input_size[0]
        )

    def _get_pad(self, image: np.ndarray) -> Transform:
        input_size = image.shape[:2]
        output_size = self.crop_size
        pad_size = np.maximum(np.subtract(output_size, input_size), 0)
        original_size = np.minimum(input_size, output_size)
        return PadTransform(
            0, 0, pad_size[1], pad_size[0], original_size[1], original_size[0],
            self.pad_value, self.seg_pad_value,
        )

    def get_transform(self, image: np.ndarray) -> TransformList:
        transforms = [self._get_crop(image)]
        if self.pad:
            transforms.append(self._get_pad(image))
        return TransformList(transforms)


class RandomBrightness(Augmentation):
    """Scale intensity by a factor in [intensity_min, intensity_max] (blend with black)."""

    def __init__(self, intensity_min: float, intensity_max: float):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        return BlendTransform(src_image=0, src_weight=1 - w, dst_weight=w)


class RandomContrast(Augmentation):
    """Blend with the image mean by a factor in [intensity_min, intensity_max]."""

    def __init__(self, intensity_min: float, intensity_max: float):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        return BlendTransform(src_image=image.mean(), src_weight=1 - w, dst_weight=w)


class RandomSaturation(Augmentation):
    """Blend an RGB image with its grayscale by a factor in [intensity_min, intensity_max]."""

    def __init__(self, intensity_min: float, intensity_max: float):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        if image.shape[-1] != 3:
            raise ValueError("RandomSaturation only works on RGB images")
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        grayscale = image.dot([0.299, 0.587, 0.114])[:, :, np.newaxis]
        return BlendTransform(src_image=grayscale, src_weight=1 - w, dst_weight=w)
