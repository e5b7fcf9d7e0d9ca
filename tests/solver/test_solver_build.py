"""build_optimizer: parameter groups (lr / weight decay) and gradient clipping."""

import copy

import pytest
import torch
from torch import nn

from mask2former.config import get_cfg
from mask2former.layers import FrozenBatchNorm2d
from mask2former.solver import (
    build_optimizer,
    get_optimizer_param_groups,
    maybe_add_gradient_clipping,
)

BASE_LR, WD, WD_NORM, WD_EMBED, BB_MULT = 0.1, 0.05, 0.01, 0.02, 0.25


class _SwinLikeBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.relative_position_bias_table = nn.Parameter(torch.zeros(5, 2))
        self.proj = nn.Linear(4, 4)


class _Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.absolute_pos_embed = nn.Parameter(torch.zeros(1, 4, 2, 2))
        self.stem = nn.Conv2d(3, 4, 1)
        self.stem_norm = nn.BatchNorm2d(4)
        self.frozen = FrozenBatchNorm2d(4)  # buffers only: nothing to optimize
        self.block = _SwinLikeBlock()
        self.frozen_conv = nn.Conv2d(4, 4, 1)
        self.frozen_conv.requires_grad_(False)


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.gn = nn.GroupNorm(2, 4)
        self.ln = nn.LayerNorm(4)
        self.query_embed = nn.Embedding(3, 4)
        self.query_feat = nn.Embedding(3, 4)
        self.level_embed = nn.Parameter(torch.zeros(3, 4))  # a plain Parameter: default decay


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = _Backbone()
        self.sem_seg_head = _Head()
        self.shared = self.sem_seg_head.linear  # the same parameters under a second name


def _cfg(**solver):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = BASE_LR
    cfg.SOLVER.WEIGHT_DECAY = WD
    cfg.SOLVER.WEIGHT_DECAY_NORM = WD_NORM
    cfg.SOLVER.WEIGHT_DECAY_EMBED = WD_EMBED
    cfg.SOLVER.BACKBONE_MULTIPLIER = BB_MULT
    for k, v in solver.items():
        node, key = cfg.SOLVER, k
        if "." in k:
            sub, key = k.split(".")
            node = cfg.SOLVER[sub]
        node[key] = v
    return cfg


def _hyperparams_by_name(model, groups):
    names = {p: n for n, p in model.named_parameters()}
    out = {}
    for g in groups:
        assert len(g["params"]) == 1
        out[names[g["params"][0]]] = (g["lr"], g["weight_decay"])
    return out


def test_param_groups_lr_and_weight_decay():
    model = _Tiny()
    groups = get_optimizer_param_groups(
        model,
        base_lr=BASE_LR,
        weight_decay=WD,
        weight_decay_norm=WD_NORM,
        weight_decay_embed=WD_EMBED,
        backbone_multiplier=BB_MULT,
    )
    got = _hyperparams_by_name(model, groups)
    bb_lr = BASE_LR * BB_MULT
    expected = {
        "backbone.absolute_pos_embed": (bb_lr, 0.0),
        "backbone.stem.weight": (bb_lr, WD),
        "backbone.stem.bias": (bb_lr, WD),
        "backbone.stem_norm.weight": (bb_lr, WD_NORM),
        "backbone.stem_norm.bias": (bb_lr, WD_NORM),
        "backbone.block.relative_position_bias_table": (bb_lr, 0.0),
        "backbone.block.proj.weight": (bb_lr, WD),
        "backbone.block.proj.bias": (bb_lr, WD),
        "sem_seg_head.level_embed": (BASE_LR, WD),
        "sem_seg_head.linear.weight": (BASE_LR, WD),
        "sem_seg_head.linear.bias": (BASE_LR, WD),
        "sem_seg_head.gn.weight": (BASE_LR, WD_NORM),
        "sem_seg_head.gn.bias": (BASE_LR, WD_NORM),
        "sem_seg_head.ln.weight": (BASE_LR, WD_NORM),
        "sem_seg_head.ln.bias": (BASE_LR, WD_NORM),
        "sem_seg_head.query_embed.weight": (BASE_LR, WD_EMBED),
        "sem_seg_head.query_feat.weight": (BASE_LR, WD_EMBED),
    }
    assert got == expected
    # frozen params excluded, shared params once, FrozenBN contributes nothing
    n_trainable = len({id(p) for p in model.parameters() if p.requires_grad})
    assert len(groups) == n_trainable == len(expected)


