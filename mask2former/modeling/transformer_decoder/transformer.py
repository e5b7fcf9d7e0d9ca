"""DETR's encoder-decoder Transformer, as MaskFormer uses it (the encoder lives in ``layers``).

Differences from ``torch.nn.Transformer`` (all inherited from DETR):
  * positional encodings are added to queries / keys inside every attention layer;
  * the encoder has no final LayerNorm unless ``normalize_before`` (pre-norm);
  * the decoder can return the (normed) output of every layer (``return_intermediate``).

Sequences are sequence-first, as ``nn.MultiheadAttention`` expects: ``(L, B, C)``.
Parameter names (``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``, ``norm1..3``)
match the official checkpoints.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from ...layers.transformer_encoder import TransformerEncoder, TransformerEncoderLayer, TransformerEncoderOnly
from ...layers.transformer_utils import get_activation_fn, get_clones, with_pos_embed, xavier_init_matrices

__all__ = [
    "Transformer",
    "TransformerEncoderOnly",
    "TransformerEncoder",
    "TransformerDecoder",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
]


class TransformerDecoderLayer(nn.Module):
    """Self-attention, cross-attention to ``memory``, FFN; post-norm (default) or pre-norm."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", normalize_before: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)

        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

        self.activation = get_activation_fn(activation)
        self.normalize_before = normalize_before

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))

    def forward_post(self, tgt: Tensor, memory: Tensor,
                     tgt_mask: Optional[Tensor] = None,
                     memory_mask: Optional[Tensor] = None,
                     tgt_key_padding_mask: Optional[Tensor] = None,
                     memory_key_padding_mask: Optional[Tensor] = None,
                     pos: Optional[Tensor] = None,
                     query_pos: Optional[Tensor] = None) -> Tensor:
        q = k = with_pos_embed(tgt, query_pos)
        tgt2 = self.self_attn(q, k, value=tgt, attn_mask=tgt_mask,
                              key_padding_mask=tgt_key_padding_mask)[0]
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2 = self.multihead_attn(query=with_pos_embed(tgt, query_pos),
                                   key=with_pos_embed(memory, pos),
                                   value=memory, attn_mask=memory_mask,
                                   key_padding_mask=memory_key_padding_mask)[0]
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt = self.norm3(tgt + self.dropout3(self._ffn(tgt)))
        return tgt

    def forward_pre(self, tgt: Tensor, memory: Tensor,
                    tgt_mask: Optional[Tensor] = None,
                    memory_mask: Optional[Tensor] = None,
                    tgt_key_padding_mask: Optional[Tensor] = None,
                    memory_key_padding_mask: Optional[Tensor] = None,
                    pos: Optional[Tensor] = None,
                    query_pos: Optional[Tensor] = None) -> Tensor:
        tgt2 = self.norm1(tgt)
        q = k = with_pos_embed(tgt2, query_pos)
        tgt2 = self.self_attn(q, k, value=tgt2, attn_mask=tgt_mask,
                              key_padding_mask=tgt_key_padding_mask)[0]
        tgt = tgt + self.dropout1(tgt2)
        tgt2 = self.norm2(tgt)
        tgt2 = self.multihead_attn(query=with_pos_embed(tgt2, query_pos),
                                   key=with_pos_embed(memory, pos),
                                   value=memory, attn_mask=memory_mask,
                                   key_padding_mask=memory_key_padding_mask)[0]
        tgt = tgt + self.dropout2(tgt2)
        tgt = tgt + self.dropout3(self._ffn(self.norm3(tgt)))
        return tgt

    def forward(self, tgt: Tensor, memory: Tensor,
                tgt_mask: Optional[Tensor] = None,
                memory_mask: Optional[Tensor] = None,
                tgt_key_padding_mask: Optional[Tensor] = None,
                memory_key_padding_mask: Optional[Tensor] = None,
                pos: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None) -> Tensor:
        """(Q, B, C) queries, (S, B, C) memory [, masks, (S, B, C) pos, (Q, B, C) query_pos] -> (Q, B, C)."""
        fn = self.forward_pre if self.normalize_before else self.forward_post
        return fn(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask,
                  memory_key_padding_mask, pos, query_pos)


