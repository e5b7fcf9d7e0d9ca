"""Optimizer with parameter groups and gradient clipping, and warmup LR schedules."""

from .build import (
    NORM_MODULE_TYPES,
    GradientClipType,
    build_lr_scheduler,
    build_optimizer,
    get_optimizer_param_groups,
    maybe_add_gradient_clipping,
)
from .lr_scheduler import (
    LRMultiplier,
    WarmupCosineLR,
    WarmupMultiStepLR,
    WarmupParamScheduler,
    WarmupPolyLR,
    WarmupStepWithFixedGammaLR,
)

__all__ = [
    "NORM_MODULE_TYPES",
    "GradientClipType",
    "LRMultiplier",
    "WarmupCosineLR",
    "WarmupMultiStepLR",
    "WarmupParamScheduler",
    "WarmupPolyLR",
    "WarmupStepWithFixedGammaLR",
    "build_lr_scheduler",
    "build_optimizer",
    "get_optimizer_param_groups",
    "maybe_add_gradient_clipping",
]
