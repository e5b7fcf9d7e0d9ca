"""Multi-scale deformable attention: the pytorch path vs a naive per-point loop, gradients, the
MSDeformAttn module (the dispatcher: test_ms_deform_attn_dispatch.py)."""
from __future__ import annotations

import math
import shutil

import pytest
import torch

import mask2former.layers.ms_deform_attn_dispatch as msda
from mask2former.layers.ms_deform_attn import (
    MSDeformAttn,
    multi_scale_deformable_attention,
    set_ms_deform_attn_impl,
    softmax_short_last_dim,
)


# --------------------------------------------------------------------------- naive reference
def _bilinear(fmap: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """fmap (H, W, D) sampled at normalised (x, y), align_corners=False, zeros outside."""
    H, W, D = fmap.shape
    px, py = x * W - 0.5, y * H - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    acc = fmap.new_zeros(D)
    for yi in (y0, y0 + 1):
        for xi in (x0, x0 + 1):
            if 0 <= xi < W and 0 <= yi < H:
                acc = acc + (1 - abs(px - xi)) * (1 - abs(py - yi)) * fmap[yi, xi]
    return acc


def naive_msda(value, shapes, locations, weights):
    """Direct loop over batch, query, head, level, point."""
    N, S, M, D = value.shape
    _, Lq, _, L, P, _ = locations.shape
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)
    out = value.new_zeros(N, Lq, M, D)
    for n in range(N):
        for q in range(Lq):
            for m in range(M):
                for lvl, (h, w) in enumerate(shapes):
                    fmap = value[n, starts[lvl]:starts[lvl] + h * w, m].reshape(h, w, D)
                    for p in range(P):
                        x, y = locations[n, q, m, lvl, p].tolist()
                        out[n, q, m] += weights[n, q, m, lvl, p] * _bilinear(fmap, x, y)
    return out.reshape(N, Lq, M * D)


def _inputs(shapes, N=2, Lq=3, M=2, P=2, D=3, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = sum(h * w for h, w in shapes)
    L = len(shapes)
    value = torch.randn(N, S, M, D, generator=g, dtype=dtype)
    # about a third of the locations fall outside [0, 1]
    locations = torch.rand(N, Lq, M, L, P, 2, generator=g, dtype=dtype) * 1.6 - 0.3
    weights = torch.rand(N, Lq, M, L, P, generator=g, dtype=dtype)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    start_index = torch.cat([spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]])
    return value, spatial_shapes, start_index, locations, weights


@pytest.fixture(autouse=True)
def clean_dispatch(monkeypatch):
    """Every test starts from 'auto' with only the built-in backends and restores them."""
    monkeypatch.delenv(msda.ENV_VAR, raising=False)
    saved = dict(msda._BACKENDS)
    set_ms_deform_attn_impl(None)
    msda._logged.clear()
    yield
    msda._BACKENDS.clear()
    msda._BACKENDS.update(saved)
    set_ms_deform_attn_impl(None)
    msda._logged.clear()


@pytest.fixture(params=["pytorch", "cpu"])
def cpu_backend(request):
    """The backends that run on CPU tensors: the pytorch path and the compiled cpu kernel."""
    if request.param == "cpu":
        from mask2former.layers import ms_deform_attn_cpu

        if not ms_deform_attn_cpu.is_available():
            if compiler_present():
                pytest.fail(f"the cpu kernel did not build: {ms_deform_attn_cpu.unavailable_reason()}")
            pytest.skip("no C++ compiler / ninja: the cpu kernel cannot be built here")
    return request.param


def compiler_present() -> bool:
    """A C++ compiler and ninja: where the cpu kernel must build."""
    from torch.utils import cpp_extension

    return shutil.which("c++") is not None and cpp_extension.is_ninja_available()


@pytest.mark.parametrize(
    "shapes",
    [
        [(5, 7)],  # single level, odd sizes
        [(7, 5), (4, 3), (3, 1), (1, 2), (2, 2)],  # 5 levels incl. 1-pixel rows / columns
        [(6, 8), (3, 4), (2, 2)],
    ],
)
def test_backends_match_naive_loop(shapes, cpu_backend):
    set_ms_deform_attn_impl(cpu_backend)
    value, spatial_shapes, start, loc, w = _inputs(shapes)
    outside = ((loc < 0) | (loc > 1)).any(-1).float().mean()
    assert outside > 0.2  # the zero-padding branch is exercised
    out = multi_scale_deformable_attention(value, spatial_shapes, start, loc, w)
    ref = naive_msda(value, shapes, loc, w)
    assert out.shape == (2, 3, 2 * 3)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)

    # float32 stays within float rounding of the float64 result
    out32 = multi_scale_deformable_attention(value.float(), spatial_shapes, start, loc.float(), w.float())
    torch.testing.assert_close(out32.double(), ref, atol=1e-5, rtol=0)


def test_exact_pixel_centres_return_the_pixel_values():
    shapes = [(3, 4)]
    value, spatial_shapes, start, _, _ = _inputs(shapes, N=1, Lq=1, M=1, P=1, D=2)
    # pixel (row 2, col 1) centre is at ((1 + 0.5) / 4, (2 + 0.5) / 3)
    loc = torch.tensor([1.5 / 4, 2.5 / 3], dtype=torch.float64).view(1, 1, 1, 1, 1, 2)
    w = torch.ones(1, 1, 1, 1, 1, dtype=torch.float64)
    out = multi_scale_deformable_attention(value, spatial_shapes, start, loc, w)
    torch.testing.assert_close(out[0, 0], value[0, 2 * 4 + 1, 0], atol=1e-12, rtol=0)


