"""ResNet / Swin backbones: official state-dict names, numerical parity, freezing, padding."""
from __future__ import annotations

import csv
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from torch import nn

from mask2former.checkpoint.safe_pickle import load_pickle
from mask2former.checkpoint.torchvision_conversion import convert_torchvision_resnet_state_dict
from mask2former.config import CfgNode, get_cfg
from mask2former.layers import FrozenBatchNorm2d, ShapeSpec
from mask2former.modeling.backbone.resnet import (
    BottleneckBlock, DeformBottleneckBlock, ResNet, build_resnet,
)
from mask2former.modeling.backbone.swin import (
    D2SwinTransformer, SwinTransformerBlock, shifted_window_mask, window_partition, window_reverse,
    window_token_index,
)
from mask2former.modeling.build import BACKBONE_REGISTRY, build_backbone

REPO_ROOT = Path(__file__).resolve().parents[3]
OUR_BACKBONES = ("build_resnet_backbone", "build_resnet_deeplab_backbone", "D2SwinTransformer")
TINY_SWIN = dict(embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8], window_size=7,
                 drop_path_rate=0.0)


def _randomize_bn_stats(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            n = m.num_features
            m.weight.data = 1 + 0.2 * torch.randn(n, generator=gen)
            m.bias.data = 0.1 * torch.randn(n, generator=gen)
            m.running_mean.data = 0.1 * torch.randn(n, generator=gen)
            m.running_var.data = 0.5 + torch.rand(n, generator=gen)


# ----------------------------------------------------------------------------- ResNet


def test_resnet50_matches_torchvision_after_conversion():
    torch.manual_seed(0)
    tv = torchvision.models.resnet50().eval()
    _randomize_bn_stats(tv)
    converted = convert_torchvision_resnet_state_dict(tv.state_dict())
    assert "res5.2.conv3.norm.running_var" in converted and "res2.0.shortcut.norm.bias" in converted
    # As the checkpointer's heuristics do: the classifier and BN counters have no home.
    loadable = {k: v for k, v in converted.items()
                if not k.startswith("stem.fc.") and not k.endswith("num_batches_tracked")}

    ours = build_resnet(depth=50, norm="FrozenBN", stride_in_1x1=False,
                        out_features=["res2", "res3", "res4", "res5"]).eval()
    ours.load_state_dict(loadable, strict=True)

    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        feats = ours(x)
        y = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        for name, layer in zip(["res2", "res3", "res4", "res5"],
                               [tv.layer1, tv.layer2, tv.layer3, tv.layer4]):
            y = layer(y)
            assert feats[name].shape == y.shape
            # float32 rounding relative to the layer's range (ours folds FrozenBN into the convs
            # without gradients; the random statistics make res5 values reach ~1e3)
            torch.testing.assert_close(feats[name], y, atol=1e-5 * float(y.abs().max()), rtol=1e-5)
    assert feats["res5"].shape == (2, 2048, 2, 3)
    assert ours.output_shape()["res4"] == ShapeSpec(channels=1024, stride=16)


def test_convert_tool_writes_detectron2_pickle(tmp_path):
    tv = torchvision.models.resnet18()
    src, dst = tmp_path / "r18.pth", tmp_path / "r18.pkl"
    torch.save(tv.state_dict(), src)
    tool = runpy.run_path(str(REPO_ROOT / "tools" / "convert-torchvision-to-d2.py"))
    assert tool["main"]([str(src), str(dst)]) == 0
    obj = load_pickle(dst)
    assert obj["__author__"] == "torchvision" and obj["matching_heuristics"] is True
    model = obj["model"]
    assert list(model)[:3] == ["stem.conv1.weight", "stem.conv1.norm.weight",
                               "stem.conv1.norm.bias"]
    assert isinstance(model["res3.0.shortcut.weight"], np.ndarray)
    np.testing.assert_array_equal(model["res3.0.shortcut.norm.running_mean"],
                                  tv.layer2[0].downsample[1].running_mean.numpy())
    assert "res5.1.conv2.norm.weight" in model and "stem.fc.weight" in model
    assert not any("layer" in k or "bn" in k or "downsample" in k for k in model)

    # R18 from the converted names loads strictly (BasicBlock: conv1/conv2/shortcut).
    ours = build_resnet(depth=18, norm="BN", stride_in_1x1=False)
    ours.load_state_dict({k: torch.from_numpy(v) for k, v in model.items()
                          if not k.startswith("stem.fc.")}, strict=True)


def test_converter_rejects_non_resnet():
    with pytest.raises(ValueError, match="conv1.weight"):
        convert_torchvision_resnet_state_dict({"encoder.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="mapping"):
        convert_torchvision_resnet_state_dict([("conv1.weight", torch.zeros(1))])


def test_freeze_at_freezes_stem_and_first_stages():
    model = build_resnet(depth=18, norm="BN", freeze_at=2)
    for name, param in model.named_parameters():
        frozen = name.startswith(("stem.", "res2."))
        assert param.requires_grad is not frozen, name
    assert isinstance(model.stem.conv1.norm, FrozenBatchNorm2d)
    assert isinstance(model.res2[1].conv2.norm, FrozenBatchNorm2d)
    assert type(model.res3[0].conv1.norm) is nn.BatchNorm2d
    keys = model.state_dict().keys()
    assert "stem.conv1.norm.num_batches_tracked" not in keys
    assert "res3.0.conv1.norm.num_batches_tracked" in keys

    unfrozen = build_resnet(depth=18, norm="BN", freeze_at=0)
    assert all(p.requires_grad for p in unfrozen.parameters())
    everything = build_resnet(depth=18, norm="GN", freeze_at=5)
    assert not any(p.requires_grad for p in everything.parameters())


def test_deeplab_dilation_and_multi_grid():
    with torch.device("meta"):
        model = build_resnet(depth=50, stem_type="deeplab", stem_out_channels=128,
                             res4_dilation=2, res5_dilation=4, res5_multi_grid=[1, 2, 4])
    strides = {k: s.stride for k, s in model.output_shape().items()}
    assert strides == {"res2": 4, "res3": 8, "res4": 8, "res5": 8}
    assert [b.conv2.dilation[0] for b in model.res5] == [4, 8, 16]
    assert [b.conv2.dilation[0] for b in model.res4] == [2] * 6
    assert model.res4[0].stride == 1 and model.res3[0].stride == 2
    assert model.res3[0].conv1.stride == (2, 2)  # stride_in_1x1 defaults to True (MSRA)
    assert model.stem.conv1.weight.shape == (64, 3, 3, 3)
    assert model.stem.conv3.weight.shape == (128, 64, 3, 3)


def test_deform_block_with_zero_offsets_is_a_bottleneck():
    torch.manual_seed(0)
    kwargs = dict(in_channels=16, out_channels=32, bottleneck_channels=8, stride=2, norm="")
    plain = BottleneckBlock(**kwargs).eval()
    x = torch.randn(1, 16, 9, 11)
    for modulated, scale in ((False, 1.0), (True, 0.5)):  # modulation mask = sigmoid(0)
        deform = DeformBottleneckBlock(**kwargs, deform_modulated=modulated).eval()
        state = plain.state_dict()
        state["conv2.weight"] = state["conv2.weight"] / scale
        missing = deform.load_state_dict(state, strict=False).missing_keys
        assert sorted(missing) == ["conv2_offset.bias", "conv2_offset.weight"]
        with torch.no_grad():
            torch.testing.assert_close(deform(x), plain(x), atol=1e-5, rtol=1e-5)


def test_resnet_bad_arguments_raise():
    with pytest.raises(ValueError, match="DEPTH"):
        build_resnet(depth=77)
    with pytest.raises(ValueError, match="STEM_TYPE"):
        build_resnet(stem_type="fancy")
    with pytest.raises(ValueError, match="OUT_FEATURES"):
        build_resnet(out_features=["res6"])
    with pytest.raises(ValueError, match="RES5_MULTI_GRID"):
        build_resnet(res5_multi_grid=[1, 2])
    cfg = get_cfg()
    cfg.MODEL.RESNETS.RES5_DILATION = 4
    with pytest.raises(ValueError, match="RES5_DILATION"):
        BACKBONE_REGISTRY.get("build_resnet_backbone")(cfg, ShapeSpec(channels=3))


# ----------------------------------------------------------------------------- official keys


def _official_backbone_configs():
    index = REPO_ROOT.parent / "shared" / "reference" / "official_keys" / "index.tsv"
    if not index.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason="no reference data"))]
    configs = index.parent.parent / "official_configs"
    with open(index) as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["backbone_name"] in OUR_BACKBONES]
    # The video configs have key lists but no config dump: leave them out.
    return [pytest.param(r["file"], id=r["file"].replace(".txt", "")) for r in rows
            if (configs / r["file"].replace(".txt", ".yaml")).is_file()]


