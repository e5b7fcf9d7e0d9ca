"""The compiled deformable-attention backends (our CUDA op, our Triton kernels) vs the pytorch path.

Without a GPU this checks: the kernels' per-item C++ code run on the CPU (host emulation), the
.cu files compiling with nvcc, the whole extension JIT-building and importing, the Triton kernels
under ``TRITON_INTERPRET=1`` (in a subprocess: the variable must precede Triton's import) and
compiling to sm_90 cubins, and that both backends report themselves unavailable cleanly.
The GPU section runs where ``torch.cuda.is_available()``.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import mask2former.layers.ms_deform_attn_dispatch as msda
from mask2former.layers.ms_deform_attn import ms_deform_attn_core_pytorch
from test_ms_deform_attn import compiler_present

REPO_ROOT = Path(__file__).resolve().parents[2]
CSRC = REPO_ROOT / "mask2former" / "layers" / "csrc" / "ms_deform_attn"
HAS_CUDA = torch.cuda.is_available()

# (shapes, N, Lq, M, P, D): one level with odd sizes, five levels with 1-pixel rows / columns,
# a channel count that is not a multiple of the vector width, several channel chunks per lane
CASES = {
    "1level_odd": ([(5, 7)], 2, 6, 2, 3, 8),
    "5levels": ([(7, 5), (4, 3), (3, 1), (1, 2), (2, 2)], 2, 5, 3, 2, 6),
    "3levels_d3": ([(6, 8), (3, 4), (2, 2)], 1, 7, 2, 4, 3),
}


def make_inputs(shapes, N=2, Lq=5, M=2, P=2, D=4, dtype=torch.float64, seed=0, device="cpu"):
    """Random inputs with about a third of the sampling locations outside [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    S = sum(h * w for h, w in shapes)
    L = len(shapes)
    value = torch.randn(N, S, M, D, generator=g, dtype=torch.float64)
    locations = torch.rand(N, Lq, M, L, P, 2, generator=g, dtype=torch.float64) * 1.6 - 0.3
    # keep pixel coordinates (loc * size - 0.5) 0.02 px away from integers, where bilinear sampling has a
    # kink: float32 and float64 rounding there would pick different taps and different location gradients
    size = torch.tensor([[w, h] for h, w in shapes], dtype=torch.float64).view(1, 1, 1, L, 1, 2)
    pixels = locations * size - 0.5
    pixels = pixels.floor() + (pixels - pixels.floor()).clamp(0.02, 0.98)
    locations = (pixels + 0.5) / size
    weights = torch.rand(N, Lq, M, L, P, generator=g, dtype=torch.float64)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    start = torch.cat([spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]])
    cast = dict(dtype=dtype, device=device)
    return (value.to(**cast), spatial_shapes.to(device), start.to(device), locations.to(**cast),
            weights.to(**cast))


def reference(value, shapes, start, locations, weights, grad_output=None):
    """pytorch-path output and, given grad_output, the gradients of value / locations / weights."""
    leaves = [t.detach().clone().requires_grad_(grad_output is not None) for t in (value, locations, weights)]
    out = ms_deform_attn_core_pytorch(leaves[0], shapes, start, leaves[1], leaves[2])
    if grad_output is None:
        return out.detach()
    out.backward(grad_output)
    return out.detach(), *(t.grad for t in leaves)


@pytest.fixture
def backends():
    """Imports our backend modules (they register on import) and restores the dispatcher after."""
    saved = dict(msda._BACKENDS)
    from mask2former.layers import ms_deform_attn_cuda, ms_deform_attn_triton

    ms_deform_attn_cuda.register()
    ms_deform_attn_triton.register()
    msda.set_ms_deform_attn_impl(None)
    yield ms_deform_attn_cuda, ms_deform_attn_triton
    msda._BACKENDS.clear()
    msda._BACKENDS.update(saved)
    msda.set_ms_deform_attn_impl(None)
    msda._logged.clear()


