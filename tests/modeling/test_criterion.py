"""SetCriterion (Mask2Former) and SetCriterionV1 (MaskFormer): loss values and plumbing."""
from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from mask2former.modeling.criterion import (
    SetCriterion,
    _average_num_masks,
    _matched_target_points,
    SetCriterionV1,
    build_criterion,
    dice_loss,
    sigmoid_ce_loss,
    sigmoid_focal_loss,
)
from mask2former.modeling.matcher import HungarianMatcher, HungarianMatcherV1
from mask2former.modeling.point_sampling import point_sample

NUM_CLASSES = 2
EOS = 0.1


def _m2f(num_points: int = 64, oversample: float = 3.0, importance: float = 0.75) -> SetCriterion:
    return SetCriterion(
        NUM_CLASSES,
        matcher=HungarianMatcher(2.0, 5.0, 5.0, num_points=num_points),
        weight_dict={"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0},
        eos_coef=EOS,
        losses=["labels", "masks"],
        num_points=num_points,
        oversample_ratio=oversample,
        importance_sample_ratio=importance,
    )


def _v1() -> SetCriterionV1:
    return SetCriterionV1(
        NUM_CLASSES,
        matcher=HungarianMatcherV1(1.0, 20.0, 1.0),
        weight_dict={"loss_ce": 1.0, "loss_mask": 20.0, "loss_dice": 1.0},
        eos_coef=EOS,
        losses=["labels", "masks"],
    )


def _case(h: int = 16, w: int = 16, requires_grad: bool = False):
    """1 image, 3 queries, targets: left half (class 0), right half (class 1).
    Query 2 <-> target 0 and query 0 <-> target 1 is the optimal matching."""
    left = torch.zeros(h, w, dtype=torch.bool)
    left[:, : w // 2] = True
    targets = [{"labels": torch.tensor([0, 1]), "masks": torch.stack([left, ~left])}]
    masks = torch.full((1, 3, h // 4, w // 4), -6.0)
    masks[0, 2, :, : w // 8] = 6.0
    masks[0, 0, :, w // 8 :] = 6.0
    logits = torch.tensor([[[0.0, 3.0, 0.0], [0.5, 0.0, 2.0], [3.0, 0.0, 1.0]]])
    return {
        "pred_logits": logits.requires_grad_(requires_grad),
        "pred_masks": masks.requires_grad_(requires_grad),
    }, targets


def _empty(h: int = 16, w: int = 16):
    return {"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, h, w, dtype=torch.bool)}


def _log_softmax(row, k):
    return row[k] - math.log(sum(math.exp(v) for v in row))


# ---------------------------------------------------------------- loss functions
def test_dice_loss_hand_computed():
    inputs = torch.zeros(2, 4)  # sigmoid 0.5
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # mask 0: 1 - (2*1 + 1) / (2 + 2 + 1) = 0.4 ; mask 1: 1 - (0 + 1) / (2 + 0 + 1) = 2/3
    torch.testing.assert_close(dice_loss(inputs, targets, 1.0), torch.tensor(0.4 + 2 / 3))
    torch.testing.assert_close(dice_loss(inputs, targets, 4.0), torch.tensor((0.4 + 2 / 3) / 4))


def test_sigmoid_ce_loss_hand_computed():
    inputs = torch.tensor([[2.0, -1.0], [0.0, 0.0]])
    targets = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    mask0 = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2
    mask1 = math.log(2)
    torch.testing.assert_close(sigmoid_ce_loss(inputs, targets, 2.0), torch.tensor((mask0 + mask1) / 2))


def test_sigmoid_focal_loss_hand_computed():
    inputs = torch.zeros(1, 2)
    targets = torch.tensor([[1.0, 0.0]])
    expected = (0.25 * 0.25 * math.log(2) + 0.75 * 0.25 * math.log(2)) / 2
    torch.testing.assert_close(sigmoid_focal_loss(inputs, targets, 1.0), torch.tensor(expected))


# ---------------------------------------------------------------- class loss
def test_empty_weight_buffer_is_the_only_state():
    crit = _m2f()
    assert list(crit.state_dict().keys()) == ["empty_weight"]
    torch.testing.assert_close(crit.empty_weight, torch.tensor([1.0, 1.0, EOS]))


def test_loss_ce_hand_computed_with_no_object_weight():
    outputs, targets = _case()
    crit = _m2f()
    indices = [(torch.tensor([0, 2]), torch.tensor([1, 0]))]
    loss = crit.loss_labels(outputs, targets, indices, 2.0)["loss_ce"]
    rows = outputs["pred_logits"][0].tolist()
    # query 0 -> class 1, query 1 -> no-object (index 2, weight EOS), query 2 -> class 0
    nll = [-_log_softmax(rows[0], 1), -_log_softmax(rows[1], 2), -_log_softmax(rows[2], 0)]
    weights = [1.0, EOS, 1.0]
    expected = sum(w * n for w, n in zip(weights, nll)) / sum(weights)
    torch.testing.assert_close(loss, torch.tensor(expected))


# ---------------------------------------------------------------- mask losses
def test_m2f_loss_masks_equals_losses_on_sampled_points():
    outputs, targets = _case()
    crit = _m2f(num_points=20, oversample=1.0, importance=0.0)  # all points uniform random
    indices = [(torch.tensor([0, 2]), torch.tensor([1, 0]))]
    torch.manual_seed(0)
    losses = crit.loss_masks(outputs, targets, indices, 2.0)
    torch.manual_seed(0)
    torch.rand(2, 20, 2)  # the (unused) oversampled candidates
    coords = torch.rand(2, 20, 2)
    src = outputs["pred_masks"][0, [0, 2]][:, None]
    tgt = targets[0]["masks"][[1, 0]].float()[:, None]
    logits = point_sample(src, coords, align_corners=False)[:, 0]
    labels = point_sample(tgt, coords, align_corners=False)[:, 0]
    torch.testing.assert_close(losses["loss_mask"], sigmoid_ce_loss(logits, labels, 2.0))
    torch.testing.assert_close(losses["loss_dice"], dice_loss(logits, labels, 2.0))


def test_m2f_target_points_of_images_of_different_sizes_are_read_in_the_padded_frame():
    # the float, zero-padded (M, Hmax, Wmax) targets the official code samples, built here by hand
    gen = torch.Generator().manual_seed(0)
    targets = [{"labels": torch.tensor([0, 1, 1]), "masks": torch.rand(3, 12, 20, generator=gen) > 0.5},
               {"labels": torch.tensor([1, 0]), "masks": torch.rand(2, 16, 14, generator=gen) > 0.5}]
    indices = [(torch.tensor([4, 0]), torch.tensor([2, 0])), (torch.tensor([1]), torch.tensor([1]))]
    padded = torch.zeros(3, 16, 20)
    padded[0, :12, :20] = targets[0]["masks"][2].float()
    padded[1, :12, :20] = targets[0]["masks"][0].float()
    padded[2, :16, :14] = targets[1]["masks"][1].float()
    coords = torch.rand(3, 300, 2, generator=gen)
    expected = point_sample(padded[:, None], coords, align_corners=False)[:, 0]
    torch.testing.assert_close(_matched_target_points(targets, indices, coords), expected, atol=1e-5, rtol=0)


def test_m2f_mask_losses_reward_correct_masks():
    outputs, targets = _case()
    crit = _m2f()
    good = crit.loss_masks(outputs, targets, [(torch.tensor([0, 2]), torch.tensor([1, 0]))], 2.0)
    bad = crit.loss_masks(outputs, targets, [(torch.tensor([0, 2]), torch.tensor([0, 1]))], 2.0)
    assert good["loss_mask"] < 0.5 * bad["loss_mask"]
    assert good["loss_dice"] < 0.5 * bad["loss_dice"]


def test_m2f_mask_losses_at_any_prediction_resolution():
    # Point sampling reads num_points values per matched mask whatever the mask resolution.
    crit = _m2f(num_points=16)
    targets = [{"labels": torch.tensor([0]), "masks": torch.ones(1, 8, 8, dtype=torch.bool)}]
    for size in (4, 512):
        outputs = {"pred_logits": torch.zeros(1, 2, 3), "pred_masks": torch.full((1, 2, size, size), 3.0)}
        losses = crit(outputs, targets)
        assert all(torch.isfinite(v) for v in losses.values())


def test_v1_loss_masks_upsamples_predictions_to_target_size():
    outputs, targets = _case()
    crit = _v1()
    indices = [(torch.tensor([0, 2]), torch.tensor([1, 0]))]
    losses = crit.loss_masks(outputs, targets, indices, 2.0)
    src = F.interpolate(outputs["pred_masks"][0, [0, 2]][:, None], size=(16, 16), mode="bilinear", align_corners=False)
    src = src[:, 0].flatten(1)
    tgt = targets[0]["masks"][[1, 0]].float().flatten(1)
    torch.testing.assert_close(losses["loss_mask"], sigmoid_focal_loss(src, tgt, 2.0))
    torch.testing.assert_close(losses["loss_dice"], dice_loss(src, tgt, 2.0))


def test_v1_pads_targets_of_different_sizes():
    outputs, targets = _case()
    outputs = {k: torch.cat([v, v]) for k, v in outputs.items()}
    small = {"labels": torch.tensor([1]), "masks": torch.ones(1, 8, 12, dtype=torch.bool)}
    losses = _v1()(outputs, [targets[0], small])
    assert set(losses) == {"loss_ce", "loss_mask", "loss_dice"}
    assert all(torch.isfinite(v) for v in losses.values())


# ---------------------------------------------------------------- forward
@pytest.mark.parametrize("make", [_m2f, _v1])
def test_forward_with_aux_outputs_and_gradients(make):
    outputs, targets = _case(requires_grad=True)
    aux_logits = torch.randn(1, 3, 3, requires_grad=True)
    aux_masks = torch.randn(1, 3, 4, 4, requires_grad=True)
    outputs["aux_outputs"] = [{"pred_logits": aux_logits, "pred_masks": aux_masks}] * 2
    torch.manual_seed(0)
    losses = make()(outputs, targets)
    assert set(losses) == {f"{n}{s}" for n in ("loss_ce", "loss_mask", "loss_dice") for s in ("", "_0", "_1")}
    sum(losses.values()).backward()
    for t in (outputs["pred_logits"], outputs["pred_masks"], aux_logits, aux_masks):
        assert t.grad is not None and t.grad.abs().sum() > 0


@pytest.mark.parametrize("make", [_m2f, _v1])
def test_zero_targets_give_only_no_object_ce(make):
    outputs, _ = _case(requires_grad=True)
    outputs = {k: torch.cat([v, v]).detach().requires_grad_() for k, v in outputs.items()}
    losses = make()(outputs, [_empty(), _empty()])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    rows = outputs["pred_logits"][0].tolist()
    expected = sum(-_log_softmax(r, NUM_CLASSES) for r in rows) / len(rows)  # all weights EOS
    torch.testing.assert_close(losses["loss_ce"], torch.tensor(expected))
    sum(losses.values()).backward()
    assert outputs["pred_logits"].grad.abs().sum() > 0


def test_num_masks_is_the_batch_total_clamped_to_one():
    _, targets = _case()
    assert _average_num_masks([targets[0], _empty()], torch.device("cpu")) == 2.0
    assert _average_num_masks([_empty(), _empty()], torch.device("cpu")) == 1.0


def _num_masks_worker(out_file: str) -> None:
    rank = dist.get_rank()
    n = 3 if rank == 0 else 0  # 3 masks on rank 0, none on rank 1 -> 1.5 each
    targets = [{"labels": torch.zeros(n, dtype=torch.long), "masks": torch.zeros(n, 4, 4)}]
    value = _average_num_masks(targets, torch.device("cpu"))
    with open(f"{out_file}.{rank}", "w") as f:
        f.write(repr(value))


@pytest.mark.slow
def test_num_masks_is_averaged_across_processes(tmp_path):
    from mask2former.engine.launch import launch  # two gloo processes on CPU

    out = str(tmp_path / "num_masks")
    launch(_num_masks_worker, 2, dist_url="auto", args=(out,))
    assert [float(open(f"{out}.{r}").read()) for r in range(2)] == [1.5, 1.5]


def test_missing_targets_raise_clear_errors():
    outputs, targets = _case()
    crit = _m2f()
    with pytest.raises(ValueError, match="needs targets"):
        crit(outputs, None)
    with pytest.raises(KeyError, match="no 'masks' entry"):
        crit(outputs, [{"labels": torch.tensor([0])}])
    with pytest.raises(ValueError, match="unknown losses"):
        SetCriterion(2, HungarianMatcher(), {}, 0.1, ["boxes"], 4, 3.0, 0.75)


# ---------------------------------------------------------------- config
def test_build_criterion_from_cfg():
    from mask2former.config import get_cfg

    cfg = get_cfg()
    mf = cfg.MODEL.MASK_FORMER
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 7
    mf.DEEP_SUPERVISION, mf.DEC_LAYERS, mf.NO_OBJECT_WEIGHT = True, 4, 0.2
    mf.CLASS_WEIGHT, mf.MASK_WEIGHT, mf.DICE_WEIGHT = 2.0, 5.0, 5.0
    mf.TRAIN_NUM_POINTS, mf.OVERSAMPLE_RATIO, mf.IMPORTANCE_SAMPLE_RATIO = 100, 3.0, 0.75
    crit = build_criterion(cfg)
    assert type(crit) is SetCriterion and isinstance(crit.matcher, HungarianMatcher)
    assert crit.empty_weight.shape == (8,) and crit.empty_weight[-1].item() == pytest.approx(0.2)
    assert len(crit.weight_dict) == 3 * 4  # final + DEC_LAYERS - 1 aux predictions
    assert crit.weight_dict["loss_ce"] == 2.0 and crit.weight_dict["loss_mask_2"] == 5.0
    assert (crit.num_points, crit.oversample_ratio, crit.importance_sample_ratio) == (100, 3.0, 0.75)
    assert crit.matcher.num_points == 100 and crit.matcher.cost_class == 2.0

    mf.CRITERION = "maskformer"
    v1 = build_criterion(cfg)
    assert type(v1) is SetCriterionV1 and type(v1.matcher) is HungarianMatcherV1
    assert v1.weight_dict["loss_ce"] == 1.0 and v1.matcher.cost_class == 1.0

    mf.DEEP_SUPERVISION = False
    assert set(build_criterion(cfg).weight_dict) == {"loss_ce", "loss_mask", "loss_dice"}

    mf.CRITERION = "detr"
    with pytest.raises(ValueError, match="CRITERION = 'detr'"):
        build_criterion(cfg)
