"""``VisualizationDemo``: run a config's model on images / video frames and draw the results.

The drawing follows what the model returns: a panoptic result if there is one, otherwise
instances, otherwise the semantic map (``task="auto"``); ``task`` can force one of them.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, Optional, Tuple

import cv2
import numpy as np
import torch

from ..config import CfgNode
from ..data import MetadataCatalog
from ..utils.video_visualizer import VideoVisualizer
from ..utils.visualizer import ColorMode, Visualizer, VisImage
from .defaults import DefaultPredictor

__all__ = ["VisualizationDemo", "TASKS", "choose_task"]

TASKS = ("auto", "panoptic", "instance", "semantic")
_OUTPUT_KEY = {"panoptic": "panoptic_seg", "instance": "instances", "semantic": "sem_seg"}
logger = logging.getLogger(__name__)


def choose_task(predictions: Dict[str, Any], task: str = "auto") -> str:
    """Which result to draw: panoptic > instance > semantic among those present."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task != "auto":
        if _OUTPUT_KEY[task] not in predictions:
            raise ValueError(f"The model returned {sorted(predictions)}, not '{_OUTPUT_KEY[task]}' "
                             f"needed to draw task={task!r} (turn it on with "
                             f"MODEL.MASK_FORMER.TEST.{task.upper()}_ON True)")
        return task
    for name in ("panoptic", "instance", "semantic"):
        if _OUTPUT_KEY[name] in predictions:
            return name
    raise ValueError(f"Nothing to draw: the model returned {sorted(predictions)}")


class VisualizationDemo:
    """Predict with ``DefaultPredictor(cfg)`` and draw with the dataset's class names / colours."""

    def __init__(self, cfg: CfgNode, instance_mode: ColorMode = ColorMode.IMAGE,
                 task: str = "auto", confidence_threshold: float = 0.0,
                 predictor: Optional[DefaultPredictor] = None):
        """
        Args:
            cfg: the model's config (``DATASETS.TEST[0]`` names the metadata to use).
            instance_mode: colouring of instances (see :class:`ColorMode`).
            task: "auto", "panoptic", "instance" or "semantic" (see :func:`choose_task`).
            confidence_threshold: instances scoring below it are not drawn.
            predictor: an existing predictor (default: built from ``cfg``).
        """
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST)
                                            else "__unused")
        self.instance_mode = instance_mode
        self.task = task
        self.confidence_threshold = float(confidence_threshold)
        self.predictor = predictor if predictor is not None else DefaultPredictor(cfg)
        self.cpu_device = torch.device("cpu")

    def run_on_image(self, image: np.ndarray) -> Tuple[Dict[str, Any], VisImage]:
        """Predict on a BGR image (H, W, 3) and draw; returns (predictions, drawing)."""
        predictions = self.predictor(image)
        visualizer = Visualizer(image[:, :, ::-1], self.metadata, instance_mode=self.instance_mode)
        return predictions, self._draw(visualizer, predictions)

    def run_on_video(self, video: cv2.VideoCapture) -> Iterator[np.ndarray]:
        """Yield one drawn BGR frame per frame of ``video`` (instance colours kept across frames)."""
        video_visualizer = VideoVisualizer(self.metadata, self.instance_mode)
        while video.isOpened():
            success, frame = video.read()
            if not success:
                break
            predictions = self.predictor(frame)
            vis = self._draw(video_visualizer, predictions, frame=frame[:, :, ::-1])
            yield cv2.cvtColor(vis.get_image(), cv2.COLOR_RGB2BGR)

    def _draw(self, drawer: Any, predictions: Dict[str, Any],
              frame: Optional[np.ndarray] = None) -> VisImage:
        """Draw the chosen result with a Visualizer, or a VideoVisualizer on ``frame`` (RGB)."""
        args = () if frame is None else (frame,)
        task = choose_task(predictions, self.task)
        if task == "panoptic":
            panoptic_seg, segments_info = predictions["panoptic_seg"]
            return drawer.draw_panoptic_seg(*args, panoptic_seg.to(self.cpu_device), segments_info)
        if task == "instance":
            instances = predictions["instances"].to(self.cpu_device)
            if self.confidence_threshold > 0 and instances.has("scores"):
                instances = instances[instances.scores >= self.confidence_threshold]
            return drawer.draw_instance_predictions(*args, instances)
        sem_seg = predictions["sem_seg"].argmax(dim=0).to(self.cpu_device)  # (K, H, W) -> (H, W)
        return drawer.draw_sem_seg(*args, sem_seg)
