"""The compiled CPU deformable-attention kernel (layers/ms_deform_attn_cpu.py) against the pytorch
path at the sizes the R50 pixel decoder uses, in float32 and bfloat16, through the module in
training, and its loader's failure modes (the naive-loop and gradcheck tests, run on both CPU
backends, are in test_ms_deform_attn.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mask2former.layers import ms_deform_attn_cpu
from mask2former.layers.extension_loader import LazyExtension
from mask2former.layers.ms_deform_attn import MSDeformAttn, set_ms_deform_attn_impl
from mask2former.layers.ms_deform_attn_pytorch import ms_deform_attn_core_pytorch
from test_ms_deform_attn import clean_dispatch, compiler_present  # noqa: F401  (autouse fixture)

SHAPES = [(24, 32), (12, 16), (6, 8)]  # 1/8, 1/16, 1/32 of a 192x256 image


@pytest.fixture(scope="module", autouse=True)
def kernel():
    if not ms_deform_attn_cpu.is_available():
        if compiler_present():
            pytest.fail(f"the cpu kernel did not build: {ms_deform_attn_cpu.unavailable_reason()}")
        pytest.skip("no C++ compiler / ninja: the cpu kernel cannot be built here")


def _decoder_inputs(dtype=torch.float32, N=2, M=8, D=32, P=4, seed=0):
    """Inputs shaped as the pixel decoder's: every level's tokens query all levels."""
    g = torch.Generator().manual_seed(seed)
    S = sum(h * w for h, w in SHAPES)
    L = len(SHAPES)
    value = torch.randn(N, S, M, D, generator=g).to(dtype)
    loc = (torch.rand(N, S, M, L, P, 2, generator=g) * 1.2 - 0.1).to(dtype)  # some outside [0, 1]
    weights = torch.softmax(torch.randn(N, S, M, L * P, generator=g), -1).view(N, S, M, L, P).to(dtype)
    shapes = torch.tensor(SHAPES)
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    return value, shapes, starts, loc, weights


def _forward_backward(fn, value, shapes, starts, loc, weights, grad):
    leaves = [t.detach().clone().requires_grad_() for t in (value, loc, weights)]
    out = fn(leaves[0], shapes, starts, leaves[1], leaves[2])
    out.backward(grad)
    return out.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("D", [16, 32, 64, 24])  # the kernel's unrolled channel counts and its generic loop
def test_float32_forward_and_gradients_match_the_pytorch_path(D):
    inputs = _decoder_inputs(D=D)
    grad = torch.randn(inputs[0].shape[0], inputs[3].shape[1], 8 * D, generator=torch.Generator().manual_seed(1))
    out, grads = _forward_backward(ms_deform_attn_cpu.ms_deform_attn_cpu, *inputs, grad)
    ref_out, ref_grads = _forward_backward(ms_deform_attn_core_pytorch, *inputs, grad)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    for name, g, ref in zip(("value", "locations", "weights"), grads, ref_grads):
        # locations: d/dx = W * (...), so their gradients are up to ~100x larger; relative tolerance
        scale = ref.abs().max()
        assert (g - ref).abs().max() <= 1e-5 * scale, name


def test_float64_forward_equals_pytorch_path_to_rounding():
    inputs = _decoder_inputs(torch.float64)
    torch.testing.assert_close(ms_deform_attn_cpu.ms_deform_attn_cpu(*inputs), ms_deform_attn_core_pytorch(*inputs),
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_types_accumulate_in_float32(dtype):
    """Half inputs in, half output out, within the output's rounding of the float32 sum of the same inputs."""
    inputs = _decoder_inputs(dtype)
    out = ms_deform_attn_cpu.ms_deform_attn_cpu(*inputs)
    assert out.dtype == dtype
    ref = ms_deform_attn_core_pytorch(*[t.float() if t.is_floating_point() else t for t in inputs])
    eps = torch.finfo(dtype).eps
    assert ((out.float() - ref).abs() <= eps * ref.abs() + 1e-3).all()
    grad = torch.ones_like(out)
    _, grads = _forward_backward(ms_deform_attn_cpu.ms_deform_attn_cpu, *inputs, grad)
    assert [g.dtype for g in grads] == [dtype] * 3 and all(bool(g.isfinite().all()) for g in grads)


