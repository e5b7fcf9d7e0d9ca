"""Segmentation heads: official parity and keys, checkpoint-layout upgrade, per-pixel baselines."""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mask2former.checkpoint import load_pickle
from mask2former.config import get_cfg
from mask2former.layers import ShapeSpec
from mask2former.modeling.build import SEM_SEG_HEADS_REGISTRY, build_pixel_decoder, build_sem_seg_head
from mask2former.modeling.heads.mask_former_head import MaskFormerHead, predictor_in_channels
from mask2former.modeling.heads.per_pixel_baseline import PerPixelBaselineHead, PerPixelBaselinePlusHead

# Import-time registration of the pixel and transformer decoders the heads build.
from mask2former.modeling.pixel_decoder import fpn, msdeformattn  # noqa: F401
from mask2former.modeling.transformer_decoder import (  # noqa: F401
    mask2former_transformer_decoder,
    maskformer_transformer_decoder,
)

R50_SHAPES = {
    "res2": ShapeSpec(channels=256, stride=4), "res3": ShapeSpec(channels=512, stride=8),
    "res4": ShapeSpec(channels=1024, stride=16), "res5": ShapeSpec(channels=2048, stride=32),
}
TINY_SWIN_SHAPES = {  # the reference cases' Swin (EMBED_DIM 32)
    "res2": ShapeSpec(channels=32, stride=4), "res3": ShapeSpec(channels=64, stride=8),
    "res4": ShapeSpec(channels=128, stride=16), "res5": ShapeSpec(channels=256, stride=32),
}
SMALL_SHAPES = {
    "res2": ShapeSpec(channels=8, stride=4), "res3": ShapeSpec(channels=16, stride=8),
    "res4": ShapeSpec(channels=24, stride=16), "res5": ShapeSpec(channels=32, stride=32),
}