class TransformerDecoder(nn.Module):
    """``num_layers`` copies of ``decoder_layer``; returns a stack over layers.

    Output is ``(num_layers, Q, B, C)`` with every layer's output passed through ``norm`` when
    ``return_intermediate``, else ``(1, Q, B, C)`` holding the normed last output.
    """

    def __init__(self, decoder_layer: nn.Module, num_layers: int, norm: Optional[nn.Module] = None,
                 return_intermediate: bool = False):
        super().__init__()
        self.layers = get_clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.return_intermediate = return_intermediate

    def _final_norm(self, x: Tensor) -> Tensor:
        return x if self.norm is None else self.norm(x)

    def forward(self, tgt: Tensor, memory: Tensor,
                tgt_mask: Optional[Tensor] = None,
                memory_mask: Optional[Tensor] = None,
                tgt_key_padding_mask: Optional[Tensor] = None,
                memory_key_padding_mask: Optional[Tensor] = None,
                pos: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None) -> Tensor:
        """(Q, B, C) queries, (S, B, C) memory -> (L or 1, Q, B, C)."""
        output = tgt
        intermediate = []
        for layer in self.layers:
            output = layer(output, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                           tgt_key_padding_mask=tgt_key_padding_mask,
                           memory_key_padding_mask=memory_key_padding_mask,
                           pos=pos, query_pos=query_pos)
            if self.return_intermediate:
                intermediate.append(self._final_norm(output))
        if self.return_intermediate:
            return torch.stack(intermediate)
        return self._final_norm(output).unsqueeze(0)


class Transformer(nn.Module):
    """DETR's encoder-decoder on a single feature map with learned queries."""

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", normalize_before: bool = False,
                 return_intermediate_dec: bool = False):
        super().__init__()
        encoder_layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout,
                                                activation, normalize_before)
        encoder_norm = nn.LayerNorm(d_model) if normalize_before else None
        self.encoder = TransformerEncoder(encoder_layer, num_encoder_layers, encoder_norm)

        decoder_layer = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout,
                                                activation, normalize_before)
        self.decoder = TransformerDecoder(decoder_layer, num_decoder_layers, nn.LayerNorm(d_model),
                                          return_intermediate=return_intermediate_dec)
        xavier_init_matrices(self)
        self.d_model = d_model
        self.nhead = nhead

    def forward(self, src: Tensor, mask: Optional[Tensor], query_embed: Tensor,
                pos_embed: Tensor) -> Tuple[Tensor, Tensor]:
        """Encode ``src`` then decode ``query_embed``.

        Args:
            src: (B, C, H, W) features; mask: (B, H, W) bool, True on padding, or None;
            query_embed: (Q, C) learned query positions; pos_embed: (B, C, H, W).
        Returns:
            hs: (L or 1, B, Q, C) decoder outputs; memory: (B, C, H, W) encoder output.
        """
        bs, c, h, w = src.shape
        src = src.flatten(2).permute(2, 0, 1)  # (HW, B, C)
        pos_embed = pos_embed.flatten(2).permute(2, 0, 1)  # (HW, B, C)
        query_embed = query_embed.unsqueeze(1).repeat(1, bs, 1)  # (Q, B, C)
        if mask is not None:
            mask = mask.flatten(1)  # (B, HW)

        tgt = torch.zeros_like(query_embed)
        memory = self.encoder(src, src_key_padding_mask=mask, pos=pos_embed)
        hs = self.decoder(tgt, memory, memory_key_padding_mask=mask, pos=pos_embed,
                          query_pos=query_embed)  # (L, Q, B, C)
        return hs.transpose(1, 2), memory.permute(1, 2, 0).view(bs, c, h, w)
