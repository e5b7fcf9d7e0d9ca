"""LR schedules: values at given iterations equal detectron2's closed-form formulas."""

import bisect
import math

import pytest
import torch
from torch import nn

from mask2former.config import get_cfg
from mask2former.solver import (
    LRMultiplier,
    WarmupCosineLR,
    WarmupMultiStepLR,
    WarmupPolyLR,
    build_lr_scheduler,
)

MAX_ITER = 200
BASE_LRS = (0.01, 0.001)  # e.g. head and backbone (BACKBONE_MULTIPLIER 0.1) groups


def _optimizer():
    params = [nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))]
    return torch.optim.SGD(
        [{"params": [params[0]], "lr": BASE_LRS[0]}, {"params": [params[1]], "lr": BASE_LRS[1]}],
        lr=BASE_LRS[0],
        momentum=0.9,
    )


def _cfg(name, **solver):
    cfg = get_cfg()
    cfg.SOLVER.LR_SCHEDULER_NAME = name
    cfg.SOLVER.MAX_ITER = MAX_ITER
    cfg.SOLVER.BASE_LR = BASE_LRS[0]
    for k, v in solver.items():
        cfg.SOLVER[k] = v
    return cfg


def _lrs_over_training(opt, sched, n=MAX_ITER):
    """lr of each group at iterations 0..n-1 (the LR used by the step of that iteration)."""
    out = []
    for _ in range(n):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def _linear_warmup(it, warmup_iters, factor):
    alpha = it / warmup_iters
    return factor * (1 - alpha) + alpha


@pytest.mark.parametrize("constant_ending", [0.0, 0.3])
def test_warmup_poly_lr(constant_ending):
    opt = _optimizer()
    cfg = _cfg(
        "WarmupPolyLR",
        WARMUP_ITERS=20,
        WARMUP_FACTOR=0.1,
        POLY_LR_POWER=0.9,
        POLY_LR_CONSTANT_ENDING=constant_ending,
    )
    sched = build_lr_scheduler(cfg, opt)
    assert isinstance(sched, WarmupPolyLR)
    lrs = _lrs_over_training(opt, sched)
    for it in (0, 1, 10, 19, 20, 21, 100, 150, 199):
        warm = _linear_warmup(it, 20, 0.1) if it < 20 else 1.0
        poly = (1 - it / MAX_ITER) ** 0.9
        factor = warm * poly
        if constant_ending > 0 and it >= 20 and poly < constant_ending:
            factor = constant_ending
        for g, base in enumerate(BASE_LRS):
            assert lrs[it][g] == pytest.approx(base * factor, rel=1e-12, abs=0), (it, g)
    if constant_ending:  # the floor was actually reached
        assert lrs[199][0] == pytest.approx(BASE_LRS[0] * 0.3)


def test_warmup_poly_lr_constant_warmup():
    opt = _optimizer()
    sched = build_lr_scheduler(
        _cfg("WarmupPolyLR", WARMUP_ITERS=10, WARMUP_FACTOR=0.5, WARMUP_METHOD="constant"), opt
    )
    lrs = _lrs_over_training(opt, sched, 12)
    assert lrs[9][0] == pytest.approx(0.01 * 0.5 * (1 - 9 / MAX_ITER) ** 0.9)
    assert lrs[10][0] == pytest.approx(0.01 * (1 - 10 / MAX_ITER) ** 0.9)


def test_warmup_multistep_lr():
    opt = _optimizer()
    cfg = _cfg(
        "WarmupMultiStepLR", STEPS=(60, 150, 1000), GAMMA=0.1, WARMUP_ITERS=20, WARMUP_FACTOR=0.001
    )
    sched = build_lr_scheduler(cfg, opt)  # the step 1000 > MAX_ITER is dropped
    assert isinstance(sched, WarmupMultiStepLR) and isinstance(sched, LRMultiplier)
    lrs = _lrs_over_training(opt, sched)
    for it in (0, 1, 5, 19, 20, 59, 60, 61, 149, 150, 199):
        warm = _linear_warmup(it, 20, 0.001) if it < 20 else 1.0
        factor = warm * 0.1 ** bisect.bisect_right([60, 150], it)
        for g, base in enumerate(BASE_LRS):
            assert lrs[it][g] == pytest.approx(base * factor, rel=1e-12), (it, g)
    assert lrs[0][0] == pytest.approx(1e-5) and lrs[199][0] == pytest.approx(1e-4)


