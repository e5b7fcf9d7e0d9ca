"""Task inference from mask classification outputs, as pure functions.

Each function takes one image's class logits ``mask_cls`` (Q, K+1) (the last column is
"no object") and mask logits ``mask_pred`` (Q, H, W) and returns the official
Mask2Former result for its task. Discrete outputs are identical to the official code;
the work is vectorised over queries and avoids needless full-size temporaries (on CPU,
allocating a large fresh tensor costs about as much as a pass over it). They are
inference-only: no autograd graph is recorded.
"""
from __future__ import annotations

from typing import Collection, Dict, List, Optional, Sequence, Tuple

import torch
from torch.nn import functional as F

from ..structures import Boxes, Instances, masks_to_boxes

__all__ = [
    "sem_seg_postprocess", "semantic_inference", "panoptic_inference", "instance_inference",
    "masks_to_boxes",
]

# Pixels per block in semantic_inference: the (Q, block) probabilities and the (K, block) scores
# of a block stay in cache between the sigmoid and the product. Measured on the quiet 2-core
# machine for Q=100, K=133, 480x640 (median ms): 4096: 170, 8192: 190, 16384: 212, 65536: 219.
# (With other jobs on both cores every size took about 2.7 s: the block size does not matter then.)
_SEMANTIC_BLOCK = 4096


def sem_seg_postprocess(
    result: torch.Tensor, img_size: Sequence[int], output_height: int, output_width: int
) -> torch.Tensor:
    """Crop padded per-pixel maps to the image and resize them to the output size.

    Args:
        result: (C, Hpad, Wpad) maps predicted on the padded batch.
        img_size: (h, w) of the image inside the padded batch.
        output_height, output_width: requested output resolution.
    Returns:
        (C, output_height, output_width), bilinear with ``align_corners=False``. When the
        output size is the image size that resize is the identity (every output pixel falls on
        an input pixel centre with weight exactly 1), so the crop is returned as it is.
    """
    result = result[:, : img_size[0], : img_size[1]]  # (C, h, w)
    if tuple(result.shape[-2:]) == (output_height, output_width):
        return result
    return F.interpolate(
        result.expand(1, -1, -1, -1), size=(output_height, output_width), mode="bilinear", align_corners=False
    )[0]


@torch.no_grad()
def semantic_inference(mask_cls: torch.Tensor, mask_pred: torch.Tensor) -> torch.Tensor:
    """Per-pixel class scores: softmax class probs (no-object dropped) x sigmoid masks, summed.

    (Q, K+1), (Q, H, W) -> (K, H, W). Same math as the official
    ``einsum("qc,qhw->chw", ...)``, computed over blocks of pixels so that the
    sigmoid of all Q masks never exists in full (less memory, cache-friendly).
    """
    class_prob_t = F.softmax(mask_cls, dim=-1)[..., :-1].t().contiguous()  # (K, Q)
    masks = mask_pred.flatten(1)  # (Q, H*W)
    class_prob_t = class_prob_t.to(masks.dtype)
    num_pixels = masks.shape[1]
    out = masks.new_empty((class_prob_t.shape[0], num_pixels))  # (K, H*W)
    block = min(_SEMANTIC_BLOCK, num_pixels)
    prob = masks.new_empty((masks.shape[0], block))  # (Q, block), reused
    for start in range(0, num_pixels, block):
        stop = min(start + block, num_pixels)
        block_prob = torch.sigmoid(masks[:, start:stop], out=prob[:, : stop - start])
        torch.mm(class_prob_t, block_prob, out=out[:, start:stop])
    return out.view(-1, *mask_pred.shape[1:])


