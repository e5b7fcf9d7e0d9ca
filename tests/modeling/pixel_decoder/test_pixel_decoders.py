"""Pixel decoders: official parity (MSDeformAttn), official state_dict keys, top-down wiring."""
from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch
import torch.nn.functional as F

from mask2former.config import get_cfg
from mask2former.layers import ShapeSpec
from mask2former.modeling.build import PIXEL_DECODER_REGISTRY, build_pixel_decoder
from mask2former.modeling.pixel_decoder.fpn import BasePixelDecoder, TransformerEncoderPixelDecoder
from mask2former.modeling.pixel_decoder.msdeformattn import MSDeformAttnPixelDecoder

CASES = ["m2f_swin_panoptic", "m2f_swin_semantic_batch2"]
PREFIX = "sem_seg_head.pixel_decoder."


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Loads the reference .pkl (numpy arrays in an OrderedDict) and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict") or module.split(".")[0] == "numpy":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weights file")


def _load_pixel_decoder_weights(path: Path) -> Dict[str, torch.Tensor]:
    with open(path, "rb") as f:
        model = _NumpyOnlyUnpickler(f).load()["model"]
    return {k[len(PREFIX):]: torch.from_numpy(v).float() for k, v in model.items() if k.startswith(PREFIX)}


def _official_keys(path: Path) -> List[Tuple[str, Tuple[int, ...]]]:
    out = []
    for line in path.read_text().splitlines():
        key, shape, dtype = line.split("\t")
        if key.startswith(PREFIX):
            assert dtype == "float32"
            out.append((key[len(PREFIX):], tuple(int(s) for s in shape.split(",") if s)))
    assert out, f"no {PREFIX} keys in {path}"
    return out


