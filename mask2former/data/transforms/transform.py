"""Deterministic transforms: fvcore's set plus ``ResizeTransform`` and a shapely-free polygon crop."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
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

__all__ = [
    "BlendTransform",
    "CropTransform",
    "HFlipTransform",
    "NoOpTransform",
    "PadTransform",
    "ResizeTransform",
    "Transform",
    "TransformList",
    "VFlipTransform",
    "clip_polygon",
]

_PIL_TO_TORCH_MODE = {
    Image.NEAREST: "nearest",
    Image.BILINEAR: "bilinear",
    Image.BICUBIC: "bicubic",
}


class ResizeTransform(Transform):
    """Resize an (h, w) image to (new_h, new_w): PIL for uint8, ``F.interpolate`` otherwise."""

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp: int | None = None):
        super().__init__()
        if interp is None:
            interp = Image.BILINEAR
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray, interp: int | None = None) -> np.ndarray:
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(
                f"ResizeTransform expects an image of size {(self.h, self.w)}, got {img.shape[:2]}"
            )
        assert len(img.shape) <= 4
        interp_method = interp if interp is not None else self.interp
        if img.dtype == np.uint8:
            single_channel = img.ndim > 2 and img.shape[2] == 1
            pil_image = Image.fromarray(img[:, :, 0] if single_channel else img)
            pil_image = pil_image.resize((self.new_w, self.new_h), interp_method)
            ret = np.asarray(pil_image)
            if single_channel:
                ret = np.expand_dims(ret, -1)
            return ret
        # PIL resizes only uint8 well: other dtypes go through torch.
        if any(x < 0 for x in img.strides):
            img = np.ascontiguousarray(img)
        tensor = torch.from_numpy(img)
        shape = list(tensor.shape)
        shape_4d = shape[:2] + [1] * (4 - len(shape)) + shape[2:]
        tensor = tensor.view(shape_4d).permute(2, 3, 0, 1)  # hw(c) -> nchw
        mode = _PIL_TO_TORCH_MODE[interp_method]
        align_corners = None if mode == "nearest" else False
        tensor = F.interpolate(tensor, (self.new_h, self.new_w), mode=mode, align_corners=align_corners)
        shape[:2] = (self.new_h, self.new_w)
        return tensor.permute(2, 3, 0, 1).reshape(shape).numpy()  # nchw -> hw(c)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords[:, 0] = coords[:, 0] * (self.new_w * 1.0 / self.w)
        coords[:, 1] = coords[:, 1] * (self.new_h * 1.0 / self.h)
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation, interp=Image.NEAREST)

    def inverse(self) -> "ResizeTransform":
        return ResizeTransform(self.new_h, self.new_w, self.h, self.w, self.interp)


def clip_polygon(polygon: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Clip an (N, 2) polygon to the box [x0, x1] x [y0, y1]; returns (M, 2), M may be 0.

    A non-convex polygon that the box splits into pieces comes back as one polygon whose pieces
    are joined along the box border by zero-area edges; its rasterisation is the same region.
    """
    pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    # (axis, bound, keep points with coord >= bound if sign > 0 else <= bound)
    for axis, bound, sign in ((0, x0, 1), (0, x1, -1), (1, y0, 1), (1, y1, -1)):
        if len(pts) == 0:
            break
        inside = sign * (pts[:, axis] - bound) >= 0
        out = []
        n = len(pts)
        for i in range(n):
            cur, prev = pts[i], pts[i - 1]
            cur_in, prev_in = inside[i], inside[i - 1]
            if cur_in != prev_in:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                crossing = prev + t * (cur - prev)
                crossing[axis] = bound
                out.append(crossing)
            if cur_in:
                out.append(cur)
        pts = np.asarray(out, dtype=np.float64).reshape(-1, 2)
    if len(pts) > 1:  # drop repeated consecutive vertices (including last == first)
        keep = np.any(pts != np.roll(pts, 1, axis=0), axis=1)
        pts = pts[keep] if keep.any() else pts[:1]
    return pts


def _polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _crop_apply_polygons(transform: CropTransform, polygons: list) -> list:
    """Crop each (N, 2) polygon to the crop window, drop those left with no area, shift to the crop."""
    cropped = []
    for polygon in polygons:
        pts = clip_polygon(
            polygon, transform.x0, transform.y0, transform.x0 + transform.w, transform.y0 + transform.h
        )
        if len(pts) >= 3 and _polygon_area(pts) > 0:
            cropped.append(pts)
    return [transform.apply_coords(p) for p in cropped]


# fvcore's CropTransform.apply_polygons needs shapely; this one does not.
CropTransform.register_type("polygons", _crop_apply_polygons)
