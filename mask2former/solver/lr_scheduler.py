"""Iteration-based LR schedules with warmup, with detectron2's exact formulas.

``last_epoch`` counts iterations. ``WarmupMultiStepLR`` / ``WarmupCosineLR`` are
:class:`LRMultiplier` s over fvcore ``ParamScheduler`` s, exactly what detectron2's
``build_lr_scheduler`` builds; ``WarmupPolyLR`` is the DeepLab schedule Mask2Former uses on
ADE20K / Cityscapes / Mapillary Vistas.
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence

import torch
from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    CosineParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    ParamScheduler,
    StepWithFixedGammaParamScheduler,
)
from torch.optim.lr_scheduler import LRScheduler

__all__ = [
    "WarmupParamScheduler",
    "LRMultiplier",
    "WarmupMultiStepLR",
    "WarmupCosineLR",
    "WarmupStepWithFixedGammaLR",
    "WarmupPolyLR",
    "get_warmup_factor_at_iter",
]


class WarmupParamScheduler(CompositeParamScheduler):
    """Prepends a warmup phase of relative length ``warmup_length`` to ``scheduler``.

    The warmup starts at ``warmup_factor * scheduler(0)`` and is either constant or linear up to
    ``scheduler(warmup_length)``. After it, ``scheduler`` continues on the global progress
    (``rescale_interval=False``) or on its own progress restarted at 0 (``True``).
    """

    def __init__(
        self,
        scheduler: ParamScheduler,
        warmup_factor: float,
        warmup_length: float,
        warmup_method: str = "linear",
        rescale_interval: bool = False,
    ):
        end_value = scheduler(warmup_length)  # the value to reach when warmup ends
        start_value = warmup_factor * scheduler(0.0)
        if warmup_method == "constant":
            warmup = ConstantParamScheduler(start_value)
        elif warmup_method == "linear":
            warmup = LinearParamScheduler(start_value, end_value)
        else:
            raise ValueError(f"Unknown warmup method {warmup_method!r}: use 'linear' or 'constant'")
        super().__init__(
            [warmup, scheduler],
            interval_scaling=["rescaled", "rescaled" if rescale_interval else "fixed"],
            lengths=[warmup_length, 1 - warmup_length],
        )


class LRMultiplier(LRScheduler):
    """Sets every group's LR to its initial LR times ``multiplier(iteration / max_iter)``.

    The state dict holds only ``base_lrs`` and ``last_epoch`` (the multiplier is stateless), the
    same as detectron2's, so checkpoints resume at the exact iteration.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        multiplier: ParamScheduler,
        max_iter: int,
        last_iter: int = -1,
    ):
        if not isinstance(multiplier, ParamScheduler):
            raise ValueError(
                f"LRMultiplier(multiplier=) must be an fvcore ParamScheduler, got {type(multiplier).__name__}"
            )
        if max_iter <= 0:
            raise ValueError(f"LRMultiplier: max_iter must be positive, got {max_iter}")
        self._multiplier = multiplier
        self._max_iter = max_iter
        super().__init__(optimizer, last_epoch=last_iter)

    def state_dict(self) -> Dict[str, object]:
        return {"base_lrs": self.base_lrs, "last_epoch": self.last_epoch}

    def get_lr(self) -> List[float]:
        multiplier = self._multiplier(self.last_epoch / self._max_iter)
        return [base_lr * multiplier for base_lr in self.base_lrs]