def _keys(module: torch.nn.Module) -> List[Tuple[str, Tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def _resnet_shapes(channels=(256, 512, 1024, 2048)) -> Dict[str, ShapeSpec]:
    return {f"res{i + 2}": ShapeSpec(channels=c, stride=4 * 2 ** i) for i, c in enumerate(channels)}


# --------------------------------------------------------------------------- official parity
@pytest.mark.parametrize("case", CASES)
def test_msdeformattn_pixel_decoder_matches_official(reference_dir, case):
    case_dir = reference_dir / "official_outputs" / case
    outputs = torch.load(case_dir / "outputs.pt", weights_only=True)
    features = outputs["features"]
    input_shape = {
        name: ShapeSpec(channels=f.shape[1], stride=features["res2"].shape[-1] * 4 // f.shape[-1])
        for name, f in features.items()
    }
    assert [s.stride for s in input_shape.values()] == [4, 8, 16, 32]
    cfg = get_cfg()
    cfg.merge_from_file(str(case_dir / "config.yaml"))
    decoder = build_pixel_decoder(cfg, input_shape).eval()
    assert isinstance(decoder, MSDeformAttnPixelDecoder)
    assert decoder.transformer.nhead == 4  # from MASK_FORMER.NHEADS
    assert decoder.transformer.encoder.layers[0].linear1.out_features == 1024
    assert decoder.transformer.encoder.layers[0].self_attn.n_points == 4
    decoder.load_state_dict(_load_pixel_decoder_weights(case_dir / "model_final.pkl"), strict=True)

    with torch.no_grad():
        mask_features, encoder_features, multi_scale = decoder.forward_features(features)
    ref = outputs["pixel_decoder"]
    torch.testing.assert_close(mask_features, ref["mask_features"], atol=1e-4, rtol=0)
    assert len(multi_scale) == 3
    for ours, theirs in zip(multi_scale, ref["multi_scale_features"]):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    assert encoder_features is multi_scale[0]

    # float16 autocast is switched off inside (the official guard): the same float32 result
    encoder_dtypes = []
    decoder.transformer.encoder.layers[0].linear1.register_forward_hook(
        lambda module, args, out: encoder_dtypes.append(out.dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        mask_features_fp16, _, _ = decoder.forward_features(features)
    assert mask_features_fp16.dtype == torch.float32 and encoder_dtypes == [torch.float32]
    torch.testing.assert_close(mask_features_fp16, mask_features, atol=0, rtol=0)
    # bfloat16 autocast (SOLVER.AMP bfloat16) stays on: encoder and convolutions in bfloat16,
    # the result close to float32 (bfloat16 keeps 8 mantissa bits: relative steps of 2^-8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        mask_features_bf16, _, multi_scale_bf16 = decoder.forward_features(features)
    assert encoder_dtypes[-1] == torch.bfloat16 and mask_features_bf16.dtype == torch.bfloat16
    scale = mask_features.abs().max()
    error = (mask_features_bf16.float() - mask_features).abs()
    assert error.max() < 0.02 * scale and error.mean() < 0.002 * scale, (error.max(), error.mean(), scale)


def test_msdeformattn_encoder_on_res2_to_res4_with_a_narrow_ffn_from_config():
    """The encoder may take the 1/4 scale itself (no FPN level left); its FFN width comes from
    DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD (the official 1024 by default, above)."""
    cfg = get_cfg()
    head = cfg.MODEL.SEM_SEG_HEAD
    head.PIXEL_DECODER_NAME = "MSDeformAttnPixelDecoder"
    head.IN_FEATURES = ["res2", "res3", "res4"]
    head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res2", "res3", "res4"]
    head.DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD = 48
    head.CONVS_DIM, head.MASK_DIM, head.TRANSFORMER_ENC_LAYERS = 32, 8, 1
    cfg.MODEL.MASK_FORMER.NHEADS = 2
    shapes = {k: v for k, v in _resnet_shapes((8, 16, 24, 32)).items() if k != "res5"}
    decoder = build_pixel_decoder(cfg, shapes).eval()
    assert [layer.linear1.out_features for layer in decoder.transformer.encoder.layers] == [48]
    assert decoder.num_fpn_levels == 0 and len(decoder.lateral_convs) == 0
    spec = decoder.output_shape()
    assert spec.mask_features.stride == 4
    assert [s.stride for s in spec.multi_scale_features] == [16, 8, 4]
    feats = {f"res{i + 2}": torch.randn(2, c, 32 // 2 ** i, 24 // 2 ** i)
             for i, c in enumerate((8, 16, 24))}
    with torch.no_grad():
        mask_features, enc, multi = decoder.forward_features(feats)
    assert mask_features.shape == (2, 8, 32, 24)
    assert [tuple(m.shape[-2:]) for m in multi] == [(8, 6), (16, 12), (32, 24)]
    assert enc is multi[0]


def test_msdeformattn_encoder_all_valid_masks_match_no_masks():
    torch.manual_seed(0)
    decoder = MSDeformAttnPixelDecoder(
        _resnet_shapes((8, 16, 24, 32)), transformer_dropout=0.0, transformer_nheads=2,
        transformer_dim_feedforward=16, transformer_enc_layers=1, conv_dim=32, mask_dim=8,
        norm="GN", transformer_in_features=["res3", "res4", "res5"], common_stride=4,
    ).eval()
    srcs = [torch.randn(2, 32, h, w) for h, w in [(2, 3), (3, 5), (5, 9)]]
    pos = [decoder.pe_layer(s) for s in srcs]
    masks = [torch.zeros(2, *s.shape[-2:], dtype=torch.bool) for s in srcs]
    with torch.no_grad():
        a, shapes, start = decoder.transformer(srcs, pos)
        b, _, _ = decoder.transformer(srcs, pos, masks)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert shapes.tolist() == [[2, 3], [3, 5], [5, 9]] and start.tolist() == [0, 6, 21]


def test_msdeformattn_decoder_shapes_and_fpn_levels():
    torch.manual_seed(0)
    decoder = MSDeformAttnPixelDecoder(
        _resnet_shapes((8, 16, 24, 32)), transformer_dropout=0.0, transformer_nheads=2,
        transformer_dim_feedforward=16, transformer_enc_layers=1, conv_dim=32, mask_dim=8,
        norm="GN", transformer_in_features=["res4", "res5"], common_stride=4,
    ).eval()
    assert decoder.num_fpn_levels == 2  # res3 and res2 come from the FPN
    feats = {f"res{i + 2}": torch.randn(1, c, 40 // 2 ** i, 24 // 2 ** i)
             for i, c in enumerate((8, 16, 24, 32))}
    with torch.no_grad():
        mask_features, enc, multi = decoder.forward_features(feats)
    assert mask_features.shape == (1, 8, 40, 24)
    assert [tuple(m.shape[-2:]) for m in multi] == [(5, 3), (10, 6), (20, 12)]
    assert enc.shape == (1, 32, 5, 3)
    # the encoder's maps are handed on as contiguous NCHW, not as views of the token sequence
    # (upsampling and convolving such channels-last views copies them: docs/performance.md)
    assert enc.is_contiguous() and all(m.is_contiguous() for m in multi)
    with pytest.raises(ValueError, match="DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES"):
        MSDeformAttnPixelDecoder(
            _resnet_shapes((8, 16, 24, 32)), transformer_dropout=0.0, transformer_nheads=2,
            transformer_dim_feedforward=16, transformer_enc_layers=1, conv_dim=32, mask_dim=8,
            transformer_in_features=["res6"], common_stride=4,
        )


# --------------------------------------------------------------------------- official keys
def _m2f_msdeformattn_configs(reference_dir: Path) -> List[str]:
    rows = (reference_dir / "official_keys" / "index.tsv").read_text().splitlines()[1:]
    return [r.split("\t")[0] for r in rows
            if "/" not in r.split("\t")[0] and r.split("\t")[4] == "MSDeformAttnPixelDecoder"]


@pytest.mark.parametrize("name", [
    "coco__panoptic-segmentation__maskformer2_R50_bs16_50ep",
    "ade20k__semantic-segmentation__swin__maskformer2_swin_large_IN21k_384_bs16_160k_res640",
    "cityscapes__instance-segmentation__maskformer2_R101_bs16_90k",
])
def test_msdeformattn_keys_match_official(reference_dir, name):
    assert f"{name}.txt" in _m2f_msdeformattn_configs(reference_dir)
    official = _official_keys(reference_dir / "official_keys" / f"{name}.txt")
    # input channels as the official model saw them: res2 from adapter_1, res5..res3 from input_proj
    lookup = dict(official)
    channels = [lookup["adapter_1.weight"][1]] + [lookup[f"input_proj.{i}.0.weight"][1] for i in (2, 1, 0)]
    cfg = get_cfg()
    cfg.merge_from_file(str(reference_dir / "official_configs" / f"{name}.yaml"))
    decoder = build_pixel_decoder(cfg, _resnet_shapes(channels))
    assert _keys(decoder) == official


def test_base_pixel_decoder_keys_match_official(reference_dir):
    official = _official_keys(
        reference_dir / "official_keys" / "maskformer" / "ade20k-150__maskformer_R50_bs16_160k.txt")
    cfg = get_cfg()  # MaskFormer Base-ADE20K-150 values
    cfg.merge_from_list([
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "BasePixelDecoder",
        "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res2", "res3", "res4", "res5"],
        "MODEL.SEM_SEG_HEAD.CONVS_DIM", 256, "MODEL.SEM_SEG_HEAD.MASK_DIM", 256,
        "MODEL.SEM_SEG_HEAD.NORM", "GN",
    ])
    decoder = build_pixel_decoder(cfg, _resnet_shapes())
    assert type(decoder) is BasePixelDecoder
    assert _keys(decoder) == official


def test_transformer_encoder_pixel_decoder_keys_match_official(reference_dir):
    official = _official_keys(
        reference_dir / "official_keys" / "maskformer" / "coco-panoptic__maskformer_panoptic_R50_bs64_554k.txt")
    cfg = get_cfg()  # MaskFormer coco-panoptic R50 values
    cfg.merge_from_list([
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "TransformerEncoderPixelDecoder",
        "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res2", "res3", "res4", "res5"],
        "MODEL.SEM_SEG_HEAD.CONVS_DIM", 256, "MODEL.SEM_SEG_HEAD.MASK_DIM", 256,
        "MODEL.SEM_SEG_HEAD.NORM", "GN", "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 6,
        "MODEL.MASK_FORMER.NHEADS", 8, "MODEL.MASK_FORMER.DIM_FEEDFORWARD", 2048,
        "MODEL.MASK_FORMER.PRE_NORM", False,
    ])
    decoder = build_pixel_decoder(cfg, _resnet_shapes())
    assert type(decoder) is TransformerEncoderPixelDecoder
    assert _keys(decoder) == official


def test_registered_names():
    """Every registered pixel decoder is a ``PixelDecoder`` under its own class name, the
    built-in ones are there, and an unknown config name is rejected naming the known ones."""
    import mask2former.modeling  # noqa: F401  (registers every part)
    from mask2former.modeling.pixel_decoder.base import PixelDecoder
    from mask2former.modeling.pixel_decoder.fapn import FaPNPixelDecoder, MSFaPNPixelDecoder

    registered = dict(PIXEL_DECODER_REGISTRY)
    for name, cls in registered.items():
        assert issubclass(cls, PixelDecoder) and cls.__name__ == name, name
    for cls in (BasePixelDecoder, TransformerEncoderPixelDecoder, MSDeformAttnPixelDecoder,
                FaPNPixelDecoder, MSFaPNPixelDecoder):
        assert registered[cls.__name__] is cls
    assert issubclass(registered["BasePixelFANDecoder"], FaPNPixelDecoder)
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "NoSuchDecoder"
    with pytest.raises(KeyError, match="NoSuchDecoder.*MSDeformAttnPixelDecoder"):
        build_pixel_decoder(cfg, _resnet_shapes())


# --------------------------------------------------------------------------- FPN wiring
TINY_CHANNELS = (8, 16, 24, 40)


def _tiny_features(batch=2):
    g = torch.Generator().manual_seed(1)
    sizes = [(20, 28), (10, 14), (5, 7), (3, 4)]  # odd sizes: nearest upsampling is not 2x
    return {f"res{i + 2}": torch.randn(batch, c, *s, generator=g)
            for i, (c, s) in enumerate(zip(TINY_CHANNELS, sizes))}


def _randomize(module):
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _expected_top_down(decoder, feats, lowest):
    y5 = lowest
    y4 = decoder.layer_3(decoder.adapter_3(feats["res4"]) + F.interpolate(y5, size=feats["res4"].shape[-2:]))
    y3 = decoder.layer_2(decoder.adapter_2(feats["res3"]) + F.interpolate(y4, size=feats["res3"].shape[-2:]))
    y2 = decoder.layer_1(decoder.adapter_1(feats["res2"]) + F.interpolate(y3, size=feats["res2"].shape[-2:]))
    return decoder.mask_features(y2), [y5, y4, y3]


@pytest.mark.parametrize("norm", ["GN", ""])
def test_base_pixel_decoder_top_down(norm):
    decoder = BasePixelDecoder(_resnet_shapes(TINY_CHANNELS), conv_dim=32, mask_dim=16, norm=norm).eval()
    _randomize(decoder)
    assert (decoder.adapter_1.bias is None) == (norm == "GN")
    assert decoder.mask_features.bias is not None
    feats = _tiny_features()
    with torch.no_grad():
        mask_features, enc, multi = decoder.forward_features(feats)
        expected_mask, expected_multi = _expected_top_down(decoder, feats, decoder.layer_4(feats["res5"]))
    assert enc is None
    assert mask_features.shape == (2, 16, 20, 28)
    torch.testing.assert_close(mask_features, expected_mask)
    for ours, theirs in zip(multi, expected_multi, strict=True):
        torch.testing.assert_close(ours, theirs)


def test_transformer_encoder_pixel_decoder_top_down(caplog):
    torch.manual_seed(0)
    decoder = TransformerEncoderPixelDecoder(
        _resnet_shapes(TINY_CHANNELS), transformer_dropout=0.0, transformer_nheads=4,
        transformer_dim_feedforward=64, transformer_enc_layers=2, transformer_pre_norm=True,
        conv_dim=32, mask_dim=16, norm="GN",
    ).eval()
    _randomize(decoder)
    assert decoder.layer_4.weight.shape == (32, 32, 3, 3)  # reads the encoder output
    assert decoder.output_convs[0] is decoder.layer_4
    assert "transformer.encoder.norm.weight" in decoder.state_dict()  # pre-norm final LayerNorm
    feats = _tiny_features()
    with torch.no_grad():
        mask_features, enc, multi = decoder.forward_features(feats)
        res5 = feats["res5"]
        expected_enc = decoder.transformer(decoder.input_proj(res5), None, decoder.pe_layer(res5))
        expected_mask, expected_multi = _expected_top_down(decoder, feats, decoder.layer_4(expected_enc))
    assert enc.shape == (2, 32, 3, 4)
    torch.testing.assert_close(enc, expected_enc)
    torch.testing.assert_close(mask_features, expected_mask)
    for ours, theirs in zip(multi, expected_multi, strict=True):
        torch.testing.assert_close(ours, theirs)

    # the encoder really mixes positions: perturbing one res5 pixel moves every encoder output
    feats2 = dict(feats, res5=feats["res5"].clone())
    feats2["res5"][:, :, 0, 0] += 5
    with torch.no_grad():
        enc2 = decoder.forward_features(feats2)[1]
    assert ((enc2 - enc).abs().amax(1) > 1e-4).all()

    with caplog.at_level(logging.WARNING):
        with torch.no_grad():
            out = decoder(feats)
    assert "forward()" in caplog.text
    torch.testing.assert_close(out[0], mask_features)
