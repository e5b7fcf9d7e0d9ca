"""Task inference functions: hand-made cases and equality with the official loop algorithms."""
from __future__ import annotations

from typing import Dict, List, Tuple

import pytest
import torch
from torch.nn import functional as F

from mask2former.modeling import postprocessing
from mask2former.modeling.postprocessing import (
    instance_inference,
    masks_to_boxes,
    panoptic_inference,
    sem_seg_postprocess,
    semantic_inference,
)

BIG = 20.0  # a logit this large makes a softmax / sigmoid essentially one-hot / 1


def class_logits(classes: List[int], num_classes: int, strength: float = BIG) -> torch.Tensor:
    """(Q, K+1) logits whose argmax per query is ``classes[q]`` (``num_classes`` = no object)."""
    logits = torch.zeros(len(classes), num_classes + 1)
    logits[torch.arange(len(classes)), torch.tensor(classes)] = strength
    return logits


# ------------------------------------------------------------------------------------------
# Loop re-statements of the official algorithms (one query at a time), to check that the
# vectorised functions give identical discrete results.


def loop_panoptic(mask_cls, mask_pred, num_classes, object_mask_threshold, overlap_threshold, thing_ids):
    scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
    probs = mask_pred.sigmoid()
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    masks, classes = probs[keep], labels[keep]
    panoptic = torch.zeros(mask_pred.shape[-2:], dtype=torch.int32)
    info: List[Dict] = []
    if masks.shape[0] == 0:
        return panoptic, info
    winner = (scores[keep].view(-1, 1, 1) * masks).argmax(0)
    stuff_ids: Dict[int, int] = {}
    next_id = 0
    for k in range(masks.shape[0]):
        label = int(classes[k])
        won = winner == k
        own = masks[k] >= 0.5
        region = won & own
        won_area, own_area = int(won.sum()), int(own.sum())
        if won_area == 0 or own_area == 0 or int(region.sum()) == 0:
            continue
        if won_area / own_area < overlap_threshold:
            continue
        isthing = label in thing_ids
        if not isthing and label in stuff_ids:
            panoptic[region] = stuff_ids[label]
            continue
        next_id += 1
        if not isthing:
            stuff_ids[label] = next_id
        panoptic[region] = next_id
        info.append({"id": next_id, "isthing": isthing, "category_id": label})
    return panoptic, info


def loop_instance_scores(mask_cls, mask_pred, num_classes, topk) -> Tuple[torch.Tensor, ...]:
    probs = F.softmax(mask_cls, dim=-1)[:, :-1]
    scores, index = probs.flatten().topk(topk, sorted=False)
    out_scores, out_labels, out_masks = [], [], []
    for s, i in zip(scores, index):
        q, label = int(i) // num_classes, int(i) % num_classes
        binary = (mask_pred[q] > 0).float()
        mean_prob = (mask_pred[q].sigmoid() * binary).sum() / (binary.sum() + 1e-6)
        out_scores.append(s * mean_prob)
        out_labels.append(label)
        out_masks.append(binary.bool())
    return torch.stack(out_scores), torch.tensor(out_labels), torch.stack(out_masks)


def blob_masks(num_queries: int, height: int, width: int, seed: int) -> torch.Tensor:
    """(Q, H, W) mask logits shaped like discs of random centre and radius, plus noise."""
    g = torch.Generator().manual_seed(seed)
    cy = torch.rand(num_queries, 1, 1, generator=g) * height
    cx = torch.rand(num_queries, 1, 1, generator=g) * width
    radius = (torch.rand(num_queries, 1, 1, generator=g) * 0.4 + 0.1) * min(height, width)
    yy = torch.arange(height, dtype=torch.float32).view(1, -1, 1)
    xx = torch.arange(width, dtype=torch.float32).view(1, 1, -1)
    dist = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()
    return 6 * (1 - dist / radius) + torch.randn(num_queries, height, width, generator=g)


# ------------------------------------------------------------------------------------------
# sem_seg_postprocess / semantic_inference


