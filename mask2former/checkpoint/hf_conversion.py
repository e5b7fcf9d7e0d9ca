"""Weights of Hugging Face ``transformers`` Mask2Former / MaskFormer <-> this package's names.

Covers the files ``save_pretrained`` writes (and the hub holds) for
``Mask2FormerForUniversalSegmentation`` and ``MaskFormerForInstanceSegmentation`` with a Swin
backbone (``swin`` for Mask2Former, ``maskformer-swin`` or ``swin`` for MaskFormer) or a
``resnet`` backbone. Names are those of the *files* (transformers' legacy layout, which
``save_pretrained`` still writes), not of transformers 5's in-memory modules.

The mapping is a list of :class:`Rule` s, each a name template on both sides
(``{x}`` matches one dotted component). A rule with several Hugging Face templates
concatenates them along dim 0 (HF's separate ``query`` / ``key`` / ``value`` projections ->
our fused ``qkv`` / ``in_proj_weight``); the reverse splits in equal parts. So
``to_d2 -> from_d2`` and ``from_d2 -> to_d2`` reproduce every tensor bit for bit, except the
few HF tensors no segmentation model uses (Swin's final ``layernorm``), which are dropped.

Facts of the two implementations this rests on (read from transformers' modeling files and its
official conversion scripts):

* Swin: ``attention.self.{query,key,value}`` = rows of the official fused ``qkv``;
  ``layernorm_before / after`` = ``norm1 / norm2``; ``intermediate.dense / output.dense`` =
  ``mlp.fc1 / fc2``; ``hidden_states_norms.stage{i+1}`` (``maskformer-swin``: ``.{i}``) =
  the D2 backbone's ``norm{i}``; patch merging concatenates in the official order.
* Mask2Former pixel decoder: ``input_projections`` are ordered lowest resolution first, as
  ours; the encoder layer is ``self_attn, self_attn_layer_norm, fc1, fc2, final_layer_norm``.
* Mask2Former transformer decoder: one layer = cross-attention (``nn.MultiheadAttention``,
  fused), self-attention (separate ``q/k/v_proj``), FFN -- the official order.
* MaskFormer: FPN ``stem`` = ``layer_{L}``; ``fpn.layers.{i}`` = ``adapter_/layer_{L-1-i}``;
  the DETR decoder layer is self-attention, cross-attention (``encoder_attn``), FFN.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

__all__ = [
    "HF_ARCHITECTURES",
    "Rule",
    "build_rules",
    "convert_hf_to_d2_state_dict",
    "convert_d2_to_hf_state_dict",
    "hf_architecture",
    "swin_relative_position_index",
]

HF_ARCHITECTURES = ("Mask2FormerForUniversalSegmentation", "MaskFormerForInstanceSegmentation")


@dataclass(frozen=True)
class Rule:
    """``hf`` templates (several: concatenated along dim 0) <-> ``d2`` template; ``d2=None``: drop."""

    hf: Tuple[str, ...]
    d2: Optional[str]


def _regex(template: str) -> "re.Pattern[str]":
    parts = re.split(r"(\{\w+\})", template)
    body = "".join(f"(?P<{p[1:-1]}>[^.]+)" if re.fullmatch(r"\{\w+\}", p) else re.escape(p) for p in parts)
    return re.compile(body)


def _r(hf, d2: Optional[str]) -> Rule:
    return Rule(tuple(hf) if isinstance(hf, (list, tuple)) else (hf,), d2)


def hf_architecture(config: Mapping) -> str:
    """``"mask2former"`` or ``"maskformer"`` from a Hugging Face ``config.json`` dict."""
    model_type = config.get("model_type")
    if model_type in ("mask2former", "maskformer"):
        return model_type
    raise ValueError(f"config.json: model_type {model_type!r} is not supported; expected 'mask2former' "
                     f"({HF_ARCHITECTURES[0]}) or 'maskformer' ({HF_ARCHITECTURES[1]})")


# ----------------------------------------------------------------------------- backbones
def _swin_rules(outer: str, prefix: str, backbone_type: str, num_stages: int) -> List[Rule]:
    """``outer``: the HF backbone module (holds ``hidden_states_norms``); ``prefix``: where the
    Swin model's own names start in the file."""
    blk = prefix + "encoder.layers.{a}.blocks.{b}."
    ours = "backbone.layers.{a}.blocks.{b}."
    rules = [
        _r(prefix + "embeddings.patch_embeddings.projection.{p}", "backbone.patch_embed.proj.{p}"),
        _r(prefix + "embeddings.norm.{p}", "backbone.patch_embed.norm.{p}"),
        _r(blk + "layernorm_before.{p}", ours + "norm1.{p}"),
        _r([blk + "attention.self.query.{p}", blk + "attention.self.key.{p}", blk + "attention.self.value.{p}"],
           ours + "attn.qkv.{p}"),
        _r(blk + "attention.self.relative_position_bias_table", ours + "attn.relative_position_bias_table"),
        _r(blk + "attention.output.dense.{p}", ours + "attn.proj.{p}"),
        _r(blk + "layernorm_after.{p}", ours + "norm2.{p}"),
        _r(blk + "intermediate.dense.{p}", ours + "mlp.fc1.{p}"),
        _r(blk + "output.dense.{p}", ours + "mlp.fc2.{p}"),
        _r(prefix + "encoder.layers.{a}.downsample.{n}.{p}", "backbone.layers.{a}.downsample.{n}.{p}"),
        _r(prefix + "layernorm.{p}", None),  # the classifier's final norm: unused by segmentation
    ]
    if backbone_type == "swin":  # where transformers' SwinBackbone files keep that norm
        rules.append(_r(outer + "swin.layernorm.{p}", None))
    if backbone_type == "maskformer-swin":
        rules.append(_r(blk + "attention.self.relative_position_index", ours + "attn.relative_position_index"))
    # per-stage output norms
    for i in range(num_stages):
        hf_name = f"{i}" if backbone_type == "maskformer-swin" else f"stage{i + 1}"
        rules.append(_r(outer + f"hidden_states_norms.{hf_name}.{{p}}", f"backbone.norm{i}.{{p}}"))
    return rules