def test_param_group_order_follows_named_modules():
    model = _Tiny()
    groups = get_optimizer_param_groups(
        model,
        base_lr=1.0,
        weight_decay=0.0,
        weight_decay_norm=0.0,
        weight_decay_embed=0.0,
        backbone_multiplier=1.0,
    )
    order = [p for m in model.modules() for p in m.parameters(recurse=False) if p.requires_grad]
    assert [g["params"][0] for g in groups] == order


@pytest.mark.parametrize("name,cls", [("SGD", torch.optim.SGD), ("ADAMW", torch.optim.AdamW)])
def test_build_optimizer_types(name, cls):
    model = _Tiny()
    opt = build_optimizer(_cfg(OPTIMIZER=name, MOMENTUM=0.8), model)
    assert type(opt) is cls  # clipping disabled by default: the plain class
    assert opt.defaults["lr"] == BASE_LR
    if name == "SGD":
        assert opt.defaults["momentum"] == 0.8 and opt.defaults["nesterov"] is False
    else:
        assert opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["eps"] == 1e-8
    assert {g["weight_decay"] for g in opt.param_groups} == {WD, WD_NORM, WD_EMBED, 0.0}


def test_unknown_optimizer_raises():
    with pytest.raises(ValueError, match="RMSPROP"):
        build_optimizer(_cfg(OPTIMIZER="RMSPROP"), _Tiny())


def _fill_grads(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn(p.shape, generator=g) * 3.0


def _sgd_cfg(**clip):
    kw = {f"CLIP_GRADIENTS.{k}": v for k, v in clip.items()}
    return _cfg(
        OPTIMIZER="SGD",
        MOMENTUM=0.0,
        WEIGHT_DECAY=0.0,
        WEIGHT_DECAY_NORM=0.0,
        WEIGHT_DECAY_EMBED=0.0,
        BACKBONE_MULTIPLIER=1.0,
        BASE_LR=1.0,
        **kw,
    )


def test_full_model_clipping_equals_clip_grad_norm_on_all_params():
    model = _Tiny()
    reference = copy.deepcopy(model)
    _fill_grads(model)
    _fill_grads(reference)
    opt = build_optimizer(_sgd_cfg(ENABLED=True, CLIP_TYPE="full_model", CLIP_VALUE=0.01), model)
    assert isinstance(opt, torch.optim.SGD)
    opt.step()

    ref_params = [p for p in reference.parameters() if p.requires_grad]
    total_norm = torch.nn.utils.clip_grad_norm_(ref_params, 0.01)
    assert total_norm > 0.01  # the clip really happened
    with torch.no_grad():
        for p in ref_params:
            p -= 1.0 * p.grad
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7, msg=name)
    global_norm = torch.norm(
        torch.stack([p.grad.norm() for p in model.parameters() if p.requires_grad])
    )
    assert global_norm == pytest.approx(0.01, rel=1e-4)


def test_full_model_clipping_off_when_clip_value_not_positive():
    opt = build_optimizer(_sgd_cfg(ENABLED=True, CLIP_TYPE="full_model", CLIP_VALUE=0.0), _Tiny())
    assert type(opt) is torch.optim.SGD


def test_per_param_norm_clipping():
    model = _Tiny()
    _fill_grads(model)
    opt = build_optimizer(
        _sgd_cfg(ENABLED=True, CLIP_TYPE="norm", CLIP_VALUE=0.5, NORM_TYPE=2.0), model
    )
    before = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    opt.step()
    for n, p in model.named_parameters():
        if n in before:
            norm = before[n].norm()
            expected = before[n] * min(1.0, 0.5 / (norm.item() + 1e-6))
            torch.testing.assert_close(p.grad, expected, msg=n)
            assert p.grad.norm() <= 0.5 + 1e-6


