""".safetensors checkpoints: bitwise round trips, the same load report as .pkl, exact resume
through the trainer-state sidecar, the conversion tool."""
from __future__ import annotations

import logging
import os
import pickle
import importlib.util
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mask2former.checkpoint import DetectionCheckpointer, load_checkpoint_file
from mask2former.checkpoint.safetensors_io import sidecar_path
from mask2former.config import get_cfg

REPO = Path(__file__).resolve().parents[2]


class _Mixed(nn.Module):
    """Parameters of several dtypes, a tied weight, an integer buffer and a versioned child."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)  # num_batches_tracked: int64 buffer; _version = 2
        self.fp16 = nn.Linear(4, 4).half()
        self.bf16 = nn.Linear(4, 2).to(torch.bfloat16)
        self.tied = nn.Linear(4, 4, bias=False)
        self.tied.weight = self.fp16.weight  # shares storage: stored as a copy, loaded back tied

    def forward(self, x):
        return self.bn(self.conv(x))


def _randomised(seed: int) -> _Mixed:
    torch.manual_seed(seed)
    model = _Mixed()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p, dtype=torch.float32).to(p.dtype))
        model.bn.running_mean.normal_()
        model.bn.num_batches_tracked.fill_(123456789012)
    return model


def _bits(t: torch.Tensor) -> bytes:
    return t.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""


def test_save_load_round_trip_is_bitwise(tmp_path):
    source = _randomised(0)
    with torch.no_grad():
        source.conv.weight[0, 0, 0, 0] = 1e-45  # a subnormal: bits survive, not only values (NaN / inf are refused on load)
        source.conv.weight[0, 0, 0, 1] = -0.0
    DetectionCheckpointer(source, str(tmp_path), save_to_disk=True, save_format="safetensors").save("w")
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "w.safetensors"]  # nothing but weights: no sidecar
    assert (tmp_path / "last_checkpoint").read_text() == "w.safetensors"

    target = _randomised(1)
    DetectionCheckpointer(target).load(str(tmp_path / "w.safetensors"))
    expected, actual = source.state_dict(), target.state_dict()
    assert list(actual) == list(expected)
    for key in expected:
        assert actual[key].dtype == expected[key].dtype, key
        assert _bits(actual[key]) == _bits(expected[key]), key
    assert target.tied.weight is target.fp16.weight

    # the file itself is a plain safetensors file other tools can read
    raw = load_file(str(tmp_path / "w.safetensors"))
    assert raw["bn.num_batches_tracked"].item() == 123456789012 and raw["bf16.weight"].dtype == torch.bfloat16


def test_module_versions_survive(tmp_path):
    class Recorder(nn.Module):
        _version = 7

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.seen = None

        def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
            self.seen = local_metadata.get("version")
            super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    root = nn.Module()
    root.head = Recorder()
    DetectionCheckpointer(root, str(tmp_path), save_to_disk=True, save_format="safetensors").save("v")
    fresh = nn.Module()
    fresh.head = Recorder()
    DetectionCheckpointer(fresh).load(str(tmp_path / "v.safetensors"))
    assert fresh.head.seen == 7

    # a foreign file without our header: no version, as for a plain dict .pth
    save_file({k: v.contiguous() for k, v in root.state_dict().items()}, str(tmp_path / "plain.safetensors"))
    DetectionCheckpointer(fresh).load(str(tmp_path / "plain.safetensors"))
    assert fresh.head.seen is None


def _report(path: Path, caplog) -> str:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mask2former.checkpoint"):
        DetectionCheckpointer(model).load(str(path))
    records = [r.getMessage() for r in caplog.records if "were not loaded" in r.getMessage()]
    assert len(records) == 1, caplog.text
    return records[0]


def test_wrong_shape_and_missing_key_give_the_same_report_as_pkl(tmp_path, caplog):
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1)).state_dict().items()}
    state["2.weight"] = torch.ones(5, 4, 1, 1)  # model: (2, 4, 1, 1)
    state["extra.weight"] = torch.ones(1)
    del state["2.bias"], state["1.running_var"]
    save_file(state, str(tmp_path / "w.safetensors"))
    with open(tmp_path / "w.pkl", "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in state.items()}, "__author__": "test"}, f)

    from_safetensors = _report(tmp_path / "w.safetensors", caplog)
    from_pkl = _report(tmp_path / "w.pkl", caplog)
    assert from_safetensors == from_pkl
    for needle in ("shape mismatch", "2.weight", "(5, 4, 1, 1)", "(2, 4, 1, 1)", "missing in checkpoint",
                   "2.{weight, bias}", "1.running_var", "not in model", "extra.weight"):
        assert needle in from_safetensors, needle


def test_corrupt_file_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="broken.safetensors.*not a valid .safetensors"):
        load_checkpoint_file(str(bad))


def test_resume_is_exact_through_the_sidecar(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        model(torch.randn(5, 3)).pow(2).sum().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    ckpt = DetectionCheckpointer(model, str(tmp_path), save_to_disk=True, save_format="safetensors",
                                 optimizer=opt, scheduler=sched)
    rng = np.random.RandomState(3).get_state()
    torch_rng = torch.get_rng_state()
    ckpt.save("model_0000002", iteration=2, np_rng=rng, torch_rng=torch_rng)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000002.safetensors", "model_0000002.state.pth"]
    assert ckpt.get_all_checkpoint_files() == [str(tmp_path / "model_0000002.safetensors")]

    torch.manual_seed(1)
    model2 = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.1)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    ckpt2 = DetectionCheckpointer(model2, str(tmp_path), save_to_disk=True, save_format="safetensors",
                                  optimizer=opt2, scheduler=sched2)
    extra = ckpt2.resume_or_load("unused.pth", resume=True)
    assert extra["iteration"] == 2 and np.array_equal(extra["np_rng"][1], rng[1])
    assert torch.equal(extra["torch_rng"], torch_rng)
    assert sched2.state_dict() == sched.state_dict()

    # one more identical step on both gives bitwise-equal weights: the optimizer state is exact
    x = torch.randn(5, 3)
    for m, o in ((model, opt), (model2, opt2)):
        m(x).pow(2).sum().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)

    # fine-tuning from the same file (resume=False): weights only
    opt3 = torch.optim.AdamW(nn.Linear(1, 1).parameters(), lr=0.1)
    DetectionCheckpointer(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), optimizer=opt3).resume_or_load(
        str(tmp_path / "model_0000002.safetensors"), resume=False)
    assert opt3.state_dict()["state"] == {}


def test_sidecar_from_another_save_or_missing_is_refused(tmp_path):
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    a, b = tmp_path / "a", tmp_path / "b"
    DetectionCheckpointer(model, str(a), save_to_disk=True, save_format="safetensors", optimizer=opt).save("m", iteration=1)
    DetectionCheckpointer(model, str(b), save_to_disk=True, save_format="safetensors", optimizer=opt).save("m", iteration=2)
    os.replace(b / "m.state.pth", a / "m.state.pth")
    with pytest.raises(ValueError, match="does not belong to"):
        load_checkpoint_file(str(a / "m.safetensors"))
    os.remove(a / "m.state.pth")
    with pytest.raises(ValueError, match=r"m\.state\.pth', which does not exist"):
        load_checkpoint_file(str(a / "m.safetensors"))


def test_periodic_checkpointer_hook_keeps_pairs_together(tmp_path):
    """The engine's hook rotates old checkpoints through ``delete``: weights and sidecar go together."""
    from mask2former.engine.hooks import PeriodicCheckpointer as PeriodicCheckpointerHook

    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = DetectionCheckpointer(model, str(tmp_path), save_to_disk=True, save_format="safetensors", optimizer=opt)
    hook = PeriodicCheckpointerHook(ckpt, period=2, max_iter=6, max_to_keep=1)
    hook.trainer = types.SimpleNamespace(iter=0)
    for it in range(6):
        hook.trainer.iter = it
        hook.after_step()
    assert sorted(os.listdir(tmp_path)) == [
        "last_checkpoint", "model_0000005.safetensors", "model_0000005.state.pth",
        "model_final.safetensors", "model_final.state.pth"]
    assert load_checkpoint_file(str(tmp_path / "model_final.safetensors"))["iteration"] == 5


