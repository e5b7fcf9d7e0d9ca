"""Mask2Former's multi-scale masked-attention Transformer decoder.

Each decoder layer lets the queries attend (cross-attention) only to the pixels that the
previous layer's mask prediction covers (``sigmoid >= 0.5`` after bilinear resizing to the
level's size); a query whose mask covers nothing attends everywhere. Layers go
round-robin over three pixel-decoder scales, lowest resolution first, each running
cross-attention, then self-attention, then an FFN. A class / mask prediction is made from
the learnable queries and after every layer.

Internally every sequence is batch-first, ``(B, L, C)``. The attention modules are
``nn.MultiheadAttention`` for their parameters (official state_dict keys
``in_proj_weight``, ``in_proj_bias``, ``out_proj.*``); the computation runs through
:func:`multi_head_attention`, which calls ``F.scaled_dot_product_attention`` with their
weights.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint
from torch.nn import functional as F

from ...config.configurable import configurable
from ...layers import MLP, Conv2d, PositionEmbeddingSine, c2_xavier_fill, with_pos_embed, xavier_init_matrices
from ..build import TRANSFORMER_DECODER_REGISTRY

__all__ = [
    "MultiScaleMaskedTransformerDecoder",
    "SelfAttentionLayer",
    "CrossAttentionLayer",
    "FFNLayer",
    "masked_attention_allowed",
    "multi_head_attention",
]

logger = logging.getLogger(__name__)


def multi_head_attention(attn: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor,
                         allowed: Optional[Tensor] = None) -> Tensor:
    """``attn``'s computation on batch-first tensors, via ``F.scaled_dot_product_attention``.

    Same math as ``attn(query, key, value, attn_mask=~allowed)`` on sequence-first inputs
    (the scale is ``1 / sqrt(head_dim)``; attention dropout only in training).

    Args:
        attn: supplies ``in_proj_weight`` / ``in_proj_bias`` / ``out_proj`` / ``num_heads``.
        query: (B, Lq, C); key: (B, Lk, C); value: (B, Lk, C).
        allowed: (B, Lq, Lk) bool, True where a query may attend; None attends everywhere.
            Every row must allow at least one position.
    Returns:
        (B, Lq, C)
    """
    if not attn._qkv_same_embed_dim:
        raise ValueError("multi_head_attention needs kdim == vdim == embed_dim")
    bsz, len_q, dim = query.shape
    heads = attn.num_heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = (None, None, None) if attn.in_proj_bias is None else attn.in_proj_bias.chunk(3)
    q = F.linear(query, w_q, b_q).view(bsz, len_q, heads, -1).transpose(1, 2)  # (B, h, Lq, d)
    k = F.linear(key, w_k, b_k).view(bsz, key.shape[1], heads, -1).transpose(1, 2)  # (B, h, Lk, d)
    v = F.linear(value, w_v, b_v).view(bsz, value.shape[1], heads, -1).transpose(1, 2)
    mask = None if allowed is None else allowed.unsqueeze(1)  # (B, 1, Lq, Lk), broadcast over heads
    dropout_p = attn.dropout if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    out = out.transpose(1, 2).reshape(bsz, len_q, dim)  # (B, Lq, C)
    return attn.out_proj(out)


class SelfAttentionLayer(nn.Module):
    """Query self-attention with residual + LayerNorm (post-norm, or pre-norm)."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0,
                 normalize_before: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        xavier_init_matrices(self)

    def forward(self, tgt: Tensor, query_pos: Optional[Tensor] = None) -> Tensor:
        """(B, Q, C) queries [, (B, Q, C) query positions] -> (B, Q, C)."""
        if self.normalize_before:
            tgt2 = self.norm(tgt)
            q = with_pos_embed(tgt2, query_pos)
            return tgt + self.dropout(multi_head_attention(self.self_attn, q, q, tgt2))
        q = with_pos_embed(tgt, query_pos)
        tgt = tgt + self.dropout(multi_head_attention(self.self_attn, q, q, tgt))
        return self.norm(tgt)


