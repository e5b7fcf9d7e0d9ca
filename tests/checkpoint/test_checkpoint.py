"""DetectionCheckpointer: official .pkl files, safe unpickling, .pth, heuristics, atomic saves."""
from __future__ import annotations

import logging
import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest
import torch
from torch import nn

from mask2former.checkpoint import (
    DetectionCheckpointer,
    PeriodicCheckpointer,
    UnsafePickleError,
    load_checkpoint_file,
    load_pickle,
    load_state_dict_into_model,
)
from mask2former.checkpoint.torchvision_conversion import convert_torchvision_resnet_state_dict

CASES = ["m2f_swin_panoptic", "m2f_swin_semantic_batch2"]


# ---------------------------------------------------------------- helpers
class VersionRecorder(nn.Module):
    """A module that records the version its ``_load_from_state_dict`` receives
    (as MaskFormerHead does to pick its key layout)."""

    _version = 2

    def __init__(self):
        super().__init__()
        self.seen_version: Optional[int] = -1

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        self.seen_version = local_metadata.get("version")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)


def _module_from_state_dict(state: Dict[str, np.ndarray], versioned: str = "sem_seg_head") -> nn.Module:
    """A module tree whose state_dict has exactly ``state``'s keys and shapes (float -> float32)."""
    root = nn.Module()
    for key, value in state.items():
        *path, leaf = key.split(".")
        module, prefix = root, []
        for part in path:
            prefix.append(part)
            if not hasattr(module, part):
                module.add_module(part, VersionRecorder() if ".".join(prefix) == versioned else nn.Module())
            module = getattr(module, part)
        tensor = torch.zeros(value.shape, dtype=torch.float32 if value.dtype.kind == "f" else torch.from_numpy(value).dtype)
        if tensor.is_floating_point():
            module.register_parameter(leaf, nn.Parameter(tensor))
        else:
            module.register_buffer(leaf, tensor)
    return root


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def _write_pickle(path: Path, obj) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


# ---------------------------------------------------------------- official .pkl
@pytest.mark.parametrize("case", CASES)
def test_reference_pkl_loads_into_state_dict(reference_dir, case):
    path = reference_dir / "official_outputs" / case / "model_final.pkl"
    raw = load_pickle(path)["model"]
    checkpoint = load_checkpoint_file(str(path))
    state = checkpoint["model"]
    assert checkpoint["__author__"] == "official-reference" and "matching_heuristics" not in checkpoint
    assert len(state) == 212
    assert state._metadata["sem_seg_head"] == {"version": 2}

    model = _module_from_state_dict(raw)
    incompatible = load_state_dict_into_model(model, checkpoint["model"], source=str(path))
    assert incompatible.missing_keys == [] and incompatible.unexpected_keys == []
    assert incompatible.incorrect_shapes == []
    loaded = model.state_dict()
    assert list(loaded) == list(raw)
    for key, array in raw.items():
        if array.dtype == np.float16:
            assert loaded[key].dtype == torch.float32
            assert torch.equal(loaded[key], torch.from_numpy(array.astype(np.float32))), key  # exact
        else:
            assert torch.equal(loaded[key], torch.from_numpy(array)), key
    # the per-module version reached the head (the official head would rename keys otherwise)
    assert model.sem_seg_head.seen_version == 2


def test_reference_pkl_through_detection_checkpointer(reference_dir, caplog):
    path = reference_dir / "official_outputs" / CASES[0] / "model_final.pkl"
    model = _module_from_state_dict(load_pickle(path)["model"])
    with caplog.at_level(logging.INFO, logger="mask2former.checkpoint"):
        extra = DetectionCheckpointer(model).load(str(path))
    assert extra == {"__author__": "official-reference"}
    assert "All model weights were loaded" in caplog.text
    assert model.sem_seg_head.seen_version == 2
    assert model.criterion.empty_weight.dtype == torch.float32


def test_plain_dict_without_metadata_gives_no_version(tmp_path):
    model = nn.Module()
    model.sem_seg_head = VersionRecorder()
    model.sem_seg_head.lin = nn.Linear(2, 2)
    state = {k: v.numpy() for k, v in model.state_dict().items()}  # plain dict: no _metadata
    path = _write_pickle(tmp_path / "w.pkl", {"model": state, "__author__": "x"})
    DetectionCheckpointer(model).load(str(path))
    assert model.sem_seg_head.seen_version is None