def _official_cfg(yaml_path: Path) -> CfgNode:
    """get_cfg() overlaid with a full official config dump (MaskFormer v1 dumps lack a few keys)."""
    cfg = get_cfg()
    cfg.set_new_allowed(True)  # the dumps also hold keys of unrelated detectron2 projects
    cfg.merge_from_other_cfg(CfgNode(yaml.safe_load(yaml_path.read_text())))
    return cfg


@pytest.mark.parametrize("key_file", _official_backbone_configs())
def test_backbone_state_dict_matches_official(reference_dir, key_file):
    yaml_path = reference_dir / "official_configs" / key_file.replace(".txt", ".yaml")
    cfg = _official_cfg(yaml_path)
    with torch.device("meta"):  # shapes only: no memory, no init cost
        backbone = build_backbone(cfg)
    ours = [(f"backbone.{k}", tuple(v.shape), str(v.dtype).replace("torch.", ""))
            for k, v in backbone.state_dict().items()]
    official = []
    for line in (reference_dir / "official_keys" / key_file).read_text().splitlines():
        key, shape, dtype = line.split("\t")
        if key.startswith("backbone."):
            official.append((key, tuple(int(s) for s in shape.split(",") if s), dtype))
    assert ours == official


# ----------------------------------------------------------------------------- Swin