@torch.no_grad()
def panoptic_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    *,
    num_classes: int,
    object_mask_threshold: float,
    overlap_threshold: float,
    thing_ids: Collection[int],
    require_mask_prob: bool = True,
) -> Tuple[torch.Tensor, List[Dict]]:
    """Panoptic map by per-pixel argmax over confident queries, as the official Mask2Former.

    Queries whose best class is a real class with probability > ``object_mask_threshold``
    compete per pixel by ``score * sigmoid(mask)``. A query becomes a segment where it
    wins *and* its own mask prob is >= 0.5, provided that region keeps at least
    ``overlap_threshold`` of its own mask (prob >= 0.5). Stuff queries of one class
    share one segment (the first such query's id).

    Args:
        mask_cls: (Q, K+1) class logits. mask_pred: (Q, H, W) mask logits.
        num_classes: K. thing_ids: contiguous class ids that are "things".
        require_mask_prob: False gives MaskFormer v1's rule: a query gets every pixel it wins,
            whatever its own mask probability there.
    Returns:
        panoptic_seg (H, W) int32 (0 = void) and segments_info, one dict per segment
        with "id", "isthing", "category_id".
    """
    scores, labels = F.softmax(mask_cls, dim=-1).max(-1)  # (Q,), (Q,)
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    h, w = mask_pred.shape[-2:]
    segments_info: List[Dict] = []
    if not bool(keep.any()):
        return torch.zeros((h, w), dtype=torch.int32, device=mask_pred.device), segments_info

    cur_scores = scores[keep]
    cur_classes = labels[keep].tolist()
    n = len(cur_classes)
    cur_masks = mask_pred[keep].sigmoid_().flatten(1)  # (N, H*W); boolean indexing made a copy

    work = cur_masks * cur_scores.view(-1, 1)  # (N, H*W) prob masks, then reused as scratch
    cur_mask_ids = work.max(0).indices  # (H*W,) winning query; first one on ties, like argmax
    # mask prob of the winning query at every pixel, thresholded
    if require_mask_prob:
        winner_fg = cur_masks.gather(0, cur_mask_ids.unsqueeze(0)).squeeze(0) >= 0.5  # (H*W,)
    else:
        winner_fg = torch.ones_like(cur_mask_ids, dtype=torch.bool)
    # one bincount gives, per query, pixels won (mask_area) and won-and-foreground
    counts = torch.bincount(cur_mask_ids * 2 + winner_fg, minlength=2 * n).view(n, 2)
    mask_area = counts.sum(1).tolist()
    final_area = counts[:, 1].tolist()
    original_area = _count_at_least_half(cur_masks, out=work).tolist()

    thing_ids = set(int(i) for i in thing_ids)
    segment_of_query = [0] * n  # 0: the query's pixels stay void
    stuff_segment: Dict[int, int] = {}
    current_segment_id = 0
    for k, pred_class in enumerate(cur_classes):
        if not (mask_area[k] > 0 and original_area[k] > 0 and final_area[k] > 0):
            continue
        if mask_area[k] / original_area[k] < overlap_threshold:
            continue
        isthing = pred_class in thing_ids
        if not isthing:
            if pred_class in stuff_segment:  # merge into the class's first stuff segment
                segment_of_query[k] = stuff_segment[pred_class]
                continue
            stuff_segment[pred_class] = current_segment_id + 1
        current_segment_id += 1
        segment_of_query[k] = current_segment_id
        segments_info.append(
            {"id": current_segment_id, "isthing": bool(isthing), "category_id": int(pred_class)}
        )

    lut = torch.tensor(segment_of_query, dtype=torch.int32, device=mask_pred.device)
    panoptic_seg = torch.where(winner_fg, lut[cur_mask_ids], 0).view(h, w)  # (H, W) int32
    return panoptic_seg, segments_info