class _Model(nn.Module):
    """Holds a head under the official attribute name, so state_dict keys read ``sem_seg_head.*``."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.sem_seg_head = head


def read_official_keys(path: Path, prefix: str) -> List[Tuple[str, Tuple[int, ...]]]:
    out = []
    for line in path.read_text().splitlines():
        key, shape, _dtype = line.split("\t")
        if key.startswith(prefix):
            out.append((key, tuple(int(s) for s in shape.split(",") if s)))
    return out


def head_state_dict_from_pkl(path: Path) -> "collections.OrderedDict[str, torch.Tensor]":
    """``sem_seg_head.*`` entries of an official .pkl as float32 tensors, with their _metadata."""
    model = load_pickle(path)["model"]
    state = collections.OrderedDict(
        (k, torch.from_numpy(np.asarray(v)).float())
        for k, v in model.items() if k.startswith("sem_seg_head.")
    )
    state._metadata = collections.OrderedDict(  # type: ignore[attr-defined]
        (k, v) for k, v in model._metadata.items() if k == "" or k.startswith("sem_seg_head")
    )
    return state


def small_features(batch: int = 2, size: int = 64) -> Dict[str, torch.Tensor]:
    return {
        k: torch.randn(batch, v.channels, size // v.stride, size // v.stride)
        for k, v in SMALL_SHAPES.items()
    }


# ----------------------------------------------------------------------------------------------
# Official configs: sem_seg_head state_dict keys / shapes / order
# ----------------------------------------------------------------------------------------------
def _head_cfg(name: str, pixel_decoder: str, num_classes: int):
    cfg = get_cfg()
    head = cfg.MODEL.SEM_SEG_HEAD
    head.NAME, head.PIXEL_DECODER_NAME, head.NUM_CLASSES = name, pixel_decoder, num_classes
    head.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    head.CONVS_DIM, head.MASK_DIM, head.NORM, head.IGNORE_VALUE = 256, 256, "GN", 255
    mf = cfg.MODEL.MASK_FORMER
    mf.HIDDEN_DIM, mf.NUM_OBJECT_QUERIES, mf.NHEADS, mf.DIM_FEEDFORWARD = 256, 100, 8, 2048
    mf.ENC_LAYERS, mf.PRE_NORM, mf.DEEP_SUPERVISION = 0, False, True
    return cfg


def _m2f_coco_panoptic_r50():  # coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml
    cfg = _head_cfg("MaskFormerHead", "MSDeformAttnPixelDecoder", 133)
    cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 6
    cfg.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res3", "res4", "res5"]
    mf = cfg.MODEL.MASK_FORMER
    mf.TRANSFORMER_DECODER_NAME = "MultiScaleMaskedTransformerDecoder"
    mf.TRANSFORMER_IN_FEATURE = "multi_scale_pixel_decoder"
    mf.DEC_LAYERS, mf.DROPOUT = 10, 0.0
    return cfg


def _v1_ade20k_r50():  # MaskFormer ade20k-150/maskformer_R50_bs16_160k.yaml
    cfg = _head_cfg("MaskFormerHead", "BasePixelDecoder", 150)
    mf = cfg.MODEL.MASK_FORMER
    mf.TRANSFORMER_DECODER_NAME, mf.TRANSFORMER_IN_FEATURE, mf.DEC_LAYERS = "TransformerPredictor", "res5", 6
    return cfg


def _v1_coco_panoptic_r50():  # MaskFormer coco-panoptic/maskformer_panoptic_R50_bs64_554k.yaml
    cfg = _head_cfg("MaskFormerHead", "TransformerEncoderPixelDecoder", 133)
    cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 6
    mf = cfg.MODEL.MASK_FORMER
    mf.TRANSFORMER_DECODER_NAME, mf.TRANSFORMER_IN_FEATURE, mf.DEC_LAYERS = (
        "TransformerPredictor", "transformer_encoder", 6)
    return cfg


def _per_pixel_ade20k_r50():  # MaskFormer ade20k-150/per_pixel_baseline_R50_bs16_160k.yaml
    return _head_cfg("PerPixelBaselineHead", "BasePixelDecoder", 150)


def _per_pixel_plus_ade20k_r50():  # MaskFormer ade20k-150/per_pixel_baseline_plus_R50_bs16_160k.yaml
    cfg = _head_cfg("PerPixelBaselinePlusHead", "BasePixelDecoder", 150)
    mf = cfg.MODEL.MASK_FORMER
    mf.TRANSFORMER_IN_FEATURE, mf.NUM_OBJECT_QUERIES, mf.DEC_LAYERS = "res5", 150, 6
    return cfg


@pytest.mark.parametrize(
    "key_file, make_cfg, head_cls",
    [
        ("coco__panoptic-segmentation__maskformer2_R50_bs16_50ep.txt",
         _m2f_coco_panoptic_r50, MaskFormerHead),
        ("maskformer/ade20k-150__maskformer_R50_bs16_160k.txt", _v1_ade20k_r50, MaskFormerHead),
        ("maskformer/coco-panoptic__maskformer_panoptic_R50_bs64_554k.txt",
         _v1_coco_panoptic_r50, MaskFormerHead),
        ("maskformer/ade20k-150__per_pixel_baseline_R50_bs16_160k.txt",
         _per_pixel_ade20k_r50, PerPixelBaselineHead),
        ("maskformer/ade20k-150__per_pixel_baseline_plus_R50_bs16_160k.txt",
         _per_pixel_plus_ade20k_r50, PerPixelBaselinePlusHead),
    ],
)
def test_head_keys_match_official(reference_dir: Path, key_file: str, make_cfg, head_cls) -> None:
    expected = read_official_keys(reference_dir / "official_keys" / key_file, "sem_seg_head.")
    head = build_sem_seg_head(make_cfg(), R50_SHAPES)
    assert type(head) is head_cls
    got = [(k, tuple(v.shape)) for k, v in _Model(head).state_dict().items()]
    assert got == expected


@pytest.mark.parametrize(
    "config, key_file",
    [
        ("coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml",
         "coco__panoptic-segmentation__maskformer2_R50_bs16_50ep.txt"),
        ("maskformer/ade20k-150/maskformer_R50_bs16_160k.yaml",
         "maskformer/ade20k-150__maskformer_R50_bs16_160k.txt"),
        ("maskformer/ade20k-150/per_pixel_baseline_R50_bs16_160k.yaml",
         "maskformer/ade20k-150__per_pixel_baseline_R50_bs16_160k.txt"),
        ("maskformer/ade20k-150/per_pixel_baseline_plus_R50_bs16_160k.yaml",
         "maskformer/ade20k-150__per_pixel_baseline_plus_R50_bs16_160k.txt"),
    ],
)
def test_head_keys_from_repo_configs(reference_dir: Path, repo_root: Path, config: str,
                                     key_file: str) -> None:
    path = repo_root / "configs" / config
    if not path.is_file():
        pytest.skip(f"{path} not found")
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    expected = read_official_keys(reference_dir / "official_keys" / key_file, "sem_seg_head.")
    head = build_sem_seg_head(cfg, R50_SHAPES)
    assert [(k, tuple(v.shape)) for k, v in _Model(head).state_dict().items()] == expected


# ----------------------------------------------------------------------------------------------
# Official outputs: the whole Mask2Former head from backbone features
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["m2f_swin_panoptic", "m2f_swin_semantic_batch2"])
def test_mask_former_head_matches_official(reference_dir: Path, case: str) -> None:
    case_dir = reference_dir / "official_outputs" / case
    cfg = get_cfg()
    cfg.merge_from_file(str(case_dir / "config.yaml"))
    model = _Model(build_sem_seg_head(cfg, TINY_SWIN_SHAPES)).eval()
    model.load_state_dict(head_state_dict_from_pkl(case_dir / "model_final.pkl"), strict=True)

    outputs = torch.load(case_dir / "outputs.pt", weights_only=True)
    with torch.no_grad():
        out = model.sem_seg_head(outputs["features"])
    ref = outputs["head"]
    assert len(out["aux_outputs"]) == len(ref["aux_outputs"]) == 3
    for i, (got, exp) in enumerate(zip([out] + out["aux_outputs"], [ref] + ref["aux_outputs"])):
        torch.testing.assert_close(got["pred_logits"], exp["pred_logits"], atol=1e-3, rtol=0,
                                   msg=lambda m: f"{case}[{i}].pred_logits: {m}")
        torch.testing.assert_close(got["pred_masks"], exp["pred_masks"], atol=2e-3, rtol=1e-4,
                                   msg=lambda m: f"{case}[{i}].pred_masks: {m}")


# ----------------------------------------------------------------------------------------------
# Checkpoint layout versions (official behaviour, see Mask2Former issue #95)
# ----------------------------------------------------------------------------------------------
def _small_maskformer_head_cfg(in_feature: str = "res5", pixel_decoder: str = "BasePixelDecoder"):
    cfg = get_cfg()
    head = cfg.MODEL.SEM_SEG_HEAD
    head.NAME, head.PIXEL_DECODER_NAME, head.NUM_CLASSES = "MaskFormerHead", pixel_decoder, 5
    head.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    head.CONVS_DIM, head.MASK_DIM, head.NORM, head.TRANSFORMER_ENC_LAYERS = 32, 32, "GN", 1
    mf = cfg.MODEL.MASK_FORMER
    mf.TRANSFORMER_DECODER_NAME, mf.TRANSFORMER_IN_FEATURE = "StandardTransformerDecoder", in_feature
    mf.HIDDEN_DIM, mf.NUM_OBJECT_QUERIES, mf.NHEADS, mf.DIM_FEEDFORWARD = 16, 4, 2, 32
    mf.ENC_LAYERS, mf.DEC_LAYERS, mf.DROPOUT, mf.DEEP_SUPERVISION = 0, 2, 0.0, True
    return cfg


def test_old_layout_checkpoint_is_renamed_to_pixel_decoder() -> None:
    cfg = _small_maskformer_head_cfg()
    torch.manual_seed(0)
    source = _Model(build_sem_seg_head(cfg, SMALL_SHAPES))
    target = _Model(build_sem_seg_head(cfg, SMALL_SHAPES))
    current = source.state_dict()
    assert current._metadata["sem_seg_head"]["version"] == 2

    # Old layout: pixel-decoder weights directly under sem_seg_head, no head version.
    old = collections.OrderedDict(
        (k.replace("sem_seg_head.pixel_decoder.", "sem_seg_head."), v) for k, v in current.items()
    )
    old._metadata = {k: v for k, v in current._metadata.items() if k != "sem_seg_head"}
    target.load_state_dict(old, strict=True)
    for k, v in target.state_dict().items():
        assert torch.equal(v, current[k]), k

    # A versioned current-layout checkpoint is loaded as is.
    target.load_state_dict(current, strict=True)
    # Without any version information the official head assumes the old layout, so a
    # current-layout plain dict does not load strictly (the official symptom).
    with pytest.raises(RuntimeError, match=r"sem_seg_head\.pixel_decoder\.pixel_decoder\."):
        target.load_state_dict(dict(current), strict=True)


# ----------------------------------------------------------------------------------------------
# MaskFormerHead: which pixel-decoder output feeds the predictor
# ----------------------------------------------------------------------------------------------
def test_predictor_in_channels_come_from_declared_shapes() -> None:
    cfg = _small_maskformer_head_cfg(pixel_decoder="TransformerEncoderPixelDecoder")
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 24
    decoder = build_pixel_decoder(cfg, SMALL_SHAPES).eval()
    with torch.no_grad():
        decoded = decoder.forward_features(small_features())
    actual = {"transformer_encoder": decoded.transformer_encoder_features.shape[1],
              "multi_scale_pixel_decoder": decoded.multi_scale_features[0].shape[1],
              "pixel_embedding": decoded.mask_features.shape[1]}
    for feature, channels in [("transformer_encoder", 32), ("multi_scale_pixel_decoder", 32),
                              ("pixel_embedding", 24), ("res4", 24), ("res5", 32)]:
        assert predictor_in_channels(feature, decoder, SMALL_SHAPES) == channels
        assert actual.get(feature, channels) == channels
    with pytest.raises(KeyError, match="res7"):
        predictor_in_channels("res7", decoder, SMALL_SHAPES)


@pytest.mark.parametrize(
    "in_feature, pixel_decoder",
    [("res5", "BasePixelDecoder"), ("pixel_embedding", "BasePixelDecoder"),
     ("transformer_encoder", "TransformerEncoderPixelDecoder")],
)
def test_mask_former_head_routes_the_requested_feature(in_feature: str, pixel_decoder: str) -> None:
    torch.manual_seed(0)
    head = build_sem_seg_head(_small_maskformer_head_cfg(in_feature, pixel_decoder), SMALL_SHAPES).eval()
    features = small_features()
    with torch.no_grad():
        out = head(features)
        mask_features, encoder_features, _ = head.pixel_decoder.forward_features(features)
        x = {"res5": features["res5"], "pixel_embedding": mask_features,
             "transformer_encoder": encoder_features}[in_feature]
        expected = head.predictor(x, mask_features)
    assert out["pred_logits"].shape == (2, 4, 6) and out["pred_masks"].shape == (2, 4, 16, 16)
    torch.testing.assert_close(out["pred_masks"], expected["pred_masks"])
    torch.testing.assert_close(out["pred_logits"], expected["pred_logits"])


def test_mask_former_head_transformer_encoder_needs_encoder() -> None:
    cfg = _small_maskformer_head_cfg("transformer_encoder", "BasePixelDecoder")
    with pytest.raises(ValueError, match="TransformerEncoderPixelDecoder"):  # found at build time
        build_sem_seg_head(cfg, SMALL_SHAPES)


# ----------------------------------------------------------------------------------------------
# Per-pixel baselines
# ----------------------------------------------------------------------------------------------
def _per_pixel_cfg(name: str, deep_supervision: bool = True):
    cfg = get_cfg()
    head = cfg.MODEL.SEM_SEG_HEAD
    head.NAME, head.PIXEL_DECODER_NAME, head.NUM_CLASSES = name, "BasePixelDecoder", 5
    head.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    head.CONVS_DIM, head.MASK_DIM, head.NORM = 32, 32, "GN"
    head.IGNORE_VALUE, head.LOSS_WEIGHT = 255, 0.5
    mf = cfg.MODEL.MASK_FORMER
    mf.TRANSFORMER_IN_FEATURE, mf.NUM_OBJECT_QUERIES = "res5", 5  # one query per class
    mf.HIDDEN_DIM, mf.NHEADS, mf.DIM_FEEDFORWARD, mf.ENC_LAYERS, mf.DEC_LAYERS = 16, 2, 32, 0, 3
    mf.DROPOUT, mf.DEEP_SUPERVISION = 0.0, deep_supervision
    return cfg


def _expected_ce(logits_stride4: torch.Tensor, targets: torch.Tensor, ignore: int = 255) -> torch.Tensor:
    """Mean per-pixel cross-entropy over non-ignored pixels of x4 bilinear-upsampled logits."""
    logits = F.interpolate(logits_stride4, scale_factor=4, mode="bilinear", align_corners=False)
    logp = logits.log_softmax(dim=1)
    valid = targets != ignore
    picked = logp.gather(1, targets.clamp(max=logits.shape[1] - 1)[:, None])[:, 0]
    return -picked[valid].mean()


def _targets(batch: int = 2, size: int = 64) -> torch.Tensor:
    targets = torch.randint(0, 5, (batch, size, size))
    targets[:, :10] = 255  # ignored rows
    return targets


def test_per_pixel_baseline_inference_and_loss() -> None:
    torch.manual_seed(0)
    head = build_sem_seg_head(_per_pixel_cfg("PerPixelBaselineHead"), SMALL_SHAPES)
    assert type(head) is PerPixelBaselineHead
    features, targets = small_features(), _targets()
    with torch.no_grad():
        logits = head.predictor(head.pixel_decoder.forward_features(features)[0])  # (2, 5, 16, 16)

        head.eval()
        result, losses = head(features)
        assert losses == {}
        torch.testing.assert_close(
            result, F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False))
        assert result.shape == (2, 5, 64, 64)

        head.train()
        result, losses = head(features, targets)
    assert result is None and set(losses) == {"loss_sem_seg"}
    torch.testing.assert_close(losses["loss_sem_seg"], 0.5 * _expected_ce(logits, targets))
    with pytest.raises(ValueError, match="targets"):
        head(features)


@pytest.mark.parametrize("deep_supervision", [True, False])
def test_per_pixel_baseline_plus_losses(deep_supervision: bool) -> None:
    torch.manual_seed(0)
    head = build_sem_seg_head(_per_pixel_cfg("PerPixelBaselinePlusHead", deep_supervision), SMALL_SHAPES)
    assert type(head) is PerPixelBaselinePlusHead
    assert not hasattr(head.predictor, "class_embed")  # mask_classification=False
    features, targets = small_features(), _targets()
    with torch.no_grad():
        mask_features = head.pixel_decoder.forward_features(features)[0]
        predictions = head.predictor(features["res5"], mask_features)

        head.train()
        _, losses = head(features, targets)
        head.eval()
        result, _ = head(features)

    torch.testing.assert_close(
        result,
        F.interpolate(predictions["pred_masks"], scale_factor=4, mode="bilinear", align_corners=False),
    )
    assert result.shape == (2, 5, 64, 64)
    torch.testing.assert_close(losses["loss_sem_seg"], 0.5 * _expected_ce(predictions["pred_masks"], targets))
    if deep_supervision:
        assert set(losses) == {"loss_sem_seg", "loss_sem_seg_0", "loss_sem_seg_1"}
        for i, aux in enumerate(predictions["aux_outputs"]):
            # official: aux losses are not multiplied by LOSS_WEIGHT a second time
            expected = 0.5 * _expected_ce(aux["pred_masks"], targets)
            torch.testing.assert_close(losses[f"loss_sem_seg_{i}"], expected)
    else:
        assert set(losses) == {"loss_sem_seg"}


def test_heads_are_registered() -> None:
    for cls in (MaskFormerHead, PerPixelBaselineHead, PerPixelBaselinePlusHead):
        assert SEM_SEG_HEADS_REGISTRY.get(cls.__name__) is cls