def _load_backbone_weights(pkl: Path) -> dict:
    model = load_pickle(pkl)["model"]
    out = {}
    for key, value in model.items():
        if key.startswith("backbone."):
            tensor = torch.from_numpy(np.asarray(value))
            out[key[len("backbone."):]] = tensor.float() if tensor.is_floating_point() else tensor
    return out


@pytest.mark.parametrize("case", ["m2f_swin_panoptic", "m2f_swin_semantic_batch2"])
def test_swin_matches_official_features(reference_dir, case):
    case_dir = reference_dir / "official_outputs" / case
    cfg = _official_cfg(case_dir / "config.yaml")
    backbone = D2SwinTransformer(cfg, ShapeSpec(channels=3)).eval()
    assert backbone.size_divisibility == 32
    backbone.load_state_dict(_load_backbone_weights(case_dir / "model_final.pkl"), strict=True)
    outputs = torch.load(case_dir / "outputs.pt", weights_only=True)
    with torch.no_grad():
        features = backbone(outputs["images_tensor"])
    assert sorted(features) == ["res2", "res3", "res4", "res5"]
    for name, expected in outputs["features"].items():
        torch.testing.assert_close(features[name], expected, atol=1e-5, rtol=0)


def test_swin_odd_input_sizes_pad_inside_stages():
    torch.manual_seed(0)
    model = D2SwinTransformer(**TINY_SWIN).eval()
    x = torch.randn(2, 3, 61, 75)
    with torch.no_grad():
        batched = model(x)
        single = model(x[1:])
        padded = model(nn.functional.pad(x[1:], (0, 1, 0, 3)))  # to the patch multiple 64x76
    sizes = {k: tuple(v.shape[2:]) for k, v in batched.items()}
    assert sizes == {"res2": (16, 19), "res3": (8, 10), "res4": (4, 5), "res5": (2, 3)}
    for name in batched:  # windows / shift masks of one image do not leak into another
        torch.testing.assert_close(batched[name][1:], single[name], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(padded[name], single[name], atol=1e-5, rtol=1e-5)
        assert torch.isfinite(batched[name]).all()


def test_shifted_window_mask_regions():
    mask = shifted_window_mask(10, 10, window_size=7, shift_size=3)  # padded to 14x14
    assert mask.shape == (4, 49, 49)
    assert torch.all(mask[0] == 0)  # the top-left window is one region
    # bottom-right window: rows 7..10 / 11..13 and columns 7..10 / 11..13 are 4 regions
    region = torch.tensor([(r >= 4) * 2 + (c >= 4) for r in range(7) for c in range(7)])
    expected = torch.where(region[:, None] == region[None, :], 0.0, -100.0)
    torch.testing.assert_close(mask[3], expected)


@pytest.mark.parametrize("H,W,shift", [(14, 21, 3), (10, 13, 3), (7, 7, 0), (9, 16, 0), (1, 1, 3)])
def test_window_token_index_is_the_official_pad_roll_partition(H, W, shift):
    ws, B, C = 7, 2, 5
    x = torch.randn(B, H * W, C)
    into, back = window_token_index(H, W, ws, shift)
    # the official block: pad to the window multiple, cyclic shift, partition; and the way back
    padded = nn.functional.pad(x.view(B, H, W, C), (0, 0, 0, (ws - W % ws) % ws, 0, (ws - H % ws) % ws))
    Hp, Wp = padded.shape[1:3]
    shifted = torch.roll(padded, shifts=(-shift, -shift), dims=(1, 2)) if shift else padded
    official = window_partition(shifted, ws).view(B, -1, C)
    ours = nn.functional.pad(x, (0, 0, 0, 1))[:, into]
    assert torch.equal(ours, official)  # the same tokens in the same order, zeros for padding
    windows = torch.randn_like(official)
    restored = window_reverse(windows.view(-1, ws, ws, C), ws, Hp, Wp)
    restored = torch.roll(restored, shifts=(shift, shift), dims=(1, 2)) if shift else restored
    assert torch.equal(windows[:, back], restored[:, :H, :W].reshape(B, H * W, C))


@pytest.mark.parametrize("shift", [0, 3])
def test_swin_block_inference_attention_matches_the_step_by_step_one(shift):
    torch.manual_seed(0)
    block = SwinTransformerBlock(32, num_heads=4, window_size=7, shift_size=shift).eval()
    nn.init.normal_(block.attn.relative_position_bias_table, std=0.5)
    H, W = 10, 13
    x = torch.randn(2, H * W, 32)
    mask = shifted_window_mask(H, W, 7, shift) if shift else None
    with torch.no_grad():  # fused scaled_dot_product_attention
        fused = block(x, H, W, mask)
    stepwise = block(x, H, W, mask)  # with gradients: the official step-by-step attention
    assert stepwise.requires_grad
    torch.testing.assert_close(fused, stepwise.detach(), atol=1e-5, rtol=1e-5)


def test_swin_output_shape_and_bad_config():
    model = D2SwinTransformer(**TINY_SWIN, out_features=["res3", "res5"])
    assert model.output_shape() == {"res3": ShapeSpec(channels=64, stride=8),
                                    "res5": ShapeSpec(channels=256, stride=32)}
    with torch.no_grad():
        assert sorted(model(torch.randn(1, 3, 32, 32))) == ["res3", "res5"]
    with pytest.raises(ValueError, match="OUT_FEATURES"):
        D2SwinTransformer(**TINY_SWIN, out_features=["res6"])
    with pytest.raises(ValueError, match="NUM_HEADS"):
        D2SwinTransformer(embed_dim=30, depths=[1, 1], num_heads=[4, 4], out_features=["res2"])


def test_swin_checkpointing_and_drop_path_train():
    torch.manual_seed(0)
    model = D2SwinTransformer(**{**TINY_SWIN, "drop_path_rate": 0.3}, use_checkpoint=True).train()
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    loss = sum(f.sum() for f in model(x).values())
    loss.backward()
    assert model.layers[0].blocks[0].attn.relative_position_bias_table.grad is not None
    assert x.grad is not None and torch.isfinite(x.grad).all()
