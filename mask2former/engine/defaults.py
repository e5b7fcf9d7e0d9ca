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
from ..utils.memory import configure_cpu_memory

__all__ = ["DefaultPredictor", "setup_cfg", "validate_image"]


def setup_cfg(args: Any, *, freeze: bool = True) -> CfgNode:
    """The config of a command-line tool: defaults, then ``args.config_file``, then ``args.opts``
    (``KEY VALUE`` pairs); frozen unless ``freeze=False`` (for tools that adjust it further)."""
    from ..config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if freeze:
        cfg.freeze()
    return cfg


class DefaultPredictor:
    """Build the model of ``cfg``, load ``cfg.MODEL.WEIGHTS`` and predict single images.

    Calling it with an (H, W, C) BGR uint8 image (as ``cv2.imread`` gives; (H, W) or
    (H, W, 1) grayscale is accepted too) resizes it with
    ``ResizeShortestEdge(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST)``, converts it to
    ``INPUT.FORMAT`` and returns the model's output dict for it, at the original size.

    Inputs are checked (:func:`validate_image`): ``None`` (a failed ``cv2.imread``), an empty
    array, a 16-bit image, a float image with all values in [0, 1], values outside [0, 255],
    NaN / inf, or an aspect ratio so extreme that the resized image would lose a side are each a
    ``ValueError`` saying what to do. Float or wider-integer images holding 0-255 values are used
    (the model takes float 0-255 input): integer ones are converted to uint8 exactly, float ones
    are resized in floating point.
    """

    def __init__(self, cfg: CfgNode):
        if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise ValueError(f"DefaultPredictor: INPUT.FORMAT must be 'RGB' or 'BGR', got {cfg.INPUT.FORMAT!r}")
        self.cfg = cfg.clone()
        configure_cpu_memory()  # default: no page faults from re-allocated temporaries on every call
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
        image = _to_three_channels(validate_image(original_image))
        with torch.no_grad():
            if self.input_format == "RGB":
                image = image[:, :, ::-1]  # the input is BGR
            height, width = image.shape[:2]
            new_h, new_w = self.aug.get_output_shape(height, width, self.aug.short_edge_length[0], self.aug.max_size)
            if min(new_h, new_w) < 1:
                raise ValueError(
                    f"DefaultPredictor: an image of (h, w) = ({height}, {width}) is too elongated: resized by "
                    f"INPUT.MIN_SIZE_TEST {self.aug.short_edge_length[0]} / INPUT.MAX_SIZE_TEST "
                    f"{self.aug.max_size} it would be ({new_h}, {new_w}). Crop or pad it first.")
            image = self.aug.get_transform(image).apply_image(image)
            image = torch.as_tensor(image.astype("float32").transpose(2, 0, 1))  # (3, h, w)
            inputs = {"image": image, "height": height, "width": width}
            return self.model([inputs])[0]


def validate_image(image: Any) -> np.ndarray:
    """Check an input image of :class:`DefaultPredictor`; returns it as a numpy array.

    Raises:
        ValueError: ``None``, not numeric, empty, 16-bit, float in [0, 1], NaN / inf, or values
            outside [0, 255] -- the message says how to convert.
    """
    if image is None:
        raise ValueError("DefaultPredictor got None instead of an image: cv2.imread returns None when the "
                         "file does not exist or cannot be decoded. Check the path (or use "
                         "mask2former.data.detection_utils.read_image(path, format='BGR'), which says why).")
    image = np.asarray(image)
    if image.dtype == np.bool_ or not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"DefaultPredictor expects a numeric image array, got dtype {image.dtype}")
    if image.size == 0:
        raise ValueError(f"DefaultPredictor got an empty image of shape {image.shape}")
    if image.dtype in (np.uint16, np.int16):
        raise ValueError(
            f"DefaultPredictor got a 16-bit image ({image.dtype}, values up to {int(image.max())}); the model "
            "expects 8-bit values 0-255. Convert it first, e.g. (image / 257).round().astype(np.uint8) for "
            "full-range 16-bit data, or cv2.imread(path, cv2.IMREAD_COLOR) which reads 8 bits.")
    if image.dtype == np.uint8:
        return image
    low, high = float(image.min()), float(image.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError("DefaultPredictor got an image with NaN or infinite values")
    if np.issubdtype(image.dtype, np.floating) and high <= 1.0:
        raise ValueError(
            f"DefaultPredictor got a {image.dtype} image with all values in [{low:g}, {high:g}]: it looks "
            "scaled to [0, 1], but the model expects 0-255. Pass (image * 255).round().astype(np.uint8).")
    if low < 0 or high > 255:
        raise ValueError(f"DefaultPredictor expects values in [0, 255], got [{low:g}, {high:g}] ({image.dtype})")
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.uint8)  # exact: the values are 0-255
    return image


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
