"""Transformer decoders: official parity, the masked-attention rule, official state_dict keys."""
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
from mask2former.modeling.build import TRANSFORMER_DECODER_REGISTRY, build_transformer_decoder
from mask2former.modeling.meta_arch.mask_former import head_outputs
from mask2former.modeling.transformer_decoder.mask2former_transformer_decoder import (
    MultiScaleMaskedTransformerDecoder,
    masked_attention_allowed,
    multi_head_attention,
)
from mask2former.modeling.transformer_decoder.maskformer_transformer_decoder import (
    StandardTransformerDecoder,
)

CASES = ["m2f_swin_panoptic", "m2f_swin_semantic_batch2"]


# ----------------------------------------------------------------------------------------------
# Reference helpers
# ----------------------------------------------------------------------------------------------
def load_pkl_state_dict(path: Path, prefix: str) -> Dict[str, torch.Tensor]:
    """Entries of ``model_final.pkl`` under ``prefix`` (prefix stripped), as float32 tensors."""
    model = load_pickle(path)["model"]  # restricted unpickler: numpy / containers only
    return {
        k[len(prefix):]: torch.from_numpy(np.asarray(v)).float()
        for k, v in model.items() if k.startswith(prefix)
    }


def read_official_keys(path: Path, prefix: str) -> List[Tuple[str, Tuple[int, ...]]]:
    """(key without prefix, shape) of the key-list lines starting with ``prefix``, in order."""
    out = []
    for line in path.read_text().splitlines():
        key, shape, _dtype = line.split("\t")
        if key.startswith(prefix):
            out.append((key[len(prefix):], tuple(int(s) for s in shape.split(",") if s)))
    return out