def _resnet_rules(prefix: str) -> List[Rule]:
    """transformers ``ResNetBackbone`` (bottleneck or basic) -> detectron2 ResNet names."""
    stage = prefix + "encoder.stages.{s}.layers.{b}."
    rules = [
        _r(prefix + "embedder.embedder.convolution.weight", "backbone.stem.conv1.weight"),
        _r(prefix + "embedder.embedder.normalization.{p}", "backbone.stem.conv1.norm.{p}"),
        _r(stage + "shortcut.convolution.weight", "backbone.res{S}.{b}.shortcut.weight"),
        _r(stage + "shortcut.normalization.{p}", "backbone.res{S}.{b}.shortcut.norm.{p}"),
        _r(stage + "layer.{c}.convolution.weight", "backbone.res{S}.{b}.conv{C}.weight"),
        _r(stage + "layer.{c}.normalization.{p}", "backbone.res{S}.{b}.conv{C}.norm.{p}"),
    ]
    return rules


# detectron2's stage / conv numbering is HF's + 2 / + 1: expressed as derived fields
_DERIVED = {"S": ("s", 2), "C": ("c", 1)}


def _backbone_rules(config: Mapping, arch: str) -> List[Rule]:
    backbone = config.get("backbone_config") or {}
    backbone_type = backbone.get("model_type")
    base = "model.pixel_level_module.encoder."
    if backbone_type in ("swin", "maskformer-swin"):
        num_stages = len(backbone.get("depths", [2, 2, 6, 2]))
        inner = base + ("model." if backbone_type == "maskformer-swin" else "")
        return _swin_rules(base, inner, backbone_type, num_stages)
    if backbone_type == "resnet":
        return _resnet_rules(base)
    raise ValueError(f"config.json: backbone model_type {backbone_type!r} is not supported "
                     "(supported: 'swin', 'maskformer-swin', 'resnet')")


