"""Task inference on exported-model outputs with numpy only (no torch).

The same results as :meth:`mask2former.modeling.meta_arch.MaskFormer.inference` and the
functions of :mod:`mask2former.modeling.postprocessing`, from the network's raw outputs
``pred_logits`` (Q, K+1) and ``pred_masks`` (Q, h, w) of one image:

1. mask logits are upsampled (bilinear, ``align_corners=False``) to the padded input size;
2. with ``sem_seg_postprocess_before_inference`` they are cropped to the image and resized to
   the requested output size before inference; otherwise the semantic scores are computed
   on the cropped masks and resized afterwards;
3. semantic / panoptic / instance inference as the official Mask2Former.

Outputs use detectron2's keys with numpy values: ``sem_seg`` (K, H, W) float32,
``panoptic_seg`` ((H, W) int32, segments_info), ``instances`` a dict with ``image_size``,
``pred_masks`` (N, H, W) bool, ``pred_boxes`` (N, 4) float32 XYXY, ``scores`` (N,) float32
and ``pred_classes`` (N,) int64.

Bilinear resizing is numpy, not ``cv2.resize``: OpenCV maps pixel centres the same way
as ``F.interpolate(mode="bilinear", align_corners=False)`` but rounds its weights
differently (up to ~1e-5 relative, enough to flip near-tie pixels of the discrete outputs),
so :func:`resize_bilinear` reproduces torch's float32 weights and order of operations
(agreeing to ~1e-7 relative).
"""
from __future__ import annotations

from typing import Any, Collection, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "resize_bilinear", "sem_seg_postprocess", "semantic_inference", "panoptic_inference",
    "instance_inference", "masks_to_boxes", "softmax", "sigmoid", "postprocess_image",
]