def state_dict_keys(module: nn.Module) -> List[Tuple[str, Tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float = 0.0,
                 what: str = "") -> None:
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = (actual - expected).abs()
    bound = atol + rtol * expected.abs()
    assert bool((err <= bound).all()), f"{what}: max abs diff {err.max().item():.3g} (atol {atol})"


# ----------------------------------------------------------------------------------------------
# (a) Parity with the official outputs
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_multiscale_decoder_matches_official(reference_dir: Path, case: str) -> None:
    case_dir = reference_dir / "official_outputs" / case
    cfg = get_cfg()
    cfg.merge_from_file(str(case_dir / "config.yaml"))
    decoder = build_transformer_decoder(cfg, cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM, mask_classification=True)
    assert isinstance(decoder, MultiScaleMaskedTransformerDecoder)
    assert decoder.num_layers == cfg.MODEL.MASK_FORMER.DEC_LAYERS - 1 == 3
    state = load_pkl_state_dict(case_dir / "model_final.pkl", "sem_seg_head.predictor.")
    decoder.load_state_dict(state, strict=True)
    decoder.eval()

    outputs = torch.load(case_dir / "outputs.pt", weights_only=True)
    pixel = outputs["pixel_decoder"]
    with torch.no_grad():
        out = decoder(pixel["multi_scale_features"], pixel["mask_features"])

    ref = outputs["head"]
    assert len(out["aux_outputs"]) == len(ref["aux_outputs"]) == 3
    for i, (got, exp) in enumerate(zip([out] + out["aux_outputs"], [ref] + ref["aux_outputs"])):
        assert_close(got["pred_logits"], exp["pred_logits"], atol=1e-3, what=f"{case}[{i}].pred_logits")
        assert_close(got["pred_masks"], exp["pred_masks"], atol=2e-3, rtol=1e-4,
                     what=f"{case}[{i}].pred_masks")


# ----------------------------------------------------------------------------------------------
# (b) Masked attention rule vs a naive (official-style, sequence-first) implementation
# ----------------------------------------------------------------------------------------------
def test_masked_attention_allowed_rule() -> None:
    logits = torch.full((1, 3, 2, 2), -5.0)  # query 0: nothing positive
    logits[0, 1] = torch.tensor([[1.0, -1.0], [0.0, -3.0]])  # query 1: mixed; 0 -> sigmoid 0.5
    logits[0, 2] = 4.0  # query 2: everything positive
    allowed = masked_attention_allowed(logits, (2, 2))
    assert allowed.dtype == torch.bool and allowed.shape == (1, 3, 4)
    assert allowed[0, 0].all(), "a query with no allowed position must attend everywhere"
    assert allowed[0, 1].tolist() == [True, False, True, False]
    assert allowed[0, 2].all()

    # Resizing: bilinear (align_corners=False) to the level's size before thresholding.
    logits = torch.randn(2, 5, 8, 8)
    size = (3, 5)
    expected = F.interpolate(logits, size=size, mode="bilinear", align_corners=False).sigmoid() >= 0.5
    expected = expected.flatten(2)
    expected = expected | ~expected.any(-1, keepdim=True)
    assert torch.equal(masked_attention_allowed(logits, size), expected)


def test_multi_head_attention_matches_nn_multihead_attention() -> None:
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(16, 4).eval()
    nn.init.normal_(attn.in_proj_bias, std=0.1)
    q, k, v = torch.randn(2, 5, 16), torch.randn(2, 7, 16), torch.randn(2, 7, 16)
    allowed = torch.rand(2, 5, 7) > 0.6
    allowed[0, 1] = False
    allowed[0, 1, 3] = True  # a row with a single allowed position
    allowed[1, 2] = True
    blocked = (~allowed).repeat_interleave(4, dim=0)  # (B*h, Lq, Lk): True = blocked
    with torch.no_grad():
        expected = attn(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=blocked)[0]
        got = multi_head_attention(attn, q, k, v, allowed)
        got_free = multi_head_attention(attn, q, k, v, None)
        expected_free = attn(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1))[0]
    torch.testing.assert_close(got, expected.transpose(0, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_free, expected_free.transpose(0, 1), atol=1e-5, rtol=1e-5)


def _naive_forward(dec: MultiScaleMaskedTransformerDecoder, x: List[torch.Tensor],
                   mask_features: torch.Tensor) -> Tuple[Dict, List[int]]:
    """The official algorithm, sequence-first, with nn.MultiheadAttention and a blocked mask.

    Also returns, per decoder layer, how many (image, query) rows were fully blocked.
    """
    heads = dec.num_heads

    def heads_out(output, size):
        normed = dec.decoder_norm(output).transpose(0, 1)  # (B, Q, C)
        cls = dec.class_embed(normed)
        masks = torch.einsum("bqc,bchw->bqhw", dec.mask_embed(normed), mask_features)
        resized = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        blocked = resized.sigmoid().flatten(2).unsqueeze(1).repeat(1, heads, 1, 1).flatten(0, 1) < 0.5
        return cls, masks, blocked

    def add(t, p):
        return t + p

    def cross(layer, tgt, memory, blocked, pos, query_pos):
        if layer.normalize_before:
            t2 = layer.norm(tgt)
            t2 = layer.multihead_attn(add(t2, query_pos), add(memory, pos), memory, attn_mask=blocked)[0]
            return tgt + t2
        t2 = layer.multihead_attn(add(tgt, query_pos), add(memory, pos), memory, attn_mask=blocked)[0]
        return layer.norm(tgt + t2)

    def self_attn(layer, tgt, query_pos):
        if layer.normalize_before:
            t2 = layer.norm(tgt)
            q = add(t2, query_pos)
            return tgt + layer.self_attn(q, q, t2)[0]
        q = add(tgt, query_pos)
        return layer.norm(tgt + layer.self_attn(q, q, tgt)[0])

    def ffn(layer, tgt):
        if layer.normalize_before:
            return tgt + layer.linear2(F.relu(layer.linear1(layer.norm(tgt))))
        return layer.norm(tgt + layer.linear2(F.relu(layer.linear1(tgt))))

    src, pos, sizes = [], [], []
    for i, feat in enumerate(x):
        sizes.append(feat.shape[-2:])
        pos.append(dec.pe_layer(feat, None).flatten(2).permute(2, 0, 1))
        flat = dec.input_proj[i](feat).flatten(2) + dec.level_embed.weight[i][None, :, None]
        src.append(flat.permute(2, 0, 1))
    bs = src[0].shape[1]
    query_pos = dec.query_embed.weight.unsqueeze(1).repeat(1, bs, 1)
    output = dec.query_feat.weight.unsqueeze(1).repeat(1, bs, 1)
    cls, masks, blocked = heads_out(output, sizes[0])
    classes, all_masks, fully_blocked = [cls], [masks], []
    for i in range(dec.num_layers):
        level = i % 3
        full = blocked.sum(-1) == blocked.shape[-1]
        fully_blocked.append(int(full.sum()) // heads)
        blocked[torch.where(full)] = False
        output = cross(dec.transformer_cross_attention_layers[i], output, src[level], blocked,
                       pos[level], query_pos)
        output = self_attn(dec.transformer_self_attention_layers[i], output, query_pos)
        output = ffn(dec.transformer_ffn_layers[i], output)
        cls, masks, blocked = heads_out(output, sizes[(i + 1) % 3])
        classes.append(cls)
        all_masks.append(masks)
    return {"classes": classes, "masks": all_masks}, fully_blocked


def _tiny_decoder(pre_norm: bool, in_channels: int = 8, dec_layers: int = 4,
                  enforce_input_project: bool = False) -> MultiScaleMaskedTransformerDecoder:
    return MultiScaleMaskedTransformerDecoder(
        in_channels, True, num_classes=5, hidden_dim=16, num_queries=6, nheads=4,
        dim_feedforward=32, dec_layers=dec_layers, pre_norm=pre_norm, mask_dim=8,
        enforce_input_project=enforce_input_project,
    )


@pytest.mark.parametrize("pre_norm", [False, True])
def test_multiscale_decoder_matches_naive_masked_attention(pre_norm: bool) -> None:
    torch.manual_seed(4)  # a seed whose masks mix fully blocked, partly and never blocked rows
    dec = _tiny_decoder(pre_norm, in_channels=12).eval()
    with torch.no_grad():
        for p in dec.parameters():  # LayerNorm / bias defaults are too benign
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.3)
        dec.mask_embed.layers[-1].bias.zero_()
        dec.mask_embed.layers[-1].weight[0] *= 4.0  # spread of the per-query offset below
    x = [torch.randn(2, 12, 2, 3), torch.randn(2, 12, 4, 5), torch.randn(2, 12, 8, 10)]
    mask_features = torch.randn(2, 8, 16, 20)
    mask_features[:, 0] = 3.0  # a per-query logit offset: some queries get no positive pixel

    with torch.no_grad():
        out = dec(x, mask_features)
        ref, fully_blocked = _naive_forward(dec, x, mask_features)

    rows = 2 * dec.num_queries
    assert sum(fully_blocked) > 0, "the test must exercise the all-masked-row rule"
    assert any(0 < n < rows for n in fully_blocked), "the test needs masked and free rows together"
    assert any(0.1 < (m > 0).float().mean() < 0.9 for m in ref["masks"][:-1]), "masks must be mixed"
    preds = out["aux_outputs"] + [{"pred_logits": out["pred_logits"], "pred_masks": out["pred_masks"]}]
    assert len(preds) == len(ref["classes"]) == dec.num_layers + 1
    for i, pred in enumerate(preds):
        torch.testing.assert_close(pred["pred_logits"], ref["classes"][i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pred["pred_masks"], ref["masks"][i], atol=1e-4, rtol=1e-5)


class _HeadOf(nn.Module):
    """A stand-in segmentation head: ``predictor`` is the decoder, features are its inputs."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.predictor = decoder

    def forward(self, features):
        return self.predictor(*features)


@pytest.mark.parametrize("pre_norm", [False, True])
def test_final_prediction_only_matches_every_layer_forward(pre_norm: bool) -> None:
    """Inference's shortcut (attention masks from resized mask_features) gives the same last
    prediction and the same attention masks as resizing every layer's full-size mask logits."""
    torch.manual_seed(4)
    dec = _tiny_decoder(pre_norm, in_channels=12).eval()
    with torch.no_grad():
        for p in dec.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.3)
    x = [torch.randn(2, 12, 2, 3), torch.randn(2, 12, 4, 5), torch.randn(2, 12, 8, 10)]
    mask_features = torch.randn(2, 8, 16, 20)
    seen = {"full": [], "fast": []}

    def recording(key):
        def hook(module, args, kwargs, out):
            seen[key].append(kwargs["allowed"])
        return hook

    with torch.no_grad():
        handle = dec.transformer_cross_attention_layers[1].register_forward_hook(recording("full"), with_kwargs=True)
        full = dec(x, mask_features)
        handle.remove()
        with dec.final_prediction_only():
            handle = dec.transformer_cross_attention_layers[1].register_forward_hook(recording("fast"),
                                                                                      with_kwargs=True)
            fast = dec(x, mask_features)
            handle.remove()
    assert fast["aux_outputs"] == [] and len(full["aux_outputs"]) == dec.num_layers
    torch.testing.assert_close(fast["pred_logits"], full["pred_logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast["pred_masks"], full["pred_masks"], atol=1e-4, rtol=1e-5)
    allowed_full, allowed_fast = seen["full"][0], seen["fast"][0]
    assert 0.1 < allowed_full.float().mean() < 0.9  # a real mask, not all / nothing
    assert torch.equal(allowed_fast, allowed_full)
    # the meta-architectures' head call takes the shortcut at inference unless it is switched off
    head = _HeadOf(dec)
    with torch.no_grad():
        assert head_outputs(head, (x, mask_features), training=False)["aux_outputs"] == []
        dec.inference_shortcut = False  # tools/analyze_model.py counts FLOPs this way
        assert len(head_outputs(head, (x, mask_features), training=False)["aux_outputs"]) == dec.num_layers
    # training mode ignores the context: every layer predicts (deep supervision)
    dec.train()
    with dec.final_prediction_only():
        assert len(dec(x, mask_features)["aux_outputs"]) == dec.num_layers
    assert not dec._final_only  # restored on exit


def test_fully_masked_query_attends_everywhere() -> None:
    """A query blocked everywhere must give the unmasked result (not NaN, not zeros)."""
    torch.manual_seed(3)
    attn = nn.MultiheadAttention(8, 2).eval()
    q, k = torch.randn(1, 2, 8), torch.randn(1, 5, 8)
    allowed = masked_attention_allowed(torch.full((1, 2, 1, 5), -1.0), (1, 5))
    with torch.no_grad():
        masked = multi_head_attention(attn, q, k, k, allowed)
        free = multi_head_attention(attn, q, k, k, None)
    assert torch.isfinite(masked).all()
    torch.testing.assert_close(masked, free)


def test_multiscale_decoder_trains_and_input_proj() -> None:
    torch.manual_seed(0)
    dec = _tiny_decoder(False, in_channels=16, enforce_input_project=True).train()
    assert all(isinstance(p, nn.Conv2d) for p in dec.input_proj)
    x = [torch.randn(1, 16, s, s) for s in (2, 4, 8)]
    out = dec(x, torch.randn(1, 8, 16, 16))
    assert out["pred_logits"].shape == (1, 6, 6) and out["pred_masks"].shape == (1, 6, 16, 16)
    loss = out["pred_masks"].sum() + sum(a["pred_logits"].sum() for a in out["aux_outputs"])
    loss.backward()
    assert dec.query_feat.weight.grad.abs().sum() > 0
    assert dec.transformer_cross_attention_layers[0].multihead_attn.in_proj_weight.grad.abs().sum() > 0
    # Same channels and no enforcement: identity projections without parameters.
    assert all(isinstance(p, nn.Sequential) for p in _tiny_decoder(False, in_channels=16).input_proj)
    with pytest.raises(ValueError, match="3 feature levels"):
        dec(x[:2], torch.randn(1, 8, 16, 16))


def test_multiscale_decoder_old_checkpoint_static_query() -> None:
    dec = _tiny_decoder(False)
    state = dec.state_dict()
    state = collections.OrderedDict(
        (k.replace("query_feat", "static_query"), torch.full_like(v, 0.5) if "query_feat" in k else v)
        for k, v in state.items()
    )
    state._metadata = {"": {"version": 1}}  # type: ignore[attr-defined]
    dec.load_state_dict(state, strict=True)
    assert torch.equal(dec.query_feat.weight, torch.full_like(dec.query_feat.weight, 0.5))
    # A current checkpoint (version 2) is not renamed: a stray static_query is unexpected.
    state._metadata = {"": {"version": 2}}  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="static_query"):
        dec.load_state_dict(state, strict=True)


def test_from_config_reads_dec_layers_minus_one() -> None:
    cfg = get_cfg()
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = 3
    cfg.MODEL.MASK_FORMER.HIDDEN_DIM = 16
    cfg.MODEL.MASK_FORMER.NHEADS = 2
    cfg.MODEL.MASK_FORMER.DIM_FEEDFORWARD = 24
    cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = 7
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 4
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 10
    dec = build_transformer_decoder(cfg, 16, mask_classification=True)
    assert dec.num_layers == 2 and len(dec.transformer_ffn_layers) == 2
    assert dec.query_feat.weight.shape == (7, 16) and dec.class_embed.out_features == 5
    assert dec.mask_embed.layers[-1].out_features == 10
    assert dec.transformer_ffn_layers[0].linear1.out_features == 24
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = 0
    with pytest.raises(ValueError, match="DEC_LAYERS"):
        build_transformer_decoder(cfg, 16, mask_classification=True)
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = 3
    with pytest.raises(ValueError, match="mask_classification"):
        build_transformer_decoder(cfg, 16, mask_classification=False)


# ----------------------------------------------------------------------------------------------
# MaskFormer (v1) StandardTransformerDecoder
# ----------------------------------------------------------------------------------------------
def _tiny_standard(deep_supervision: bool, mask_classification: bool = True,
                   enc_layers: int = 1) -> StandardTransformerDecoder:
    return StandardTransformerDecoder(
        12, mask_classification, num_classes=5, hidden_dim=16, num_queries=6, nheads=4,
        dropout=0.0, dim_feedforward=32, enc_layers=enc_layers, dec_layers=3, pre_norm=False,
        deep_supervision=deep_supervision, mask_dim=8,
    )


def test_standard_decoder_outputs_and_deep_supervision() -> None:
    torch.manual_seed(0)
    deep = _tiny_standard(True).eval()
    shallow = _tiny_standard(False).eval()
    shallow.load_state_dict(deep.state_dict())
    x, mask_features = torch.randn(2, 12, 3, 4), torch.randn(2, 8, 12, 16)
    with torch.no_grad():
        out_deep = deep(x, mask_features)
        out_shallow = shallow(x, mask_features)
    assert out_deep["pred_logits"].shape == (2, 6, 6)
    assert out_deep["pred_masks"].shape == (2, 6, 12, 16)
    assert len(out_deep["aux_outputs"]) == 2 and "aux_outputs" not in out_shallow
    # The last layer's prediction does not depend on whether earlier ones are returned.
    torch.testing.assert_close(out_deep["pred_masks"], out_shallow["pred_masks"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_deep["pred_logits"], out_shallow["pred_logits"], atol=1e-5, rtol=1e-5)
    # An earlier layer's masks are its own decoder output's embedding times mask_features.
    hs, _ = deep.transformer(deep.input_proj(x), None, deep.query_embed.weight, deep.pe_layer(x))
    expected = torch.einsum("bqc,bchw->bqhw", deep.mask_embed(hs[0]), mask_features)
    torch.testing.assert_close(out_deep["aux_outputs"][0]["pred_masks"], expected.detach())


def test_standard_decoder_without_classification_and_padding_mask() -> None:
    torch.manual_seed(0)
    dec = _tiny_standard(True, mask_classification=False).eval()
    assert not hasattr(dec, "class_embed")
    x, mask_features = torch.randn(1, 12, 3, 4), torch.randn(1, 8, 12, 16)
    padding = torch.zeros(1, 12, 16, dtype=torch.bool)
    padding[:, :, 12:] = True
    with torch.no_grad():
        out = dec(x, mask_features, mask=padding)
        out_free = dec(x, mask_features)
    assert set(out) == {"pred_masks", "aux_outputs"}
    assert set(out["aux_outputs"][0]) == {"pred_masks"}
    assert torch.isfinite(out["pred_masks"]).all()
    assert not torch.allclose(out["pred_masks"], out_free["pred_masks"]), "padding mask must matter"


def test_standard_decoder_registered_under_both_names() -> None:
    assert TRANSFORMER_DECODER_REGISTRY.get("StandardTransformerDecoder") is StandardTransformerDecoder
    assert TRANSFORMER_DECODER_REGISTRY.get("TransformerPredictor") is StandardTransformerDecoder
    assert TRANSFORMER_DECODER_REGISTRY.get("MultiScaleMaskedTransformerDecoder") is (
        MultiScaleMaskedTransformerDecoder
    )


# ----------------------------------------------------------------------------------------------
# (c) Predictor state_dict keys / shapes vs the official key lists
# ----------------------------------------------------------------------------------------------
def _m2f_coco_panoptic_r50_cfg():
    """Values of the official coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml."""
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 133
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 256
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 256
    mf = cfg.MODEL.MASK_FORMER
    mf.TRANSFORMER_DECODER_NAME = "MultiScaleMaskedTransformerDecoder"
    mf.TRANSFORMER_IN_FEATURE = "multi_scale_pixel_decoder"
    mf.HIDDEN_DIM, mf.NUM_OBJECT_QUERIES, mf.NHEADS, mf.DROPOUT = 256, 100, 8, 0.0
    mf.DIM_FEEDFORWARD, mf.ENC_LAYERS, mf.DEC_LAYERS, mf.PRE_NORM = 2048, 0, 10, False
    mf.ENFORCE_INPUT_PROJ = False
    return cfg


def _v1_cfg(num_classes: int, in_feature: str):
    """Values of the official MaskFormer (v1) Base configs (ADE20K-150 / COCO panoptic)."""
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = num_classes
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 256
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 256
    mf = cfg.MODEL.MASK_FORMER
    mf.TRANSFORMER_DECODER_NAME = "TransformerPredictor"
    mf.TRANSFORMER_IN_FEATURE = in_feature
    mf.HIDDEN_DIM, mf.NUM_OBJECT_QUERIES, mf.NHEADS, mf.DROPOUT = 256, 100, 8, 0.1
    mf.DIM_FEEDFORWARD, mf.ENC_LAYERS, mf.DEC_LAYERS, mf.PRE_NORM = 2048, 0, 6, False
    mf.DEEP_SUPERVISION = True
    return cfg


@pytest.mark.parametrize(
    "key_file, make_cfg, in_channels",
    [
        ("coco__panoptic-segmentation__maskformer2_R50_bs16_50ep.txt", _m2f_coco_panoptic_r50_cfg, 256),
        ("maskformer/ade20k-150__maskformer_R50_bs16_160k.txt", lambda: _v1_cfg(150, "res5"), 2048),
        ("maskformer/coco-panoptic__maskformer_panoptic_R50_bs64_554k.txt",
         lambda: _v1_cfg(133, "transformer_encoder"), 256),
    ],
)
def test_predictor_keys_match_official(reference_dir: Path, key_file: str, make_cfg,
                                      in_channels: int) -> None:
    expected = read_official_keys(reference_dir / "official_keys" / key_file, "sem_seg_head.predictor.")
    predictor = build_transformer_decoder(make_cfg(), in_channels, mask_classification=True)
    assert state_dict_keys(predictor) == expected