# ----------------------------------------------------------------------------- heads
def _mask2former_rules() -> List[Rule]:
    D, O = "model.pixel_level_module.decoder.", "sem_seg_head.pixel_decoder."
    E, OE = D + "encoder.layers.{l}.", O + "transformer.encoder.layers.{l}."
    L, OS = "model.transformer_module.decoder.layers.{l}.", "sem_seg_head.predictor."
    T = "model.transformer_module."
    qkv = lambda base: [base + "q_proj.{p}", base + "k_proj.{p}", base + "v_proj.{p}"]  # noqa: E731
    return [
        _r(D + "level_embed", O + "transformer.level_embed"),
        _r(D + "input_projections.{i}.{m}.{p}", O + "input_proj.{i}.{m}.{p}"),
        _r(E + "self_attn.{n}.{p}", OE + "self_attn.{n}.{p}"),
        _r(E + "self_attn_layer_norm.{p}", OE + "norm1.{p}"),
        _r(E + "fc1.{p}", OE + "linear1.{p}"),
        _r(E + "fc2.{p}", OE + "linear2.{p}"),
        _r(E + "final_layer_norm.{p}", OE + "norm2.{p}"),
        _r(D + "mask_projection.{p}", O + "mask_features.{p}"),
        _r(D + "adapter_{i}.0.weight", O + "adapter_{i}.weight"),
        _r(D + "adapter_{i}.1.{p}", O + "adapter_{i}.norm.{p}"),
        _r(D + "layer_{i}.0.weight", O + "layer_{i}.weight"),
        _r(D + "layer_{i}.1.{p}", O + "layer_{i}.norm.{p}"),
        _r(L + "cross_attn.in_proj_{p}", OS + "transformer_cross_attention_layers.{l}.multihead_attn.in_proj_{p}"),
        _r(L + "cross_attn.out_proj.{p}", OS + "transformer_cross_attention_layers.{l}.multihead_attn.out_proj.{p}"),
        _r(L + "cross_attn_layer_norm.{p}", OS + "transformer_cross_attention_layers.{l}.norm.{p}"),
        _r(qkv(L + "self_attn."), OS + "transformer_self_attention_layers.{l}.self_attn.in_proj_{p}"),
        _r(L + "self_attn.out_proj.{p}", OS + "transformer_self_attention_layers.{l}.self_attn.out_proj.{p}"),
        _r(L + "self_attn_layer_norm.{p}", OS + "transformer_self_attention_layers.{l}.norm.{p}"),
        _r(L + "fc1.{p}", OS + "transformer_ffn_layers.{l}.linear1.{p}"),
        _r(L + "fc2.{p}", OS + "transformer_ffn_layers.{l}.linear2.{p}"),
        _r(L + "final_layer_norm.{p}", OS + "transformer_ffn_layers.{l}.norm.{p}"),
        _r(T + "decoder.layernorm.{p}", OS + "decoder_norm.{p}"),
        _r(T + "decoder.mask_predictor.mask_embedder.{i}.0.{p}", OS + "mask_embed.layers.{i}.{p}"),
        _r(T + "queries_embedder.weight", OS + "query_embed.weight"),
        _r(T + "queries_features.weight", OS + "query_feat.weight"),
        _r(T + "level_embed.weight", OS + "level_embed.weight"),
        _r("class_predictor.{p}", OS + "class_embed.{p}"),
        _r("criterion.empty_weight", "criterion.empty_weight"),
    ]


