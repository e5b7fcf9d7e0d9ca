"""Weight conversion tools: official Swin .pth and timm ResNet / Swin -> detectron2 .pkl.

The timm checks build timm's models offline (random weights), convert them, load the result
into our backbones through the checkpointer's name matching, and compare features.
"""
from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mask2former.checkpoint import load_state_dict_into_model
from mask2former.checkpoint.conversions import (
    convert_official_swin_checkpoint, convert_timm_resnet_state_dict, convert_timm_state_dict,
    convert_timm_swin_state_dict, detect_timm_architecture,
)
from mask2former.modeling.backbone.resnet import build_resnet
from mask2former.modeling.backbone.swin import D2SwinTransformer

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_SWIN = dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), window_size=7)


class _Wrapper(nn.Module):
    """Holds the backbone under ``backbone.`` as the meta-architecture does."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone


def _run_tool(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / script), *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)


def _tool_main(script: str):
    """The ``main(argv)`` of a tool, imported in-process (faster than a subprocess)."""
    spec = importlib.util.spec_from_file_location(script.replace("-", "_")[:-3],
                                                  REPO_ROOT / "tools" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _tool_error(capsys, script: str, *args: str) -> str:
    """Run a tool that must fail with a usage error (exit 2); return its stderr."""
    with pytest.raises(SystemExit) as exc:
        _tool_main(script)(list(args))
    assert exc.value.code == 2
    return capsys.readouterr().err


def _load_pkl(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


def _randomize_bn_stats(model: nn.Module) -> None:
    """Non-trivial running statistics, so that FrozenBN actually has to use them."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


# ---------------------------------------------------------------- official Swin
def test_official_swin_tool_keeps_names_and_loads(tmp_path):
    torch.manual_seed(0)
    source = D2SwinTransformer(**TINY_SWIN)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("norm")}
    state["norm.weight"] = torch.ones(256)  # the classifier's parts, unused by the backbone
    state["head.weight"] = torch.zeros(1000, 256)
    state["layers.0.blocks.0.attn_mask"] = torch.zeros(4, 49, 49)
    torch.save({"model": state}, tmp_path / "swin.pth")

    proc = _run_tool("convert-pretrained-swin-model-to-d2.py", str(tmp_path / "swin.pth"),
                     str(tmp_path / "swin.pkl"))
    assert proc.returncode == 0, proc.stderr
    obj = _load_pkl(tmp_path / "swin.pkl")
    assert obj["__author__"] == "third_party" and obj["matching_heuristics"] is True
    assert list(obj["model"]) == list(state)
    assert all(isinstance(v, np.ndarray) for v in obj["model"].values())

    target = _Wrapper(D2SwinTransformer(**TINY_SWIN))
    result = load_state_dict_into_model(target, dict(obj["model"]), matching_heuristics=True)
    assert sorted(result.missing_keys) == [f"backbone.norm{i}.{p}" for i in range(4)
                                           for p in ("bias", "weight")]
    for key, value in state.items():
        if key in source.state_dict():
            torch.testing.assert_close(target.backbone.state_dict()[key], value, rtol=0, atol=0)


def test_swin_tool_errors_name_the_file(tmp_path, capsys):
    tool = "convert-pretrained-swin-model-to-d2.py"
    out = str(tmp_path / "out.pkl")
    assert "nope.pth: no such file" in _tool_error(capsys, tool, str(tmp_path / "nope.pth"), out)
    torch.save({"model": {"conv1.weight": torch.zeros(1)}}, tmp_path / "resnet.pth")
    err = _tool_error(capsys, tool, str(tmp_path / "resnet.pth"), out)
    assert "resnet.pth" in err and "patch_embed" in err
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    err = _tool_error(capsys, tool, str(tmp_path / "garbage.pth"), out)
    assert "garbage.pth: cannot be read" in err
    assert not (tmp_path / "out.pkl").exists()
    with pytest.raises(ValueError, match="patch_embed"):
        convert_official_swin_checkpoint({"model": {"x": torch.zeros(1)}})


# ---------------------------------------------------------------- pure renaming rules
def test_timm_swin_renaming_moves_patch_merging_back_one_stage():
    state = {"patch_embed.proj.weight": 0, "layers.0.blocks.0.attn.qkv.weight": 1,
             "layers.1.downsample.norm.weight": 2, "layers.1.downsample.reduction.weight": 3,
             "layers.3.downsample.norm.bias": 4, "norm.weight": 5, "head.fc.weight": 6,
             "layers.0.blocks.0.attn.relative_position_index": 7}
    assert convert_timm_swin_state_dict(state) == {
        "patch_embed.proj.weight": 0, "layers.0.blocks.0.attn.qkv.weight": 1,
        "layers.0.downsample.norm.weight": 2, "layers.0.downsample.reduction.weight": 3,
        "layers.2.downsample.norm.bias": 4}
    old_layout = {"patch_embed.proj.weight": 0, "layers.0.downsample.norm.weight": 1}
    assert convert_timm_swin_state_dict(old_layout) == old_layout  # timm < 0.9: official layout