class WarmupMultiStepLR(LRMultiplier):
    """LR x ``gamma ** k`` after the k-th milestone, after a warmup of ``warmup_iters``."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iter: int,
        milestones: Sequence[int],
        gamma: float = 0.1,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        rescale_interval: bool = False,
        last_iter: int = -1,
    ):
        milestones = list(milestones)
        if milestones != sorted(milestones):
            raise ValueError(f"Milestones must be increasing integers, got {milestones}")
        if any(m > max_iter for m in milestones):
            raise ValueError(f"Milestones {milestones} must not exceed max_iter={max_iter}")
        sched = MultiStepParamScheduler(
            values=[gamma**k for k in range(len(milestones) + 1)],
            milestones=milestones,
            num_updates=max_iter,
        )
        super().__init__(
            optimizer,
            _with_warmup(
                sched, warmup_factor, warmup_iters, max_iter, warmup_method, rescale_interval
            ),
            max_iter,
            last_iter,
        )


class WarmupCosineLR(LRMultiplier):
    """Half-cosine from 1 to ``end_value`` (relative to each base LR), after a warmup."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iter: int,
        end_value: float = 0.0,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        rescale_interval: bool = False,
        last_iter: int = -1,
    ):
        if not 0.0 <= end_value <= 1.0:
            raise ValueError(
                f"WarmupCosineLR: end_value (BASE_LR_END / BASE_LR) must be in [0, 1], got {end_value}"
            )
        sched = CosineParamScheduler(1, end_value)
        super().__init__(
            optimizer,
            _with_warmup(
                sched, warmup_factor, warmup_iters, max_iter, warmup_method, rescale_interval
            ),
            max_iter,
            last_iter,
        )


class WarmupStepWithFixedGammaLR(LRMultiplier):
    """LR x ``gamma ** k`` over ``num_decays`` equal steps of training, after a warmup."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iter: int,
        gamma: float = 0.1,
        num_decays: int = 3,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        rescale_interval: bool = False,
        last_iter: int = -1,
    ):
        sched = StepWithFixedGammaParamScheduler(
            base_value=1.0, gamma=gamma, num_decays=num_decays, num_updates=max_iter
        )
        super().__init__(
            optimizer,
            _with_warmup(
                sched, warmup_factor, warmup_iters, max_iter, warmup_method, rescale_interval
            ),
            max_iter,
            last_iter,
        )


def _with_warmup(sched, warmup_factor, warmup_iters, max_iter, warmup_method, rescale_interval):
    return WarmupParamScheduler(
        sched, warmup_factor, min(warmup_iters / max_iter, 1.0), warmup_method, rescale_interval
    )


def get_warmup_factor_at_iter(
    method: str, iter: int, warmup_iters: int, warmup_factor: float
) -> float:
    """LR factor at ``iter`` of a warmup: ``warmup_factor`` (constant) or linear from it to 1."""
    if iter >= warmup_iters:
        return 1.0
    if method == "constant":
        return warmup_factor
    if method == "linear":
        alpha = iter / warmup_iters
        return warmup_factor * (1 - alpha) + alpha
    raise ValueError(f"Unknown warmup method {method!r}: use 'linear' or 'constant'")


class WarmupPolyLR(LRScheduler):
    """``base_lr * warmup * (1 - iter / max_iters) ** power`` (DeepLab's poly schedule).

    With ``constant_ending > 0``, once warmup is over the LR never drops below
    ``base_lr * constant_ending``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iters: int,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
        power: float = 0.9,
        constant_ending: float = 0.0,
    ):
        if max_iters <= 0:
            raise ValueError(f"WarmupPolyLR: max_iters must be positive, got {max_iters}")
        if warmup_method not in ("linear", "constant"):
            raise ValueError(f"Unknown warmup method {warmup_method!r}: use 'linear' or 'constant'")
        self.max_iters = max_iters
        self.warmup_factor = warmup_factor
        self.warmup_iters = warmup_iters
        self.warmup_method = warmup_method
        self.power = power
        self.constant_ending = constant_ending
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        warmup_factor = get_warmup_factor_at_iter(
            self.warmup_method, self.last_epoch, self.warmup_iters, self.warmup_factor
        )
        poly = math.pow(1.0 - self.last_epoch / self.max_iters, self.power)
        if self.constant_ending > 0 and warmup_factor == 1.0 and poly < self.constant_ending:
            return [base_lr * self.constant_ending for base_lr in self.base_lrs]
        return [base_lr * warmup_factor * poly for base_lr in self.base_lrs]
