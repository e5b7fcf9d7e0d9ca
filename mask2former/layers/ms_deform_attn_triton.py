"""The ``triton`` backend of multi-scale deformable attention: forward and backward Triton kernels.

One program handles a tile of BLOCK_Q queries of one (batch n, head m) and all D channels of the
head (a (BLOCK_Q, BLOCK_D) register tile, D padded to a power of two). For every level and point
it gathers the four bilinear taps as BLOCK_Q rows of D contiguous channels (value is (N, S, M, D)),
so each row is one coalesced read. Backward reuses the same tiling: grad_value by atomic adds
into an fp32 (fp64 for double) buffer, grad of locations / weights by row sums over channels.

Math is that of the CUDA kernels and of the ``pytorch`` path: pixel coordinate = loc * size - 0.5
(``grid_sample(align_corners=False)``), taps outside the level read zero, accumulation in fp32.

Availability: needs ``triton`` and a CUDA device. With ``TRITON_INTERPRET=1`` (set before Triton
is first imported) the kernels also run on CPU tensors through Triton's interpreter -- slow, for
tests; the dispatcher only routes CPU tensors here when the ``triton`` backend is requested
explicitly. The dispatcher loads ``BACKEND`` from here by name; importing this module does not
import Triton.
"""
from __future__ import annotations

import functools
import logging
import os
from types import SimpleNamespace
from typing import Optional, Sequence, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .ms_deform_attn_dispatch import (
    MSDABackend,
    get_ms_deform_attn_impl,
    prepare_kernel_inputs,
    register_ms_deform_attn_backend,
)

__all__ = [
    "MSDeformAttnTritonFunction",
    "interpreter_enabled",
    "is_available",
    "ms_deform_attn_triton",
    "register",
    "supports",
    "unavailable_reason",
]

logger = logging.getLogger(__name__)

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_reason: Optional[str] = None