# --------------------------------------------------------------------------- CUDA code on the CPU
@pytest.fixture(scope="module")
def emulation_lib(tmp_path_factory):
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    lib = tmp_path_factory.mktemp("msda_emu") / "libmsda_emu.so"
    subprocess.run([cxx, "-O1", "-std=c++17", "-Wall", "-Werror", "-shared", "-fPIC",
                    str(CSRC / "host_emulation.cpp"), "-o", str(lib)], check=True, capture_output=True)
    return ctypes.CDLL(str(lib))


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    assert t.is_contiguous()
    return ctypes.c_void_p(t.data_ptr())


def _dims(value, locations) -> torch.Tensor:
    N, S, M, D = value.shape
    _, Lq, _, L, P, _ = locations.shape
    return torch.tensor([N, S, M, D, Lq, L, P], dtype=torch.long)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", sorted(CASES))
def test_cuda_item_code_emulated_on_cpu_matches_pytorch(emulation_lib, case, dtype):
    shapes, N, Lq, M, P, D = CASES[case]
    value, ss, start, loc, w = make_inputs(shapes, N, Lq, M, P, D, dtype=dtype, seed=1)
    suffix = "f64" if dtype == torch.float64 else "f32"
    fwd = getattr(emulation_lib, f"msda_emulate_forward_{suffix}")
    bwd = getattr(emulation_lib, f"msda_emulate_backward_{suffix}")
    grad_out = torch.randn(N, Lq, M * D, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(dtype)
    ref_out, ref_gv, ref_gl, ref_gw = reference(value, ss, start, loc, w, grad_out)
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)

    dims = _dims(value, loc)  # kept alive: ctypes only gets its address
    vecs = [v for v in (1, 2, 4) if D % v == 0 and v * value.element_size() <= 16]  # as on the GPU
    for vec in vecs:
        for group in (1, 2, 4):  # lanes per item; D = 6, vec 2, group 2 leaves a lane two chunks
            out = torch.full((N, Lq, M, D), float("nan"), dtype=dtype)
            assert fwd(_ptr(value), _ptr(ss), _ptr(start), _ptr(loc), _ptr(w), _ptr(out), _ptr(dims), vec, group) == 0
            torch.testing.assert_close(out.view(N, Lq, M * D), ref_out, **tol)
        gv = torch.zeros_like(value)
        gl = torch.full_like(loc, float("nan"))  # the kernel must write every element
        gw = torch.full_like(w, float("nan"))
        assert bwd(_ptr(value), _ptr(ss), _ptr(start), _ptr(loc), _ptr(w), _ptr(grad_out), _ptr(gv), _ptr(gl),
                   _ptr(gw), _ptr(dims), vec) == 0
        torch.testing.assert_close(gv, ref_gv, **tol)
        torch.testing.assert_close(gw, ref_gw, **tol)
        scale = max(h for h, _ in shapes + [(1, 1)]) + max(w_ for _, w_ in shapes)  # d/dloc scales with size
        torch.testing.assert_close(gl, ref_gl, atol=tol["atol"] * scale, rtol=tol["rtol"])