def test_timm_resnet_renaming_and_rejections():
    deep = {"conv1.0.weight": 0, "conv1.1.running_var": 1, "conv1.3.weight": 2,
            "conv1.4.bias": 3, "conv1.6.weight": 4, "bn1.weight": 5,
            "layer1.0.bn2.weight": 6, "layer2.0.downsample.1.running_mean": 7, "fc.bias": 8}
    assert convert_timm_resnet_state_dict(deep) == {
        "stem.conv1.weight": 0, "stem.conv1.norm.running_var": 1, "stem.conv2.weight": 2,
        "stem.conv2.norm.bias": 3, "stem.conv3.weight": 4, "stem.conv3.norm.weight": 5,
        "res2.0.conv2.norm.weight": 6, "res3.0.shortcut.norm.running_mean": 7}
    with pytest.raises(ValueError, match="average-pool shortcuts"):
        convert_timm_resnet_state_dict({"conv1.0.weight": 0, "layer2.0.downsample.2.weight": 1})
    with pytest.raises(ValueError, match="layer1.0.se.fc1.weight"):
        convert_timm_resnet_state_dict({"conv1.weight": 0, "layer1.0.se.fc1.weight": 1})
    assert detect_timm_architecture({"conv1.weight": 0, "layer1.0.conv1.weight": 1}) == "resnet"
    with pytest.raises(ValueError, match="Cannot tell the architecture"):
        convert_timm_state_dict({"blocks.0.weight": 0})


# ---------------------------------------------------------------- against timm itself
def _timm_resnet_stages(model: nn.Module, x: torch.Tensor) -> dict:
    x = model.maxpool(model.act1(model.bn1(model.conv1(x))))
    out = {}
    for i in range(1, 5):
        x = getattr(model, f"layer{i}")(x)
        out[f"res{i + 1}"] = x
    return out


@pytest.mark.parametrize("name,depth,stem,stem_width", [
    ("resnet50", 50, "basic", 64), ("resnet18", 18, "basic", 64), ("resnet50c", 50, "deeplab", 64),
])
def test_timm_resnet_features_match_after_conversion(tmp_path, name, depth, stem, stem_width):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    source = timm.create_model(name, pretrained=False).eval()
    _randomize_bn_stats(source)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    if name == "resnet18":  # once as users run it, on timm's own file format
        safetensors = pytest.importorskip("safetensors.torch")
        safetensors.save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
        proc = _run_tool("convert-timm-to-d2.py", str(tmp_path / "w.safetensors"),
                         str(tmp_path / "w.pkl"))
        assert proc.returncode == 0, proc.stderr
    else:
        assert _tool_main("convert-timm-to-d2.py")([str(tmp_path / "w.pth"),
                                                    str(tmp_path / "w.pkl")]) == 0
    obj = _load_pkl(tmp_path / "w.pkl")
    assert obj["__author__"] == "timm" and obj["matching_heuristics"] is True

    ours = _Wrapper(build_resnet(depth=depth, stem_type=stem, stem_out_channels=stem_width,
                                 norm="FrozenBN", stride_in_1x1=False)).eval()
    result = load_state_dict_into_model(ours, dict(obj["model"]), matching_heuristics=True)
    assert result.missing_keys == [] and result.incorrect_shapes == []
    assert all(k.endswith("num_batches_tracked") for k in result.unexpected_keys)

    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected, got = _timm_resnet_stages(source, x), ours.backbone(x)
    for key in ("res2", "res3", "res4", "res5"):
        # float rounding relative to the layer range (FrozenBN is folded into the convs without gradients)
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-4 * max(1.0, float(expected[key].abs().max())))


def test_timm_swin_features_match_after_conversion(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    source = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False,
                               embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8)).eval()
    torch.save(source.state_dict(), tmp_path / "w.pth")
    assert _tool_main("convert-timm-to-d2.py")([str(tmp_path / "w.pth"), str(tmp_path / "w.pkl"),
                                                "--arch", "swin"]) == 0
    obj = _load_pkl(tmp_path / "w.pkl")

    ours = _Wrapper(D2SwinTransformer(**TINY_SWIN, drop_path_rate=0.0)).eval()
    result = load_state_dict_into_model(ours, dict(obj["model"]), matching_heuristics=True)
    assert result.unexpected_keys == [] and result.incorrect_shapes == []
    assert sorted(k for k in result.missing_keys if "relative_position_index" not in k) == \
        [f"backbone.norm{i}.{p}" for i in range(4) for p in ("bias", "weight")]

    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        got = ours.backbone(x)
        h = source.patch_embed(x)  # (B, H/4, W/4, C): timm works channels-last
        for i, layer in enumerate(source.layers):
            h = layer(h)
            expected = getattr(ours.backbone, f"norm{i}")(h).permute(0, 3, 1, 2)
            torch.testing.assert_close(got[f"res{i + 2}"], expected, rtol=1e-4, atol=1e-4)