def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float32."""
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in float32 (no overflow warnings for large negative logits)."""
    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def _linear_taps(in_size: int, out_size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of 1-D linear interpolation, ``align_corners=False``,
    computed in float32 as torch's CPU kernel does: (i0, i1, w0, w1), each (out_size,)."""
    scale = np.float32(np.float32(in_size) / np.float32(out_size))
    real = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    real = np.maximum(real, np.float32(0.0))
    i0 = np.minimum(np.floor(real).astype(np.int64), in_size - 1)
    w1 = np.clip(real - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (np.float32(1.0) - w1).astype(np.float32), w1


def resize_bilinear(maps: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(C, H, W) float32 maps -> (C, size[0], size[1]), as ``F.interpolate(mode="bilinear",
    align_corners=False)``: same source coordinates, weights and summation order
    (``wh0 * (ww0 * x00 + ww1 * x01) + wh1 * (ww0 * x10 + ww1 * x11)``)."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"resize_bilinear expects (C, H, W) maps, got shape {maps.shape}")
    height, width = int(size[0]), int(size[1])
    if maps.shape[1:] == (height, width):
        return maps.copy()
    x0, x1, wx0, wx1 = _linear_taps(maps.shape[2], width)
    y0, y1, wy0, wy1 = _linear_taps(maps.shape[1], height)
    rows = maps[:, :, x0] * wx0 + maps[:, :, x1] * wx1  # (C, H, width)
    out = rows[:, y0, :] * wy0[:, None]
    out += rows[:, y1, :] * wy1[:, None]  # (C, height, width)
    return out


def sem_seg_postprocess(result: np.ndarray, img_size: Sequence[int], output_height: int,
                        output_width: int) -> np.ndarray:
    """Crop (C, Hpad, Wpad) maps to the (h, w) image and resize them to the output size."""
    return resize_bilinear(result[:, : img_size[0], : img_size[1]], (output_height, output_width))


def semantic_inference(mask_cls: np.ndarray, mask_pred: np.ndarray) -> np.ndarray:
    """(Q, K+1) class logits, (Q, H, W) mask logits -> (K, H, W) class scores
    (softmax class probs without no-object x sigmoid masks, summed over queries)."""
    class_prob = softmax(mask_cls)[:, :-1]  # (Q, K)
    masks = sigmoid(mask_pred.reshape(mask_pred.shape[0], -1))  # (Q, H*W)
    return (class_prob.T @ masks).reshape(-1, *mask_pred.shape[1:])  # (K, H, W)


def panoptic_inference(mask_cls: np.ndarray, mask_pred: np.ndarray, *, num_classes: int,
                       object_mask_threshold: float, overlap_threshold: float,
                       thing_ids: Collection[int], require_mask_prob: bool = True
                       ) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Panoptic map as the official Mask2Former (see ``modeling.postprocessing.panoptic_inference``).

    Returns (H, W) int32 segment ids (0 = void) and segments_info
    (``id``, ``isthing``, ``category_id`` per segment).
    """
    probs = softmax(mask_cls)  # (Q, K+1)
    labels = probs.argmax(-1)
    scores = probs.max(-1)
    keep = (labels != num_classes) & (scores > object_mask_threshold)
    h, w = mask_pred.shape[-2:]
    segments_info: List[Dict[str, Any]] = []
    if not keep.any():
        return np.zeros((h, w), dtype=np.int32), segments_info

    cur_scores = scores[keep]
    cur_classes = labels[keep].tolist()
    n = len(cur_classes)
    cur_masks = sigmoid(mask_pred[keep].reshape(n, -1))  # (N, H*W)
    cur_mask_ids = (cur_masks * cur_scores[:, None]).argmax(0)  # (H*W,) first winner on ties
    if require_mask_prob:
        winner_fg = np.take_along_axis(cur_masks, cur_mask_ids[None], 0)[0] >= 0.5  # (H*W,)
    else:
        winner_fg = np.ones(cur_mask_ids.shape, dtype=bool)
    mask_area = np.bincount(cur_mask_ids, minlength=n)
    final_area = np.bincount(cur_mask_ids[winner_fg], minlength=n)
    original_area = (cur_masks >= 0.5).sum(1)

    thing_ids = set(int(i) for i in thing_ids)
    segment_of_query = np.zeros(n, dtype=np.int32)  # 0: the query's pixels stay void
    stuff_segment: Dict[int, int] = {}
    current_segment_id = 0
    for k, pred_class in enumerate(cur_classes):
        if not (mask_area[k] > 0 and original_area[k] > 0 and final_area[k] > 0):
            continue
        if mask_area[k] / original_area[k] < overlap_threshold:
            continue
        isthing = pred_class in thing_ids
        if not isthing:
            if pred_class in stuff_segment:  # merged into the class's first stuff segment
                segment_of_query[k] = stuff_segment[pred_class]
                continue
            stuff_segment[pred_class] = current_segment_id + 1
        current_segment_id += 1
        segment_of_query[k] = current_segment_id
        segments_info.append({"id": current_segment_id, "isthing": bool(isthing),
                              "category_id": int(pred_class)})
    panoptic_seg = np.where(winner_fg, segment_of_query[cur_mask_ids], 0).astype(np.int32)
    return panoptic_seg.reshape(h, w), segments_info


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight XYXY boxes ``[x0, y0, x1 + 1, y1 + 1]`` of (N, H, W) bool masks; empty -> zeros."""
    n = masks.shape[0]
    boxes = np.zeros((n, 4), dtype=np.float32)
    cols, rows = masks.any(axis=1), masks.any(axis=2)  # (N, W), (N, H)
    for i in range(n):
        xs, ys = np.flatnonzero(cols[i]), np.flatnonzero(rows[i])
        if xs.size:
            boxes[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


def instance_inference(mask_cls: np.ndarray, mask_pred: np.ndarray, *, num_classes: int,
                       test_topk_per_image: int, thing_ids: Optional[Collection[int]] = None
                       ) -> Dict[str, Any]:
    """Top-k (query, class) pairs as instances, as the official Mask2Former.

    Score = class prob x mean mask prob inside the binary mask (logit > 0). Instances come
    in descending order of that final score (the torch code's ``topk(sorted=False)`` order
    is unspecified).
    With ``thing_ids`` (panoptic models), pairs of stuff classes are dropped after top-k.
    """
    image_size = tuple(int(s) for s in mask_pred.shape[-2:])
    scores = softmax(mask_cls)[:, :-1].reshape(-1)  # (Q*K,)
    k = min(int(test_topk_per_image), scores.size)
    order = np.argsort(-scores, kind="stable")[:k]
    scores_per_image = scores[order]
    labels = order % num_classes
    query_indices = order // num_classes
    if thing_ids is not None:
        keep = np.isin(labels, np.asarray(sorted(int(i) for i in thing_ids), dtype=labels.dtype))
        scores_per_image, labels, query_indices = scores_per_image[keep], labels[keep], query_indices[keep]

    logits = mask_pred[query_indices].reshape(len(query_indices), image_size[0] * image_size[1])  # (N, H*W)
    pred_masks = logits > 0
    mask_prob_sum = np.where(pred_masks, sigmoid(logits), 0.0).sum(1, dtype=np.float32)
    mask_area = pred_masks.sum(1).astype(np.float32)
    mask_scores = mask_prob_sum / (mask_area + np.float32(1e-6))
    final_scores = (scores_per_image * mask_scores).astype(np.float32)
    by_score = np.argsort(-final_scores, kind="stable")
    pred_masks = pred_masks.reshape(-1, *image_size)[by_score]  # (N, H, W)
    return {
        "image_size": image_size,
        "pred_masks": pred_masks,
        "pred_boxes": masks_to_boxes(pred_masks),
        "scores": final_scores[by_score],
        "pred_classes": labels[by_score].astype(np.int64),
    }


def postprocess_image(mask_cls: np.ndarray, mask_pred: np.ndarray, *, padded_size: Sequence[int],
                      image_size: Sequence[int], height: int, width: int, meta: Dict[str, Any]
                      ) -> Dict[str, Any]:
    """One image's results from its (Q, K+1) class logits and (Q, h, w) mask logits.

    Args:
        padded_size: (Hp, Wp) of the padded network input; image_size: (h, w) of the image
            inside it; height, width: requested output resolution.
        meta: the export's ``deploy.json`` contents (see :mod:`mask2former.deploy.export`):
            ``num_classes``, ``thing_ids``, ``object_mask_threshold``, ``overlap_threshold``,
            ``test_topk_per_image``, ``semantic_on`` / ``panoptic_on`` / ``instance_on``,
            ``sem_seg_postprocess_before_inference``, ``panoptic_require_mask_prob``.
    """
    mask_cls = np.asarray(mask_cls, dtype=np.float32)
    mask_pred = resize_bilinear(mask_pred, padded_size)  # (Q, Hp, Wp)
    before = meta["sem_seg_postprocess_before_inference"]
    if before:
        mask_pred = sem_seg_postprocess(mask_pred, image_size, height, width)  # (Q, height, width)
    num_classes = int(meta["num_classes"])
    result: Dict[str, Any] = {}
    if meta["semantic_on"]:
        if before:
            result["sem_seg"] = semantic_inference(mask_cls, mask_pred)
        else:
            h, w = image_size
            scores = semantic_inference(mask_cls, mask_pred[:, :h, :w])  # (K, h, w)
            result["sem_seg"] = sem_seg_postprocess(scores, image_size, height, width)
    if meta["panoptic_on"]:
        result["panoptic_seg"] = panoptic_inference(
            mask_cls, mask_pred, num_classes=num_classes,
            object_mask_threshold=float(meta["object_mask_threshold"]),
            overlap_threshold=float(meta["overlap_threshold"]),
            thing_ids=meta["thing_ids"],
            require_mask_prob=bool(meta.get("panoptic_require_mask_prob", True)),
        )
    if meta["instance_on"]:
        result["instances"] = instance_inference(
            mask_cls, mask_pred, num_classes=num_classes,
            test_topk_per_image=int(meta["test_topk_per_image"]),
            thing_ids=meta["thing_ids"] if meta["panoptic_on"] else None,
        )
    return result