def test_config_key_and_bad_format():
    assert get_cfg().SOLVER.CHECKPOINT_FORMAT == "pth"
    with pytest.raises(ValueError, match="CHECKPOINT_FORMAT.*'npz'"):
        DetectionCheckpointer(nn.Linear(1, 1), save_format="npz")


def _convert_tool():
    spec = importlib.util.spec_from_file_location("convert_to_safetensors", REPO / "tools/convert-to-safetensors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_convert_tool_keeps_bits_and_heuristic_flags(tmp_path, capsys):
    rng = np.random.default_rng(0)
    weights = {"res2.0.conv1.weight": rng.standard_normal((4, 3, 1, 1)).astype(np.float32),
               "stem.conv1.norm.running_mean": rng.standard_normal(4).astype(np.float16),
               "counter": np.array([7], dtype=np.int64)}
    src = tmp_path / "R-tiny.pkl"
    with open(src, "wb") as f:
        pickle.dump({"model": weights, "__author__": "torchvision", "matching_heuristics": True}, f)
    dst = tmp_path / "R-tiny.safetensors"
    convert = _convert_tool()
    assert convert([str(src), str(dst)]) == 0
    assert "Wrote 3 tensors" in capsys.readouterr().out
    loaded = load_checkpoint_file(str(dst))
    assert loaded["__author__"] == "torchvision" and loaded["matching_heuristics"] is True
    for key, value in weights.items():
        assert loaded["model"][key].numpy().dtype == value.dtype
        assert loaded["model"][key].numpy().tobytes() == value.tobytes()
    assert sidecar_path(str(dst)) == str(tmp_path / "R-tiny.state.pth") and not os.path.exists(sidecar_path(str(dst)))

    # a trainer .pth: weights converted, the rest listed as left out
    torch.save({"model": {"w": torch.ones(2)}, "optimizer": {"state": {}}, "iteration": 5}, tmp_path / "t.pth")
    assert convert([str(tmp_path / "t.pth"), str(tmp_path / "t.safetensors")]) == 0
    assert "Left out (not model weights): iteration, optimizer" in capsys.readouterr().out

    with pytest.raises(SystemExit):
        convert([str(src), str(tmp_path / "x.bin")])
    assert "must end with .safetensors" in capsys.readouterr().err
