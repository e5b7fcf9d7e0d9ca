"""Draw segmentation results (semantic, panoptic, instances) and dataset dicts on images.

Same public surface as detectron2's ``Visualizer`` (``draw_sem_seg``, ``draw_panoptic_seg``,
``draw_instance_predictions``, ``draw_dataset_dict``, ``overlay_instances``,
``draw_binary_mask``, ``draw_box``, ``draw_text``; ``ColorMode``; ``VisImage``).

How a picture is made: mask fills are alpha-blended into the pixel array itself (exact,
so pixels outside every mask keep their value), while outlines (``cv2.findContours``),
boxes and labels are vector artists drawn on top by matplotlib's Agg renderer. Labels sit
on the "pole" of a mask's largest connected component (the pixel farthest from its
border), in a size scaled to the image and the mask, on a dark box, and are nudged so they
neither overlap each other nor leave the picture.

Inputs may be numpy arrays or torch tensors (CPU or not); ``Instances``-like objects are
read through ``has`` / attribute access, ``Boxes`` / ``BitMasks`` through ``.tensor``.
"""
from __future__ import annotations

import colorsys
from enum import Enum, unique
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import matplotlib.colors as mplc
import matplotlib.figure as mplfigure
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.patches import Polygon, Rectangle

from .colormap import random_color, random_colors
from .panoptic_utils import rgb2id
from .visualizer_inputs import (Color, annotation_box, annotation_mask, as_bool_masks,
                                class_color, class_name, instance_fields, meta_value,
                                panoptic_segments, read_label_image, text_labels, to_numpy)

__all__ = ["ColorMode", "VisImage", "Visualizer"]

_LARGE_MASK_AREA_THRESH = 120000
_OFF_WHITE = (1.0, 1.0, 240.0 / 255)


@unique
class ColorMode(Enum):
    """How instances are coloured."""

    IMAGE = 0  #: a random colour per instance, low opacity
    SEGMENTATION = 1  #: one colour per class (``thing_colors``), high opacity
    IMAGE_BW = 2  #: like IMAGE, and everything outside the masks turns grey


class VisImage:
    """An RGB image plus a matplotlib figure of the same size (times ``scale``) to draw on."""

    def __init__(self, img: np.ndarray, scale: float = 1.0):
        self.scale = float(scale)
        self.height, self.width = img.shape[:2]
        fig = mplfigure.Figure(frameon=False)
        self.dpi = fig.get_dpi()
        # +1e-2: matplotlib truncates the figure size in pixels
        fig.set_size_inches((self.width * self.scale + 1e-2) / self.dpi,
                            (self.height * self.scale + 1e-2) / self.dpi)
        self.fig, self.canvas = fig, FigureCanvasAgg(fig)
        self.ax = fig.add_axes([0.0, 0.0, 1.0, 1.0])
        self.ax.axis("off")
        self._image_artist = None
        self.reset_image(img)
        self.ax.set_xlim(0, self.width)
        self.ax.set_ylim(self.height, 0)
        self.ax.set_autoscale_on(False)

    def reset_image(self, img: np.ndarray) -> None:
        """Replace the pixels under the drawing (H, W, 3) RGB, 0..255."""
        self.img = np.asarray(img).astype(np.uint8)
        if self._image_artist is None:
            self._image_artist = self.ax.imshow(
                self.img, extent=(0, self.width, self.height, 0), interpolation="nearest")
        else:
            self._image_artist.set_data(self.img)

    def blend(self, mask: np.ndarray, color: Color, alpha: float) -> None:
        """Alpha-blend ``color`` (RGB in [0, 1]) into the pixels where ``mask`` (H, W) is True."""
        pixels = self.img[mask].astype(np.float32)  # (K, 3)
        blended = pixels * (1.0 - alpha) + np.asarray(color, np.float32) * 255.0 * alpha
        self.img[mask] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
        self._image_artist.set_data(self.img)

    def get_image(self) -> np.ndarray:
        """The drawing as an (H*scale, W*scale, 3) uint8 RGB array."""
        buffer, (width, height) = self.canvas.print_to_buffer()
        return np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 4)[:, :, :3].copy()

    def save(self, filepath: str) -> None:
        """Write the drawing to ``filepath`` (format from the extension: .png, .jpg, ...)."""
        try:
            written = cv2.imwrite(str(filepath), self.get_image()[:, :, ::-1])
        except cv2.error as err:  # e.g. no writer for the extension
            raise OSError(f"Could not write image file {filepath!r}: {err}") from err
        if not written:
            raise OSError(f"Could not write image file {filepath!r} (unwritable folder?)")


