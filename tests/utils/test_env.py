"""mask2former.utils.env.cpu_has_fast_bfloat16: the CPU's bfloat16 decision (AMX tiles, no native
bfloat16, or a measured matmul speed-up) and its environment override."""
import math

import pytest
import torch

from mask2former.utils import env
from mask2former.utils.env import CPU_BF16_ENV, cpu_has_fast_bfloat16


@pytest.fixture(autouse=True)
def fresh_decision(monkeypatch):
    """The decision is cached per process: start and leave each test with an empty cache."""
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    cpu_has_fast_bfloat16.cache_clear()
    yield
    cpu_has_fast_bfloat16.cache_clear()


def _cpu(monkeypatch, *, amx: bool, avx512_bf16: bool, speedup: float) -> list:
    """Pretend a CPU with these instruction sets whose bfloat16 matmuls run ``speedup`` x float32;
    returns the list that records each measurement."""
    measured = []
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(env, "_bfloat16_matmul_speedup", lambda: measured.append(speedup) or speedup)
    return measured


@pytest.mark.parametrize("amx, avx512_bf16, speedup, expected, measures", [
    (True, True, 0.5, True, False),     # AMX tiles: fast, nothing to measure
    (False, False, 3.0, False, False),  # no native bfloat16: emulated, slow
    (False, True, 2.2, True, True),     # AVX512-BF16 alone, measured fast (AMD Zen 4)
    (False, True, 0.8, False, True),    # AVX512-BF16 alone, measured slow (a Xeon with AMX hidden)
    (False, True, 1.2, False, True),    # below the 1.3x threshold
])
def test_decision_follows_the_cpu(monkeypatch, amx, avx512_bf16, speedup, expected, measures):
    measured = _cpu(monkeypatch, amx=amx, avx512_bf16=avx512_bf16, speedup=speedup)
    assert cpu_has_fast_bfloat16() is expected
    assert cpu_has_fast_bfloat16() is expected
    assert len(measured) == (1 if measures else 0)  # measured once per process at most


@pytest.mark.parametrize("value, expected", [("fast", True), ("slow", False), (" FAST ", True)])
def test_environment_decides_by_hand(monkeypatch, value, expected):
    measured = _cpu(monkeypatch, amx=not expected, avx512_bf16=True, speedup=0.5 if expected else 3.0)
    monkeypatch.setenv(CPU_BF16_ENV, value)
    assert cpu_has_fast_bfloat16() is expected
    assert measured == []


def test_auto_is_the_default(monkeypatch):
    _cpu(monkeypatch, amx=False, avx512_bf16=True, speedup=2.0)
    monkeypatch.setenv(CPU_BF16_ENV, "auto")
    assert cpu_has_fast_bfloat16() is True


def test_unknown_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(CPU_BF16_ENV, "yes")
    with pytest.raises(ValueError, match=f"{CPU_BF16_ENV}='yes'"):
        cpu_has_fast_bfloat16()


def test_measured_speedup_is_a_ratio_of_real_timings_and_leaves_the_random_stream_alone():
    # the real measurement on this CPU (whatever its bfloat16 support: emulated bfloat16 runs too)
    torch.manual_seed(3)
    expected_next = torch.rand(4)
    torch.manual_seed(3)
    speedup = env._bfloat16_matmul_speedup(rounds=3)
    assert math.isfinite(speedup) and 0.01 < speedup < 100.0
    assert torch.equal(torch.rand(4), expected_next)  # training's random stream is unchanged


def test_module_device_type_reads_the_first_parameter():
    assert env.module_device_type(torch.nn.Linear(2, 2, device="meta")) == "meta"
    assert env.module_device_type(torch.nn.Linear(2, 2)) == "cpu"
    assert env.module_device_type(torch.nn.ReLU()) == "cpu"  # no parameters