def test_sem_seg_postprocess_crops_padding_then_resizes():
    padded = torch.zeros(2, 8, 10)
    padded[:, :5, :7] = torch.arange(35, dtype=torch.float32).view(5, 7)
    padded[:, 5:, :] = 1000.0  # padding must not leak into the output
    padded[:, :, 7:] = 1000.0
    out = sem_seg_postprocess(padded, (5, 7), 11, 13)
    assert out.shape == (2, 11, 13)
    expected = F.interpolate(padded[None, :, :5, :7], size=(11, 13), mode="bilinear", align_corners=False)[0]
    assert torch.equal(out, expected)
    assert out.max() <= 34.0
    # same size: the crop alone
    assert torch.equal(sem_seg_postprocess(padded, (5, 7), 5, 7), padded[:, :5, :7])


def test_semantic_inference_is_class_prob_times_mask_prob_summed():
    mask_cls = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])  # Q=2, K=2 (+ no-object)
    mask_pred = torch.tensor([[[0.0, 4.0]], [[-2.0, 1.0]]])  # (2, 1, 2)
    out = semantic_inference(mask_cls, mask_pred)
    assert out.shape == (2, 1, 2)
    probs = F.softmax(mask_cls, -1)[:, :2]
    masks = mask_pred.sigmoid()
    for c in range(2):
        for x in range(2):
            expected = probs[0, c] * masks[0, 0, x] + probs[1, c] * masks[1, 0, x]
            assert out[c, 0, x].item() == pytest.approx(expected.item(), abs=1e-7)
    # the no-object column only enters through the softmax normalisation
    assert out.sum().item() < masks.sum().item()


@pytest.mark.parametrize("block", [7, 64, 1 << 20])
def test_semantic_inference_blocks_match_one_einsum(monkeypatch, block):
    torch.manual_seed(0)
    mask_cls, mask_pred = torch.randn(6, 5), torch.randn(6, 9, 11) * 3  # 99 pixels: partial last block
    monkeypatch.setattr(postprocessing, "_SEMANTIC_BLOCK", block)
    out = semantic_inference(mask_cls, mask_pred)
    expected = torch.einsum("qc,qhw->chw", F.softmax(mask_cls, -1)[:, :-1], mask_pred.sigmoid())
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_semantic_inference_records_no_autograd_graph():
    mask_pred = torch.randn(3, 4, 4, requires_grad=True)
    out = semantic_inference(torch.randn(3, 3, requires_grad=True), mask_pred)
    assert not out.requires_grad


# ------------------------------------------------------------------------------------------
# panoptic_inference


def _panoptic(mask_cls, mask_pred, thing_ids, object_mask_threshold=0.5, overlap_threshold=0.8, num_classes=4):
    return panoptic_inference(
        mask_cls, mask_pred, num_classes=num_classes, object_mask_threshold=object_mask_threshold,
        overlap_threshold=overlap_threshold, thing_ids=thing_ids,
    )


def test_panoptic_no_confident_query_gives_void():
    mask_cls = class_logits([4, 4, 1], num_classes=4)  # two "no object", one weak query
    mask_cls[2] = 0.0  # uniform: prob 0.2 < threshold
    seg, info = _panoptic(mask_cls, torch.full((3, 5, 6), BIG), thing_ids={0, 1})
    assert seg.shape == (5, 6) and seg.dtype == torch.int32
    assert info == [] and int(seg.abs().sum()) == 0


def test_panoptic_things_stuff_and_merging():
    # 4 queries on a 4x6 image: thing 0 left, thing 0 middle, stuff 3 on two separate parts
    masks = torch.full((4, 4, 6), -BIG)
    masks[0, :, 0:2] = BIG
    masks[1, :, 2:4] = BIG
    masks[2, :2, 4:6] = BIG
    masks[3, 2:, 4:6] = BIG
    seg, info = _panoptic(class_logits([0, 0, 3, 3], 4), masks, thing_ids={0, 1})
    assert info == [
        {"id": 1, "isthing": True, "category_id": 0},
        {"id": 2, "isthing": True, "category_id": 0},
        {"id": 3, "isthing": False, "category_id": 3},  # both stuff queries share this id
    ]
    expected = torch.tensor([[1, 1, 2, 2, 3, 3]] * 4, dtype=torch.int32)
    assert torch.equal(seg, expected)


