"""``DefaultPredictor``: run a model from a config on one image, as detectron2's."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch

from ..checkpoint import DetectionCheckpointer
from ..config import CfgNode
from ..data import MetadataCatalog
from ..data.transforms import ResizeShortestEdge
from ..modeling.build import build_model
from ..utils.memory import keep_freed_cpu_memory

__all__ = ["DefaultPredictor"]


class DefaultPredictor:
    """Build the model of ``cfg``, load ``cfg.MODEL.WEIGHTS`` and predict single images.

    Calling it with an (H, W, C) BGR uint8 image (as ``cv2.imread`` gives; (H, W) or
    (H, W, 1) grayscale is accepted too) resizes it with
    ``ResizeShortestEdge(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST)``, converts it to
    ``INPUT.FORMAT`` and returns the model's output dict for it, at the original size.
    """

    def __init__(self, cfg: CfgNode):
        if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise ValueError(f"DefaultPredictor: INPUT.FORMAT must be 'RGB' or 'BGR', got {cfg.INPUT.FORMAT!r}")
        self.cfg = cfg.clone()
        keep_freed_cpu_memory()  # no page faults from re-allocated temporaries on every call
        self.model = build_model(self.cfg)
        self.model.eval()
        if len(cfg.DATASETS.TEST):
            self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])

        DetectionCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)

        self.aug = ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        self.input_format = cfg.INPUT.FORMAT

    def __call__(self, original_image: np.ndarray) -> Dict[str, Any]:
        """
        Args:
            original_image: (H, W, 3) BGR image, or (H, W) / (H, W, 1) grayscale.
        Returns:
            the model's prediction dict for the image (see the meta-architecture).
        """
        image = _to_three_channels(original_image)
        with torch.no_grad():
            if self.input_format == "RGB":
                image = image[:, :, ::-1]  # the input is BGR
            height, width = image.shape[:2]
            image = self.aug.get_transform(image).apply_image(image)
            image = torch.as_tensor(image.astype("float32").transpose(2, 0, 1))  # (3, h, w)
            inputs = {"image": image, "height": height, "width": width}
            return self.model([inputs])[0]


def _to_three_channels(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) as is; (H, W) or (H, W, 1) grayscale repeated to 3 channels."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"DefaultPredictor expects an (H, W, 3) BGR image or an (H, W) grayscale one, "
            f"got shape {image.shape}"
        )
    return image