@pytest.mark.parametrize("case", ["1level_odd", "5levels"])
def test_cuda_item_code_emulated_bfloat16(emulation_lib, case):
    """The packed 2-byte load / store path (VEC up to 8) with fp32 accumulation and fp32 grad_value."""
    shapes, N, Lq, M, P, D = CASES[case]
    value, ss, start, loc, w = make_inputs(shapes, N, Lq, M, P, D, dtype=torch.bfloat16, seed=4)
    grad_out = torch.randn(N, Lq, M * D, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
    ref_out, ref_gv, ref_gl, ref_gw = reference(value.double(), ss, start, loc.double(), w.double(),
                                                grad_out.double())
    dims = _dims(value, loc)
    for vec in [v for v in (1, 2, 4, 8) if D % v == 0]:
        for group in (1, 2):
            out = torch.zeros(N, Lq, M, D, dtype=torch.bfloat16)
            assert emulation_lib.msda_emulate_forward_bf16(_ptr(value), _ptr(ss), _ptr(start), _ptr(loc), _ptr(w),
                                                           _ptr(out), _ptr(dims), vec, group) == 0
            # only the final rounding to bfloat16 differs from the float64 reference
            torch.testing.assert_close(out.view(N, Lq, M * D).double(), ref_out, atol=1e-2, rtol=8e-3)
        gv = torch.zeros(value.shape, dtype=torch.float32)
        gl = torch.zeros_like(loc)
        gw = torch.zeros_like(w)
        assert emulation_lib.msda_emulate_backward_bf16(_ptr(value), _ptr(ss), _ptr(start), _ptr(loc), _ptr(w),
                                                        _ptr(grad_out), _ptr(gv), _ptr(gl), _ptr(gw), _ptr(dims),
                                                        vec) == 0
        torch.testing.assert_close(gv.double(), ref_gv, atol=1e-5, rtol=1e-5)  # fp32 all the way
        torch.testing.assert_close(gw.double(), ref_gw, atol=1e-2, rtol=8e-3)
        torch.testing.assert_close(gl.double(), ref_gl, atol=1e-1, rtol=8e-3)
    assert emulation_lib.msda_emulate_forward_bf16(_ptr(value), _ptr(ss), _ptr(start), _ptr(loc), _ptr(w),
                                                   _ptr(out), _ptr(dims), 16, 1) == -1  # > 16 bytes


def test_emulated_sampling_at_pixel_centres_and_borders(emulation_lib):
    shapes = [(3, 4)]
    value, ss, start, _, _ = make_inputs(shapes, N=1, Lq=4, M=1, P=1, D=2)
    # pixel (2, 1) centre; the exact right border (half a tap in); far outside; just outside the left
    loc = torch.tensor([[1.5 / 4, 2.5 / 3], [1.0, 0.5], [-3.0, 7.0], [-0.5 / 4 - 1e-9, 0.5]],
                       dtype=torch.float64).view(1, 4, 1, 1, 1, 2)
    w = torch.ones(1, 4, 1, 1, 1, dtype=torch.float64)
    out = torch.empty(1, 4, 1, 2, dtype=torch.float64)
    dims = _dims(value, loc)
    assert emulation_lib.msda_emulate_forward_f64(_ptr(value), _ptr(ss), _ptr(start), _ptr(loc), _ptr(w),
                                                  _ptr(out), _ptr(dims), 2, 1) == 0
    torch.testing.assert_close(out[0, 0, 0], value[0, 2 * 4 + 1, 0], atol=1e-12, rtol=0)
    torch.testing.assert_close(out.view(1, 4, 2), reference(value, ss, start, loc, w), atol=1e-12, rtol=0)
    assert out[0, 2].abs().max() == 0 and out[0, 3].abs().max() == 0
    assert emulation_lib.msda_emulate_forward_f64(_ptr(value), _ptr(ss), _ptr(start), _ptr(loc), _ptr(w),
                                                  _ptr(out), _ptr(dims), 4, 1) == -1  # 4 does not divide D


# --------------------------------------------------------------------------- nvcc / JIT build
def _nvcc_include_flags():
    from torch.utils.cpp_extension import include_paths

    return [f"-I{p}" for p in include_paths()]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found")
@pytest.mark.parametrize("source", ["ms_deform_attn_forward.cu", "ms_deform_attn_backward.cu"])
def test_cuda_sources_compile_with_nvcc(source, tmp_path):
    cmd = ["nvcc", "-c", str(CSRC / source), "-o", str(tmp_path / "k.o"), *_nvcc_include_flags(),
           "-std=c++20",  # torch >= 2.10 headers require C++20
           "--expt-relaxed-constexpr", "-gencode", "arch=compute_90,code=sm_90", "-O3",
           "-Xptxas", "-warn-spills"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ours = [line for line in (proc.stdout + proc.stderr).splitlines()
            if "warning" in line.lower() and ("ms_deform_attn" in line or "spill" in line)]
    assert not ours, ours
    assert (tmp_path / "k.o").stat().st_size > 10_000


def _cuda_home_of_nvcc() -> str:
    """The toolkit root of the nvcc on PATH (following wrapper scripts such as /usr/local/bin/nvcc)."""
    nvcc = subprocess.run(["nvcc", "--version"], capture_output=True, text=True)
    assert nvcc.returncode == 0
    for candidate in (os.environ.get("CUDA_HOME"), "/usr/local/cuda", str(Path(shutil.which("nvcc")).parents[1])):
        if candidate and (Path(candidate) / "bin" / "nvcc").exists() and (Path(candidate) / "include" / "cuda.h").exists():
            return candidate
    pytest.skip("no CUDA toolkit root with include/cuda.h")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None or shutil.which("ninja") is None, reason="nvcc / ninja not found")
def test_extension_jit_builds_and_imports(tmp_path):
    """The full torch.utils.cpp_extension build links and imports without a GPU, and checks inputs."""
    script = textwrap.dedent(f"""
        import torch
        from mask2former.layers import ms_deform_attn_cuda as C
        ext = C.build_extension({str(tmp_path)!r})
        assert callable(ext.forward) and callable(ext.backward)
        try:
            ext.forward(torch.zeros(1, 4, 1, 2), torch.tensor([[2, 2]]), torch.tensor([0]),
                        torch.zeros(1, 1, 1, 1, 1, 2), torch.zeros(1, 1, 1, 1, 1))
        except RuntimeError as e:
            print("ERROR:", e)
    """)
    env = dict(os.environ, CUDA_HOME=_cuda_home_of_nvcc(), TORCH_CUDA_ARCH_LIST="9.0", MAX_JOBS="1",
               PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "value must be a CUDA tensor" in proc.stdout
    assert list(tmp_path.glob("*.so"))


# --------------------------------------------------------------------------- Triton interpreter
_TRITON_CHILD = textwrap.dedent("""
    import sys, torch
    import mask2former.layers.ms_deform_attn_dispatch as msda
    from mask2former.layers.ms_deform_attn_triton import ms_deform_attn_triton, is_available
    assert is_available()
    cases = torch.load(sys.argv[1])
    results = {}
    for name, c in cases.items():
        value, loc, w = (c[k].clone().requires_grad_() for k in ("value", "loc", "w"))
        out = ms_deform_attn_triton(value, c["shapes"], c["start"], loc, w)
        out.backward(c["grad_out"])
        results[name] = dict(out=out.detach(), gv=value.grad, gl=loc.grad, gw=w.grad)
    # the dispatcher: CPU tensors reach the interpreter only when triton is asked for by name
    c = cases["1level_odd"]
    msda.set_ms_deform_attn_impl("triton")
    results["dispatch_named"] = msda.resolve_ms_deform_attn_backend(c["value"]).name
    results["dispatch_named_out"] = msda.multi_scale_deformable_attention(
        c["value"], c["shapes"], c["start"], c["loc"], c["w"])
    msda.set_ms_deform_attn_impl("auto")
    results["dispatch_auto"] = msda.resolve_ms_deform_attn_backend(c["value"]).name
    torch.save(results, sys.argv[2])
""")


@pytest.fixture(scope="module")
def triton_interpreted(tmp_path_factory):
    """Runs the Triton kernels on CPU in a TRITON_INTERPRET=1 subprocess; returns (cases, results)."""
    pytest.importorskip("triton")
    cases = {}
    for name, (shapes, N, Lq, M, P, D) in CASES.items():
        for dtype in (torch.float32, torch.float64):
            value, ss, start, loc, w = make_inputs(shapes, N, Lq, M, P, D, dtype=dtype, seed=3)
            grad_out = torch.randn(N, Lq, M * D, dtype=dtype)
            cases[f"{name}_{str(dtype)[6:]}"] = dict(value=value, shapes=ss, start=start, loc=loc, w=w,
                                                     grad_out=grad_out)
    # non-contiguous inputs, shapes as a list and no start index
    base = cases["5levels_float32"]
    cases["noncontiguous"] = dict(
        value=base["value"].transpose(2, 3).contiguous().transpose(2, 3),
        shapes=base["shapes"].tolist(), start=None,
        loc=base["loc"].permute(0, 2, 1, 3, 4, 5).contiguous().permute(0, 2, 1, 3, 4, 5),
        w=base["w"].transpose(3, 4).contiguous().transpose(3, 4), grad_out=base["grad_out"])
    cases["1level_odd"] = cases["1level_odd_float32"]
    work = tmp_path_factory.mktemp("msda_triton")
    torch.save(cases, work / "cases.pt")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO_ROOT))
    env.pop("MASK2FORMER_MSDA_IMPL", None)
    proc = subprocess.run([sys.executable, "-c", _TRITON_CHILD, str(work / "cases.pt"), str(work / "out.pt")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return cases, torch.load(work / "out.pt")


@pytest.mark.parametrize("name", [f"{c}_{d}" for c in sorted(CASES) for d in ("float32", "float64")]
                         + ["noncontiguous"])
def test_triton_interpreted_matches_pytorch(triton_interpreted, name):
    cases, results = triton_interpreted
    c, r = cases[name], results[name]
    assert not c["value"].is_contiguous() or name != "noncontiguous"
    ref_out, ref_gv, ref_gl, ref_gw = reference(c["value"], c["shapes"], c["start"], c["loc"], c["w"], c["grad_out"])
    if c["value"].dtype == torch.float64:
        tol = dict(atol=1e-12, rtol=1e-12)
    else:
        tol = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r["out"], ref_out, **tol)
    torch.testing.assert_close(r["gv"], ref_gv, **tol)
    torch.testing.assert_close(r["gw"], ref_gw, **tol)
    torch.testing.assert_close(r["gl"], ref_gl, atol=tol["atol"] * 16, rtol=tol["rtol"])  # scales with H, W
    assert r["gl"].abs().max() > 0.1 and r["gv"].abs().max() > 0.1  # real gradients flowed


def test_triton_dispatch_on_cpu_only_when_named(triton_interpreted):
    cases, results = triton_interpreted
    assert results["dispatch_named"] == "triton"
    # the slow interpreter is never picked by auto: the compiled cpu kernel (or the pytorch path) is
    assert results["dispatch_auto"] == ("cpu" if compiler_present() else "pytorch")
    c = cases["1level_odd"]
    torch.testing.assert_close(results["dispatch_named_out"], reference(c["value"], c["shapes"], c["start"],
                                                                       c["loc"], c["w"]), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kernel,dtype", [("forward", "fp32"), ("backward", "fp32"), ("forward", "bf16"),
                                          ("backward", "fp64")])