def test_module_training_step_is_the_same_on_both_backends():
    """MSDeformAttn in a training step: output, loss gradients of every parameter agree."""
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=64, n_levels=3, n_heads=4, n_points=4)
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.1)
    S = sum(h * w for h, w in SHAPES)
    inputs = torch.randn(2, S, 64)
    ref_pts = torch.rand(2, S, 3, 2)
    shapes = torch.tensor(SHAPES)
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    results = {}
    for impl in ("pytorch", "cpu"):
        set_ms_deform_attn_impl(impl)
        module.zero_grad()
        out = module(inputs, ref_pts, inputs, shapes, starts)
        out.square().mean().backward()
        results[impl] = (out.detach(), {n: p.grad.clone() for n, p in module.named_parameters()})
    torch.testing.assert_close(results["cpu"][0], results["pytorch"][0], atol=1e-5, rtol=1e-5)
    for name, g in results["cpu"][1].items():
        torch.testing.assert_close(g, results["pytorch"][1][name], atol=1e-6, rtol=1e-4, msg=name)


def test_kernels_run_on_torchs_threads_with_the_same_result():
    """at::parallel_for inside the extension uses torch's threads (it runs serially when the build
    lacks OpenMP), and the split of the work does not change any result bit."""
    ext = ms_deform_attn_cpu.EXTENSION.load()
    inputs = _decoder_inputs(D=16)
    grad = torch.randn(*inputs[3].shape[:3], 16, generator=torch.Generator().manual_seed(1))
    before = torch.get_num_threads()
    results = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            if threads == 2 and torch.backends.openmp.is_available() and sys.platform.startswith("linux"):
                assert ext.threads_used(64) == 2
            results[threads] = (ext.forward(*inputs), *ext.backward(*inputs, grad))
    finally:
        torch.set_num_threads(before)
    for one, two in zip(results[1], results[2]):
        assert torch.equal(one, two)


def test_wrong_inputs_name_the_culprit():
    value, shapes, starts, loc, weights = _decoder_inputs()
    ext = ms_deform_attn_cpu.EXTENSION.load()
    with pytest.raises(RuntimeError, match="must share a dtype"):
        ext.forward(value, shapes, starts, loc.double(), weights)
    with pytest.raises(RuntimeError, match="level_start_index must be"):
        ext.forward(value, shapes, starts[:2], loc, weights)
    with pytest.raises(RuntimeError, match="grad_output must hold"):
        ext.backward(value, shapes, starts, loc, weights, torch.zeros(1, 2, 3))


def test_failed_build_only_disables_the_extension(tmp_path):
    def broken_build(build_dir, verbose):
        raise RuntimeError("c++: error: unrecognized option")

    ext = LazyExtension(label="CPU", jit_name="broken", sources=[], prebuilt=None, cache_key=lambda: "k",
                        build=broken_build)
    assert ext.load() is None and ext.load() is None
    assert ext.reason == "RuntimeError: c++: error: unrecognized option"


def test_jit_off_leaves_the_pytorch_path():
    """MASK2FORMER_MSDA_JIT=0: nothing is built; auto uses the pytorch backend and says why."""
    code = (
        "import logging, torch\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from mask2former.layers import ms_deform_attn_dispatch as d\n"
        "print(d.resolve_ms_deform_attn_backend(torch.zeros(1, 4, 1, 2)).name)\n"
    )
    env = dict(os.environ, MASK2FORMER_MSDA_JIT="0")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert proc.stdout.strip() == "pytorch"
    assert "cpu: is not available" in proc.stderr and "MASK2FORMER_MSDA_JIT=0" in proc.stderr
