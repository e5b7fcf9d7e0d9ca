"""Draw per-frame predictions of a video with instance colours that stay put across frames.

An instance keeps the colour of the previous-frame instance it overlaps most (mask IoU above
``iou_threshold``, one-to-one, best pairs first); a track not seen for ``ttl`` frames is
forgotten. Semantic / stuff colours come from the metadata and are stable by construction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np
import pycocotools.mask as mask_util

from .colormap import random_color
from .visualizer import ColorMode, Visualizer, VisImage, _jitter
from .visualizer_inputs import Color, class_color, instance_fields, text_labels

__all__ = ["VideoVisualizer"]


@dataclass
class _Track:
    label: Optional[int]
    rle: Any  # pycocotools RLE of the last mask seen
    color: Color
    ttl: int


class VideoVisualizer:
    """Stateful drawer for the frames of one video, in order."""

    def __init__(self, metadata: Any = None, instance_mode: ColorMode = ColorMode.IMAGE,
                 iou_threshold: float = 0.5, ttl: int = 8):
        """
        Args:
            metadata: dataset metadata (class names and colours), as for :class:`Visualizer`.
            instance_mode: IMAGE / SEGMENTATION / IMAGE_BW (see :class:`ColorMode`).
            iou_threshold: mask IoU above which an instance continues a previous track.
            ttl: frames a track survives without being matched.
        """
        self.metadata = metadata
        self._instance_mode = ColorMode(instance_mode)
        self._iou_threshold = float(iou_threshold)
        self._ttl = int(ttl)
        self._tracks: List[_Track] = []

    def draw_instance_predictions(self, frame: np.ndarray, predictions: Any) -> VisImage:
        """Draw an ``Instances`` on an RGB ``frame`` (H, W, 3) with tracked colours."""
        vis = Visualizer(frame, self.metadata, instance_mode=self._instance_mode)
        classes, scores, masks, boxes = instance_fields(predictions)
        num = len(next(x for x in (classes, scores, masks, boxes, []) if x is not None))
        if num == 0:
            if self._instance_mode == ColorMode.IMAGE_BW:
                vis.output.reset_image(vis._grayscale_image(None))
            self._age_tracks([])
            return vis.output
        if masks is not None or boxes is not None:
            regions = masks if masks is not None else \
                _boxes_to_masks(boxes, vis.output.height, vis.output.width)
            colors = self._assign_colors(classes, regions)
        else:  # nothing to match on
            colors = [self._new_color(None if classes is None else c) for c in classes or [None] * num]
        alpha = 0.8 if self._instance_mode == ColorMode.SEGMENTATION else 0.5
        if self._instance_mode == ColorMode.IMAGE_BW:
            vis.output.reset_image(vis._grayscale_image(masks.any(axis=0) if masks is not None
                                                        else None))
            alpha = 0.3
        labels = text_labels(classes, scores, vis._thing_names(classes) if classes else None)
        return vis.overlay_instances(masks=masks, boxes=boxes, labels=labels,
                                     assigned_colors=colors, alpha=alpha)

    def draw_panoptic_seg(self, frame: np.ndarray, panoptic_seg: Any,
                          segments_info: Optional[List[dict]], area_threshold: Optional[int] = None,
                          alpha: float = 0.5) -> VisImage:
        """Draw a panoptic map on an RGB frame; thing colours are tracked across frames."""
        vis = Visualizer(frame, self.metadata, instance_mode=self._instance_mode)
        tracked = {"called": False}

        def colors(classes: List[int], masks: np.ndarray) -> List[Color]:
            tracked["called"] = True
            return self._assign_colors(classes, masks)

        out = vis._draw_panoptic(panoptic_seg, segments_info, area_threshold, alpha, colors)
        if not tracked["called"]:  # no thing in this frame: tracks still age
            self._age_tracks([])
        return out

    def draw_sem_seg(self, frame: np.ndarray, sem_seg: Any,
                     area_threshold: Optional[int] = None) -> VisImage:
        """Draw a semantic map on an RGB frame (colours are per class, so already stable)."""
        vis = Visualizer(frame, self.metadata)
        return vis.draw_sem_seg(sem_seg, area_threshold=area_threshold)

    # ------------------------------------------------------------------ tracking
    def _assign_colors(self, classes: Optional[List[int]], masks: np.ndarray) -> List[Color]:
        """Colours for this frame's instances (masks (N, H, W) bool); updates the tracks."""
        rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
        num = len(rles)
        colors: List[Optional[Color]] = [None] * num
        matched_tracks = set()
        if self._tracks and num:
            ious = np.asarray(mask_util.iou(rles, [t.rle for t in self._tracks],
                                            [0] * len(self._tracks))).reshape(num, -1)
            for flat in np.argsort(-ious, axis=None, kind="stable"):
                new, old = np.unravel_index(flat, ious.shape)
                if ious[new, old] <= self._iou_threshold:
                    break
                if colors[new] is None and old not in matched_tracks:
                    colors[new] = self._tracks[old].color
                    matched_tracks.add(old)
        for i in range(num):
            if colors[i] is None:
                colors[i] = self._new_color(None if classes is None else classes[i])
        survivors = [t for k, t in enumerate(self._tracks) if k not in matched_tracks]
        self._age_tracks(survivors)
        self._tracks += [_Track(None if classes is None else classes[i], rles[i], colors[i],
                                self._ttl) for i in range(num)]
        return colors  # type: ignore[return-value]

    def _age_tracks(self, unmatched: List[_Track]) -> None:
        for track in unmatched:
            track.ttl -= 1
        self._tracks = [t for t in unmatched if t.ttl > 0]

    def _new_color(self, label: Optional[int]) -> Color:
        if self._instance_mode == ColorMode.SEGMENTATION and label is not None:
            return _jitter(class_color(self.metadata, ("thing_colors", "stuff_colors"), label))
        return tuple(float(v) for v in random_color(rgb=True, maximum=1))


def _boxes_to_masks(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    masks = np.zeros((len(boxes), height, width), dtype=bool)
    for mask, (x0, y0, x1, y1) in zip(masks, np.round(boxes).astype(int)):
        mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return masks
