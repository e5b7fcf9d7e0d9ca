"""Hungarian matchers: hand-computed costs and known optima."""
from __future__ import annotations

import math

import pytest
import torch

from mask2former.modeling.matcher import (
    HungarianMatcher,
    HungarianMatcherV1,
    batch_dice_cost,
    batch_sigmoid_ce_cost,
    batch_sigmoid_focal_cost,
)


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# ---------------------------------------------------------------- pairwise costs
def test_batch_dice_cost_hand_computed():
    inputs = torch.zeros(1, 2)  # sigmoid = 0.5 everywhere, sum 1
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # t0: 1 - (2*0.5 + 1) / (1 + 1 + 1) = 1/3 ; t1: 1 - (2*1 + 1) / (1 + 2 + 1) = 1/4
    torch.testing.assert_close(batch_dice_cost(inputs, targets), torch.tensor([[1 / 3, 1 / 4]]))


def test_batch_sigmoid_ce_cost_hand_computed():
    x0, x1 = 2.0, -1.0
    inputs = torch.tensor([[x0, x1]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x); averaged over the 2 points
    expected = [(_softplus(-x0) + _softplus(x1)) / 2, (_softplus(-x0) + _softplus(-x1)) / 2]
    torch.testing.assert_close(batch_sigmoid_ce_cost(inputs, targets), torch.tensor([expected]))


def test_batch_sigmoid_focal_cost_hand_computed():
    inputs = torch.zeros(1, 2)  # p = 0.5: focal factor 0.25, BCE ln 2
    targets = torch.tensor([[1.0, 0.0]])
    # positive point: alpha 0.25, negative point: 1 - alpha = 0.75
    expected = (0.25 * 0.25 * math.log(2) + 0.75 * 0.25 * math.log(2)) / 2
    torch.testing.assert_close(batch_sigmoid_focal_cost(inputs, targets), torch.tensor([[expected]]))


# ---------------------------------------------------------------- matching
def _two_halves_case(h: int = 16, w: int = 16):
    """3 queries, 2 targets: target 0 = left half (class 0), target 1 = right half (class 1).
    Query 2 predicts the left half / class 0, query 0 the right half / class 1, query 1 nothing."""
    left = torch.zeros(h, w, dtype=torch.bool)
    left[:, : w // 2] = True
    targets = [{"labels": torch.tensor([0, 1]), "masks": torch.stack([left, ~left])}]
    big = 10.0
    masks = torch.full((1, 3, h, w), -big)
    masks[0, 2][left] = big
    masks[0, 0][~left] = big
    logits = torch.tensor([[[0.0, 8.0, 0.0], [0.0, 0.0, 8.0], [8.0, 0.0, 0.0]]])  # (1, 3, K+1=3)
    return {"pred_logits": logits, "pred_masks": masks}, targets


@pytest.mark.parametrize("matcher", [HungarianMatcher(2.0, 5.0, 5.0, num_points=256), HungarianMatcherV1(1.0, 20.0, 1.0)])
def test_matcher_finds_known_optimum(matcher):
    torch.manual_seed(0)
    outputs, targets = _two_halves_case()
    (rows, cols), = matcher(outputs, targets)
    assert rows.dtype == cols.dtype == torch.int64
    assert rows.tolist() == [0, 2] and cols.tolist() == [1, 0]


def test_matcher_class_cost_breaks_mask_tie():
    torch.manual_seed(0)
    outputs, targets = _two_halves_case()
    # queries 0 and 1 now predict the same (right-half) mask; only query 1's class is right.
    outputs["pred_masks"][0, 1] = outputs["pred_masks"][0, 0]
    outputs["pred_logits"][0, 0] = torch.tensor([0.0, 0.0, 8.0])
    outputs["pred_logits"][0, 1] = torch.tensor([0.0, 8.0, 0.0])
    (rows, cols), = HungarianMatcher(2.0, 5.0, 5.0, num_points=256)(outputs, targets)
    assert dict(zip(rows.tolist(), cols.tolist())) == {1: 1, 2: 0}


def test_matcher_handles_images_without_targets():
    torch.manual_seed(0)
    outputs, targets = _two_halves_case()
    outputs = {k: v.repeat(2, 1, 1, 1) if k == "pred_masks" else v.repeat(2, 1, 1) for k, v in outputs.items()}
    empty = {"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 16, 16, dtype=torch.bool)}
    for matcher in (HungarianMatcher(2.0, 5.0, 5.0, num_points=64), HungarianMatcherV1(1.0, 20.0, 1.0)):
        indices = matcher(outputs, [empty, targets[0]])
        assert [len(i) for i, _ in indices] == [0, 2]
        assert indices[1][0].tolist() == [0, 2]


def test_matcher_under_autocast_matches_float32():
    outputs, targets = _two_halves_case()
    matcher = HungarianMatcher(2.0, 5.0, 5.0, num_points=128)
    torch.manual_seed(3)
    ref = matcher(outputs, targets)
    torch.manual_seed(3)
    half = {k: v.to(torch.bfloat16) for k, v in outputs.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = matcher(half, targets)
    assert [t.tolist() for t in got[0]] == [t.tolist() for t in ref[0]]


def test_matcher_errors():
    outputs, targets = _two_halves_case()
    with pytest.raises(ValueError, match="cannot all be 0"):
        HungarianMatcher(0, 0, 0)
    with pytest.raises(ValueError, match="2 targets for a batch of 1"):
        HungarianMatcher(num_points=8)(outputs, targets * 2)
    bad = dict(targets[0], labels=torch.tensor([0]))
    with pytest.raises(ValueError, match="1 labels but 2 masks"):
        HungarianMatcher(num_points=8)(outputs, [bad])
    outputs["pred_logits"][0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN/inf"):
        HungarianMatcher(num_points=8)(outputs, targets)


def test_matcher_from_config():
    from mask2former.config import get_cfg

    cfg = get_cfg()
    cfg.MODEL.MASK_FORMER.CLASS_WEIGHT = 2.0
    cfg.MODEL.MASK_FORMER.MASK_WEIGHT = 5.0
    cfg.MODEL.MASK_FORMER.DICE_WEIGHT = 4.0
    cfg.MODEL.MASK_FORMER.TRAIN_NUM_POINTS = 99
    m = HungarianMatcher(cfg)
    assert (m.cost_class, m.cost_mask, m.cost_dice, m.num_points) == (2.0, 5.0, 4.0, 99)
    v1 = HungarianMatcherV1(cfg)
    assert (v1.cost_class, v1.cost_mask, v1.cost_dice) == (1.0, 5.0, 4.0)
