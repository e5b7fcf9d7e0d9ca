"""``VideoPredictor``: a video model on a list of frames (the official ``demo_video`` predictor),
and ``draw_video_predictions``: one stable colour per predicted track over the frames."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from ..checkpoint import DetectionCheckpointer
from ..config import CfgNode
from ..data.transforms import ResizeShortestEdge
from ..modeling.build import build_model
from ..structures import Instances
from ..utils.catalog import MetadataCatalog
from ..utils.memory import configure_cpu_memory
from ..utils.video_visualizer import VideoVisualizer
from ..utils.visualizer import ColorMode
from .defaults import _to_three_channels, validate_image

__all__ = ["VideoPredictor", "draw_video_predictions"]


class VideoPredictor:
    """Build the video model of ``cfg``, load ``cfg.MODEL.WEIGHTS`` and predict whole clips.

    Called with T BGR frames (H, W, 3) of one video (as ``cv2.imread`` gives), it resizes them
    with ``ResizeShortestEdge(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST)``, converts them to
    ``INPUT.FORMAT`` and returns the model's result for the clip at the original size:
    ``image_size``, ``pred_scores`` (K), ``pred_labels`` (K), ``pred_masks`` K x (T, H, W) bool.
    """

    def __init__(self, cfg: CfgNode):
        if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise ValueError(f"VideoPredictor: INPUT.FORMAT must be 'RGB' or 'BGR', got {cfg.INPUT.FORMAT!r}")
        self.cfg = cfg.clone()
        configure_cpu_memory()
        self.model = build_model(self.cfg)
        self.model.eval()
        self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0]) if len(cfg.DATASETS.TEST) else None
        DetectionCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        self.aug = ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST)
        self.input_format = cfg.INPUT.FORMAT

    def __call__(self, frames: Sequence[np.ndarray]) -> Dict[str, Any]:
        if len(frames) == 0:
            raise ValueError("VideoPredictor needs at least one frame")
        frames = [_to_three_channels(validate_image(f)) for f in frames]
        height, width = frames[0].shape[:2]
        for k, frame in enumerate(frames):
            if frame.shape[:2] != (height, width):
                raise ValueError(f"Frame {k} is {frame.shape[1]}x{frame.shape[0]} (WxH), frame 0 is {width}x{height}: "
                                 "the frames of a video must have one size")
        images = []
        for frame in frames:
            if self.input_format == "RGB":
                frame = frame[:, :, ::-1]
            frame = self.aug.get_transform(frame).apply_image(np.ascontiguousarray(frame))
            images.append(torch.as_tensor(np.ascontiguousarray(frame.transpose(2, 0, 1))))  # (C, H', W')
        with torch.no_grad():
            return self.model([{"image": images, "height": height, "width": width}])


class _TrackVisualizer(VideoVisualizer):
    """A ``VideoVisualizer`` for instances that are tracks already: the colour follows the
    track index set in ``tracks`` before each frame is drawn, not a mask-overlap match."""

    def __init__(self, metadata: Any, instance_mode: ColorMode):
        super().__init__(metadata, instance_mode=instance_mode)
        self.tracks: List[int] = []
        self._track_colors: Dict[int, Any] = {}

    def _assign_colors(self, classes, masks):
        for k, track in enumerate(self.tracks):
            if track not in self._track_colors:
                self._track_colors[track] = self._new_color(None if classes is None else classes[k])
        return [self._track_colors[track] for track in self.tracks]


def draw_video_predictions(frames_rgb: Sequence[np.ndarray], predictions: Dict[str, Any], metadata: Any = None,
                           confidence_threshold: float = 0.5,
                           instance_mode: ColorMode = ColorMode.IMAGE) -> List[np.ndarray]:
    """Draw the tracks of ``predictions`` (a video model's result) scoring at least
    ``confidence_threshold`` on the RGB frames (a track is drawn where its mask is not empty);
    returns T RGB drawings. Each track keeps one colour in every frame."""
    scores = torch.as_tensor(predictions["pred_scores"], dtype=torch.float32).reshape(-1)
    labels = torch.as_tensor(predictions["pred_labels"], dtype=torch.int64).reshape(-1)
    keep = (scores >= confidence_threshold).nonzero().flatten().tolist()
    masks = {k: torch.as_tensor(predictions["pred_masks"][k]).to(torch.bool) for k in keep}  # (T, H, W) each
    visualizer = _TrackVisualizer(metadata, instance_mode)
    drawn = []
    for t, frame in enumerate(frames_rgb):
        present = [k for k in keep if masks[k][t].any()]
        instances = Instances(frame.shape[:2])
        instances.scores = scores[present]
        instances.pred_classes = labels[present]
        instances.pred_masks = torch.stack([masks[k][t] for k in present]) if present else \
            torch.zeros((0, *frame.shape[:2]), dtype=torch.bool)
        visualizer.tracks = present
        drawn.append(visualizer.draw_instance_predictions(frame, instances).get_image())
    return drawn