class Visualizer:
    """Draws predictions / annotations on one RGB image; every ``draw_*`` returns a ``VisImage``."""

    def __init__(self, img_rgb: Any, metadata: Any = None, scale: float = 1.0,
                 instance_mode: ColorMode = ColorMode.IMAGE):
        """
        Args:
            img_rgb: (H, W, 3) RGB (or (H, W) grey) image, values 0..255.
            metadata: dataset metadata with any of ``thing_classes``, ``thing_colors``,
                ``stuff_classes``, ``stuff_colors`` (colours 0..255), ``ignore_label``.
            scale: size of the output relative to the input.
            instance_mode: a :class:`ColorMode`.
        """
        img = to_numpy(img_rgb)
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=2)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Visualizer expects an (H, W, 3) RGB image, got shape {img.shape}")
        self.img = np.clip(img, 0, 255).astype(np.uint8)
        self.metadata = metadata if metadata is not None else SimpleNamespace()
        self.output = VisImage(self.img, scale=scale)
        self._instance_mode = ColorMode(instance_mode)
        self._default_font_size = max(np.sqrt(self.output.height * self.output.width) // 90,
                                      10 // scale)
        self._placed_labels: List[Any] = []  # window extents of labels drawn so far

    # ------------------------------------------------------------------ high-level drawing
    def draw_sem_seg(self, sem_seg: Any, area_threshold: Optional[int] = None,
                     alpha: float = 0.8) -> VisImage:
        """Colour each class region of an (H, W) label map (or the argmax of (K, H, W) scores).

        Labels equal to ``metadata.ignore_label`` (255 by default) are left undrawn; largest
        regions are drawn first.
        """
        sem_seg = to_numpy(sem_seg)
        if sem_seg.ndim == 3:
            sem_seg = sem_seg.argmax(axis=0)
        self._check_map(sem_seg, "sem_seg")
        ignore = meta_value(self.metadata, "ignore_label", 255)
        labels, areas = np.unique(sem_seg, return_counts=True)
        for label in labels[np.argsort(-areas, kind="stable")].tolist():
            if label == ignore or label < 0:
                continue
            self.draw_binary_mask(sem_seg == label, color=self._stuff_color(label),
                                  edge_color=_OFF_WHITE, text=self._stuff_name(label),
                                  alpha=alpha, area_threshold=area_threshold)
        return self.output

    def draw_panoptic_seg(self, panoptic_seg: Any, segments_info: Optional[List[dict]],
                          area_threshold: Optional[int] = None, alpha: float = 0.7) -> VisImage:
        """Draw a panoptic map (H, W) of segment ids with its ``segments_info``.

        ``segments_info``: dicts with ``id``, ``category_id``, ``isthing`` (and optionally
        ``score``); ids absent from it (e.g. 0, "void") stay undrawn. With ``None``, ids are
        read as ``category * metadata.label_divisor + instance`` (-1 = void).
        """
        return self._draw_panoptic(panoptic_seg, segments_info, area_threshold, alpha, None)

    def _draw_panoptic(self, panoptic_seg: Any, segments_info: Optional[List[dict]],
                       area_threshold: Optional[int], alpha: float,
                       thing_colors: Optional[Callable[[List[int], np.ndarray], List[Color]]]
                       ) -> VisImage:
        """``draw_panoptic_seg``; ``thing_colors(classes, masks)`` overrides the thing colours."""
        panoptic_seg = to_numpy(panoptic_seg)
        self._check_map(panoptic_seg, "panoptic_seg")
        segments = panoptic_segments(panoptic_seg, segments_info, self.metadata)
        if self._instance_mode == ColorMode.IMAGE_BW:
            drawn = np.isin(panoptic_seg, [s["id"] for s in segments])
            self.output.reset_image(self._grayscale_image(drawn))
        for seg in segments:
            if not seg["isthing"]:
                cat = seg["category_id"]
                self.draw_binary_mask(panoptic_seg == seg["id"], color=self._stuff_color(cat),
                                      edge_color=_OFF_WHITE, text=self._stuff_name(cat),
                                      alpha=alpha, area_threshold=area_threshold)
        things = [s for s in segments if s["isthing"]]
        if not things:
            return self.output
        masks = np.stack([panoptic_seg == s["id"] for s in things])  # (N, H, W)
        classes = [s["category_id"] for s in things]
        scores = [s["score"] for s in things] if all("score" in s for s in things) else None
        labels = text_labels(classes, scores, self._thing_names(classes))
        colors = thing_colors(classes, masks) if thing_colors is not None else \
            [_jitter(c) for c in self._thing_colors(classes)]
        return self.overlay_instances(masks=masks, labels=labels, assigned_colors=colors,
                                      alpha=alpha)

    def draw_instance_predictions(self, predictions: Any) -> VisImage:
        """Draw an ``Instances`` with any of ``pred_masks``, ``pred_boxes``, ``pred_classes``,
        ``scores``; labels read "class score%". All-zero boxes (Mask2Former fills boxes with
        zeros) are not drawn."""
        classes, scores, masks, boxes = instance_fields(predictions)
        names = self._thing_names(classes) if classes is not None else None
        labels = text_labels(classes, scores, names)

        colors, alpha = None, 0.5
        if self._instance_mode == ColorMode.SEGMENTATION and classes is not None:
            colors, alpha = [_jitter(c) for c in self._thing_colors(classes)], 0.8
        if self._instance_mode == ColorMode.IMAGE_BW:
            covered = masks.any(axis=0) if masks is not None and len(masks) else None
            self.output.reset_image(self._grayscale_image(covered))
            alpha = 0.3
        return self.overlay_instances(masks=masks, boxes=boxes, labels=labels,
                                      assigned_colors=colors, alpha=alpha)

    def draw_dataset_dict(self, dic: Dict[str, Any]) -> VisImage:
        """Draw a detectron2-style dataset dict: ``annotations`` (polygons / RLE masks, boxes,
        ``category_id``, ``iscrowd``), ``sem_seg`` / ``sem_seg_file_name`` and
        ``pan_seg`` / ``pan_seg_file_name`` with ``segments_info``."""
        annos = dic.get("annotations")
        if annos:
            h, w = self.output.height, self.output.width
            masks = [annotation_mask(a["segmentation"], h, w) for a in annos] \
                if "segmentation" in annos[0] else None
            boxes = [annotation_box(a) for a in annos] if "bbox" in annos[0] else None
            classes = [int(a["category_id"]) for a in annos]
            labels = text_labels(classes, None, self._thing_names(classes),
                                  [a.get("iscrowd", 0) for a in annos])
            colors = None
            if self._instance_mode == ColorMode.SEGMENTATION:
                colors = [_jitter(c) for c in self._thing_colors(classes)]
            self.overlay_instances(masks=masks, boxes=boxes, labels=labels,
                                   assigned_colors=colors)
        sem_seg = dic.get("sem_seg")
        if sem_seg is None and dic.get("sem_seg_file_name"):
            sem_seg = read_label_image(dic["sem_seg_file_name"], "sem_seg_file_name")
        if sem_seg is not None:
            self.draw_sem_seg(sem_seg, area_threshold=0, alpha=0.5)
        pan_seg = dic.get("pan_seg")
        if pan_seg is None and dic.get("pan_seg_file_name"):
            rgb = read_label_image(dic["pan_seg_file_name"], "pan_seg_file_name", color=True)
            pan_seg = rgb2id(rgb)
        if pan_seg is not None:
            self.draw_panoptic_seg(pan_seg, dic.get("segments_info"), area_threshold=0, alpha=0.5)
        return self.output

    def overlay_instances(self, *, boxes: Any = None, labels: Optional[Sequence[str]] = None,
                          masks: Any = None, assigned_colors: Optional[Sequence[Any]] = None,
                          alpha: float = 0.5) -> VisImage:
        """Draw N instances given by any of ``masks`` (N, H, W), ``boxes`` (N, 4) XYXY and
        ``labels``; larger instances are drawn first so small ones stay visible."""
        masks = None if masks is None else as_bool_masks(masks)
        boxes = None if boxes is None else to_numpy(boxes).reshape(-1, 4).astype(np.float64)
        sizes = {len(x) for x in (masks, boxes, labels) if x is not None}
        if not sizes:
            return self.output
        if len(sizes) > 1:
            raise ValueError(f"overlay_instances: masks, boxes and labels differ in length "
                             f"({[None if x is None else len(x) for x in (masks, boxes, labels)]})")
        num = sizes.pop()
        if num == 0:
            return self.output
        if masks is not None:
            self._check_masks(masks)
        colors = list(assigned_colors) if assigned_colors is not None else \
            random_colors(num, rgb=True, maximum=1)
        if len(colors) != num:
            raise ValueError(f"overlay_instances: {len(colors)} colours for {num} instances")
        colors = [mplc.to_rgb(c) for c in colors]

        if masks is not None:
            areas = masks.reshape(num, -1).sum(axis=1)
        elif boxes is not None:
            areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
        else:
            areas = np.zeros(num)
        for i in np.argsort(-areas, kind="stable"):
            color = colors[i]
            if boxes is not None:
                self.draw_box(boxes[i], edge_color=color)
            anchors: List[Tuple[float, float]] = []
            if masks is not None:
                if not masks[i].any():
                    continue
                self._fill_and_outline(masks[i], color, alpha)
                anchors = _label_anchors(masks[i])[:1]
            if labels is None or not labels[i]:
                continue
            if anchors:
                y0, y1 = np.nonzero(masks[i].any(axis=1))[0][[0, -1]]
                position, align, height = anchors[0], "center", y1 - y0 + 1
            else:
                x0, y0, x1, y1 = boxes[i]
                position, align, height = (x0, y0), "left", y1 - y0
            ratio = height / np.sqrt(self.output.height * self.output.width)
            font_size = np.clip((ratio - 0.02) / 0.08 + 1, 1.2, 2) * 0.5 * self._default_font_size
            self.draw_text(labels[i], position, color=_brightness(color, 0.7),
                           horizontal_alignment=align, font_size=font_size,
                           vertical_alignment="center" if anchors else "bottom")
        return self.output

    # ------------------------------------------------------------------ primitives
    def draw_binary_mask(self, binary_mask: Any, color: Any = None, *, edge_color: Any = None,
                         text: Optional[str] = None, alpha: float = 0.7,
                         area_threshold: Optional[int] = 10) -> VisImage:
        """Fill ``binary_mask`` (H, W) with ``color``, outline it, and write ``text`` on its
        largest part (and on any part larger than 120k pixels). Connected parts smaller than
        ``area_threshold`` pixels are dropped."""
        mask = as_bool_masks(to_numpy(binary_mask)[None])[0]
        self._check_masks(mask[None])
        color = mplc.to_rgb(color) if color is not None else tuple(random_color(True, 1))
        if area_threshold:
            mask = _drop_small_parts(mask, area_threshold)
        if not mask.any():
            return self.output
        self._fill_and_outline(mask, color, alpha, edge_color)
        if text:
            for anchor in _label_anchors(mask, _LARGE_MASK_AREA_THRESH):
                self.draw_text(text, anchor, color=_brightness(color, 0.7))
        return self.output

    def draw_box(self, box_coord: Sequence[float], alpha: float = 0.5, edge_color: Any = "g",
                 line_style: str = "-") -> VisImage:
        """Draw an XYXY box outline."""
        x0, y0, x1, y1 = [float(v) for v in box_coord]
        width = max(self._default_font_size / 4, 1)
        self.output.ax.add_artist(Rectangle(
            (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=edge_color,
            linewidth=width * self.output.scale, alpha=alpha, linestyle=line_style))
        return self.output

    def draw_polygon(self, segment: np.ndarray, color: Any, edge_color: Any = None,
                     alpha: float = 0.5) -> VisImage:
        """Draw a filled polygon (K, 2) of XY points (filled as a vector shape, not blended)."""
        if edge_color is None:
            edge_color = _brightness(color, -0.7) if alpha > 0.8 else color
        self.output.ax.add_artist(Polygon(
            np.asarray(segment).reshape(-1, 2), fill=True, facecolor=mplc.to_rgb(color) + (alpha,),
            edgecolor=mplc.to_rgba(edge_color), linewidth=self._line_width()))
        return self.output

    def draw_text(self, text: str, position: Tuple[float, float], *,
                  font_size: Optional[float] = None, color: Any = "g",
                  horizontal_alignment: str = "center", vertical_alignment: str = "center",
                  rotation: float = 0) -> VisImage:
        """Write ``text`` at ``position`` (x, y) on a dark box, kept inside the picture and
        shifted off labels drawn before it."""
        font_size = self._default_font_size if font_size is None else font_size
        hue, lightness, saturation = colorsys.rgb_to_hls(*mplc.to_rgb(color))
        color = colorsys.hls_to_rgb(hue, max(lightness, 0.65), saturation)  # readable on black
        artist = self.output.ax.text(
            float(position[0]), float(position[1]), text, size=font_size * self.output.scale,
            family="sans-serif", color=color, zorder=10, rotation=rotation,
            horizontalalignment=horizontal_alignment, verticalalignment=vertical_alignment,
            bbox={"facecolor": "black", "alpha": 0.8, "pad": 0.7, "edgecolor": "none"})
        self._place_label(artist)
        return self.output

    def get_output(self) -> VisImage:
        return self.output

    # ------------------------------------------------------------------ internals
    def _fill_and_outline(self, mask: np.ndarray, color: Color, alpha: float,
                          edge_color: Any = None) -> None:
        self.output.blend(mask, color, alpha)
        if edge_color is None:
            edge_color = _brightness(color, -0.7) if alpha > 0.8 else color
        contours = _contours(mask)
        if contours:  # one artist per mask; no data-limit update (the axes limits are fixed)
            self.output.ax.add_collection(PolyCollection(
                contours, closed=True, facecolors="none", edgecolors=[mplc.to_rgb(edge_color)],
                linewidths=self._line_width(), zorder=5), autolim=False)

    def _line_width(self) -> float:
        return max(self._default_font_size // 15 * self.output.scale, 1)

    def _place_label(self, artist: Any) -> None:
        """Move a label inside the figure and off earlier labels (a few tries up / down)."""
        renderer = self.output.canvas.get_renderer()
        fig_w, fig_h = self.output.canvas.get_width_height()
        x0, y0 = artist.get_position()
        ext = artist.get_window_extent(renderer).expanded(1.1, 1.25)
        step = ext.height / self.output.scale  # data units per label height (y points down)
        best = None
        for k in (0, 1, -1, 2, -2, 3, -3):
            moved = ext.translated(0, -k * ext.height)
            dx = max(0.0, -moved.x0) - max(0.0, moved.x1 - fig_w)
            dy = max(0.0, -moved.y0) - max(0.0, moved.y1 - fig_h)
            moved = moved.translated(dx, dy)
            if not any(moved.overlaps(other) for other in self._placed_labels):
                best = (k, dx, dy, moved)
                break
        if best is None:  # crowded: keep the spot, but inside the figure
            dx = max(0.0, -ext.x0) - max(0.0, ext.x1 - fig_w)
            dy = max(0.0, -ext.y0) - max(0.0, ext.y1 - fig_h)
            best = (0, dx, dy, ext.translated(dx, dy))
        k, dx, dy, final = best
        scale = self.output.scale
        artist.set_position((x0 + dx / scale, y0 + k * step - dy / scale))
        self._placed_labels.append(final)

    def _grayscale_image(self, keep_color: Optional[np.ndarray]) -> np.ndarray:
        grey = np.repeat(self.img.astype(np.float32).mean(axis=2, keepdims=True), 3, axis=2)
        if keep_color is not None:
            grey[keep_color] = self.img[keep_color]
        return grey

    def _check_map(self, seg: np.ndarray, name: str) -> None:
        if seg.shape != (self.output.height, self.output.width):
            raise ValueError(f"{name} has shape {seg.shape}; expected (H, W) = "
                             f"{(self.output.height, self.output.width)}, the image size")

    def _check_masks(self, masks: np.ndarray) -> None:
        if masks.shape[1:] != (self.output.height, self.output.width):
            raise ValueError(f"masks have size {masks.shape[1:]}; expected the image size "
                             f"{(self.output.height, self.output.width)}")

    def _stuff_name(self, label: int) -> str:
        return class_name(self.metadata, ("stuff_classes", "thing_classes"), label)

    def _thing_names(self, classes: Sequence[int]) -> List[str]:
        return [class_name(self.metadata, ("thing_classes", "stuff_classes"), c) for c in classes]

    def _stuff_color(self, label: int) -> Color:
        return class_color(self.metadata, ("stuff_colors", "thing_colors"), label)

    def _thing_colors(self, classes: Sequence[int]) -> List[Color]:
        return [class_color(self.metadata, ("thing_colors", "stuff_colors"), c) for c in classes]


# ---------------------------------------------------------------------- helpers
def _jitter(color: Color) -> Color:
    """A random nearby colour, so instances of one class are told apart."""
    vec = np.random.rand(3)
    vec = vec / np.linalg.norm(vec) * 0.5
    return tuple(np.clip(vec + np.asarray(color), 0, 1).tolist())


def _brightness(color: Any, factor: float) -> Color:
    """Lighter (factor > 0) or darker (factor < 0) version of ``color``, factor in [-1, 1]."""
    h, lightness, s = colorsys.rgb_to_hls(*mplc.to_rgb(color))
    lightness = min(max(lightness + factor * lightness, 0.0), 1.0)
    return colorsys.hls_to_rgb(h, lightness, s)


def _contours(mask: np.ndarray) -> List[np.ndarray]:
    """Outer and hole borders of a mask as (K, 2) XY polygons through pixel centres."""
    found = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)[-2]
    return [c.reshape(-1, 2) + 0.5 for c in found if len(c) >= 3]


def _drop_small_parts(mask: np.ndarray, min_area: int) -> np.ndarray:
    num, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(num, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[labels]


def _label_anchors(mask: np.ndarray, large_area: Optional[int] = None) -> List[Tuple[float, float]]:
    """(x, y) label spots: the largest part first, then parts above ``large_area`` pixels.

    A spot is, among the part's pixels farthest from its border (within 10 %; the image edge
    counts as border), the one nearest the part's centroid: inside the part, and central.
    """
    num, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if num <= 1:
        return []
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = 1 + np.argsort(-areas, kind="stable")
    parts = [order[0]] + [i for i in order[1:] if large_area and stats[i, cv2.CC_STAT_AREA] > large_area]
    anchors = []
    for part in parts:
        x, y, w, h = stats[part, :4]
        crop = np.pad((labels[y:y + h, x:x + w] == part).astype(np.uint8), 1)
        dist = cv2.distanceTransform(crop, cv2.DIST_L2, 3)
        # among the deepest points (a thick band in elongated parts), the one nearest the centre
        ys, xs = np.nonzero(dist >= 0.9 * dist.max())
        cy, cx = np.nonzero(crop)[0].mean(), np.nonzero(crop)[1].mean()
        k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
        anchors.append((float(x + xs[k] - 1) + 0.5, float(y + ys[k] - 1) + 0.5))
    return anchors