def test_panoptic_overlap_threshold_drops_mostly_covered_queries():
    # query 0 (score ~1) covers the whole image; query 1 (lower score) covers the right half
    masks = torch.full((2, 4, 8), BIG)
    masks[1, :, :4] = -BIG
    mask_cls = class_logits([1, 2], 4)
    mask_cls[1, 2] = 3.0  # class prob ~0.8: loses every pixel to query 0
    seg, info = _panoptic(mask_cls, masks, thing_ids={1, 2})
    assert info == [{"id": 1, "isthing": True, "category_id": 1}]
    assert torch.equal(seg, torch.ones(4, 8, dtype=torch.int32))

    # now query 1's mask prob beats query 0's on the right half: query 0 keeps half of its
    # own mask (0.5 < 0.8, dropped -> void there); query 1 keeps all of its own
    masks[0, :, 4:] = 0.5  # sigmoid ~0.62 < 0.8 * sigmoid(BIG)
    seg, info = _panoptic(mask_cls, masks, thing_ids={1, 2})
    assert info == [{"id": 1, "isthing": True, "category_id": 2}]
    assert torch.equal(seg[:, :4], torch.zeros(4, 4, dtype=torch.int32))
    assert torch.equal(seg[:, 4:], torch.ones(4, 4, dtype=torch.int32))
    seg, info = _panoptic(mask_cls, masks, thing_ids={1, 2}, overlap_threshold=0.4)
    assert [s["category_id"] for s in info] == [1, 2]


def test_panoptic_pixels_below_half_probability_stay_void():
    masks = torch.full((1, 3, 3), BIG)
    masks[0, 0, 0] = -1.0  # the only query wins this pixel but its mask prob is < 0.5
    seg, info = _panoptic(class_logits([2], 4), masks, thing_ids=set(), overlap_threshold=0.5)
    assert info == [{"id": 1, "isthing": False, "category_id": 2}]
    assert seg[0, 0] == 0 and int((seg == 1).sum()) == 8


def test_panoptic_maskformer_v1_rule_assigns_every_argmax_pixel():
    masks = torch.full((2, 3, 4), BIG)
    masks[0, :, 2:] = -BIG
    masks[1, :, :2] = -BIG
    masks[0, 0, 0] = -1.0  # query 0 still wins here (query 1 is at -BIG) but its prob is < 0.5
    masks[1, 2, 3] = -3.0  # and query 1 here
    kwargs = dict(num_classes=4, object_mask_threshold=0.5, overlap_threshold=0.5, thing_ids={0})
    seg_v2, info_v2 = panoptic_inference(class_logits([0, 2], 4), masks, **kwargs)
    seg_v1, info_v1 = panoptic_inference(class_logits([0, 2], 4), masks, **kwargs, require_mask_prob=False)
    assert info_v1 == info_v2 == [{"id": 1, "isthing": True, "category_id": 0},
                                  {"id": 2, "isthing": False, "category_id": 2}]
    expected_v1 = torch.tensor([[1, 1, 2, 2]] * 3, dtype=torch.int32)
    assert torch.equal(seg_v1, expected_v1)
    expected_v2 = expected_v1.clone()
    expected_v2[0, 0] = expected_v2[2, 3] = 0
    assert torch.equal(seg_v2, expected_v2)


@pytest.mark.parametrize("seed", range(6))
def test_panoptic_matches_the_official_loop(seed):
    g = torch.Generator().manual_seed(seed)
    num_classes, queries = 7, 16
    mask_cls = torch.randn(queries, num_classes + 1, generator=g) * 3
    mask_pred = blob_masks(queries, 23, 31, seed)
    if seed % 2:  # exact ties between queries and probs exactly 0.5
        mask_pred[3] = mask_pred[2]
        mask_cls[3] = mask_cls[2]
        mask_pred[5, :4] = 0.0
    thing_ids = {0, 1, 2, 3}
    for thr, overlap in [(0.0, 0.8), (0.3, 0.5), (0.5, 0.0)]:
        seg, info = _panoptic(mask_cls, mask_pred, thing_ids, thr, overlap, num_classes)
        ref_seg, ref_info = loop_panoptic(mask_cls, mask_pred, num_classes, thr, overlap, thing_ids)
        assert info == ref_info
        assert torch.equal(seg, ref_seg)


# ------------------------------------------------------------------------------------------
# instance_inference / masks_to_boxes


