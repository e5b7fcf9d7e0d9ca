"""The deformable-attention dispatcher (layers/ms_deform_attn_dispatch.py): backend choice,
fallbacks, plugging in backends, backends loaded by name on first use."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch

import mask2former.layers.ms_deform_attn_dispatch as msda
from mask2former.layers.ms_deform_attn_dispatch import (
    MSDABackend,
    multi_scale_deformable_attention,
    register_ms_deform_attn_backend,
    resolve_ms_deform_attn_backend,
    set_ms_deform_attn_impl,
)
from mask2former.layers.ms_deform_attn_pytorch import ms_deform_attn_core_pytorch
from test_ms_deform_attn import _inputs, clean_dispatch, naive_msda  # noqa: F401  (autouse fixture)


def _counting_backend(name, calls, supports=lambda v: True, available=lambda: True):
    def forward(*args):
        calls.append(name)
        return ms_deform_attn_core_pytorch(*args)

    return MSDABackend(name, forward, is_available=available, supports=supports)


def test_auto_falls_back_to_pytorch_when_no_compiled_backend_can_run(caplog):
    register_ms_deform_attn_backend(_counting_backend("cpu", [], available=lambda: False))
    value = torch.zeros(1, 4, 1, 2)
    with caplog.at_level(logging.INFO, logger=msda.__name__):
        assert resolve_ms_deform_attn_backend(value).name == "pytorch"
        assert resolve_ms_deform_attn_backend(value).name == "pytorch"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "pytorch backend" in lines[0]
    # the CPU-only backends are skipped for what they cannot take, the cpu one as unavailable
    assert "cuda: does not support torch.float32 tensors on cpu" in lines[0]
    assert "cpu: is not available" in lines[0]


def test_auto_takes_the_cpu_kernel_on_cpu_but_pytorch_while_capturing_a_graph(monkeypatch):
    calls = []
    register_ms_deform_attn_backend(_counting_backend("cpu", calls))
    value, spatial_shapes, start, loc, w = _inputs([(3, 4)])
    multi_scale_deformable_attention(value, spatial_shapes, start, loc, w)
    assert calls == ["cpu"]
    # torch.compile / torch.export / ONNX export (is_compiling) and torch.jit.trace get plain tensor ops
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert resolve_ms_deform_attn_backend(value).name == "pytorch"
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)
    assert resolve_ms_deform_attn_backend(value).name == "pytorch"
    # a backend asked for by name is used even then
    set_ms_deform_attn_impl("cpu")
    assert resolve_ms_deform_attn_backend(value).name == "cpu"


def test_env_var_selects_and_forces(monkeypatch):
    value = torch.zeros(1, 4, 1, 2)
    monkeypatch.setenv(msda.ENV_VAR, "pytorch")
    assert resolve_ms_deform_attn_backend(value).name == "pytorch"
    monkeypatch.setenv(msda.ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match="MASK2FORMER_MSDA_IMPL='cuda'.*does not support torch.float32 tensors on cpu"):
        resolve_ms_deform_attn_backend(value)
    monkeypatch.setenv(msda.ENV_VAR, "bogus")
    with pytest.raises(ValueError, match="bogus"):
        resolve_ms_deform_attn_backend(value)
    # the in-code choice wins over the environment
    set_ms_deform_attn_impl("pytorch")
    assert resolve_ms_deform_attn_backend(value).name == "pytorch"


def test_set_impl_unavailable_falls_back_once(caplog):
    value = torch.zeros(1, 4, 1, 2)
    set_ms_deform_attn_impl("triton")
    with caplog.at_level(logging.WARNING, logger=msda.__name__):
        for _ in range(3):
            assert resolve_ms_deform_attn_backend(value).name == "pytorch"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "triton" in warnings[0].getMessage()
    with pytest.raises(ValueError, match="set_ms_deform_attn_impl"):
        set_ms_deform_attn_impl("tritonn")


def test_registered_backend_is_plugged_in_without_touching_callers(monkeypatch):
    calls = []
    value, spatial_shapes, start, loc, w = _inputs([(3, 4)])
    register_ms_deform_attn_backend(_counting_backend("triton", calls))
    out = multi_scale_deformable_attention(value, spatial_shapes, start, loc, w)
    assert calls == ["triton"]
    torch.testing.assert_close(out, naive_msda(value, [(3, 4)], loc, w), atol=1e-12, rtol=0)

    # a backend that cannot take these inputs is skipped by auto, refused when forced by env
    register_ms_deform_attn_backend(_counting_backend("cpu", calls, available=lambda: False))
    register_ms_deform_attn_backend(_counting_backend("triton", calls, supports=lambda v: v.is_cuda))
    assert resolve_ms_deform_attn_backend(value).name == "pytorch"
    monkeypatch.setenv(msda.ENV_VAR, "triton")
    with pytest.raises(RuntimeError, match="does not support"):
        multi_scale_deformable_attention(value, spatial_shapes, start, loc, w)

    # cuda comes before triton in auto order
    monkeypatch.setenv(msda.ENV_VAR, "auto")
    register_ms_deform_attn_backend(_counting_backend("triton", calls))
    register_ms_deform_attn_backend(_counting_backend("cuda", calls))
    multi_scale_deformable_attention(value, spatial_shapes, start, loc, w)
    assert calls[-1] == "cuda"
    register_ms_deform_attn_backend(_counting_backend("cuda", calls, available=lambda: False))
    multi_scale_deformable_attention(value, spatial_shapes, start, loc, w)
    assert calls[-1] == "triton"

    with pytest.raises(ValueError, match="backend name"):
        register_ms_deform_attn_backend(_counting_backend("auto", calls))


def test_backends_are_imported_by_name_on_first_use():
    """Importing the dispatcher loads no backend module; resolving loads the ones it asks."""
    code = (
        "import sys, torch\n"
        "import mask2former.layers.ms_deform_attn_dispatch as d\n"
        "names = ['mask2former.layers.ms_deform_attn_' + b for b in ('pytorch', 'cuda', 'triton', 'cpu')]\n"
        "print([n in sys.modules for n in names])\n"
        "d.resolve_ms_deform_attn_backend(torch.zeros(1, 4, 1, 2))\n"
        "print([n in sys.modules for n in names])\n"
    )
    env = dict(os.environ, MASK2FORMER_MSDA_JIT="0")  # the cpu backend: unavailable, nothing built
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    before, after = out.stdout.split("\n")[:2]
    assert before == "[False, False, False, False]"
    assert after == "[True, True, True, True]"  # auto asked cuda, triton, cpu, then took pytorch
