"""Video Hungarian matcher: costs over all frames of a clip, checked against scipy by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from mask2former.modeling.video_matcher import VideoHungarianMatcher

W_CLASS, W_MASK, W_DICE = 2.0, 5.0, 5.0


def _softplus(x):
    return np.log1p(np.exp(x))


def _edge_factor(coords, size):
    """What bilinear sampling (align_corners=False, zero padding) of an all-ones (H, W) map
    returns at normalised (x, y) points: 1 inside, falling off within half a pixel of the
    border, where the zero padding mixes in."""
    factor = np.ones(len(coords))
    for axis, n in ((0, size[1]), (1, size[0])):
        u = coords[:, axis] * n  # position in pixels from the left / top edge
        factor *= np.clip(np.minimum(u + 0.5, n + 0.5 - u), None, 1.0)
    return factor


def _hand_cost(logits, mask_logits, labels, frame_values, coords, pred_size, tgt_size):
    """Matching costs of predictions / targets that are constant within each frame:
    prediction q has logit mask_logits[q, t] on frame t, target n has frame_values[n, t]."""
    prob = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    f_pred, f_tgt = _edge_factor(coords, pred_size), _edge_factor(coords, tgt_size)
    bce_cost = np.zeros((mask_logits.shape[0], frame_values.shape[0]))
    dice_cost = np.zeros_like(bce_cost)
    for q in range(mask_logits.shape[0]):
        pl = mask_logits[q][:, None] * f_pred[None]  # (T, P) sampled logits
        s = 1 / (1 + np.exp(-pl))
        for n in range(frame_values.shape[0]):
            g = frame_values[n][:, None] * f_tgt[None]  # (T, P) sampled target values
            bce_cost[q, n] = np.mean(g * _softplus(-pl) + (1 - g) * _softplus(pl))
            dice_cost[q, n] = 1 - (2 * (s * g).sum() + 1) / (s.sum() + g.sum() + 1)
    return bce_cost, dice_cost, -prob[:, labels]


def _constant_masks(values, size=(8, 8)):
    """(N, T) values -> (N, T, H, W) masks constant within each frame."""
    return values[:, :, None, None].expand(*values.shape, *size).clone()


def test_matches_scipy_on_hand_computed_costs():
    rng = np.random.default_rng(0)
    q_count, n_count, frames, points = 7, 4, 3, 16
    logits = rng.normal(size=(q_count, 6)).astype(np.float32)
    mask_logits = rng.normal(scale=3, size=(q_count, frames)).astype(np.float32)
    labels = np.array([0, 3, 3, 5])
    frame_values = rng.integers(0, 2, size=(n_count, frames)).astype(np.float32)
    frame_values[:, 0] = 1  # every track present in frame 0

    outputs = {
        "pred_logits": torch.from_numpy(logits)[None],
        "pred_masks": _constant_masks(torch.from_numpy(mask_logits), (5, 6))[None],  # (1, Q, T, h, w)
    }
    targets = [{"labels": torch.from_numpy(labels), "masks": _constant_masks(torch.from_numpy(frame_values), (20, 24))}]
    matcher = VideoHungarianMatcher(cost_class=W_CLASS, cost_mask=W_MASK, cost_dice=W_DICE, num_points=points)
    torch.manual_seed(3)
    coords = torch.rand(1, points, 2)[0].double().numpy()  # the points the matcher will draw
    torch.manual_seed(3)
    [(rows, cols)] = matcher(outputs, targets)

    bce, dice, cls = _hand_cost(logits, mask_logits, labels, frame_values, coords, (5, 6), (20, 24))
    exp_rows, exp_cols = linear_sum_assignment(W_MASK * bce + W_CLASS * cls + W_DICE * dice)
    assert rows.tolist() == exp_rows.tolist() and cols.tolist() == exp_cols.tolist()
    assert rows.dtype == cols.dtype == torch.int64
    # the mask costs themselves, not only the assignment
    torch.manual_seed(3)
    ce_cost, dice_cost = matcher._mask_costs(outputs["pred_masks"][0], targets[0]["masks"], (20, 24))
    np.testing.assert_allclose(ce_cost.numpy(), bce, atol=1e-5)
    np.testing.assert_allclose(dice_cost.numpy(), dice, atol=1e-5)


def test_every_frame_counts():
    # Query 0 matches track 0 in frame 0 only, query 1 matches it in frames 1 and 2: over the
    # whole clip query 1 wins, a first-frame matcher would pick query 0.
    frames = 3
    mask_logits = torch.tensor([[8.0, -8.0, -8.0], [-8.0, 8.0, 8.0]])
    track = torch.tensor([[1.0, 1.0, 1.0]])
    outputs = {"pred_logits": torch.zeros(1, 2, 3), "pred_masks": _constant_masks(mask_logits)[None]}
    targets = [{"labels": torch.tensor([1]), "masks": _constant_masks(track)}]
    [(rows, cols)] = VideoHungarianMatcher(num_points=9)(outputs, targets)
    assert rows.tolist() == [1] and cols.tolist() == [0]
    assert outputs["pred_masks"].shape[2] == frames


def test_batch_of_videos_and_errors():
    torch.manual_seed(0)
    outputs = {"pred_logits": torch.randn(2, 5, 4), "pred_masks": torch.randn(2, 5, 2, 6, 6)}
    targets = [
        {"labels": torch.tensor([0, 2]), "masks": (torch.rand(2, 2, 12, 12) > 0.5).float()},
        {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 2, 12, 12)},
    ]
    indices = VideoHungarianMatcher(num_points=20)(outputs, targets)
    assert [len(r) for r, _ in indices] == [2, 0]
    bad = [dict(targets[0], masks=torch.zeros(2, 3, 12, 12)), targets[1]]  # 3 frames, predictions have 2
    with pytest.raises(ValueError, match="same T"):
        VideoHungarianMatcher(num_points=20)(outputs, bad)
