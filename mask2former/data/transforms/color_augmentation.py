"""SSD-style photometric distortion (PointRend's ``ColorAugSSDTransform``, used by Mask2Former)."""
from __future__ import annotations

import random

import cv2
import numpy as np
from fvcore.transforms.transform import Transform

__all__ = ["ColorAugSSDTransform"]


class ColorAugSSDTransform(Transform):
    """Random brightness, contrast, saturation and hue, each applied with probability 0.5.

    The randomness is drawn (from python's ``random``) each time ``apply_image`` runs; masks,
    segmentations and coordinates are left unchanged. Works on uint8 HxWx3 images.
    """

    def __init__(
        self,
        img_format: str,
        brightness_delta: int = 32,
        contrast_low: float = 0.5,
        contrast_high: float = 1.5,
        saturation_low: float = 0.5,
        saturation_high: float = 1.5,
        hue_delta: int = 18,
    ):
        super().__init__()
        if img_format not in ("BGR", "RGB"):
            raise ValueError(f"ColorAugSSDTransform: img_format must be 'BGR' or 'RGB', got {img_format!r}")
        self.is_rgb = img_format == "RGB"
        del img_format
        self._set_attributes(locals())

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def inverse(self) -> Transform:
        raise NotImplementedError("ColorAugSSDTransform is not invertible")

    def apply_image(self, img: np.ndarray, interp=None) -> np.ndarray:
        if self.is_rgb:
            img = img[:, :, [2, 1, 0]]  # OpenCV's HSV conversion expects BGR
        img = self.brightness(img)
        if random.randrange(2):
            img = self.saturation(self.contrast(img))
            img = self.hue(img)
        else:
            img = self.hue(self.saturation(img))
            img = self.contrast(img)
        if self.is_rgb:
            img = img[:, :, [2, 1, 0]]
        return img

    @staticmethod
    def convert(img: np.ndarray, alpha: float = 1, beta: float = 0) -> np.ndarray:
        img = img.astype(np.float32) * alpha + beta
        return np.clip(img, 0, 255).astype(np.uint8)

    def brightness(self, img: np.ndarray) -> np.ndarray:
        if random.randrange(2):
            return self.convert(img, beta=random.uniform(-self.brightness_delta, self.brightness_delta))
        return img

    def contrast(self, img: np.ndarray) -> np.ndarray:
        if random.randrange(2):
            return self.convert(img, alpha=random.uniform(self.contrast_low, self.contrast_high))
        return img

    def saturation(self, img: np.ndarray) -> np.ndarray:
        if random.randrange(2):
            img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2HSV)
            img[:, :, 1] = self.convert(
                img[:, :, 1], alpha=random.uniform(self.saturation_low, self.saturation_high)
            )
            return cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
        return img

    def hue(self, img: np.ndarray) -> np.ndarray:
        if random.randrange(2):
            img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2HSV)
            img[:, :, 0] = (
                img[:, :, 0].astype(int) + random.randint(-self.hue_delta, self.hue_delta)
            ) % 180
            return cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
        return img
