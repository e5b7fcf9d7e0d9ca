"""``ONNXPredictor``: ``DefaultPredictor``'s interface on an exported folder, without torch.

Reads ``deploy.json`` and ``model.onnx`` written by ``tools/export_model.py`` and runs the
network in onnxruntime; pre- and post-processing are numpy (+ Pillow for the test-time
resize, exactly as ``DefaultPredictor``'s ``ResizeShortestEdge``, + OpenCV for the mask
resizes). Nothing here imports torch.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .postprocess import postprocess_image

__all__ = ["ONNXPredictor", "load_deploy_json", "shortest_edge_size"]

_REQUIRED_KEYS = (
    "format", "model_file", "input_format", "pixel_mean", "pixel_std", "size_divisibility",
    "min_size_test", "max_size_test", "num_classes", "thing_ids", "object_mask_threshold",
    "overlap_threshold", "test_topk_per_image", "semantic_on", "panoptic_on", "instance_on",
    "sem_seg_postprocess_before_inference", "dynamic", "input_size",
)


def load_deploy_json(export_dir: str) -> Dict[str, Any]:
    """``export_dir/deploy.json``, checked for the keys the predictor needs."""
    path = os.path.join(export_dir, "deploy.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: export the model with tools/export_model.py first")
    with open(path) as f:
        try:
            meta = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
    missing = [k for k in _REQUIRED_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{path} lacks the keys {missing}")
    if meta["input_format"] not in ("RGB", "BGR"):
        raise ValueError(f"{path}: input_format must be 'RGB' or 'BGR', got {meta['input_format']!r}")
    if meta["panoptic_on"] and meta["thing_ids"] is None:
        raise ValueError(f"{path}: panoptic_on needs thing_ids")
    return meta


def shortest_edge_size(h: int, w: int, short_edge_length: int, max_size: int) -> Tuple[int, int]:
    """(new_h, new_w) of ``ResizeShortestEdge.get_output_shape`` (shorter side to
    ``short_edge_length``, longer side capped at ``max_size``, rounded to nearest)."""
    size = short_edge_length * 1.0
    scale = size / min(h, w)
    newh, neww = (size, scale * w) if h < w else (scale * h, size)
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


class ONNXPredictor:
    """Predict single images with an exported model folder on onnxruntime.

    ``predictor(bgr_image)`` returns the same dict as ``DefaultPredictor`` (numpy values:
    see :mod:`mask2former.deploy.postprocess`), at the image's original size.
    """

    def __init__(self, export_dir: str, *, providers: Sequence[str] = ("CPUExecutionProvider",),
                 num_threads: Optional[int] = None):
        """
        Args:
            export_dir: folder with ``deploy.json`` and ``model.onnx``.
            providers: onnxruntime execution providers, in order of preference.
            num_threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        """
        import onnxruntime as ort

        self.meta = load_deploy_json(export_dir)
        if self.meta["format"] != "onnx":
            raise ValueError(f"{export_dir} holds a {self.meta['format']!r} export; ONNXPredictor "
                             "needs one exported with --format onnx")
        model_path = os.path.join(export_dir, self.meta["model_file"])
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"{model_path} (named by {export_dir}/deploy.json) does not exist")
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        self.session = ort.InferenceSession(model_path, sess_options=options, providers=list(providers))
        self.input_name = self.session.get_inputs()[0].name
        self.input_format = self.meta["input_format"]
        self.pixel_mean = np.asarray(self.meta["pixel_mean"], dtype=np.float32).reshape(-1, 1, 1)
        self.pixel_std = np.asarray(self.meta["pixel_std"], dtype=np.float32).reshape(-1, 1, 1)

    def __call__(self, original_image: np.ndarray) -> Dict[str, Any]:
        """(H, W, 3) BGR uint8 image (or (H, W) / (H, W, 1) grayscale) -> prediction dict."""
        image = _to_three_channels(original_image)
        if self.input_format == "RGB":
            image = image[:, :, ::-1]
        height, width = image.shape[:2]
        new_h, new_w = shortest_edge_size(height, width, self.meta["min_size_test"], self.meta["max_size_test"])
        if (new_h, new_w) != (height, width):
            image = _resize_like_pil(image, new_h, new_w)
        chw = image.astype(np.float32).transpose(2, 0, 1)  # (3, h, w)
        return self.predict_inputs([{"image": chw, "height": height, "width": width}])[0]

    def predict_inputs(self, batched_inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The meta-architecture's ``model(batched_inputs)`` in eval mode, on numpy.

        Each dict holds ``image`` (3, h, w) float in INPUT.FORMAT order, 0-255, and optionally
        ``height`` / ``width`` (output size). Images are padded together to one size, as
        ``ImageList.from_tensors`` does, and run one at a time.
        """
        images = [(np.asarray(x["image"], dtype=np.float32) - self.pixel_mean) / self.pixel_std
                  for x in batched_inputs]
        padded_size = self._padded_size([im.shape[-2:] for im in images])
        results = []
        for image, inputs in zip(images, batched_inputs):
            h, w = image.shape[-2:]
            batch = np.zeros((1, 3) + padded_size, dtype=np.float32)  # zeros after normalisation
            batch[0, :, :h, :w] = image
            pred_logits, pred_masks = self.session.run(None, {self.input_name: batch})
            results.append(postprocess_image(
                pred_logits[0], pred_masks[0], padded_size=padded_size, image_size=(h, w),
                height=int(inputs.get("height", h)), width=int(inputs.get("width", w)), meta=self.meta,
            ))
        return results

    def _padded_size(self, sizes: List[Tuple[int, int]]) -> Tuple[int, int]:
        max_h = max(int(s[0]) for s in sizes)
        max_w = max(int(s[1]) for s in sizes)
        if not self.meta["dynamic"]:
            fixed_h, fixed_w = self.meta["input_size"]
            if max_h > fixed_h or max_w > fixed_w:
                raise ValueError(
                    f"image of size {max_h}x{max_w} does not fit the static export input "
                    f"{fixed_h}x{fixed_w}; export with --dynamic or a larger --input-size"
                )
            return int(fixed_h), int(fixed_w)
        d = max(int(self.meta["size_divisibility"]), 1)
        return -(-max_h // d) * d, -(-max_w // d) * d


def _to_three_channels(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"ONNXPredictor expects an (H, W, 3) BGR image or an (H, W) grayscale one, "
                         f"got shape {image.shape}")
    return image


def _resize_like_pil(image: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    """Bilinear resize of a uint8 image with Pillow, as ``ResizeTransform`` does."""
    if image.dtype != np.uint8:
        raise ValueError(f"ONNXPredictor expects a uint8 image, got {image.dtype}")
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((new_w, new_h), Image.BILINEAR))
