#!/usr/bin/env python
"""Op-level benchmark of multi-scale deformable attention: every available backend, one table.

Shapes are those of the Mask2Former pixel decoder (MSDeformAttn encoder over res3..res5, strides
8 / 16 / 32; 8 heads, 4 points, 32 channels per head; the queries are all tokens of the 3 levels):

* ``r50``    -- 800x1333 input, padded to 800x1344 (size divisibility 32)
* ``swinl``  -- 1024x1024 input (large-scale-jitter crops)

each at batch 2 and 8. Reported per backend: median milliseconds of forward and of forward +
backward, and the achieved memory throughput = compulsory bytes (every input read once, every
output written once) / time, against the GPU's peak DRAM bandwidth (from the device properties,
or ``--peak-gbps``). On a machine without a GPU only the pytorch backend runs, on a small shape.

    python tools/benchmark_ms_deform_attn.py                     # all configs, float32
    python tools/benchmark_ms_deform_attn.py --dtype float16 --configs r50-b2 --backends cuda,triton
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mask2former.layers import ms_deform_attn_cuda, ms_deform_attn_triton  # noqa: E402
from mask2former.layers.ms_deform_attn import ms_deform_attn_core_pytorch  # noqa: E402

HEADS, POINTS, HEAD_DIM = 8, 4, 32
STRIDES = (8, 16, 32)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Config:
    name: str
    image: Tuple[int, int]  # padded (H, W)
    batch: int

    @property
    def shapes(self) -> List[Tuple[int, int]]:
        return [(-(-self.image[0] // s), -(-self.image[1] // s)) for s in STRIDES]


CONFIGS: Dict[str, Config] = {
    "r50-b2": Config("R50 800x1333 b2", (800, 1344), 2),
    "r50-b8": Config("R50 800x1333 b8", (800, 1344), 8),
    "swinl-b2": Config("Swin-L 1024x1024 b2", (1024, 1024), 2),
    "swinl-b8": Config("Swin-L 1024x1024 b8", (1024, 1024), 8),
}
CPU_CONFIG = Config("small 256x256 b1 (CPU)", (256, 256), 1)


def make_inputs(cfg: Config, dtype: torch.dtype, device: str, seed: int = 0):
    """Encoder-like inputs: each query samples a few pixels around its own position on every level."""
    g = torch.Generator(device=device).manual_seed(seed)
    shapes = cfg.shapes
    N, M, P, D, L = cfg.batch, HEADS, POINTS, HEAD_DIM, len(shapes)
    S = sum(h * w for h, w in shapes)
    refs = []
    for h, w in shapes:  # pixel centres, normalised, (h * w, 2) as (x, y)
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        refs.append(torch.stack([(xs.flatten() + 0.5) / w, (ys.flatten() + 0.5) / h], -1))
    ref = torch.cat(refs).float()  # (S, 2): queries are all tokens
    size = torch.tensor([[w, h] for h, w in shapes], device=device, dtype=torch.float32)  # (L, 2)
    offsets = torch.randn(N, S, M, L, P, 2, generator=g, device=device) * 2.0 / size[:, None, :]  # ~2 px
    locations = (ref[None, :, None, None, None, :] + offsets).to(dtype)
    logits = torch.randn(N, S, M, L * P, generator=g, device=device)
    weights = logits.softmax(-1).view(N, S, M, L, P).to(dtype)
    value = torch.randn(N, S, M, D, generator=g, device=device).to(dtype)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long, device=device)
    start = torch.cat([spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]])
    return value, spatial_shapes, start, locations, weights


def compulsory_bytes(value, locations, weights, backward: bool) -> int:
    """Each input read once and each output written once (grad_value counted as one fp32 write)."""
    out_bytes = value.shape[0] * locations.shape[1] * value.shape[2] * value.shape[3] * value.element_size()
    inputs = sum(t.numel() * t.element_size() for t in (value, locations, weights))
    total = inputs + out_bytes
    if backward:
        grads = value.numel() * 4 + (locations.numel() + weights.numel()) * locations.element_size()
        total += inputs + out_bytes + grads  # backward reads the inputs and grad_output again
    return total


def _time_ms(fn: Callable[[], object], device: str, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def available_backends(names: Sequence[str], value: torch.Tensor) -> Dict[str, Callable]:
    """name -> op for the backends that can run on ``value``; reports the others."""
    found: Dict[str, Callable] = {}
    for name in names:
        if name == "pytorch":
            found[name] = ms_deform_attn_core_pytorch
            continue
        mod = ms_deform_attn_cuda if name == "cuda" else ms_deform_attn_triton
        if mod.is_available() and mod.supports(value):
            found[name] = mod.ms_deform_attn_cuda if name == "cuda" else mod.ms_deform_attn_triton
        else:
            print(f"[skip] {name}: {mod.unavailable_reason() or f'does not take {value.dtype} on {value.device}'}")
    return found


def peak_bandwidth_gbps(override: Optional[float]) -> Optional[float]:
    if override:
        return override
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    clock_khz = getattr(props, "memory_clock_rate", 0)
    bus_bits = getattr(props, "memory_bus_width", 0)
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9 if clock_khz and bus_bits else None  # DDR


def run(configs: Sequence[Config], backends: Sequence[str], dtype: torch.dtype, device: str, warmup: int,
        iters: int, peak: Optional[float]) -> List[Dict[str, object]]:
    rows = []
    for cfg in configs:
        value, shapes, start, loc, w = make_inputs(cfg, dtype, device)
        fns = available_backends(backends, value)
        reference = ms_deform_attn_core_pytorch(value.float(), shapes, start, loc.float(), w.float())
        grad_out = torch.randn_like(reference).to(dtype)
        leaves = [t.detach().clone().requires_grad_() for t in (value, loc, w)]
        for name, fn in fns.items():
            with torch.no_grad():
                err = (fn(value, shapes, start, loc, w).float() - reference).abs().max().item()
                fwd_ms = _time_ms(lambda: fn(value, shapes, start, loc, w), device, warmup, iters)

            def fwd_bwd():
                out = fn(leaves[0], shapes, start, leaves[1], leaves[2])
                torch.autograd.grad(out, leaves, grad_out)

            both_ms = _time_ms(fwd_bwd, device, warmup, iters)
            row = dict(config=cfg.name, backend=name, fwd_ms=fwd_ms, both_ms=both_ms, max_err=err,
                       fwd_gbps=compulsory_bytes(value, loc, w, False) / fwd_ms / 1e6,
                       both_gbps=compulsory_bytes(value, loc, w, True) / both_ms / 1e6)
            rows.append(row)
            _print_row(row, peak)
        del value, loc, w, leaves, reference, grad_out
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


_HEADER = (f"{'config':<22} {'backend':<8} {'fwd ms':>9} {'GB/s':>7} {'%peak':>6} {'fwd+bwd ms':>11} "
           f"{'GB/s':>7} {'%peak':>6} {'max|err|':>9}")


def _print_row(row: Dict[str, object], peak: Optional[float]) -> None:
    pct = (lambda gbps: f"{100 * gbps / peak:6.1f}") if peak else (lambda gbps: f"{'-':>6}")
    print(f"{row['config']:<22} {row['backend']:<8} {row['fwd_ms']:9.3f} {row['fwd_gbps']:7.1f} "
          f"{pct(row['fwd_gbps'])} {row['both_ms']:11.3f} {row['both_gbps']:7.1f} {pct(row['both_gbps'])} "
          f"{row['max_err']:9.2e}", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {list(CONFIGS)}")
    parser.add_argument("--backends", default="pytorch,cuda,triton")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--peak-gbps", type=float, default=None, help="peak DRAM bandwidth (default: from the GPU)")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    dtype = DTYPES[args.dtype]

    if torch.cuda.is_available():
        device = "cuda"
        unknown = [c for c in args.configs.split(",") if c not in CONFIGS]
        if unknown:
            parser.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
        configs = [CONFIGS[c] for c in args.configs.split(",")]
        peak = peak_bandwidth_gbps(args.peak_gbps)
        print(f"GPU: {torch.cuda.get_device_name()}, peak DRAM bandwidth "
              f"{f'{peak:.0f} GB/s' if peak else 'unknown'}; dtype {args.dtype}; "
              f"M={HEADS} P={POINTS} D={HEAD_DIM}, levels at strides {STRIDES}")
    else:
        device, peak = "cpu", None
        configs = [CPU_CONFIG]
        backends = [b for b in backends if b == "pytorch"]
        args.iters, args.warmup = min(args.iters, 3), 1
        print(f"No GPU: timing only the pytorch backend on CPU, on the small shape {CPU_CONFIG.shapes} "
              "(the GPU configs need a CUDA device)")
    print(_HEADER)
    return run(configs, backends, dtype, device, args.warmup, args.iters, peak)


if __name__ == "__main__":
    main()
