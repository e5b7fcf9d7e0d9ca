"""Property-based tests: every checkpoint reader (.pkl, .pth, .safetensors) given random bytes, or a
valid file with random damage (cut, flipped bytes), returns a checkpoint or raises one of the
documented errors (CheckpointError, UnsafePickleError), quickly."""
from __future__ import annotations

import io
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mask2former.checkpoint import UnsafePickleError, load_checkpoint_file
from mask2former.checkpoint.checks import CheckpointError

DOCUMENTED = (CheckpointError, UnsafePickleError)
TIME_BOUND_S = 5.0
SUFFIXES = [".pkl", ".pth", ".safetensors"]
SETTINGS = settings(max_examples=40, deadline=None, database=None)


def _valid_files() -> dict:
    from safetensors.torch import save

    state = {"a.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "a.bias": torch.zeros(3)}
    buffer = io.BytesIO()
    torch.save({"model": state, "iteration": 3}, buffer)
    return {
        ".pkl": pickle.dumps({"model": {k: v.numpy() for k, v in state.items()}, "__author__": "t"}, protocol=2),
        ".pth": buffer.getvalue(),
        ".safetensors": save(state),
    }


VALID = _valid_files()


def _load(suffix: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"weights{suffix}"
        path.write_bytes(data)
        start = time.perf_counter()
        try:
            loaded = load_checkpoint_file(str(path))
            assert isinstance(loaded["model"], dict) or hasattr(loaded["model"], "items")
        except DOCUMENTED as err:
            assert str(path) in str(err)
        assert time.perf_counter() - start < TIME_BOUND_S


@SETTINGS
@given(st.sampled_from(SUFFIXES), st.binary(max_size=400))
def test_random_bytes(suffix, data):
    _load(suffix, data)


@SETTINGS
@given(st.sampled_from(SUFFIXES), st.data())
def test_valid_files_with_random_damage(suffix, data):
    blob = bytearray(VALID[suffix])
    cut = data.draw(st.integers(0, len(blob)), label="cut")
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 255)), max_size=4), label="flips")
    for position, value in flips:
        blob[position] = value
    _load(suffix, bytes(blob[:cut]))


def test_the_undamaged_files_load():
    for suffix, data in VALID.items():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"w{suffix}"
            path.write_bytes(data)
            model = load_checkpoint_file(str(path))["model"]
            np.testing.assert_array_equal(np.asarray(model["a.weight"]), np.arange(12).reshape(3, 4))