def test_triton_kernels_compile_for_sm90(kernel, dtype):
    """Lowers the real (not interpreted) kernels to an sm_90 cubin: needs no GPU."""
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from mask2former.layers import ms_deform_attn_triton

    if ms_deform_attn_triton.interpreter_enabled():
        pytest.skip("TRITON_INTERPRET is set: the kernels are interpreted, not compiled")
    k = ms_deform_attn_triton._kernels()
    fn = getattr(k, kernel)
    grad_dtype = "fp64" if dtype == "fp64" else "fp32"
    signature = {}
    for arg in fn.arg_names:
        if arg in ("shapes_ptr", "starts_ptr"):
            signature[arg] = "*i64"
        elif arg == "grad_value_ptr":
            signature[arg] = "*" + grad_dtype
        elif arg.endswith("_ptr"):
            signature[arg] = "*" + dtype
        elif arg in ("S", "Lq"):
            signature[arg] = "i32"
        else:
            signature[arg] = "constexpr"
    acc = k.tl.float64 if dtype == "fp64" else k.tl.float32
    consts = dict(M=8, D=32, L=3, P=4, BLOCK_Q=32, BLOCK_D=32, ACC=acc)
    src = ASTSource(fn=fn, signature=signature, constexprs={(fn.arg_names.index(n),): v for n, v in consts.items()})
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    assert len(compiled.asm["cubin"]) > 1000
    if kernel == "backward":
        assert "red.global" in compiled.asm["ptx"] or "atom.global" in compiled.asm["ptx"]