def _official_parts(case_dir: Path) -> nn.Module:
    """backbone + sem_seg_head + criterion built from the case's official config (the
    state_dict of the official MaskFormer meta-architecture, which holds no other weights)."""
    try:
        import mask2former.modeling.backbone.swin  # noqa: F401  (registers the parts)
        import mask2former.modeling.heads.mask_former_head  # noqa: F401
        import mask2former.modeling.pixel_decoder.msdeformattn  # noqa: F401
        import mask2former.modeling.transformer_decoder.mask2former_transformer_decoder  # noqa: F401
        from mask2former.config import get_cfg
        from mask2former.modeling.build import build_backbone, build_sem_seg_head
        from mask2former.modeling.criterion import build_criterion
    except ImportError as err:  # the parts are written by other modules
        pytest.skip(f"model parts not importable: {err}")
    cfg = get_cfg()
    cfg.merge_from_file(str(case_dir / "config.yaml"))
    model = nn.Module()
    model.backbone = build_backbone(cfg)
    model.sem_seg_head = build_sem_seg_head(cfg, model.backbone.output_shape())
    model.criterion = build_criterion(cfg)
    return model


def test_official_model_loads_reference_pkl_exactly(reference_dir, caplog):
    case = reference_dir / "official_outputs" / CASES[0]
    model = _official_parts(case)
    raw = load_pickle(case / "model_final.pkl")["model"]
    assert list(model.state_dict()) == list(raw)
    with caplog.at_level(logging.INFO, logger="mask2former.checkpoint"):
        DetectionCheckpointer(model).load(str(case / "model_final.pkl"))
    assert "All model weights were loaded" in caplog.text
    loaded = model.state_dict()
    for key, array in raw.items():
        assert torch.equal(loaded[key], torch.from_numpy(array).to(loaded[key].dtype)), key

    # Without _metadata the official head takes the file for an old layout and renames
    # sem_seg_head.* keys (Mask2Former issue #95): the metadata is what makes it load.
    plain = dict(load_checkpoint_file(str(case / "model_final.pkl"))["model"])
    result = load_state_dict_into_model(_official_parts(case), plain)
    assert any(k.startswith("sem_seg_head.pixel_decoder.pixel_decoder.") for k in result.unexpected_keys)