def test_per_param_value_clipping():
    model = _Tiny()
    _fill_grads(model)
    opt = build_optimizer(_sgd_cfg(ENABLED=True, CLIP_TYPE="value", CLIP_VALUE=0.3), model)
    before = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    opt.step()
    for n, p in model.named_parameters():
        if n in before:
            torch.testing.assert_close(p.grad, before[n].clamp(-0.3, 0.3))


def test_clipping_added_to_an_optimizer_instance():
    model = _Tiny()
    _fill_grads(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    assert (
        maybe_add_gradient_clipping(_sgd_cfg(ENABLED=True, CLIP_TYPE="value", CLIP_VALUE=0.1), opt)
        is opt
    )
    assert isinstance(opt, torch.optim.SGD) and type(opt) is not torch.optim.SGD
    opt.step()
    assert max(
        p.grad.abs().max().item() for p in model.parameters() if p.requires_grad
    ) == pytest.approx(0.1)


def test_unknown_clip_type_raises():
    cfg = _sgd_cfg(ENABLED=True, CLIP_TYPE="bogus")
    with pytest.raises(ValueError, match="bogus"):
        maybe_add_gradient_clipping(cfg, torch.optim.SGD)


def test_clipping_optimizer_state_dict_round_trip():
    model = _Tiny()
    _fill_grads(model)
    cfg = _cfg(
        OPTIMIZER="ADAMW",
        **{
            "CLIP_GRADIENTS.ENABLED": True,
            "CLIP_GRADIENTS.CLIP_TYPE": "full_model",
            "CLIP_GRADIENTS.CLIP_VALUE": 0.01,
        },
    )
    opt = build_optimizer(cfg, model)
    opt.step()
    opt2 = build_optimizer(cfg, copy.deepcopy(model))
    opt2.load_state_dict(opt.state_dict())
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for k in s1["state"]:
        torch.testing.assert_close(s1["state"][k]["exp_avg"], s2["state"][k]["exp_avg"])


@pytest.mark.parametrize("name", ["SGD", "ADAMW"])
def test_cpu_optimizer_is_fused_and_matches_the_loop_implementation(name):
    """On the CPU build_optimizer picks the fused kernels; five clipped steps with changing
    gradients land where torch's default per-parameter loop lands (float32 rounding)."""
    cfg = _cfg(
        OPTIMIZER=name,
        MOMENTUM=0.9,
        **{
            "CLIP_GRADIENTS.ENABLED": True,
            "CLIP_GRADIENTS.CLIP_TYPE": "full_model",
            "CLIP_GRADIENTS.CLIP_VALUE": 1.0,
        },
    )
    model = _Tiny()
    reference = copy.deepcopy(model)
    initial = copy.deepcopy(model)
    opt = build_optimizer(cfg, model)
    assert all(g["fused"] for g in opt.param_groups)
    groups = get_optimizer_param_groups(
        reference, base_lr=BASE_LR, weight_decay=WD, weight_decay_norm=WD_NORM,
        weight_decay_embed=WD_EMBED, backbone_multiplier=BB_MULT,
    )
    if name == "SGD":
        ref_opt = torch.optim.SGD(groups, BASE_LR, momentum=0.9, foreach=False)
    else:
        ref_opt = torch.optim.AdamW(groups, BASE_LR, foreach=False)
    ref_params = [p for p in reference.parameters() if p.requires_grad]
    for step in range(5):
        _fill_grads(model, seed=step)
        _fill_grads(reference, seed=step)
        opt.step()
        torch.nn.utils.clip_grad_norm_(ref_params, 1.0)
        ref_opt.step()
    for (n, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=n)
    moved = max((p - p0).abs().max().item() for p, p0 in zip(model.parameters(), initial.parameters()))
    assert moved > 0.1  # the steps really updated the weights (lr 0.1)
