"""TEST.PRECISE_BN: the PreciseBN hook recomputes BatchNorm statistics exactly."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mask2former.engine import hooks
from mask2former.engine.default_trainer import DefaultTrainer
from mask2former.layers import FrozenBatchNorm2d


def _batches(n: int = 5, batch: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, generator=g) * 2.0 + torch.tensor([1.0, -3.0, 0.5]) for _ in range(n)]


def _hook(model, batches, period, num_iter, iteration, max_iter, calls):
    def factory():
        calls.append(1)
        return iter(batches)

    hook = hooks.PreciseBN(period, model, factory, num_iter)
    hook.trainer = SimpleNamespace(iter=iteration, max_iter=max_iter)
    return hook


def test_running_stats_become_the_exact_average_over_num_iter_batches():
    model = nn.Sequential(nn.BatchNorm1d(3)).train()
    batches, calls = _batches(), []
    hook = _hook(model, batches, period=10, num_iter=4, iteration=9, max_iter=100, calls=calls)
    hook.after_step()  # iteration 10 of a period of 10
    used = torch.cat(batches[:4])  # (16, 3): equal batch sizes, so the mean of means is the mean
    torch.testing.assert_close(model[0].running_mean, used.mean(0))
    torch.testing.assert_close(model[0].running_var, used.var(0, unbiased=False))  # population variance
    assert calls == [1] and model.training  # loader built once; the model stays in training mode


def test_runs_every_period_and_after_the_last_iteration_only():
    model = nn.Sequential(nn.BatchNorm1d(3)).train()
    for iteration, max_iter, expected in [(4, 100, False), (9, 100, True), (99, 100, True), (98, 100, False)]:
        calls = []
        before = model[0].running_mean.clone()
        _hook(model, _batches(seed=iteration), period=10, num_iter=2, iteration=iteration,
              max_iter=max_iter, calls=calls).after_step()
        assert bool(calls) == expected
        assert (not torch.equal(before, model[0].running_mean)) == expected


def test_idle_without_training_mode_batchnorm(caplog):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), FrozenBatchNorm2d(4), nn.GroupNorm(2, 4))
    calls = []
    with caplog.at_level(logging.INFO, logger="mask2former.engine.hooks"):
        hook = _hook(model, _batches(), period=1, num_iter=2, iteration=0, max_iter=1, calls=calls)
    hook.after_step()
    assert calls == [] and "no BatchNorm" in caplog.text
    with pytest.raises(ValueError, match="NUM_ITER"):
        hooks.PreciseBN(1, model, list, 0)


def test_default_trainer_registers_it_when_enabled(tiny_cfg):
    on = DefaultTrainer(tiny_cfg("TEST.PRECISE_BN.ENABLED", True, "TEST.PRECISE_BN.NUM_ITER", 3))
    found = [h for h in on._hooks if isinstance(h, hooks.PreciseBN)]
    assert len(found) == 1 and found[0]._num_iter == 3
    off = DefaultTrainer(tiny_cfg())
    assert not any(isinstance(h, hooks.PreciseBN) for h in off._hooks)