def test_warmup_cosine_lr():
    opt = _optimizer()
    cfg = _cfg("WarmupCosineLR", BASE_LR_END=0.001, WARMUP_ITERS=20, WARMUP_FACTOR=0.01)
    sched = build_lr_scheduler(cfg, opt)
    assert isinstance(sched, WarmupCosineLR)
    lrs = _lrs_over_training(opt, sched)
    end = 0.001 / 0.01

    def cosine(where):
        return end + 0.5 * (1 - end) * (1 + math.cos(math.pi * where))

    for it in (0, 7, 19, 20, 100, 199):
        if it < 20:  # linear from factor * cosine(0) to cosine(warmup end)
            alpha = it / 20
            factor = 0.01 * cosine(0) * (1 - alpha) + cosine(20 / MAX_ITER) * alpha
        else:
            factor = cosine(it / MAX_ITER)
        for g, base in enumerate(BASE_LRS):
            assert lrs[it][g] == pytest.approx(base * factor, rel=1e-12), (it, g)


def test_constant_warmup_multistep():
    opt = _optimizer()
    sched = build_lr_scheduler(
        _cfg(
            "WarmupMultiStepLR",
            STEPS=(100,),
            WARMUP_ITERS=10,
            WARMUP_FACTOR=0.25,
            WARMUP_METHOD="constant",
        ),
        opt,
    )
    lrs = _lrs_over_training(opt, sched, 101)
    assert [lrs[i][0] for i in (0, 9, 10, 99, 100)] == pytest.approx(
        [0.0025, 0.0025, 0.01, 0.01, 0.001]
    )


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="WarmupFooLR"):
        build_lr_scheduler(_cfg("WarmupFooLR"), _optimizer())
    with pytest.raises(ValueError, match="exponential"):
        build_lr_scheduler(_cfg("WarmupPolyLR", WARMUP_METHOD="exponential"), _optimizer())
    with pytest.raises(ValueError, match="exponential"):
        build_lr_scheduler(_cfg("WarmupMultiStepLR", WARMUP_METHOD="exponential"), _optimizer())


@pytest.mark.parametrize(
    "name,extra",
    [
        ("WarmupPolyLR", {"POLY_LR_POWER": 0.9}),
        ("WarmupMultiStepLR", {"STEPS": (50, 120)}),
        ("WarmupCosineLR", {}),
    ],
)
def test_state_dict_round_trip_resumes_exactly(name, extra):
    cfg = _cfg(name, WARMUP_ITERS=10, **extra)
    opt = _optimizer()
    sched = build_lr_scheduler(cfg, opt)
    _lrs_over_training(opt, sched, 73)
    saved_opt, saved_sched = opt.state_dict(), sched.state_dict()
    continued = _lrs_over_training(opt, sched, 60)

    opt2 = _optimizer()
    sched2 = build_lr_scheduler(cfg, opt2)  # built fresh, as when resuming from a checkpoint
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    assert sched2.last_epoch == 73
    resumed = _lrs_over_training(opt2, sched2, 60)
    assert resumed == continued  # bit-identical


def test_lr_multiplier_state_dict_is_minimal():
    opt = _optimizer()
    sched = build_lr_scheduler(_cfg("WarmupMultiStepLR"), opt)
    assert set(sched.state_dict()) == {"base_lrs", "last_epoch"}
    assert sched.state_dict()["base_lrs"] == list(BASE_LRS)
