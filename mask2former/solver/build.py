"""Optimizer (parameter groups, gradient clipping) and LR scheduler from a config.

``build_optimizer`` follows the official Mask2Former / MaskFormer ``train_net.py``;
``build_lr_scheduler`` follows DeepLab's (``WarmupPolyLR``) falling back to detectron2's.
"""

from __future__ import annotations

import copy
import itertools
import logging
from enum import Enum
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Type, Union

import torch
from torch import nn

from .lr_scheduler import (
    WarmupCosineLR,
    WarmupMultiStepLR,
    WarmupPolyLR,
    WarmupStepWithFixedGammaLR,
)

__all__ = [
    "NORM_MODULE_TYPES",
    "GradientClipType",
    "get_optimizer_param_groups",
    "create_gradient_clipper",
    "add_gradient_clipping",
    "maybe_add_gradient_clipping",
    "build_optimizer",
    "build_lr_scheduler",
]

logger = logging.getLogger(__name__)

# Parameters of these modules get SOLVER.WEIGHT_DECAY_NORM (the official list; FrozenBatchNorm2d
# holds buffers only, and a channels-first LayerNorm2d is not in it, as in detectron2).
NORM_MODULE_TYPES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)

# Swin position tables: never weight-decayed.
_NO_DECAY_PARAM_NAMES = ("relative_position_bias_table", "absolute_pos_embed")

_Clipper = Callable[[Union[torch.Tensor, Iterable[torch.Tensor]]], Any]


def get_optimizer_param_groups(
    model: nn.Module,
    *,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: float,
    weight_decay_embed: float,
    backbone_multiplier: float,
) -> List[Dict[str, Any]]:
    """One ``{"params": [p], "lr", "weight_decay"}`` group per trainable parameter, in
    ``named_modules`` order, each parameter once (shared ones are not repeated).

    * modules whose name contains ``backbone``: ``lr = base_lr * backbone_multiplier``;
    * ``relative_position_bias_table`` / ``absolute_pos_embed``: weight decay 0;
    * parameters of norm layers (:data:`NORM_MODULE_TYPES`): ``weight_decay_norm``;
    * ``nn.Embedding`` weights (``query_feat``, ``query_embed``, decoder ``level_embed``):
      ``weight_decay_embed``.
    """
    defaults = {"lr": base_lr, "weight_decay": weight_decay}
    params: List[Dict[str, Any]] = []
    memo: Set[nn.Parameter] = set()
    for module_name, module in model.named_modules():
        for param_name, value in module.named_parameters(recurse=False):
            if not value.requires_grad or value in memo:
                continue
            memo.add(value)
            hyperparams = copy.copy(defaults)
            if "backbone" in module_name:
                hyperparams["lr"] = hyperparams["lr"] * backbone_multiplier
            if any(name in param_name for name in _NO_DECAY_PARAM_NAMES):
                hyperparams["weight_decay"] = 0.0
            if isinstance(module, NORM_MODULE_TYPES):
                hyperparams["weight_decay"] = weight_decay_norm
            if isinstance(module, nn.Embedding):
                hyperparams["weight_decay"] = weight_decay_embed
            params.append({"params": [value], **hyperparams})
    return params


class GradientClipType(Enum):
    VALUE = "value"  # clamp each gradient element to [-CLIP_VALUE, CLIP_VALUE]
    NORM = "norm"  # rescale each parameter's gradient to norm <= CLIP_VALUE
    FULL_MODEL = "full_model"  # rescale all gradients together to global norm <= CLIP_VALUE


def create_gradient_clipper(clip_type: str, clip_value: float, norm_type: float = 2.0) -> _Clipper:
    """A function clipping the gradients of the parameter(s) it is given.

    ``full_model`` uses the L2 norm whatever ``norm_type`` is, as the official code does.
    """
    try:
        kind = GradientClipType(clip_type)
    except ValueError:
        raise ValueError(
            f"Unknown SOLVER.CLIP_GRADIENTS.CLIP_TYPE {clip_type!r}: use 'value', 'norm' or 'full_model'"
        ) from None
    if kind == GradientClipType.VALUE:
        return lambda p: torch.nn.utils.clip_grad_value_(p, clip_value)
    if kind == GradientClipType.NORM:
        return lambda p: torch.nn.utils.clip_grad_norm_(p, clip_value, norm_type)
    return lambda p: torch.nn.utils.clip_grad_norm_(p, clip_value)


def add_gradient_clipping(
    optimizer_cls: Type[torch.optim.Optimizer],
    *,
    per_param_clipper: Optional[_Clipper] = None,
    global_clipper: Optional[_Clipper] = None,
) -> Type[torch.optim.Optimizer]:
    """A subclass of ``optimizer_cls`` whose ``step`` first clips the gradients, either of each
    parameter on its own or of all parameters together."""
    if (per_param_clipper is None) == (global_clipper is None):
        raise ValueError("Give exactly one of per_param_clipper and global_clipper")

    def step(self, closure=None):
        if per_param_clipper is not None:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:  # clip_grad_value_ fails on a parameter without grad
                        per_param_clipper(p)
        else:
            global_clipper(itertools.chain(*[g["params"] for g in self.param_groups]))
        return super(new_cls, self).step(closure)

    suffix = "WithGradientClip" if per_param_clipper is not None else "FullModelGradientClip"
    new_cls = type(optimizer_cls.__name__ + suffix, (optimizer_cls,), {"step": step})
    return new_cls