# --------------------------------------------------------------------------- availability without a GPU
@pytest.mark.skipif(HAS_CUDA, reason="checks the no-GPU behaviour")
def test_backends_unavailable_without_gpu_fall_back_to_pytorch(backends, monkeypatch):
    cuda_mod, triton_mod = backends
    monkeypatch.delenv(msda.ENV_VAR, raising=False)
    value, ss, start, loc, w = make_inputs([(3, 4)])
    assert not cuda_mod.is_available()
    assert "no CUDA device" in cuda_mod.unavailable_reason()
    assert not cuda_mod.supports(value)
    if not triton_mod.interpreter_enabled():
        assert not triton_mod.is_available()
    # CPU tensors: the compiled cpu kernel where it builds, else the pytorch path
    assert msda.resolve_ms_deform_attn_backend(value).name == ("cpu" if compiler_present() else "pytorch")
    out = msda.multi_scale_deformable_attention(value, ss, start, loc, w)
    torch.testing.assert_close(out, reference(value, ss, start, loc, w), atol=1e-6, rtol=1e-6)
    monkeypatch.setenv(msda.ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match="does not support torch.float64 tensors on cpu"):
        msda.multi_scale_deformable_attention(value, ss, start, loc, w)


def test_prepare_kernel_inputs_promotes_and_derives_start(backends):
    cuda_mod, _ = backends
    value = torch.randn(1, 7, 2, 4, dtype=torch.float16)
    loc = torch.rand(1, 3, 2, 2, 1, 2).transpose(1, 2).contiguous().transpose(1, 2)  # float32, strided
    w = torch.rand(1, 3, 2, 2, 1, dtype=torch.bfloat16)
    v, shapes, starts, l2, w2 = msda.prepare_kernel_inputs(value, [[2, 3], [1, 1]], None, loc, w)
    assert v.dtype == l2.dtype == w2.dtype == torch.float32  # locations keep their precision
    assert all(t.is_contiguous() for t in (v, shapes, starts, l2, w2))
    assert shapes.tolist() == [[2, 3], [1, 1]] and starts.tolist() == [0, 6] and starts.dtype == torch.long