def test_gradcheck_float64(cpu_backend):
    set_ms_deform_attn_impl(cpu_backend)
    shapes = [(3, 4), (2, 3)]
    value, spatial_shapes, start, loc, w = _inputs(shapes, N=1, Lq=2, M=2, P=2, D=2, seed=3)
    value.requires_grad_(True)
    loc.requires_grad_(True)
    w.requires_grad_(True)

    def fn(v, sl, aw):
        return multi_scale_deformable_attention(v, spatial_shapes, start, sl, aw)

    assert torch.autograd.gradcheck(fn, (value, loc, w), eps=1e-6, atol=1e-6)


def test_bad_shapes_raise():
    value, spatial_shapes, start, loc, w = _inputs([(3, 4)])
    with pytest.raises(ValueError, match="attention_weights"):
        multi_scale_deformable_attention(value, spatial_shapes, start, loc, w[..., :1])
    with pytest.raises(ValueError, match="cover 20 positions"):
        multi_scale_deformable_attention(value, torch.tensor([[4, 5]]), start, loc, w)
    with pytest.raises(ValueError, match="levels"):
        multi_scale_deformable_attention(value, torch.tensor([[3, 4], [1, 1]]), start, loc, w)


# --------------------------------------------------------------------------- module
def test_short_last_dim_softmax_equals_torch_softmax_with_gradients():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(5, 7, 8, 12, generator=g, dtype=torch.float64) * 30).requires_grad_()
    x.data[0, 0, 0] += 1000.0  # large logits: no overflow (the max is subtracted)
    grad = torch.randn(x.shape, generator=g, dtype=torch.float64)
    out = softmax_short_last_dim(x)
    (dx,) = torch.autograd.grad(out, x, grad)
    ref = torch.softmax(x, -1)
    (ref_dx,) = torch.autograd.grad(ref, x, grad)
    torch.testing.assert_close(out, ref, atol=1e-15, rtol=0)
    torch.testing.assert_close(dx, ref_dx, atol=1e-12, rtol=0)
    assert torch.isfinite(out).all() and out.sum(-1).sub(1).abs().max() < 1e-12


def test_module_init_matches_official_scheme():
    m = MSDeformAttn(d_model=16, n_levels=3, n_heads=8, n_points=4)
    bias = m.sampling_offsets.bias.view(8, 3, 4, 2)
    torch.testing.assert_close(bias[0, 1, :, 0], torch.tensor([1.0, 2.0, 3.0, 4.0]))  # head 0: +x
    torch.testing.assert_close(bias[0, 1, :, 1], torch.zeros(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(bias[1, 2, 2], torch.tensor([3.0, 3.0]))  # head 1: 45 degrees
    torch.testing.assert_close(bias[2, 0, 1], torch.tensor([0.0, 2.0]), atol=1e-6, rtol=0)  # head 2: +y
    assert m.sampling_offsets.weight.abs().sum() == 0
    assert m.attention_weights.weight.abs().sum() == 0 and m.attention_weights.bias.abs().sum() == 0
    assert m.value_proj.bias.abs().sum() == 0 and m.output_proj.bias.abs().sum() == 0
    assert sorted(k for k, _ in m.named_parameters()) == sorted(
        f"{a}.{b}" for a in ("sampling_offsets", "attention_weights", "value_proj", "output_proj")
        for b in ("weight", "bias")
    )
    with pytest.raises(ValueError, match="divisible"):
        MSDeformAttn(d_model=10, n_heads=4)


def test_module_forward_matches_naive_composition():
    torch.manual_seed(0)
    shapes = [(3, 5), (2, 2)]
    N, Lq, C, M, L, P = 2, 4, 8, 2, 2, 3
    m = MSDeformAttn(d_model=C, n_levels=L, n_heads=M, n_points=P).double()
    for p in m.parameters():  # move away from the degenerate init
        torch.nn.init.normal_(p, std=0.5)
    S = sum(h * w for h, w in shapes)
    query = torch.randn(N, Lq, C, dtype=torch.float64)
    inputs = torch.randn(N, S, C, dtype=torch.float64)
    ref_pts = torch.rand(N, Lq, L, 2, dtype=torch.float64)
    spatial_shapes = torch.tensor(shapes)
    start = torch.tensor([0, 15])
    out = m(query, ref_pts, inputs, spatial_shapes, start)

    value = m.value_proj(inputs).view(N, S, M, C // M)
    offsets = m.sampling_offsets(query).view(N, Lq, M, L, P, 2)
    weights = m.attention_weights(query).view(N, Lq, M, L * P).softmax(-1).view(N, Lq, M, L, P)
    wh = torch.tensor([[w, h] for h, w in shapes], dtype=torch.float64)  # offsets are in pixels
    loc = ref_pts[:, :, None, :, None, :] + offsets / wh[None, None, None, :, None, :]
    expected = m.output_proj(naive_msda(value, shapes, loc, weights))
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    assert out.shape == (N, Lq, C)

    # padded positions are ignored: changing them leaves the output unchanged
    mask = torch.zeros(N, S, dtype=torch.bool)
    mask[:, 10:15] = True
    noisy = inputs.clone()
    noisy[:, 10:15] += 100
    torch.testing.assert_close(m(query, ref_pts, inputs, spatial_shapes, start, mask),
                               m(query, ref_pts, noisy, spatial_shapes, start, mask))

    # box reference points (cx, cy, w, h)
    boxes = torch.cat([ref_pts, torch.full_like(ref_pts, 0.2)], -1)
    assert m(query, boxes, inputs, spatial_shapes, start).shape == (N, Lq, C)
    with pytest.raises(ValueError, match="2 or 4"):
        m(query, ref_pts[..., :1], inputs, spatial_shapes, start)
