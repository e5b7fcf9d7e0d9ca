"""timm backbones: shapes / strides from feature_info, local weight files, freezing, errors,
and every pixel decoder on top."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, Tuple

import pytest
import torch

timm = pytest.importorskip("timm")

from mask2former.config import get_cfg  # noqa: E402
from mask2former.layers import ShapeSpec  # noqa: E402
from mask2former.modeling.backbone.timm_backbone import (  # noqa: E402
    TimmBackbone, _import_timm, load_timm_weights_file,
)
from mask2former.modeling.build import BACKBONE_REGISTRY, build_backbone  # noqa: E402
from mask2former.modeling.pixel_decoder.fapn import MSFaPNPixelDecoder  # noqa: E402
from mask2former.modeling.pixel_decoder.fpn import BasePixelDecoder  # noqa: E402
from mask2former.modeling.pixel_decoder.msdeformattn import MSDeformAttnPixelDecoder  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[3]
IMAGE_HW = (64, 96)
# name -> (OUT_INDICES, expected channels of res2..res5)
MODELS = {
    "resnet18": ((1, 2, 3, 4), [64, 128, 256, 512]),
    "convnext_atto": ((0, 1, 2, 3), [40, 80, 160, 320]),
}
_CACHE: Dict[str, Tuple[TimmBackbone, Dict[str, torch.Tensor]]] = {}


def _backbone_and_features(name: str) -> Tuple[TimmBackbone, Dict[str, torch.Tensor]]:
    if name not in _CACHE:
        torch.manual_seed(0)
        backbone = TimmBackbone(model_name=name, out_indices=MODELS[name][0]).eval()
        with torch.no_grad():
            _CACHE[name] = backbone, backbone(torch.randn(1, 3, *IMAGE_HW))
    return _CACHE[name]


@pytest.mark.parametrize("name", list(MODELS))
def test_output_shape_matches_the_feature_maps(name):
    backbone, features = _backbone_and_features(name)
    shapes = backbone.output_shape()
    assert list(shapes) == ["res2", "res3", "res4", "res5"]
    assert [s.stride for s in shapes.values()] == [4, 8, 16, 32]
    assert [s.channels for s in shapes.values()] == MODELS[name][1]
    for key, spec in shapes.items():
        H, W = IMAGE_HW[0] // spec.stride, IMAGE_HW[1] // spec.stride
        assert features[key].shape == (1, spec.channels, H, W)
        assert features[key].is_contiguous()
    assert backbone.size_divisibility == 32


def test_channels_last_timm_models_are_returned_nchw():
    # mambaout's timm feature wrapper reports output_fmt NHWC
    backbone = TimmBackbone(model_name="mambaout_femto", out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 64, 64))
    for key, spec in backbone.output_shape().items():
        assert features[key].shape == (1, spec.channels, 64 // spec.stride, 64 // spec.stride)


def test_built_from_config_with_out_features_subset():
    cfg = get_cfg()
    assert tuple(cfg.MODEL.TIMM.OUT_INDICES) == (1, 2, 3, 4) and cfg.MODEL.TIMM.PRETRAINED == ""
    cfg.MODEL.BACKBONE.NAME = "build_timm_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.TIMM.NAME = "resnet18"
    cfg.MODEL.TIMM.OUT_FEATURES = ["res3", "res5"]
    cfg.MODEL.TIMM.DROP_PATH_RATE = 0.1
    assert "build_timm_backbone" in BACKBONE_REGISTRY
    backbone = build_backbone(cfg)
    assert isinstance(backbone, TimmBackbone)
    assert backbone.body.layer4[1].drop_path is not None  # drop path reached timm (grows per block)
    assert sorted(backbone.output_shape()) == ["res3", "res5"]
    out = backbone(torch.randn(1, 3, 64, 64))
    assert sorted(out) == ["res3", "res5"] and out["res5"].shape == (1, 512, 2, 2)


def test_config_example_reads():
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO_ROOT / "configs/ade20k/semantic-segmentation/timm"
                                        / "maskformer2_convnext_tiny_bs16_160k.yaml"))
    assert cfg.MODEL.BACKBONE.NAME == "build_timm_backbone" and cfg.MODEL.TIMM.NAME == "convnext_tiny"
    assert list(cfg.MODEL.TIMM.OUT_INDICES) == [0, 1, 2, 3] and cfg.MODEL.WEIGHTS == ""
    with torch.device("meta"):  # shapes only: no memory, no weights
        shapes = TimmBackbone(cfg, ShapeSpec(channels=3)).output_shape()
    assert [(s.channels, s.stride) for s in shapes.values()] == [(96, 4), (192, 8), (384, 16), (768, 32)]


# ----------------------------------------------------------------------------- weights files
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_loads_every_tensor(tmp_path, suffix):
    torch.manual_seed(1)
    reference = timm.create_model("convnext_atto", pretrained=False).eval()
    path = tmp_path / f"convnext_atto{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(reference.state_dict(), str(path))
    else:  # wrapped and DataParallel-prefixed, as training scripts often save
        torch.save({"model": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)

    torch.manual_seed(2)
    backbone = TimmBackbone(model_name="convnext_atto", out_indices=(0, 1, 2, 3), pretrained=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference.forward_intermediates(x, intermediates_only=True)
        out = backbone(x)
    for i, ref in enumerate(expected):
        torch.testing.assert_close(out[f"res{i + 2}"], ref, atol=0, rtol=0)


def test_weights_of_feature_getter_models_load(tmp_path):
    # ViT-style models are wrapped by timm's FeatureGetterNet (keys under "model.")
    torch.manual_seed(1)
    reference = timm.create_model("test_vit", pretrained=False).eval()
    torch.save(reference.state_dict(), tmp_path / "test_vit.pth")
    backbone = TimmBackbone(model_name="test_vit", out_indices=(0, 1, 2),
                            pretrained=str(tmp_path / "test_vit.pth")).eval()
    assert [s.stride for s in backbone.output_shape().values()] == [16, 16, 16]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = reference.forward_intermediates(x, indices=[0, 1, 2], intermediates_only=True)
        out = backbone(x)
    for i, ref in enumerate(expected):
        torch.testing.assert_close(out[f"res{i + 2}"], ref, atol=0, rtol=0)


def test_bad_weights_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="MODEL.TIMM.PRETRAINED='.*missing.pth' is not a file"):
        TimmBackbone(model_name="resnet18", pretrained=str(tmp_path / "missing.pth"))

    wrong = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), wrong)
    with pytest.raises(ValueError, match="lacks .* tensors of 'convnext_atto'"):
        TimmBackbone(model_name="convnext_atto", out_indices=(0, 1, 2, 3), pretrained=str(wrong))

    resized = tmp_path / "resnet18_wide.pth"
    state = timm.create_model("resnet18").state_dict()
    state["conv1.weight"] = torch.zeros(32, 3, 7, 7)
    torch.save(state, resized)
    with pytest.raises(ValueError, match="'conv1.weight' has shape \\(32, 3, 7, 7\\)"):
        TimmBackbone(model_name="resnet18", pretrained=str(resized))

    pickled = tmp_path / "object.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, pickled)  # a module, not a state dict
    with pytest.raises(ValueError, match="weights-only"):
        load_timm_weights_file(str(pickled))


# ----------------------------------------------------------------------------- freezing
def _frozen(backbone: TimmBackbone):
    return sorted({n.split(".")[0] for n, p in backbone.body.named_parameters() if not p.requires_grad})


def test_freeze_at_follows_detectron2_stages():
    assert _frozen(TimmBackbone(model_name="resnet18", freeze_at=0)) == []
    assert _frozen(TimmBackbone(model_name="resnet18", freeze_at=1)) == ["bn1", "conv1"]
    backbone = TimmBackbone(model_name="resnet18", freeze_at=3)
    assert _frozen(backbone) == ["bn1", "conv1", "layer1", "layer2"]

    backbone.train()
    assert not backbone.body.bn1.training and not backbone.body.layer2[1].bn2.training
    assert backbone.body.layer3[0].bn1.training
    running_mean = backbone.body.layer1[0].bn1.running_mean.clone()
    out = backbone(torch.randn(2, 3, 64, 64))
    sum((v * torch.randn_like(v)).sum() for v in out.values()).backward()
    assert torch.equal(backbone.body.layer1[0].bn1.running_mean, running_mean)  # eval: stats kept
    assert backbone.body.layer2[0].conv1.weight.grad is None
    # (timm zero-inits each block's last BN, so the residual convs get no gradient yet)
    assert backbone.body.layer3[0].downsample[0].weight.grad.abs().sum() > 0

    convnext = TimmBackbone(model_name="convnext_atto", out_indices=(0, 1, 2, 3), freeze_at=2)
    assert _frozen(convnext) == ["stages_0", "stem_0", "stem_1"]


# ----------------------------------------------------------------------------- errors
def test_bad_settings_raise_clear_errors(monkeypatch):
    with pytest.raises(ValueError,
                       match="OUT_INDICES=\\[1, 2, 3, 4\\] do not fit 'convnext_atto'.*3: stride 32"):
        TimmBackbone(model_name="convnext_atto")
    with pytest.raises(ValueError, match="MODEL.TIMM.NAME='no_such_net' is not a timm model"):
        TimmBackbone(model_name="no_such_net")
    with pytest.raises(ValueError, match="MODEL.TIMM.NAME is empty"):
        TimmBackbone(model_name="")
    with pytest.raises(ValueError, match="OUT_FEATURES \\['res6'\\]"):
        TimmBackbone(model_name="resnet18", out_features=["res6"])
    with pytest.raises(ValueError, match="DROP_PATH_RATE"):
        TimmBackbone(model_name="vgg11", out_indices=(1, 2, 3, 4), drop_path_rate=0.1)
    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    with pytest.raises(ImportError, match="pip install timm"):
        _import_timm()


# ----------------------------------------------------------------------------- pixel decoders
def _decoder(kind: str, shapes: Dict[str, ShapeSpec]):
    common = dict(conv_dim=32, mask_dim=16, norm="GN")
    if kind == "BasePixelDecoder":
        return BasePixelDecoder(shapes, **common)
    if kind == "MSDeformAttnPixelDecoder":
        return MSDeformAttnPixelDecoder(
            shapes, transformer_dropout=0.0, transformer_nheads=2, transformer_dim_feedforward=64,
            transformer_enc_layers=1, transformer_in_features=["res3", "res4", "res5"],
            common_stride=4, **common)
    return MSFaPNPixelDecoder(shapes, **common)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("kind", ["BasePixelDecoder", "MSDeformAttnPixelDecoder", "MSFaPNPixelDecoder"])
def test_every_pixel_decoder_on_timm_features(name, kind):
    backbone, features = _backbone_and_features(name)
    torch.manual_seed(0)
    decoder = _decoder(kind, backbone.output_shape()).eval()
    with torch.no_grad():
        mask_features, _, multi_scale = decoder.forward_features(features)
    H, W = IMAGE_HW
    assert mask_features.shape == (1, 16, H // 4, W // 4)
    assert [tuple(f.shape) for f in multi_scale] == [(1, 32, H // s, W // s) for s in (32, 16, 8)]
    assert torch.isfinite(mask_features).all()
