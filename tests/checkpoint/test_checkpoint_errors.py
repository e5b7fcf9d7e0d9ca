"""Unusable checkpoints are errors naming the file and the real reason (issue: reliability 8, 9, 12):
empty / text / truncated files, another model's weights, NaN / inf values, URLs escaping the cache."""
from __future__ import annotations

import hashlib
import io
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mask2former.checkpoint import DetectionCheckpointer, UnsafePickleError, load_checkpoint_file
from mask2former.checkpoint.checks import CheckpointError
from mask2former.checkpoint.paths import resolve_checkpoint_path, url_to_cache_path


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def _state_bytes(model: nn.Module) -> bytes:
    return b"".join(v.numpy().tobytes() for v in model.state_dict().values())


def _pkl_bytes() -> bytes:
    return pickle.dumps({"model": {k: v.numpy() for k, v in _model().state_dict().items()}, "__author__": "test"})


def _pth_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"model": _model().state_dict()}, buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------- 8: unreadable files
@pytest.mark.parametrize("suffix", [".pkl", ".pth", ".safetensors"])
@pytest.mark.parametrize("content, reason", [
    (b"", "the file is empty (0 bytes)"),
    (b"hello, I am a README\n", "text file, not a checkpoint"),
    (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "HTML page: a failed download"),
])
def test_empty_and_text_files_name_file_and_reason(tmp_path, suffix, content, reason):
    # before: EOFError 'Ran out of input' (.pkl) or a blank reason + "re-save as a state dict" (.pth)
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(str(path))
    message = str(info.value)
    assert str(path) in message and reason in message
    assert "re-save" not in message


@pytest.mark.parametrize("suffix, full", [(".pkl", _pkl_bytes), (".pth", _pth_bytes)])
def test_truncated_files_name_file_and_reason(tmp_path, suffix, full):
    data = full()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"cut\{suffix}'.*truncated, corrupt or not a checkpoint "
                                              rf"\({len(data) // 2} bytes"):
        load_checkpoint_file(str(path))


def test_unreadable_weights_through_the_checkpointer_leave_the_model_untouched(tmp_path):
    path = tmp_path / "empty.pkl"
    path.write_bytes(b"")
    model = _model()
    before = _state_bytes(model)
    with pytest.raises(CheckpointError, match="empty.pkl.*empty"):
        DetectionCheckpointer(model).load(str(path))
    assert _state_bytes(model) == before


def test_code_in_a_pth_stays_an_unsafe_pickle_error(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"model": Evil()}, path)
    with pytest.raises(UnsafePickleError, match="evil.pth"):
        load_checkpoint_file(str(path))


# ---------------------------------------------------------------- 9: weights that do not fit
def test_another_models_checkpoint_is_an_error_with_the_load_report(tmp_path):
    other = nn.ModuleDict({"fc1": nn.Linear(5, 7), "fc2": nn.Linear(7, 1)})
    path = tmp_path / "other_model.pth"
    torch.save({"model": other.state_dict()}, path)
    model = _model()
    before = _state_bytes(model)
    with pytest.raises(CheckpointError) as info:
        DetectionCheckpointer(model).load(str(path))
    message = str(info.value)
    assert "other_model.pth" in message and "matches none of the model's weights" in message
    assert f"0 of {len(model.state_dict())} model tensors (0.0% of its values)" in message
    assert "missing in checkpoint" in message and "not in model (unused)" in message  # the load table
    assert _state_bytes(model) == before  # nothing was loaded


def test_same_names_with_other_shapes_match_nothing(tmp_path):
    # only BatchNorm's integer num_batches_tracked fits: that is not a match
    wider = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 3, 1))
    path = tmp_path / "wider.pth"
    torch.save(wider.state_dict(), path)
    with pytest.raises(CheckpointError, match="matches none"):
        DetectionCheckpointer(_model()).load(str(path))


def test_backbone_only_weights_load_and_report_their_share(tmp_path, caplog):
    # ImageNet backbones fill only part of a model: allowed, with the share in the log
    model = _model()
    partial = {k: v for k, v in _model().state_dict().items() if k.startswith("0.")}  # first conv only
    path = tmp_path / "backbone.pth"
    torch.save(partial, path)
    total = sum(v.numel() for v in model.state_dict().values())
    share = 100 * sum(v.numel() for v in partial.values()) / total
    with caplog.at_level(logging.INFO, logger="mask2former"):
        DetectionCheckpointer(model).load(str(path))
    assert f"Loading 2 of {len(model.state_dict())} model tensors ({share:.1f}% of its values)" in caplog.text


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_non_finite_weights_are_an_error_naming_the_tensors(tmp_path, bad, suffix):
    state = {k: v.clone() for k, v in _model().state_dict().items()}
    state["2.weight"][0, 1] = bad
    state["1.running_var"][3] = bad
    path = tmp_path / f"nan{suffix}"
    if suffix == ".pth":
        torch.save({"model": state}, path)
    else:
        path.write_bytes(pickle.dumps({"model": {k: v.numpy() for k, v in state.items()}, "__author__": "t"}))
    model = _model()
    before = _state_bytes(model)
    with pytest.raises(CheckpointError) as info:
        DetectionCheckpointer(model).load(str(path))
    message = str(info.value)
    assert f"nan{suffix}" in message and "NaN / inf values in 2 tensor(s)" in message
    assert "1.running_var (1 of 4 values)" in message and "2.weight (1 of 8 values)" in message
    assert _state_bytes(model) == before


# ---------------------------------------------------------------- 12: URLs never leave the cache
def test_url_with_dot_dot_cannot_name_a_file_outside_the_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    outside = tmp_path / "secret" / "weights.pth"
    outside.parent.mkdir()
    torch.save(_model().state_dict(), outside)
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    monkeypatch.setenv("MASK2FORMER_CACHE", str(cache))
    monkeypatch.setenv("MASK2FORMER_OFFLINE", "1")
    escaping = "https://host" + "/.." * 12 + str(outside)
    local = url_to_cache_path(escaping)
    assert local == str(cache / outside.relative_to("/"))  # inside the cache root
    # before: the local file outside the cache was loaded; now it is "not cached"
    with pytest.raises(FileNotFoundError, match="not cached") as info:
        resolve_checkpoint_path(escaping)
    assert str(cache) in str(info.value)
    with pytest.raises(FileNotFoundError):
        DetectionCheckpointer(_model()).load("detectron2://" + "../" * 12 + str(outside).lstrip("/"))
    assert hashlib.sha256(outside.read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("url", ["https://h/a/../b/./c.pkl", "https://h//b/c.pkl", "https://h/../../b/c.pkl"])
def test_url_paths_are_normalised(tmp_path, url):
    assert url_to_cache_path(url, str(tmp_path)) == str(tmp_path / "b" / "c.pkl")


@pytest.mark.parametrize("url", ["https://h/", "https://h/..", "https://h/a\\..\\..\\x.pkl", "https://h/a%00/x\x00.pkl"])
def test_urls_naming_no_file_in_the_cache_are_refused(tmp_path, url):
    with pytest.raises(ValueError):
        url_to_cache_path(url, str(tmp_path))
