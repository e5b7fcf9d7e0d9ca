"""Opt-in execution options of a built model: reduced-precision inference and ``torch.compile``.

:func:`apply_execution_options` is called by ``build_model`` with the config, so that
``DefaultPredictor``, evaluation, training and the tools all get the same model:

* ``MODEL.PRECISION`` (``"float32"`` default, ``"bfloat16"``, ``"float16"``): inference under
  ``torch.autocast`` of that dtype (CPU bf16 pays only where ``cpu_has_fast_bfloat16``: with AMX
  tiles, or AVX512-BF16 measured fast, e.g. AMD Zen 4; elsewhere it runs slower than float32,
  and building such a model warns). Only the segmentation head runs in
  reduced precision (the backbone stays float32: under CPU autocast its convolutions were
  slower), including the deformable-attention encoder layers and convolutions of the
  ``MSDeformAttnPixelDecoder``, which keeps float16 autocast off for itself (the official guard).
  Every region hands float32 back, so the residual stream between encoder layers, the head's
  outputs and all post-processing stay in float32. Training is unaffected
  (``SOLVER.AMP`` is the training switch).
* ``MODEL.CHANNELS_LAST`` (default True): in CPU inference the backbone reads its input in
  channels-last (NHWC) memory layout, which oneDNN convolutions on CPU use natively (otherwise
  every convolution reorders its input and output), and hands its output maps on in that layout,
  so the pixel decoder's convolutions (lateral, output, mask-feature and input projections) run
  in it too and the deformable encoder's token flattening is a free view. Same arithmetic, a
  different summation order (differences ~1e-6 relative; ``layers.GroupNorm`` keeps PyTorch's
  channels-last group norm accurate). False keeps PyTorch's default NCHW layout.
* ``MODEL.CHANNELS_LAST_TRAINING`` (default False): the same in CPU training. It pays for small
  models (the shapes recipe's ResNet-18: an iteration 1.08x faster); for ResNet-50 at 512x512
  the backbone's forward gained what its backward lost, and peak RSS grew ~4 %.
* ``MODEL.COMPILE``: ``torch.compile`` of the backbone and of the segmentation head, in place
  (``nn.Module.compile``, so state_dict keys and checkpoints are unchanged), for training and
  inference, with the backend ``MODEL.COMPILE_BACKEND`` (``"inductor"``: generated C++ /
  Triton kernels; ``"aot_eager"``: graph capture without code generation, for checking).
  Pre- and post-processing stay eager (Python lists, data-dependent shapes).

Precision regions are forward pre-hooks entering an autocast context and forward hooks (always
called, also on an exception) leaving it: no module is replaced or re-parented.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, List

import torch
from torch import nn

from ..utils.env import cpu_has_fast_bfloat16, module_device_type

logger = logging.getLogger(__name__)

__all__ = ["PRECISIONS", "apply_execution_options", "autocast_inference", "channels_last_backbone",
           "compile_network"]

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _to_float32(value: Any) -> Any:
    """Reduced-precision floating tensors in (nested) tuples / lists / dicts -> float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, dict):
        return type(value)((k, _to_float32(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_to_float32(v) for v in value)
    if hasattr(value, "_fields"):  # namedtuple (e.g. PixelDecoderOutput)
        return type(value)(*(_to_float32(v) for v in value))
    return value


class _AutocastRegion:
    """Hooks that run one module's forward under autocast of ``dtype`` in eval mode."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype
        self._local = threading.local()  # autocast state is per thread, so is this stack

    def __getstate__(self) -> dict:  # deepcopy / pickle of a model: a fresh per-thread stack
        return {"dtype": self.dtype}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["dtype"])

    def _stack(self) -> List[Any]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def enter(self, module: nn.Module, args: Any) -> None:
        context = None
        if not module.training:
            context = torch.autocast(device_type=module_device_type(module), dtype=self.dtype)
            context.__enter__()
        self._stack().append(context)

    def exit(self, module: nn.Module, args: Any, output: Any) -> Any:
        context = self._stack().pop()
        if context is None:
            return None
        context.__exit__(None, None, None)
        return _to_float32(output)

    def attach(self, module: nn.Module) -> None:
        module.register_forward_pre_hook(self.enter)
        module.register_forward_hook(self.exit, always_call=True)


def _precision_regions(model: nn.Module) -> List[nn.Module]:
    """The modules whose forward runs under autocast (see the module docstring)."""
    # not the backbone: under CPU autocast its convolutions got slower (casts and NCHW reorders
    # of every activation; docs/performance.md)
    head = getattr(model, "sem_seg_head", None)
    if head is None:
        raise ValueError(f"MODEL.PRECISION: {type(model).__name__} has no sem_seg_head to run in "
                         "reduced precision")
    regions = [head]
    for module in model.modules():
        # a part that turns autocast off inside (the MSDeformAttn pixel decoder) names the
        # sub-modules to re-enable it for
        autocast_regions = getattr(module, "autocast_regions", None)
        if callable(autocast_regions):
            regions.extend(autocast_regions())
    return regions


def autocast_inference(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Make ``model`` (a meta-architecture) run its network under autocast of ``dtype`` whenever
    it is in eval mode; returns the same object."""
    region = _AutocastRegion(dtype)
    for module in _precision_regions(model):
        region.attach(module)
    model.inference_precision = dtype
    return model


class _ChannelsLastInput:
    """Forward pre-hook: a 4-D CPU input -> channels-last, in the modes it is enabled for."""

    def __init__(self, inference: bool, training: bool):
        self.for_inference, self.for_training = inference, training

    def __call__(self, module: nn.Module, args: Any) -> Any:
        if not (self.for_training if module.training else self.for_inference):
            return None
        x = args[0] if args else None
        if isinstance(x, torch.Tensor) and x.dim() == 4 and x.device.type == "cpu":
            return (x.contiguous(memory_format=torch.channels_last),) + tuple(args[1:])
        return None


def channels_last_backbone(model: nn.Module, *, inference: bool = True, training: bool = False) -> nn.Module:
    """The backbone computes in channels-last layout on CPU and returns its maps in it, in
    inference and / or in training."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ValueError(f"MODEL.CHANNELS_LAST: {type(model).__name__} has no backbone")
    backbone.register_forward_pre_hook(_ChannelsLastInput(inference, training))
    return model


def compile_network(model: nn.Module, **compile_kwargs: Any) -> nn.Module:
    """``torch.compile`` the backbone and the segmentation head in place; returns ``model``."""
    parts = [m for m in (getattr(model, "backbone", None), getattr(model, "sem_seg_head", None))
             if m is not None]
    if not parts:
        raise ValueError(f"MODEL.COMPILE: {type(model).__name__} has neither a backbone nor a sem_seg_head")
    for part in parts:
        part.compile(**compile_kwargs)
    return model


def apply_execution_options(model: nn.Module, cfg) -> nn.Module:
    """Apply ``MODEL.CHANNELS_LAST[_TRAINING]``, ``MODEL.PRECISION`` and ``MODEL.COMPILE`` to a freshly
    built model."""
    precision = str(cfg.MODEL.PRECISION).lower()
    if precision not in PRECISIONS:
        raise ValueError(f"cfg.MODEL.PRECISION = {cfg.MODEL.PRECISION!r} is not one of {sorted(PRECISIONS)}")
    if cfg.MODEL.CHANNELS_LAST or cfg.MODEL.CHANNELS_LAST_TRAINING:
        channels_last_backbone(model, inference=cfg.MODEL.CHANNELS_LAST, training=cfg.MODEL.CHANNELS_LAST_TRAINING)
    if PRECISIONS[precision] != torch.float32:
        on_cpu = module_device_type(model) == "cpu"
        if on_cpu and PRECISIONS[precision] == torch.bfloat16 and not cpu_has_fast_bfloat16():
            logger.warning("MODEL.PRECISION bfloat16: bfloat16 matmuls are not faster than float32 on "
                           "this CPU (mask2former.utils.env.cpu_has_fast_bfloat16); float32 is the faster "
                           "choice here (R50 COCO panoptic inference measured 1.33x slower on such a CPU, "
                           "docs/performance.md).")
        autocast_inference(model, PRECISIONS[precision])
    if cfg.MODEL.COMPILE:
        compile_network(model, backend=cfg.MODEL.COMPILE_BACKEND)
    return model