# --------------------------------------------------------------------------- GPU
gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
KERNEL_BACKENDS = ["cuda", "triton"]


def _backend_fn(backends, name):
    cuda_mod, triton_mod = backends
    mod = cuda_mod if name == "cuda" else triton_mod
    if not mod.is_available():
        pytest.skip(f"{name} backend unavailable: {mod.unavailable_reason()}")
    return mod.ms_deform_attn_cuda if name == "cuda" else mod.ms_deform_attn_triton


def _check_against_pytorch(fn, shapes, N, Lq, M, P, D, dtype, seed=0, softmax=False, tol=None):
    value, ss, start, loc, w = make_inputs(shapes, N, Lq, M, P, D, dtype=dtype, seed=seed, device="cuda")
    if softmax:  # realistic weights: a distribution over the L * P points
        w = w.flatten(-2).softmax(-1).view_as(w)
    grad_out = torch.randn(N, Lq, M * D, device="cuda", dtype=dtype)
    leaves = [t.clone().requires_grad_() for t in (value, loc, w)]
    out = fn(leaves[0], ss, start, leaves[1], leaves[2])
    out.backward(grad_out)
    # reference in float64 on the same (rounded) inputs
    ref_out, ref_gv, ref_gl, ref_gw = reference(value.double(), ss, start, loc.double(), w.double(),
                                                grad_out.double())
    atol, rtol = tol
    assert out.dtype == dtype and leaves[0].grad.dtype == dtype
    torch.testing.assert_close(out.double(), ref_out, atol=atol, rtol=rtol)
    torch.testing.assert_close(leaves[0].grad.double(), ref_gv, atol=atol, rtol=rtol)
    torch.testing.assert_close(leaves[2].grad.double(), ref_gw, atol=atol * 4, rtol=rtol)
    size = max(max(h, w_) for h, w_ in shapes)
    torch.testing.assert_close(leaves[1].grad.double(), ref_gl, atol=atol * 4 * size, rtol=rtol)


GPU_CASES = {
    **CASES,
    "d32_3levels": ([(16, 24), (8, 12), (4, 6)], 2, 300, 8, 4, 32),
    "d160_chunks": ([(9, 7), (5, 4)], 1, 40, 1, 3, 160),  # D > 32 lanes * 4: several chunks per lane
    "d256_one_head": ([(8, 8)], 1, 64, 1, 4, 256),
    "d2": ([(5, 5), (3, 3)], 2, 33, 4, 2, 2),
}


@gpu
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("case", sorted(GPU_CASES))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, (1e-5, 1e-5)), (torch.float64, (1e-12, 1e-12))])
def test_gpu_matches_pytorch(backends, backend, case, dtype, tol):
    _check_against_pytorch(_backend_fn(backends, backend), *GPU_CASES[case], dtype=dtype, tol=tol)