def _maskformer_rules(num_in_features: int) -> List[Rule]:
    D, O = "model.pixel_level_module.decoder.", "sem_seg_head.pixel_decoder."
    L, OL = "model.transformer_module.decoder.layers.{l}.", "sem_seg_head.predictor.transformer.decoder.layers.{l}."
    T, OS = "model.transformer_module.", "sem_seg_head.predictor."
    qkv = lambda base: [base + "q_proj.{p}", base + "k_proj.{p}", base + "v_proj.{p}"]  # noqa: E731
    top = num_in_features  # the FPN stem works on the lowest resolution: layer_{L}
    rules = [
        _r(D + "fpn.stem.0.weight", O + f"layer_{top}.weight"),
        _r(D + "fpn.stem.1.{p}", O + f"layer_{top}.norm.{{p}}"),
        _r(D + "mask_projection.{p}", O + "mask_features.{p}"),
        _r(T + "input_projection.{p}", OS + "input_proj.{p}"),
        _r(T + "queries_embedder.weight", OS + "query_embed.weight"),
        _r(qkv(L + "self_attn."), OL + "self_attn.in_proj_{p}"),
        _r(L + "self_attn.out_proj.{p}", OL + "self_attn.out_proj.{p}"),
        _r(L + "self_attn_layer_norm.{p}", OL + "norm1.{p}"),
        _r(qkv(L + "encoder_attn."), OL + "multihead_attn.in_proj_{p}"),
        _r(L + "encoder_attn.out_proj.{p}", OL + "multihead_attn.out_proj.{p}"),
        _r(L + "encoder_attn_layer_norm.{p}", OL + "norm2.{p}"),
        _r(L + "fc1.{p}", OL + "linear1.{p}"),
        _r(L + "fc2.{p}", OL + "linear2.{p}"),
        _r(L + "final_layer_norm.{p}", OL + "norm3.{p}"),
        _r(T + "decoder.layernorm.{p}", OS + "transformer.decoder.norm.{p}"),
        _r("mask_embedder.{i}.0.{p}", OS + "mask_embed.layers.{i}.{p}"),
        _r("class_predictor.{p}", OS + "class_embed.{p}"),
        _r("criterion.empty_weight", "criterion.empty_weight"),
    ]
    for i in range(top - 1):  # fpn.layers.0 = the level just above the stem
        level = top - 1 - i
        rules += [
            _r(D + f"fpn.layers.{i}.proj.0.weight", O + f"adapter_{level}.weight"),
            _r(D + f"fpn.layers.{i}.proj.1.{{p}}", O + f"adapter_{level}.norm.{{p}}"),
            _r(D + f"fpn.layers.{i}.block.0.weight", O + f"layer_{level}.weight"),
            _r(D + f"fpn.layers.{i}.block.1.{{p}}", O + f"layer_{level}.norm.{{p}}"),
        ]
    return rules


def build_rules(config: Mapping) -> List[Rule]:
    """Every name rule for the model a Hugging Face ``config.json`` dict describes."""
    arch = hf_architecture(config)
    backbone = config.get("backbone_config") or {}
    num_in = len(backbone.get("out_features") or ["stage1", "stage2", "stage3", "stage4"])
    heads = _mask2former_rules() if arch == "mask2former" else _maskformer_rules(num_in)
    return _backbone_rules(config, arch) + heads


# ----------------------------------------------------------------------------- conversion
class _Compiled:
    def __init__(self, rules: Sequence[Rule]):
        self.rules = list(rules)
        self.hf = [[_regex(t) for t in r.hf] for r in rules]
        self.d2 = [_regex(r.d2) if r.d2 else None for r in rules]


def _with_derived(groups: Dict[str, str]) -> Dict[str, str]:
    out = dict(groups)
    for new, (old, offset) in _DERIVED.items():
        if old in groups and groups[old].isdigit():
            out[new] = str(int(groups[old]) + offset)
    return out


def _underive(groups: Dict[str, str]) -> Dict[str, str]:
    out = dict(groups)
    for new, (old, offset) in _DERIVED.items():
        if new in groups:
            out[old] = str(int(groups[new]) - offset)
    return out


def _match_one(name: str, patterns: Iterable[Tuple[int, "re.Pattern[str]"]]) -> Optional[Tuple[int, Dict[str, str]]]:
    found = [(i, m.groupdict()) for i, p in patterns if (m := p.fullmatch(name))]
    if len(found) > 1:
        raise ValueError(f"Weight name {name!r} matches several conversion rules: {[i for i, _ in found]}")
    return found[0] if found else None