# ---------------------------------------------------------------- safety
class _TouchFile:
    """Pickles to a call of ``builtins.open(marker, "w")``: creates the marker if executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _ShellTouch:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", [_TouchFile, _ShellTouch])
def test_malicious_pkl_is_refused_and_not_executed(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = _write_pickle(tmp_path / "evil.pkl", {"model": {"w": payload(marker)}, "__author__": "evil"})
    # sanity: the payload does run under plain pickle (in a scratch dir)
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(payload(probe)))
    assert probe.exists()

    with pytest.raises(UnsafePickleError) as info:
        DetectionCheckpointer(_tiny_model()).load(str(path))
    message = str(info.value)
    assert str(path) in message
    assert ("builtins.open" in message or "io.open" in message) if payload is _TouchFile else "system" in message
    assert not marker.exists()


def test_malicious_pth_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": _TouchFile(marker)}}, path)
    with pytest.raises(UnsafePickleError, match="evil.pth"):
        DetectionCheckpointer(_tiny_model()).load(str(path))
    assert not marker.exists()


def test_pkl_with_numpy_scalars_and_protocols(tmp_path):
    state = OrderedDict(w=np.arange(6, dtype=np.float32).reshape(2, 3).T)
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        with open(tmp_path / "a.pkl", "wb") as f:
            pickle.dump({"model": state, "step": np.int64(3), "__author__": "t"}, f, protocol=protocol)
        loaded = load_pickle(tmp_path / "a.pkl")
        np.testing.assert_array_equal(loaded["model"]["w"], state["w"])
        assert loaded["step"] == 3


# ---------------------------------------------------------------- .pth
@pytest.mark.parametrize("under_model", [False, True])
def test_pth_round_trip(tmp_path, under_model):
    source = _tiny_model()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
        source[1].running_mean.fill_(0.5)
    data = {"model": source.state_dict(), "iteration": 7} if under_model else source.state_dict()
    torch.save(data, tmp_path / "w.pth")
    target = _tiny_model()
    extra = DetectionCheckpointer(target).load(str(tmp_path / "w.pth"))
    assert extra == ({"iteration": 7} if under_model else {})
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_pth_keeps_module_versions(tmp_path):
    source = nn.Module()
    source.sem_seg_head = VersionRecorder()
    source.sem_seg_head.lin = nn.Linear(2, 2)
    torch.save({"model": source.state_dict()}, tmp_path / "w.pth")
    target = nn.Module()
    target.sem_seg_head = VersionRecorder()
    target.sem_seg_head.lin = nn.Linear(2, 2)
    DetectionCheckpointer(target).load(str(tmp_path / "w.pth"))
    assert target.sem_seg_head.seen_version == 2


def test_shape_mismatch_is_skipped_and_reported(tmp_path, caplog):
    model = _tiny_model()
    state = model.state_dict()
    state["2.weight"] = torch.ones(5, 4, 1, 1)  # model: (2, 4, 1, 1)
    state["extra.weight"] = torch.ones(1)
    del state["2.bias"]
    before = model[2].weight.detach().clone()
    torch.save(state, tmp_path / "w.pth")
    with caplog.at_level(logging.WARNING, logger="mask2former.checkpoint"):
        DetectionCheckpointer(model).load(str(tmp_path / "w.pth"))
    assert torch.equal(model[2].weight, before)
    text = caplog.text
    assert "shape mismatch" in text and "2.weight" in text and "(5, 4, 1, 1)" in text and "(2, 4, 1, 1)" in text
    assert "missing in checkpoint" in text and "2.{weight, bias}" in text  # grouped by module
    assert "not in model" in text and "extra.weight" in text

    result = load_state_dict_into_model(model, dict(state))
    assert result.incorrect_shapes == [("2.weight", (5, 4, 1, 1), (2, 4, 1, 1))]
    # the skipped entry is missing too: the model keeps its own value
    assert result.missing_keys == ["2.weight", "2.bias"] and result.unexpected_keys == ["extra.weight"]


def test_module_prefix_from_ddp_is_stripped(tmp_path):
    source = _tiny_model()
    torch.save({"model": {"module." + k: v + 1 for k, v in source.state_dict().items()}}, tmp_path / "w.pth")
    target = _tiny_model()
    DetectionCheckpointer(target).load(str(tmp_path / "w.pth"))
    torch.testing.assert_close(target[0].weight, source[0].weight + 1)


# ---------------------------------------------------------------- heuristics
class _TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.stem = nn.Module()
        self.backbone.stem.conv1 = nn.Conv2d(3, 4, 3, bias=False)
        self.backbone.stem.conv1.norm = nn.BatchNorm2d(4)
        self.backbone.res2 = nn.ModuleList([nn.Module()])
        self.backbone.res2[0].conv1 = nn.Conv2d(4, 4, 1, bias=False)
        self.backbone.res2[0].shortcut = nn.Conv2d(4, 8, 1, bias=False)
        self.sem_seg_head = nn.Module()
        self.sem_seg_head.x_conv1 = nn.Conv2d(4, 4, 1, bias=False)


def test_matching_heuristics_with_torchvision_names(tmp_path, caplog):
    torch.manual_seed(1)
    tv = {  # torchvision ResNet names
        "conv1.weight": torch.randn(4, 3, 3, 3),
        "bn1.weight": torch.rand(4),
        "bn1.bias": torch.rand(4),
        "bn1.running_mean": torch.rand(4),
        "bn1.running_var": torch.rand(4),
        "layer1.0.conv1.weight": torch.randn(4, 4, 1, 1),
        "layer1.0.downsample.0.weight": torch.randn(8, 4, 1, 1),
        "fc.weight": torch.randn(10, 4),
    }
    converted = {k: v.numpy() for k, v in convert_torchvision_resnet_state_dict(tv).items()}
    path = _write_pickle(tmp_path / "R-50.pkl", {"model": converted, "__author__": "torchvision", "matching_heuristics": True})
    model = _TinyResNet()
    x_conv1_before = model.sem_seg_head.x_conv1.weight.detach().clone()
    with caplog.at_level(logging.INFO, logger="mask2former.checkpoint"):
        DetectionCheckpointer(model).load(str(path))
    bb = model.backbone
    assert torch.equal(bb.stem.conv1.weight, tv["conv1.weight"])
    assert torch.equal(bb.stem.conv1.norm.running_var, tv["bn1.running_var"])
    assert torch.equal(bb.res2[0].conv1.weight, tv["layer1.0.conv1.weight"])
    assert torch.equal(bb.res2[0].shortcut.weight, tv["layer1.0.downsample.0.weight"])
    # "conv1.weight" is not a whole-component suffix of "sem_seg_head.x_conv1.weight"
    assert torch.equal(model.sem_seg_head.x_conv1.weight, x_conv1_before)
    assert "sem_seg_head.x_conv1.weight" in caplog.text  # reported missing
    assert "stem.fc.weight" in caplog.text  # reported unused


def test_matching_heuristics_with_caffe2_names(tmp_path):
    torch.manual_seed(2)
    blobs = {
        "conv1_w": np.random.randn(4, 3, 3, 3).astype(np.float32),
        "res_conv1_bn_s": np.random.rand(4).astype(np.float32),
        "res_conv1_bn_b": np.random.rand(4).astype(np.float32),
        "res2_0_branch2a_w": np.random.randn(4, 4, 1, 1).astype(np.float32),
        "res2_0_branch1_w": np.random.randn(8, 4, 1, 1).astype(np.float32),
        "res2_0_branch1_w_momentum": np.zeros((8, 4, 1, 1), np.float32),
        "fc1000_w": np.zeros((10, 4), np.float32),
    }
    path = _write_pickle(tmp_path / "MSRA-R-50.pkl", {"blobs": blobs})  # no __author__: Caffe2 format
    model = _TinyResNet()
    extra = DetectionCheckpointer(model).load(str(path))
    assert extra == {"__author__": "Caffe2", "matching_heuristics": True}
    bb = model.backbone
    np.testing.assert_array_equal(bb.stem.conv1.weight.detach().numpy(), blobs["conv1_w"])
    np.testing.assert_array_equal(bb.stem.conv1.norm.weight.detach().numpy(), blobs["res_conv1_bn_s"])
    np.testing.assert_array_equal(bb.stem.conv1.norm.bias.detach().numpy(), blobs["res_conv1_bn_b"])
    np.testing.assert_array_equal(bb.res2[0].conv1.weight.detach().numpy(), blobs["res2_0_branch2a_w"])
    np.testing.assert_array_equal(bb.res2[0].shortcut.weight.detach().numpy(), blobs["res2_0_branch1_w"])


def test_heuristics_refuse_ambiguous_matches():
    from mask2former.checkpoint import align_and_update_state_dicts

    model = {"a.conv.weight": torch.zeros(1), "b.conv.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="Ambiguous checkpoint key 'conv.weight'"):
        align_and_update_state_dicts(model, {"conv.weight": torch.ones(1)}, c2_conversion=False)


# ---------------------------------------------------------------- saving
class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle me")


class _Holder:
    def __init__(self):
        self.value: object = 1

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


def test_save_is_atomic(tmp_path):
    holder = _Holder()
    ckpt = DetectionCheckpointer(_tiny_model(), str(tmp_path), save_to_disk=True, holder=holder)
    ckpt.save("model_a", iteration=1)
    good = (tmp_path / "model_a.pth").read_bytes()

    holder.value = _Unpicklable()
    with pytest.raises(RuntimeError, match="cannot pickle me"):
        ckpt.save("model_a", iteration=2)  # overwrite fails midway
    with pytest.raises(RuntimeError, match="cannot pickle me"):
        ckpt.save("model_b", iteration=2)  # new file fails midway

    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_a.pth"]  # no partial / temp file
    assert (tmp_path / "model_a.pth").read_bytes() == good
    assert (tmp_path / "last_checkpoint").read_text() == "model_a.pth"
    assert ckpt.get_checkpoint_file() == str(tmp_path / "model_a.pth")


def test_resume_restores_checkpointables(tmp_path):
    model = _tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(1, 3, 5, 5)).sum().backward()
    opt.step()
    ckpt = DetectionCheckpointer(model, str(tmp_path), save_to_disk=True, optimizer=opt)
    assert not ckpt.has_checkpoint()
    rng_state = np.random.RandomState(0).get_state()  # numpy data survives weights_only loading
    ckpt.save("model_0000009", iteration=9, np_rng=rng_state)
    assert ckpt.has_checkpoint()
    assert ckpt.get_all_checkpoint_files() == [str(tmp_path / "model_0000009.pth")]

    model2 = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    ckpt2 = DetectionCheckpointer(model2, str(tmp_path), save_to_disk=True, optimizer=opt2)
    extra = ckpt2.resume_or_load("unused-path.pth", resume=True)
    assert extra["iteration"] == 9
    assert extra["np_rng"][0] == "MT19937" and np.array_equal(extra["np_rng"][1], rng_state[1])
    torch.testing.assert_close(model2[0].weight, model[0].weight)
    buf, buf2 = opt.state_dict()["state"][0]["momentum_buffer"], opt2.state_dict()["state"][0]["momentum_buffer"]
    torch.testing.assert_close(buf2, buf)

    # resume=False: weights only, checkpointables untouched
    opt3 = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    ckpt3 = DetectionCheckpointer(_tiny_model(), str(tmp_path), save_to_disk=True, optimizer=opt3)
    ckpt3.resume_or_load(str(tmp_path / "model_0000009.pth"), resume=False)
    assert opt3.state_dict()["state"] == {}


def test_save_to_disk_false_and_delete(tmp_path):
    DetectionCheckpointer(_tiny_model(), str(tmp_path), save_to_disk=False).save("x")
    assert os.listdir(tmp_path) == []
    ckpt = DetectionCheckpointer(_tiny_model(), str(tmp_path), save_to_disk=True)
    ckpt.save("model_0000001")
    ckpt.delete("model_0000001")
    assert not (tmp_path / "model_0000001.pth").exists()


def test_periodic_checkpointer_uses_atomic_save(tmp_path):
    ckpt = DetectionCheckpointer(_tiny_model(), str(tmp_path), save_to_disk=True)
    periodic = PeriodicCheckpointer(ckpt, period=2, max_iter=4, max_to_keep=1)
    for it in range(4):
        periodic.step(it)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000003.pth", "model_final.pth"]
    assert load_checkpoint_file(str(tmp_path / "model_final.pth"))["iteration"] == 3


# ---------------------------------------------------------------- URLs and cache
def test_detectron2_url_without_cache_names_url_and_local_path(tmp_path, monkeypatch):
    monkeypatch.setenv("MASK2FORMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MASK2FORMER_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as info:
        DetectionCheckpointer(_tiny_model()).load("detectron2://ImageNetPretrained/torchvision/R-50.pkl")
    message = str(info.value)
    assert "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/torchvision/R-50.pkl" in message
    assert str(tmp_path / "cache" / "detectron2" / "ImageNetPretrained" / "torchvision" / "R-50.pkl") in message


def test_failed_download_names_url_and_local_path(tmp_path, monkeypatch):
    monkeypatch.setenv("MASK2FORMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MASK2FORMER_OFFLINE", raising=False)
    url = "http://127.0.0.1:9/models/w.pkl"  # nothing listens on the discard port
    with pytest.raises(FileNotFoundError) as info:
        DetectionCheckpointer(_tiny_model()).load(url)
    assert url in str(info.value) and str(tmp_path / "cache" / "models" / "w.pkl") in str(info.value)
    assert not (tmp_path / "cache" / "models" / "w.pkl").exists()


def test_cached_url_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("MASK2FORMER_CACHE", str(tmp_path))
    monkeypatch.setenv("MASK2FORMER_OFFLINE", "1")
    source = _tiny_model()
    cached = tmp_path / "detectron2" / "some" / "w.pth"
    cached.parent.mkdir(parents=True)
    torch.save({"model": {k: v + 2 for k, v in source.state_dict().items()}}, cached)
    target = _tiny_model()
    DetectionCheckpointer(target).load("detectron2://some/w.pth")
    torch.testing.assert_close(target[0].weight, source[0].weight + 2)


def test_missing_local_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        DetectionCheckpointer(_tiny_model()).load(str(tmp_path / "nope.pth"))
    assert DetectionCheckpointer(_tiny_model()).load("") == {}