def test_instance_topk_scores_classes_and_boxes():
    num_classes = 3
    mask_cls = torch.tensor([
        [BIG, 0.0, 0.0, 0.0],   # query 0: class 0, prob ~1
        [0.0, 0.0, 4.0, 0.0],   # query 1: class 2, prob ~0.95
        [0.0, 0.0, 0.0, BIG],   # query 2: no object
    ])
    mask_pred = torch.full((3, 6, 8), -BIG)
    mask_pred[0, 1:3, 2:5] = 2.0  # 6 px at sigmoid(2)
    mask_pred[1, 4, 7] = BIG      # 1 px
    out = instance_inference(mask_cls, mask_pred, num_classes=num_classes, test_topk_per_image=2)
    assert out.image_size == (6, 8) and len(out) == 2
    order = out.pred_classes.argsort()
    assert out.pred_classes[order].tolist() == [0, 2]
    class_prob = F.softmax(mask_cls, -1)
    expected = torch.stack([
        class_prob[0, 0] * torch.sigmoid(torch.tensor(2.0)) * 6 / (6 + 1e-6),
        class_prob[1, 2] * 1.0 / (1 + 1e-6),
    ])
    torch.testing.assert_close(out.scores[order], expected)
    assert out.pred_masks.dtype == torch.bool
    assert out.pred_masks[order].sum((1, 2)).tolist() == [6, 1]
    assert out.pred_boxes.tensor[order].tolist() == [[2, 1, 5, 3], [7, 4, 8, 5]]


def test_instance_thing_filter_and_empty_masks():
    num_classes = 3
    mask_cls = class_logits([0, 2, 1], num_classes)
    mask_pred = torch.full((3, 4, 4), -BIG)  # query 2 has an empty mask
    mask_pred[:2] = BIG
    out = instance_inference(mask_cls, mask_pred, num_classes=num_classes, test_topk_per_image=3,
                             thing_ids={0, 1})
    assert sorted(out.pred_classes.tolist()) == [0, 1]  # class 2 is stuff: dropped after top-k
    empty = out.pred_classes == 1
    assert out.scores[empty].item() == 0.0
    assert out.pred_boxes.tensor[empty].tolist() == [[0, 0, 0, 0]]
    none = instance_inference(mask_cls, mask_pred, num_classes=num_classes, test_topk_per_image=3,
                              thing_ids=set())
    assert len(none) == 0 and none.pred_masks.shape == (0, 4, 4)
    # top-k larger than Q * K keeps every pair
    everything = instance_inference(mask_cls, mask_pred, num_classes=num_classes, test_topk_per_image=50)
    assert len(everything) == 9


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("topk", [10, 60])  # 60 = every (query, class) pair: all queries take part
def test_instance_matches_the_official_loop(seed, topk):
    num_classes, queries = 5, 12
    g = torch.Generator().manual_seed(seed)
    mask_cls = torch.randn(queries, num_classes + 1, generator=g) * 2
    mask_pred = blob_masks(queries, 19, 27, seed)
    mask_pred[0, 0, :3] = 0.0  # logit exactly 0 is outside the mask
    given = mask_pred.clone()
    out = instance_inference(mask_cls, mask_pred, num_classes=num_classes, test_topk_per_image=topk)
    assert torch.equal(mask_pred, given)  # the other tasks read the same logits
    scores, labels, masks = loop_instance_scores(mask_cls, mask_pred, num_classes, topk)
    assert torch.equal(out.pred_classes, labels)
    assert torch.equal(out.pred_masks, masks)
    torch.testing.assert_close(out.scores, scores, atol=1e-7, rtol=0)


def test_masks_to_boxes_edges():
    masks = torch.zeros(4, 5, 7, dtype=torch.bool)
    masks[1, 2, 3] = True              # a single pixel
    masks[2] = True                    # everything
    masks[3, 0, 6] = masks[3, 4, 0] = True  # two far corners
    assert masks_to_boxes(masks).tolist() == [[0, 0, 0, 0], [3, 2, 4, 3], [0, 0, 7, 5], [0, 0, 7, 5]]
    assert masks_to_boxes(masks.float()).tolist() == masks_to_boxes(masks).tolist()
    assert masks_to_boxes(torch.zeros(0, 3, 3, dtype=torch.bool)).shape == (0, 4)
    with pytest.raises(ValueError, match="N, H, W"):
        masks_to_boxes(torch.zeros(3, 3, dtype=torch.bool))