def convert_hf_to_d2_state_dict(
    hf_state: Mapping[str, torch.Tensor], config: Mapping, *, window_size: Optional[int] = None
) -> Dict[str, torch.Tensor]:
    """Hugging Face file names -> ours (``backbone.*``, ``sem_seg_head.*``, ``criterion.*``).

    Swin's recomputed ``relative_position_index`` buffers are added (``window_size`` from the
    config unless given) so that the load report has nothing missing.

    Raises:
        ValueError: a tensor no rule knows, or a fused group with a part missing (named).
    """
    compiled = _Compiled(build_rules(config))
    firsts = [(i, pats[0]) for i, pats in enumerate(compiled.hf)]
    others = [(i, p) for i, pats in enumerate(compiled.hf) for p in pats[1:]]
    out: Dict[str, torch.Tensor] = {}
    unknown: List[str] = []
    for name in hf_state:
        if name.endswith(".num_batches_tracked"):
            continue  # BatchNorm's step counter: FrozenBN has none, and eval never reads it
        hit = _match_one(name, firsts)
        if hit is None:
            if _match_one(name, others) is None:
                unknown.append(name)
            continue
        idx, groups = hit
        rule = compiled.rules[idx]
        if rule.d2 is None:
            continue
        parts = []
        for template in rule.hf:
            part = template.format(**groups)
            if part not in hf_state:
                raise ValueError(f"Hugging Face weights: {part!r} is missing (needed with {name!r} for "
                                 f"{rule.d2.format(**_with_derived(groups))!r})")
            parts.append(hf_state[part])
        out[rule.d2.format(**_with_derived(groups))] = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
    if unknown:
        raise ValueError(f"Hugging Face weights: {len(unknown)} tensor(s) have no counterpart in this package, "
                         f"e.g. {sorted(unknown)[:5]}")
    backbone = config.get("backbone_config") or {}
    if backbone.get("model_type") == "swin":
        index = swin_relative_position_index(int(window_size or backbone.get("window_size", 7)))
        for key in [k for k in out if k.endswith("attn.relative_position_bias_table")]:
            out[key[: -len("bias_table")] + "index"] = index.clone()
    result: "OrderedDict[str, torch.Tensor]" = OrderedDict(out)
    # MaskFormerHead reads its key layout from its version: these names are the current (v2) ones
    result._metadata = OrderedDict({"sem_seg_head": {"version": 2}})  # type: ignore[attr-defined]
    return result


def convert_d2_to_hf_state_dict(d2_state: Mapping[str, torch.Tensor], config: Mapping) -> Dict[str, torch.Tensor]:
    """Our names -> the Hugging Face file names of the model ``config`` describes (the inverse of
    :func:`convert_hf_to_d2_state_dict`; fused tensors are split in equal parts along dim 0).

    Raises:
        ValueError: a tensor of ours no rule knows (e.g. a head transformers does not have).
    """
    compiled = _Compiled(build_rules(config))
    patterns = [(i, p) for i, p in enumerate(compiled.d2) if p is not None]
    out: Dict[str, torch.Tensor] = {}
    unknown: List[str] = []
    backbone = config.get("backbone_config") or {}
    for name, value in d2_state.items():
        if backbone.get("model_type") == "swin" and name.endswith("attn.relative_position_index"):
            continue  # a buffer transformers' Swin recomputes (not in its files)
        hit = _match_one(name, patterns)
        if hit is None:
            unknown.append(name)
            continue
        idx, groups = hit
        rule = compiled.rules[idx]
        groups = _underive(groups)
        if len(rule.hf) == 1:
            out[rule.hf[0].format(**groups)] = value
            continue
        if value.shape[0] % len(rule.hf):
            raise ValueError(f"{name!r}: dim 0 ({value.shape[0]}) does not split into {len(rule.hf)} parts")
        for template, part in zip(rule.hf, value.chunk(len(rule.hf), 0)):
            out[template.format(**groups)] = part.clone()
    if unknown:
        raise ValueError(f"{len(unknown)} weight(s) have no Hugging Face counterpart, e.g. {unknown[:5]}")
    if backbone.get("model_type") == "resnet":  # BatchNorm's step counter (dropped on the way in): 0
        for key in [k for k in out if k.endswith("normalization.running_var")]:
            out[key[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    # Swin's classifier norm (dropped on the way in): written as LayerNorm's initial identity
    last_norm = sorted(k for k in d2_state if re.fullmatch(r"backbone\.norm\d+\.weight", k))
    if last_norm:
        width = d2_state[last_norm[-1]].shape[0]
        norms = [r.hf[0] for r in compiled.rules if r.d2 is None and r.hf[0].endswith("layernorm.{p}")]
        if norms:  # the last one is where current transformers writes it
            out[norms[-1].format(p="weight")] = torch.ones(width)
            out[norms[-1].format(p="bias")] = torch.zeros(width)
    return out


def swin_relative_position_index(window_size: int) -> torch.Tensor:
    """The official Swin ``relative_position_index`` buffer, ``(W*W, W*W)`` int64."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
    flat = torch.flatten(coords, 1)  # (2, W*W)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()  # (W*W, W*W, 2)
    rel[:, :, 0] += window_size - 1
    rel[:, :, 1] += window_size - 1
    rel[:, :, 0] *= 2 * window_size - 1
    return rel.sum(-1)