def interpreter_enabled() -> bool:
    """True when ``TRITON_INTERPRET`` asks for Triton's CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=None)
def is_available() -> bool:
    """Triton imports and there is a CUDA device (or the interpreter is on). Cached."""
    global _reason
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as e:  # noqa: BLE001 -- a broken install only disables the backend
        _reason = f"triton cannot be imported ({type(e).__name__}: {e})"
    else:
        if interpreter_enabled() or torch.cuda.is_available():
            return True
        _reason = "no CUDA device (set TRITON_INTERPRET=1 to run the kernels on CPU)"
    logger.info("Multi-scale deformable attention: triton backend unavailable (%s)", _reason)
    return False


def unavailable_reason() -> Optional[str]:
    """Why :func:`is_available` is False (None if True or not asked yet)."""
    return _reason


def supports(value: Tensor) -> bool:
    """CUDA tensors; CPU tensors only under the interpreter and when ``triton`` is asked for by name."""
    if value.dtype not in SUPPORTED_DTYPES:
        return False
    if value.is_cuda:
        return True
    return value.device.type == "cpu" and interpreter_enabled() and get_ms_deform_attn_impl() == "triton"


# --------------------------------------------------------------------------- kernels
@functools.lru_cache(maxsize=None)
def _kernels() -> SimpleNamespace:
    """Define the kernels on first use (Triton is imported here, not at module import)."""
    global _taps  # kernels look helpers up in the module's globals (compiled and interpreted alike)
    import triton
    import triton.language as tl

    @triton.jit
    def _taps(loc_ptr, attn_ptr, lp, q_ok, H, W, ACC: tl.constexpr):
        """Bilinear taps of one sampling point for a tile of queries (vectors of BLOCK_Q)."""
        x = tl.load(loc_ptr + 2 * lp, mask=q_ok, other=0.0).to(ACC)
        y = tl.load(loc_ptr + 2 * lp + 1, mask=q_ok, other=0.0).to(ACC)
        a = tl.load(attn_ptr + lp, mask=q_ok, other=0.0).to(ACC)
        px = x * W.to(ACC) - 0.5
        py = y * H.to(ACC) - 0.5
        inside = q_ok & (px > -1.0) & (py > -1.0) & (px < W.to(ACC)) & (py < H.to(ACC))
        px = tl.where(inside, px, 0.0)  # keeps the int casts below defined for NaN / huge values
        py = tl.where(inside, py, 0.0)
        fx = tl.floor(px)
        fy = tl.floor(py)
        lx = px - fx
        ly = py - fy
        x0 = fx.to(tl.int64)
        y0 = fy.to(tl.int64)
        x0_ok = inside & (x0 >= 0)
        x1_ok = inside & (x0 + 1 < W)
        y0_ok = y0 >= 0
        y1_ok = y0 + 1 < H
        return a, lx, ly, x0, y0, x0_ok, x1_ok, y0_ok, y1_ok

    @triton.jit
    def _forward_kernel(value_ptr, shapes_ptr, starts_ptr, loc_ptr, attn_ptr, out_ptr, S, Lq,
                        M: tl.constexpr, D: tl.constexpr, L: tl.constexpr, P: tl.constexpr,
                        BLOCK_Q: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr):
        m = tl.program_id(1)
        n = tl.program_id(2).to(tl.int64)
        q = tl.program_id(0).to(tl.int64) * BLOCK_Q + tl.arange(0, BLOCK_Q)
        c = tl.arange(0, BLOCK_D)
        q_ok = q < Lq
        c_ok = c < D
        item = (n * Lq + q) * M + m  # (BLOCK_Q,)
        v_base = value_ptr + (n * S * M + m) * D
        acc = tl.zeros((BLOCK_Q, BLOCK_D), dtype=ACC)
        for l in tl.static_range(L):
            H = tl.load(shapes_ptr + 2 * l)
            W = tl.load(shapes_ptr + 2 * l + 1)
            start = tl.load(starts_ptr + l)
            for p in tl.static_range(P):
                lp = item * (L * P) + (l * P + p)
                a, lx, ly, x0, y0, x0_ok, x1_ok, y0_ok, y1_ok = _taps(loc_ptr, attn_ptr, lp, q_ok, H, W, ACC)
                row0 = start + y0 * W + x0
                for t in tl.static_range(4):
                    dy = t // 2
                    dx = t % 2
                    ok = (y1_ok if dy else y0_ok) & (x1_ok if dx else x0_ok)
                    wt = (ly if dy else 1.0 - ly) * (lx if dx else 1.0 - lx)
                    idx = row0 + dy * W + dx
                    v = tl.load(v_base + idx[:, None] * (M * D) + c[None, :], mask=ok[:, None] & c_ok[None, :],
                                other=0.0).to(ACC)
                    acc += (a * wt)[:, None] * v
        tl.store(out_ptr + item[:, None] * D + c[None, :], acc.to(out_ptr.dtype.element_ty),
                 mask=q_ok[:, None] & c_ok[None, :])

    @triton.jit
    def _backward_kernel(value_ptr, shapes_ptr, starts_ptr, loc_ptr, attn_ptr, grad_out_ptr, grad_value_ptr,
                         grad_loc_ptr, grad_attn_ptr, S, Lq,
                         M: tl.constexpr, D: tl.constexpr, L: tl.constexpr, P: tl.constexpr,
                         BLOCK_Q: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr):
        m = tl.program_id(1)
        n = tl.program_id(2).to(tl.int64)
        q = tl.program_id(0).to(tl.int64) * BLOCK_Q + tl.arange(0, BLOCK_Q)
        c = tl.arange(0, BLOCK_D)
        q_ok = q < Lq
        c_ok = c < D
        item = (n * Lq + q) * M + m
        v_offset = (n * S * M + m) * D
        go = tl.load(grad_out_ptr + item[:, None] * D + c[None, :], mask=q_ok[:, None] & c_ok[None, :],
                     other=0.0).to(ACC)  # (BLOCK_Q, BLOCK_D)
        for l in tl.static_range(L):
            H = tl.load(shapes_ptr + 2 * l)
            W = tl.load(shapes_ptr + 2 * l + 1)
            start = tl.load(starts_ptr + l)
            for p in tl.static_range(P):
                lp = item * (L * P) + (l * P + p)
                a, lx, ly, x0, y0, x0_ok, x1_ok, y0_ok, y1_ok = _taps(loc_ptr, attn_ptr, lp, q_ok, H, W, ACC)
                row0 = start + y0 * W + x0
                g_attn = tl.zeros((BLOCK_Q,), dtype=ACC)
                g_x = tl.zeros((BLOCK_Q,), dtype=ACC)
                g_y = tl.zeros((BLOCK_Q,), dtype=ACC)
                for t in tl.static_range(4):
                    dy = t // 2
                    dx = t % 2
                    ok = (y1_ok if dy else y0_ok) & (x1_ok if dx else x0_ok)
                    wy = ly if dy else 1.0 - ly
                    wx = lx if dx else 1.0 - lx
                    idx = row0 + dy * W + dx
                    offs = v_offset + idx[:, None] * (M * D) + c[None, :]
                    mask = ok[:, None] & c_ok[None, :]
                    v = tl.load(value_ptr + offs, mask=mask, other=0.0).to(ACC)
                    dot = tl.sum(go * v, axis=1)  # (BLOCK_Q,)
                    g_attn += wy * wx * dot
                    g_x += (wy if dx else -wy) * dot  # d(wy * wx) / d(px)
                    g_y += (wx if dy else -wx) * dot
                    tl.atomic_add(grad_value_ptr + offs, (a * wy * wx)[:, None] * go, mask=mask, sem="relaxed")
                tl.store(grad_attn_ptr + lp, g_attn.to(grad_attn_ptr.dtype.element_ty), mask=q_ok)
                tl.store(grad_loc_ptr + 2 * lp, (a * W.to(ACC) * g_x).to(grad_loc_ptr.dtype.element_ty), mask=q_ok)
                tl.store(grad_loc_ptr + 2 * lp + 1, (a * H.to(ACC) * g_y).to(grad_loc_ptr.dtype.element_ty),
                         mask=q_ok)

    return SimpleNamespace(forward=_forward_kernel, backward=_backward_kernel, tl=tl, triton=triton)


def _launch_config(Lq: int, M: int, N: int, D: int, tile: int):
    k = _kernels()
    block_d = max(2, k.triton.next_power_of_2(D))
    block_q = max(16, min(128, tile // block_d))
    grid = (k.triton.cdiv(Lq, block_q), M, N)
    return grid, block_q, block_d


def _acc_type(dtype: torch.dtype):
    tl = _kernels().tl
    return tl.float64 if dtype == torch.float64 else tl.float32


# --------------------------------------------------------------------------- autograd
class MSDeformAttnTritonFunction(torch.autograd.Function):
    """Autograd wrapper of the Triton kernels (inputs contiguous, one dtype)."""

    @staticmethod
    def forward(ctx, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
        N, S, M, D = value.shape
        _, Lq, _, L, P, _ = sampling_locations.shape
        output = value.new_empty(N, Lq, M, D)
        if output.numel():
            grid, block_q, block_d = _launch_config(Lq, M, N, D, tile=2048)
            _kernels().forward[grid](
                value, spatial_shapes, level_start_index, sampling_locations, attention_weights, output, S, Lq,
                M=M, D=D, L=L, P=P, BLOCK_Q=block_q, BLOCK_D=block_d, ACC=_acc_type(value.dtype), num_warps=4,
            )
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return output.view(N, Lq, M * D)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        N, S, M, D = value.shape
        _, Lq, _, L, P, _ = sampling_locations.shape
        grad_dtype = torch.float64 if value.dtype == torch.float64 else torch.float32
        grad_value = torch.zeros(value.shape, dtype=grad_dtype, device=value.device)
        grad_locations = torch.zeros_like(sampling_locations)
        grad_weights = torch.zeros_like(attention_weights)
        if grad_output.numel():
            grid, block_q, block_d = _launch_config(Lq, M, N, D, tile=1024)
            _kernels().backward[grid](
                value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                grad_output.contiguous(), grad_value, grad_locations, grad_weights, S, Lq,
                M=M, D=D, L=L, P=P, BLOCK_Q=block_q, BLOCK_D=block_d, ACC=_acc_type(value.dtype), num_warps=4,
            )
        return grad_value.to(value.dtype), None, None, grad_locations, grad_weights


def ms_deform_attn_triton(
    value: Tensor,
    value_spatial_shapes: Union[Tensor, Sequence[Sequence[int]]],
    value_level_start_index: Optional[Tensor],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """The op on the Triton kernels; same contract as ``multi_scale_deformable_attention``.

    Inputs go through :func:`~.ms_deform_attn_dispatch.prepare_kernel_inputs` (one dtype, contiguous).
    Returns (N, Lq, M * D).
    """
    return MSDeformAttnTritonFunction.apply(*prepare_kernel_inputs(
        value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights))


# --------------------------------------------------------------------------- registration
BACKEND = MSDABackend("triton", ms_deform_attn_triton, is_available=is_available, supports=supports)


def register() -> None:
    """(Re-)register the ``triton`` backend with the dispatcher (the dispatcher also loads ``BACKEND`` by name)."""
    register_ms_deform_attn_backend(BACKEND)