@gpu
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype,tol", [(torch.float16, (2e-3, 1e-2)), (torch.bfloat16, (1.6e-2, 2e-2))])
def test_gpu_half_precision(backends, backend, dtype, tol):
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("no bfloat16 on this GPU")
    _check_against_pytorch(_backend_fn(backends, backend), [(16, 24), (8, 12), (4, 6)], 2, 200, 8, 4, 32,
                           dtype=dtype, softmax=True, tol=tol)


@gpu
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_gpu_gradcheck_float64(backends, backend):
    fn = _backend_fn(backends, backend)
    value, ss, start, loc, w = make_inputs([(3, 4), (2, 3)], N=1, Lq=2, M=2, P=2, D=4, seed=3, device="cuda")
    inputs = tuple(t.requires_grad_() for t in (value, loc, w))
    assert torch.autograd.gradcheck(lambda v, l, a: fn(v, ss, start, l, a), inputs, eps=1e-6, atol=1e-6,
                                    nondet_tol=1e-12)  # atomics: summation order varies


@gpu
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_gpu_misaligned_noncontiguous_and_empty(backends, backend):
    fn = _backend_fn(backends, backend)
    shapes = [(7, 5), (4, 3)]
    value, ss, start, loc, w = make_inputs(shapes, 2, 9, 2, 3, 8, dtype=torch.float32, device="cuda")
    misaligned = torch.empty(value.numel() + 1, device="cuda")[1:].view_as(value).copy_(value)  # no vector loads
    strided = value.transpose(1, 2).contiguous().transpose(1, 2)
    ref = reference(value, ss, start, loc, w)
    for v in (misaligned, strided):
        torch.testing.assert_close(fn(v, ss.tolist(), None, loc, w), ref, atol=1e-5, rtol=1e-5)
    empty = fn(value, ss, start, loc[:, :0], w[:, :0])
    assert empty.shape == (2, 0, 16)


@gpu
def test_gpu_dispatcher_auto_prefers_compiled_backends(backends, monkeypatch):
    cuda_mod, triton_mod = backends
    monkeypatch.delenv(msda.ENV_VAR, raising=False)
    value = torch.zeros(1, 4, 1, 2, device="cuda")
    expected = "cuda" if cuda_mod.is_available() else "triton" if triton_mod.is_available() else "pytorch"
    assert msda.resolve_ms_deform_attn_backend(value).name == expected
    assert msda.resolve_ms_deform_attn_backend(value.cpu()).name == "pytorch"
    if triton_mod.is_available():
        monkeypatch.setenv(msda.ENV_VAR, "triton")
        assert msda.resolve_ms_deform_attn_backend(value).name == "triton"


# --------------------------------------------------------------------------- benchmark helpers
def _benchmark_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_ms_deform_attn",
                                                  REPO_ROOT / "tools" / "benchmark_ms_deform_attn.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_benchmark_shapes_inputs_and_byte_counts(backends):
    bench = _benchmark_module()
    assert bench.CONFIGS["r50-b2"].shapes == [(100, 168), (50, 84), (25, 42)]  # 800x1344 padded input
    assert bench.CONFIGS["swinl-b8"].shapes == [(128, 128), (64, 64), (32, 32)]
    cfg = bench.Config("tiny", (64, 96), 1)
    value, ss, start, loc, w = bench.make_inputs(cfg, torch.float32, "cpu")
    S = 8 * 12 + 4 * 6 + 2 * 3
    assert value.shape == (1, S, 8, 32) and loc.shape == (1, S, 8, 3, 4, 2) and start.tolist() == [0, 96, 120]
    torch.testing.assert_close(w.sum((-1, -2)), torch.ones(1, S, 8))
    # queries sample a couple of pixels around their own position: token 0 is the top-left pixel
    pixel_offsets = (loc[0, 0] - torch.tensor([0.5 / 12, 0.5 / 8])) * torch.tensor([[12.0, 8.0], [6, 4], [3, 2]])[:, None]
    assert 0.5 < pixel_offsets.abs().mean() < 4
    fwd = bench.compulsory_bytes(value, loc, w, backward=False)
    assert fwd == 4 * (value.numel() * 2 + loc.numel() + w.numel())  # output is value-sized here (Lq = S)
    assert bench.compulsory_bytes(value, loc, w, backward=True) == 2 * fwd + 4 * (value.numel() + loc.numel()
                                                                                 + w.numel())
