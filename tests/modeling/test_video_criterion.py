"""Video set criterion: per-frame point losses by hand, full loss dict, gradients, overfitting."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mask2former.modeling.video_criterion import VideoSetCriterion
from mask2former.modeling.video_matcher import VideoHungarianMatcher


def _criterion(num_classes=4, num_points=12, importance=0.75, aux=0):
    weights = {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}
    for i in range(aux):
        weights.update({f"{k}_{i}": v for k, v in list(weights.items())[:3]})
    return VideoSetCriterion(
        num_classes=num_classes, matcher=VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=num_points),
        weight_dict=weights, eos_coef=0.1, losses=["labels", "masks"], num_points=num_points,
        oversample_ratio=3.0, importance_sample_ratio=importance,
    )


def _edge_factor(coords, size):
    """Bilinear sample (align_corners=False, zero padding) of an all-ones (H, W) map at (x, y)."""
    factor = np.ones(coords.shape[:-1])
    for axis, n in ((0, size[1]), (1, size[0])):
        u = coords[..., axis] * n
        factor *= np.clip(np.minimum(u + 0.5, n + 0.5 - u), None, 1.0)
    return factor


def test_mask_losses_sum_over_frames_divided_by_tracks():
    # two matched tracks of 3 frames, masks constant within each frame: the point values
    # are known by hand (up to the half-pixel fall-off at the border)
    crit = _criterion(num_points=10, importance=0.0)  # uniform points only
    logit_values = torch.tensor([[[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]], [[-3.0, 1.5, 4.0], [0.0, 0.0, 0.0]]])  # (B=2, Q=2, T)
    pred_masks = logit_values[..., None, None].expand(2, 2, 3, 6, 7).clone()
    target_values = [torch.tensor([[1.0, 0.0, 1.0]]), torch.tensor([[0.0, 1.0, 1.0]])]
    targets = [{"labels": torch.tensor([1]), "masks": v[..., None, None].expand(1, 3, 16, 16).clone()}
               for v in target_values]
    outputs = {"pred_logits": torch.zeros(2, 2, 5), "pred_masks": pred_masks}
    indices = [(torch.tensor([0]), torch.tensor([0])), (torch.tensor([0]), torch.tensor([0]))]
    num_masks = 2.0

    torch.manual_seed(5)
    torch.rand(6, 30, 2)  # the oversampled candidates (none kept: importance ratio 0)
    coords = torch.rand(6, 10, 2).double().numpy()  # (M*T, P, 2), one set per frame mask
    torch.manual_seed(5)
    losses = crit.loss_masks(outputs, targets, indices, num_masks)

    f_pred, f_tgt = _edge_factor(coords, (6, 7)), _edge_factor(coords, (16, 16))
    pl = np.concatenate([logit_values[0, 0], logit_values[1, 0]]).astype(np.float64)[:, None] * f_pred  # (6, P)
    g = np.concatenate([target_values[0][0], target_values[1][0]]).astype(np.float64)[:, None] * f_tgt
    bce = g * np.log1p(np.exp(-pl)) + (1 - g) * np.log1p(np.exp(pl))
    s = 1 / (1 + np.exp(-pl))
    dice = 1 - (2 * (s * g).sum(1) + 1) / (s.sum(1) + g.sum(1) + 1)
    assert losses["loss_mask"].item() == pytest.approx(bce.mean(1).sum() / num_masks, abs=1e-5)
    assert losses["loss_dice"].item() == pytest.approx(dice.sum() / num_masks, abs=1e-5)


def _random_problem(seed=0, frames=2):
    g = torch.Generator().manual_seed(seed)
    outputs = {
        "pred_logits": torch.randn(2, 6, 5, generator=g).requires_grad_(),
        "pred_masks": torch.randn(2, 6, frames, 8, 8, generator=g).requires_grad_(),
    }
    masks = torch.zeros(2, 3, frames, 32, 32)
    masks[0, 0, :, 4:20, 4:20] = 1
    masks[0, 1, :, 18:30, 2:12] = 1
    masks[0, 1, 0] = 0  # track absent from frame 0
    masks[1, 0, :, 10:28, 8:30] = 1
    targets = [
        {"labels": torch.tensor([0, 3]), "masks": masks[0, :2]},
        {"labels": torch.tensor([2]), "masks": masks[1, :1]},
    ]
    return outputs, targets


def test_loss_dict_is_finite_with_aux_outputs_and_has_gradients():
    torch.manual_seed(0)
    outputs, targets = _random_problem()
    outputs["aux_outputs"] = [{"pred_logits": outputs["pred_logits"] * 0.5, "pred_masks": outputs["pred_masks"] * 0.5}]
    losses = _criterion(aux=1)(outputs, targets)
    assert sorted(losses) == sorted(["loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_mask_0", "loss_dice_0"])
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    for name in ("pred_logits", "pred_masks"):
        grad = outputs[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # every frame of the matched masks receives gradient
    assert (outputs["pred_masks"].grad.abs().sum(dim=(0, 1, 3, 4)) > 0).all()


def test_overfits_a_fixed_clip():
    torch.manual_seed(0)
    outputs, targets = _random_problem(seed=1, frames=3)
    crit = _criterion(num_points=64)
    params = [outputs["pred_logits"], outputs["pred_masks"]]
    opt = torch.optim.Adam(params, lr=0.2)

    def total():
        losses = crit(outputs, targets)
        return sum(crit.weight_dict[k] * v for k, v in losses.items())

    first = total().item()
    for _ in range(150):
        opt.zero_grad()
        loss = total()
        loss.backward()
        opt.step()
    last = total().item()
    assert np.isfinite(first) and np.isfinite(last)
    assert last < 0.25 * first, (first, last)


def test_bad_targets_are_rejected():
    outputs, targets = _random_problem()
    image_like = [dict(t, masks=t["masks"][:, 0]) for t in targets]  # (N, H, W): no frame axis
    with pytest.raises(ValueError, match=r"\(N, T, H, W\)"):
        _criterion()(outputs, image_like)
    with pytest.raises(ValueError, match="targets in training"):
        _criterion()(outputs, None)