def maybe_add_gradient_clipping(cfg, optimizer):
    """Add the clipping of ``cfg.SOLVER.CLIP_GRADIENTS`` (nothing if disabled) to an optimizer
    class (returns the subclass) or instance (its class is swapped, as detectron2 does).

    ``full_model`` clipping is off when ``CLIP_VALUE <= 0``, as in the official code.
    """
    clip_cfg = cfg.SOLVER.CLIP_GRADIENTS
    if not clip_cfg.ENABLED:
        return optimizer
    is_instance = isinstance(optimizer, torch.optim.Optimizer)
    optimizer_cls = type(optimizer) if is_instance else optimizer
    if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer)):
        raise TypeError(f"Expected a torch optimizer class or instance, got {optimizer!r}")
    clipper = create_gradient_clipper(clip_cfg.CLIP_TYPE, clip_cfg.CLIP_VALUE, clip_cfg.NORM_TYPE)
    if clip_cfg.CLIP_TYPE == GradientClipType.FULL_MODEL.value:
        if clip_cfg.CLIP_VALUE <= 0.0:
            return optimizer
        clipped_cls = add_gradient_clipping(optimizer_cls, global_clipper=clipper)
    else:
        clipped_cls = add_gradient_clipping(optimizer_cls, per_param_clipper=clipper)
    if is_instance:
        optimizer.__class__ = clipped_cls
        return optimizer
    return clipped_cls


def _fused_on_cpu(params: List[Dict[str, Any]]) -> Dict[str, bool]:
    """``{"fused": True}`` when every parameter is a floating-point CPU tensor, else ``{}``.

    torch's CPU default is a Python loop of ~10 small ops per parameter: with the full-model
    clipping, 0.055 s per AdamW step of the 12M-parameter shapes model on 2 cores (12 % of its
    training iteration) and 0.18 s for R50 COCO panoptic; fused, 0.025 s and 0.083 s
    (docs/performance.md). Elsewhere torch's default stays: on CUDA a fused optimizer would take
    over GradScaler's unscaling, which must precede the clipping.
    """
    tensors = [p for group in params for p in group["params"]]
    on_cpu = all(p.device.type == "cpu" and p.is_floating_point() for p in tensors)
    return {"fused": True} if on_cpu else {}


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """``SOLVER.OPTIMIZER`` (SGD with ``MOMENTUM``, or AdamW with torch defaults) over
    :func:`get_optimizer_param_groups`, with ``SOLVER.CLIP_GRADIENTS``; fused kernels for a
    model on the CPU (the same update as torch's default loop, up to float rounding)."""
    solver = cfg.SOLVER
    params = get_optimizer_param_groups(
        model,
        base_lr=solver.BASE_LR,
        weight_decay=solver.WEIGHT_DECAY,
        weight_decay_norm=solver.WEIGHT_DECAY_NORM,
        weight_decay_embed=solver.WEIGHT_DECAY_EMBED,
        backbone_multiplier=solver.BACKBONE_MULTIPLIER,
    )
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters to optimize")
    optimizer_type = solver.OPTIMIZER
    fused = _fused_on_cpu(params)
    if optimizer_type == "SGD":
        return maybe_add_gradient_clipping(cfg, torch.optim.SGD)(
            params, solver.BASE_LR, momentum=solver.MOMENTUM, **fused
        )
    if optimizer_type == "ADAMW":
        return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(params, solver.BASE_LR, **fused)
    raise ValueError(f"Unknown SOLVER.OPTIMIZER {optimizer_type!r}: use 'SGD' or 'ADAMW'")


def build_lr_scheduler(
    cfg, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    """``SOLVER.LR_SCHEDULER_NAME``: WarmupPolyLR, WarmupMultiStepLR, WarmupCosineLR or
    WarmupStepWithFixedGammaLR."""
    solver = cfg.SOLVER
    name = solver.LR_SCHEDULER_NAME
    if name == "WarmupPolyLR":
        return WarmupPolyLR(
            optimizer,
            solver.MAX_ITER,
            warmup_factor=solver.WARMUP_FACTOR,
            warmup_iters=solver.WARMUP_ITERS,
            warmup_method=solver.WARMUP_METHOD,
            power=solver.POLY_LR_POWER,
            constant_ending=solver.POLY_LR_CONSTANT_ENDING,
        )
    warmup = dict(
        warmup_factor=solver.WARMUP_FACTOR,
        warmup_iters=solver.WARMUP_ITERS,
        warmup_method=solver.WARMUP_METHOD,
        rescale_interval=solver.get("RESCALE_INTERVAL", False),
    )
    if name == "WarmupMultiStepLR":
        steps = [x for x in solver.STEPS if x <= solver.MAX_ITER]
        if len(steps) != len(solver.STEPS):
            logger.warning(
                "SOLVER.STEPS contains values larger than SOLVER.MAX_ITER. These values will be ignored."
            )
        return WarmupMultiStepLR(optimizer, solver.MAX_ITER, steps, gamma=solver.GAMMA, **warmup)
    if name == "WarmupCosineLR":
        return WarmupCosineLR(
            optimizer, solver.MAX_ITER, end_value=solver.BASE_LR_END / solver.BASE_LR, **warmup
        )
    if name == "WarmupStepWithFixedGammaLR":
        return WarmupStepWithFixedGammaLR(
            optimizer, solver.MAX_ITER, gamma=solver.GAMMA, num_decays=solver.NUM_DECAYS, **warmup
        )
    raise ValueError(
        f"Unknown SOLVER.LR_SCHEDULER_NAME {name!r}: use 'WarmupPolyLR', 'WarmupMultiStepLR', "
        "'WarmupCosineLR' or 'WarmupStepWithFixedGammaLR'"
    )