class CrossAttentionLayer(nn.Module):
    """Queries attend to a memory (masked attention) with residual + LayerNorm."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0,
                 normalize_before: bool = False):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        xavier_init_matrices(self)

    def forward(self, tgt: Tensor, memory: Tensor, allowed: Optional[Tensor] = None,
                pos: Optional[Tensor] = None, query_pos: Optional[Tensor] = None) -> Tensor:
        """(B, Q, C) queries, (B, S, C) memory [, (B, Q, S) bool allowed, positions] -> (B, Q, C)."""
        key = with_pos_embed(memory, pos)
        if self.normalize_before:
            q = with_pos_embed(self.norm(tgt), query_pos)
            return tgt + self.dropout(multi_head_attention(self.multihead_attn, q, key, memory, allowed))
        q = with_pos_embed(tgt, query_pos)
        tgt = tgt + self.dropout(multi_head_attention(self.multihead_attn, q, key, memory, allowed))
        return self.norm(tgt)


class FFNLayer(nn.Module):
    """Two-layer ReLU MLP with residual + LayerNorm (post-norm, or pre-norm)."""

    def __init__(self, d_model: int, dim_feedforward: int = 2048, dropout: float = 0.0,
                 normalize_before: bool = False):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        xavier_init_matrices(self)

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(self, tgt: Tensor) -> Tensor:
        """(B, Q, C) -> (B, Q, C)."""
        if self.normalize_before:
            return tgt + self.dropout(self._ffn(self.norm(tgt)))
        return self.norm(tgt + self.dropout(self._ffn(tgt)))


def masked_attention_allowed(mask_logits: Tensor, size: Sequence[int]) -> Tensor:
    """Where each query may attend at a feature level, from its mask logits.

    Args:
        mask_logits: (B, Q, H, W) mask prediction (at mask-feature resolution).
        size: (h, w) of the feature level to attend to.
    Returns:
        (B, Q, h*w) bool: True where ``sigmoid(bilinear resize) >= 0.5``; a row with no
        True position becomes all True (the query then attends everywhere).
    """
    bsz, num_queries, height, width = mask_logits.shape
    with torch.no_grad():  # a hard mask: no gradient flows through it
        # One map per channel: on CPU a (B, Q)-channel image would first be copied to
        # channels-last, which costs more than the resize itself.
        resized = F.interpolate(mask_logits.reshape(bsz * num_queries, 1, height, width),
                                size=tuple(size), mode="bilinear", align_corners=False)
        return allowed_where_mask(resized.view(bsz, num_queries, *size))


def allowed_where_mask(mask_logits: Tensor) -> Tensor:
    """(B, Q, h, w) mask logits at a feature level's size -> (B, Q, h*w) bool "may attend":
    ``sigmoid >= 0.5``; a row with no True position becomes all True."""
    allowed = ~(mask_logits.detach().sigmoid().flatten(2) < 0.5)  # (B, Q, h*w)
    return allowed | ~allowed.any(dim=-1, keepdim=True)


@TRANSFORMER_DECODER_REGISTRY.register()
class MultiScaleMaskedTransformerDecoder(nn.Module):
    """Mask2Former's decoder: learnable queries, masked cross-attention over 3 scales."""

    _version = 2

    @configurable
    def __init__(
        self,
        in_channels: int,
        mask_classification: bool = True,
        *,
        num_classes: int,
        hidden_dim: int,
        num_queries: int,
        nheads: int,
        dim_feedforward: int,
        dec_layers: int,
        pre_norm: bool,
        mask_dim: int,
        enforce_input_project: bool,
        checkpoint: bool = False,
    ):
        """
        Args:
            in_channels: channels of the multi-scale input features.
            mask_classification: must be True (a class head is always built).
            num_classes: number of classes (the class head predicts ``num_classes + 1``).
            hidden_dim: query / attention width.
            num_queries: number of learnable queries.
            nheads: attention heads.
            dim_feedforward: FFN hidden width.
            dec_layers: number of masked-attention decoder layers (cfg DEC_LAYERS - 1).
            pre_norm: pre-LayerNorm instead of post-LayerNorm.
            mask_dim: channels of ``mask_features``.
            enforce_input_project: add the 1x1 input projection even when
                ``in_channels == hidden_dim``.
            checkpoint: activation checkpointing of each layer's cross-attention, self-attention
                and FFN in training (recomputed in backward; predictions are kept for the losses).
        """
        super().__init__()
        if not mask_classification:
            raise ValueError("MultiScaleMaskedTransformerDecoder only supports mask_classification=True")
        self.mask_classification = mask_classification

        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)

        self.num_heads = nheads
        self.num_layers = dec_layers
        self.checkpoint = checkpoint
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, dropout=0.0, normalize_before=pre_norm)
            for _ in range(dec_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, dropout=0.0, normalize_before=pre_norm)
            for _ in range(dec_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, dropout=0.0, normalize_before=pre_norm)
            for _ in range(dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)

        self.num_queries = num_queries
        self.query_feat = nn.Embedding(num_queries, hidden_dim)  # learnable query features
        self.query_embed = nn.Embedding(num_queries, hidden_dim)  # learnable query positions

        self.num_feature_levels = 3  # always 3 scales
        self.level_embed = nn.Embedding(self.num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(self.num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
                c2_xavier_fill(proj)
                self.input_proj.append(proj)
            else:
                self.input_proj.append(nn.Sequential())

        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self._final_only = False  # see final_prediction_only()
        # whether inference (``meta_arch.mask_former.head_outputs``) uses final_prediction_only();
        # False computes every layer's prediction at inference too, as the official decoder does
        self.inference_shortcut = True

    @contextlib.contextmanager
    def final_prediction_only(self) -> Iterator[None]:
        """Within this context an eval-mode forward predicts class logits and full-size masks only
        after the last layer (``aux_outputs`` is empty): what inference reads.

        Each earlier layer needs only its attention mask at the next feature level's size, and
        bilinear resizing commutes with the (linear) mask embedding product, so those masks come
        from ``mask_features`` resized once per level instead of from (B, Q, H/4, W/4) logits
        resized per layer: the same values up to float rounding, at a fraction of the cost.
        In training mode this has no effect (every layer's prediction feeds a loss).
        """
        previous, self._final_only = self._final_only, True
        try:
            yield
        finally:
            self._final_only = previous

    @classmethod
    def from_config(cls, cfg, in_channels: int, mask_classification: bool) -> Dict:
        dec_layers = cfg.MODEL.MASK_FORMER.DEC_LAYERS
        if dec_layers < 1:
            raise ValueError(f"MODEL.MASK_FORMER.DEC_LAYERS must be >= 1, got {dec_layers}")
        return {
            "in_channels": in_channels,
            "mask_classification": mask_classification,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "hidden_dim": cfg.MODEL.MASK_FORMER.HIDDEN_DIM,
            "num_queries": cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES,
            "nheads": cfg.MODEL.MASK_FORMER.NHEADS,
            "dim_feedforward": cfg.MODEL.MASK_FORMER.DIM_FEEDFORWARD,
            # The prediction on the learnable queries counts as one of DEC_LAYERS, so that
            # the number of auxiliary losses equals DEC_LAYERS as for MaskFormer.
            "dec_layers": dec_layers - 1,
            "pre_norm": cfg.MODEL.MASK_FORMER.PRE_NORM,
            "enforce_input_project": cfg.MODEL.MASK_FORMER.ENFORCE_INPUT_PROJ,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
            "checkpoint": cfg.MODEL.MASK_FORMER.CHECKPOINT,
        }

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            renamed = False
            for k in list(state_dict.keys()):
                if k.startswith(prefix) and "static_query" in k:
                    state_dict[k.replace("static_query", "query_feat")] = state_dict.pop(k)
                    renamed = True
            if renamed:
                logger.warning(
                    f"Weight format of {type(self).__name__} have changed! "
                    "Please upgrade your models. Applying automatic conversion now ..."
                )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _flatten_levels(self, x: Sequence[Tensor]) -> Tuple[List[Tensor], List[Tensor], List[torch.Size]]:
        """Per level: (B, HW, C) projected features + level embedding, (B, HW, C) positions, (H, W)."""
        src, pos, sizes = [], [], []
        for i, feat in enumerate(x):
            sizes.append(feat.shape[-2:])
            # Contiguous (B, HW, C) once here, so that no attention layer has to copy them.
            pos.append(self.pe_layer(feat, None).flatten(2).transpose(1, 2).contiguous())
            proj = self.input_proj[i](feat).flatten(2).transpose(1, 2).contiguous()  # (B, HW, C)
            src.append(proj + self.level_embed.weight[i][None, None, :])
        return src, pos, sizes

    def forward(self, x: Sequence[Tensor], mask_features: Tensor) -> Dict:
        """Decode queries against three feature levels.

        Args:
            x: 3 maps (B, C_in, H_l, W_l), lowest resolution first.
            mask_features: (B, mask_dim, H, W) per-pixel embeddings (usually stride 4).
        Returns:
            ``pred_logits`` (B, Q, K+1), ``pred_masks`` (B, Q, H, W) of the last layer, and
            ``aux_outputs``: the same for the learnable-query prediction and every layer but
            the last.
        """
        if len(x) != self.num_feature_levels:
            raise ValueError(
                f"{type(self).__name__} expects {self.num_feature_levels} feature levels, got {len(x)}"
            )
        src, pos, sizes = self._flatten_levels(x)
        return self._decode(src, pos, sizes, mask_features)

    def _decode(self, src: List[Tensor], pos: List[Tensor], sizes: List[Tuple[int, int]],
                mask_features: Tensor) -> Dict:
        """The query loop over flattened levels ``src`` / ``pos`` (B, S_l, C) of sizes ``sizes``:
        learnable queries, then masked cross-attention, self-attention and FFN per layer, round-robin
        over the levels, with a prediction after each (``forward_prediction_heads``)."""
        bs = src[0].shape[0]

        query_pos = self.query_embed.weight.unsqueeze(0).expand(bs, -1, -1)  # (B, Q, C)
        output = self.query_feat.weight.unsqueeze(0).expand(bs, -1, -1)  # (B, Q, C)

        predictions_class, predictions_mask = [], []
        final_only = self._final_only and not self.training
        # final_only: mask_features resized to each level (keyed by level: sizes may be symbolic)
        resized_features: Dict[int, Tensor] = {}

        def predict(output: Tensor, next_level: Optional[int]) -> Optional[Tensor]:
            """Predictions after a layer (kept in the lists); returns the attention mask for
            ``next_level`` (None after the last layer)."""
            next_size = None if next_level is None else sizes[next_level]
            if final_only and next_level is not None:
                if next_level not in resized_features:
                    resized_features[next_level] = self.resize_mask_features(mask_features, tuple(next_size))
                return self.attention_mask_at(output, resized_features[next_level])
            outputs_class, outputs_mask, allowed = self.forward_prediction_heads(
                output, mask_features, attn_mask_target_size=next_size
            )
            predictions_class.append(outputs_class)
            predictions_mask.append(outputs_mask)
            return allowed

        allowed = predict(output, 0)

        recompute = self.checkpoint and self.training and torch.is_grad_enabled()
        for i in range(self.num_layers):
            level = i % self.num_feature_levels
            if recompute:
                output = activation_checkpoint(self._layer, i, output, src[level], allowed, pos[level],
                                               query_pos, use_reentrant=False)
            else:
                output = self._layer(i, output, src[level], allowed, pos[level], query_pos)

            is_last = i == self.num_layers - 1
            allowed = predict(output, None if is_last else (i + 1) % self.num_feature_levels)

        return {
            "pred_logits": predictions_class[-1],
            "pred_masks": predictions_mask[-1],
            "aux_outputs": self._set_aux_loss(predictions_class, predictions_mask),
        }

    def _layer(self, i: int, output: Tensor, src: Tensor, allowed: Optional[Tensor], pos: Tensor,
               query_pos: Tensor) -> Tensor:
        """Decoder layer ``i``: masked cross-attention, self-attention, FFN; (B, Q, C) -> (B, Q, C)."""
        output = self.transformer_cross_attention_layers[i](
            output, src, allowed=allowed, pos=pos, query_pos=query_pos
        )
        output = self.transformer_self_attention_layers[i](output, query_pos=query_pos)
        return self.transformer_ffn_layers[i](output)

    def forward_prediction_heads(
        self, output: Tensor, mask_features: Tensor, attn_mask_target_size: Optional[Sequence[int]]
    ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """Class and mask predictions from (B, Q, C) queries.

        Returns:
            class logits (B, Q, K+1), mask logits (B, Q, H, W), and the (B, Q, h*w) bool
            "may attend" mask for the next layer at ``attn_mask_target_size`` (None if that
            size is None).
        """
        decoder_output = self.decoder_norm(output)  # (B, Q, C)
        outputs_class = self.class_embed(decoder_output)  # (B, Q, K+1)
        mask_embed = self.mask_embed(decoder_output)  # (B, Q, mask_dim)
        outputs_mask = torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)  # (B, Q, H, W)
        allowed = None
        if attn_mask_target_size is not None:
            allowed = masked_attention_allowed(outputs_mask, attn_mask_target_size)
        return outputs_class, outputs_mask, allowed

    @staticmethod
    def resize_mask_features(mask_features: Tensor, size: Tuple[int, int]) -> Tensor:
        """(B, mask_dim, H, W) -> (B, mask_dim, h, w), bilinear as the attention masks are resized."""
        return F.interpolate(mask_features, size=size, mode="bilinear", align_corners=False)

    def attention_mask_at(self, output: Tensor, features: Tensor) -> Tensor:
        """(B, Q, h*w) "may attend" mask from (B, Q, C) queries and (B, mask_dim, h, w) mask
        features already at the feature level's size."""
        mask_embed = self.mask_embed(self.decoder_norm(output))  # (B, Q, mask_dim)
        return allowed_where_mask(torch.einsum("bqc,bchw->bqhw", mask_embed, features))  # (B, Q, h*w)

    def _set_aux_loss(self, outputs_class: List[Tensor], outputs_seg_masks: List[Tensor]) -> List[Dict]:
        return [
            {"pred_logits": a, "pred_masks": b}
            for a, b in zip(outputs_class[:-1], outputs_seg_masks[:-1])
        ]