def _count_at_least_half(prob: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Per-row count of ``prob >= 0.5`` for (N, P) probabilities, using ``out`` as scratch.

    Float ops instead of a bool tensor (whose sum is slow on CPU): ``prob - 0.5`` is exact
    for prob in [0.25, 1] and stays negative below, so ``floor(prob - 0.5) + 1`` is 1
    exactly where prob >= 0.5 and 0 elsewhere. Sums of 0/1 are exact in float32 below
    2**24 per row, in float64 above.
    """
    torch.sub(prob, 0.5, out=out)
    acc = torch.float32 if prob.shape[1] < 2**24 else torch.float64
    return out.floor_().add_(1.0).sum(1, dtype=acc).to(torch.int64)


@torch.no_grad()
def instance_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    *,
    num_classes: int,
    test_topk_per_image: int,
    thing_ids: Optional[Collection[int]] = None,
) -> Instances:
    """Top-k (query, class) pairs as instances, as the official Mask2Former.

    Scores are ``class prob x mean mask prob inside the binary mask (logit > 0)``.
    A ``test_topk_per_image`` above Q x K keeps every pair (the official code raises).
    With ``thing_ids`` (panoptic models) pairs of stuff classes are dropped after top-k.
    Unlike the official code (zero boxes), ``pred_boxes`` are the masks' tight boxes.

    Args:
        mask_cls: (Q, K+1) class logits. mask_pred: (Q, H, W) mask logits at output size.
    Returns:
        Instances of size (H, W) with ``pred_masks`` (N, H, W) bool, ``pred_boxes``,
        ``scores`` (N,) and ``pred_classes`` (N,) int64, in ``topk(sorted=False)`` order.
    """
    image_size = tuple(mask_pred.shape[-2:])
    scores = F.softmax(mask_cls, dim=-1)[:, :-1]  # (Q, K)
    k = min(test_topk_per_image, scores.numel())
    scores_per_image, topk_indices = scores.flatten(0, 1).topk(k, sorted=False)  # (k,)
    labels_per_image = topk_indices % num_classes
    query_indices = topk_indices // num_classes

    if thing_ids is not None:
        thing_tensor = torch.as_tensor(sorted(int(i) for i in thing_ids), dtype=labels_per_image.dtype)
        keep = torch.isin(labels_per_image, thing_tensor.to(labels_per_image.device))
        scores_per_image = scores_per_image[keep]
        labels_per_image = labels_per_image[keep]
        query_indices = query_indices[keep]

    # a query can head several (query, class) pairs: its mask statistics are computed once
    queries, pair_query = torch.unique(query_indices, return_inverse=True)  # (U,), (N,)
    if len(queries) == mask_pred.shape[0]:  # every query heads a pair: no gathered copy needed
        logits, gathered = mask_pred.flatten(1), False  # (Q, H*W); queries == arange(Q)
    else:
        if len(queries) == len(query_indices):  # one pair per query: work in pair order directly
            queries, pair_query = query_indices, None
        logits, gathered = mask_pred[queries].flatten(1), True  # (U, H*W), a copy (faster than index_select on CPU)
    foreground = logits > 0
    # sigmoid inside the mask, exactly 0 outside (sigmoid(-inf) = 0), in place on a copy ...
    # (sums in float32 like the official, whose 0/1 masks are float32, also for fp16 logits)
    masks = F.threshold(logits, 0.0, float("-inf"), inplace=gathered)
    mask_prob_sum = masks.sigmoid_().sum(1, dtype=torch.float32)
    # ... then 1 inside (probs there are >= 0.5), 0 outside: float area, as the official
    mask_area = masks.ceil_().sum(1, dtype=torch.float32)
    mask_scores = mask_prob_sum / (mask_area + 1e-6)  # (U,)
    boxes = masks_to_boxes(foreground.view(-1, *image_size))  # (U, 4)
    if pair_query is not None:
        mask_scores, foreground, boxes = mask_scores[pair_query], foreground[pair_query], boxes[pair_query]
    pred_masks = foreground.view(-1, *image_size)  # (N, H, W)

    result = Instances(image_size)
    result.pred_masks = pred_masks
    result.pred_boxes = Boxes(boxes)
    result.scores = scores_per_image * mask_scores
    result.pred_classes = labels_per_image
    return result
