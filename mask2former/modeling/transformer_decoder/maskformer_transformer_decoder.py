"""MaskFormer's (v1) transformer decoder: DETR's Transformer on one feature map.

Registered as ``StandardTransformerDecoder`` (Mask2Former's name) and ``TransformerPredictor``
(MaskFormer v1's name); both names build the same class, with the same state_dict keys
(``transformer.decoder.layers.*``, ``query_embed``, ``input_proj``, ``class_embed``,
``mask_embed``).
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ...config.configurable import configurable
from ...layers import MLP, Conv2d, PositionEmbeddingSine, c2_xavier_fill
from ..build import TRANSFORMER_DECODER_REGISTRY
from .transformer import Transformer

__all__ = ["StandardTransformerDecoder"]


@TRANSFORMER_DECODER_REGISTRY.register()
class StandardTransformerDecoder(nn.Module):
    """Learned queries decoded against a single (B, C, H, W) map; masks from ``mask_features``."""

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
        dropout: float,
        dim_feedforward: int,
        enc_layers: int,
        dec_layers: int,
        pre_norm: bool,
        deep_supervision: bool,
        mask_dim: int,
        enforce_input_project: bool = False,
    ):
        """
        Args:
            in_channels: channels of the input feature map.
            mask_classification: build the class head (``num_classes + 1`` logits).
            num_classes: number of classes.
            hidden_dim: Transformer width.
            num_queries: number of learned queries.
            nheads: attention heads.
            dropout: dropout inside the Transformer.
            dim_feedforward: FFN hidden width.
            enc_layers: Transformer encoder layers (0 for none).
            dec_layers: Transformer decoder layers.
            pre_norm: pre-LayerNorm instead of post-LayerNorm.
            deep_supervision: also return the predictions of every earlier decoder layer.
            mask_dim: channels of ``mask_features``.
            enforce_input_project: add the 1x1 input projection even when
                ``in_channels == hidden_dim``.
        """
        super().__init__()
        self.mask_classification = mask_classification
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.transformer = Transformer(
            d_model=hidden_dim,
            dropout=dropout,
            nhead=nheads,
            dim_feedforward=dim_feedforward,
            num_encoder_layers=enc_layers,
            num_decoder_layers=dec_layers,
            normalize_before=pre_norm,
            return_intermediate_dec=deep_supervision,
        )
        self.num_queries = num_queries
        hidden_dim = self.transformer.d_model
        self.query_embed = nn.Embedding(num_queries, hidden_dim)

        if in_channels != hidden_dim or enforce_input_project:
            self.input_proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
            c2_xavier_fill(self.input_proj)
        else:
            self.input_proj = nn.Sequential()
        self.aux_loss = deep_supervision

        if self.mask_classification:
            self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg, in_channels: int, mask_classification: bool) -> Dict:
        mf = cfg.MODEL.MASK_FORMER
        return {
            "in_channels": in_channels,
            "mask_classification": mask_classification,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "hidden_dim": mf.HIDDEN_DIM,
            "num_queries": mf.NUM_OBJECT_QUERIES,
            "nheads": mf.NHEADS,
            "dropout": mf.DROPOUT,
            "dim_feedforward": mf.DIM_FEEDFORWARD,
            "enc_layers": mf.ENC_LAYERS,
            "dec_layers": mf.DEC_LAYERS,
            "pre_norm": mf.PRE_NORM,
            "deep_supervision": mf.DEEP_SUPERVISION,
            "enforce_input_project": mf.ENFORCE_INPUT_PROJ,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
        }

    def forward(self, x: Tensor, mask_features: Tensor, mask: Optional[Tensor] = None) -> Dict:
        """Decode the queries against one feature map.

        Args:
            x: (B, C_in, h, w) features; mask_features: (B, mask_dim, H, W);
            mask: optional (B, H', W') bool padding mask (True on padding), resized to (h, w).
        Returns:
            ``pred_masks`` (B, Q, H, W), ``pred_logits`` (B, Q, K+1) when mask_classification,
            and with deep supervision ``aux_outputs`` for every decoder layer but the last.
        """
        if mask is not None:
            mask = F.interpolate(mask[None].float(), size=x.shape[-2:]).to(torch.bool)[0]  # (B, h, w)
        pos = self.pe_layer(x, mask)  # (B, C, h, w)
        hs, _ = self.transformer(self.input_proj(x), mask, self.query_embed.weight, pos)  # (L, B, Q, C)

        out: Dict = {}
        outputs_class = None
        if self.mask_classification:
            outputs_class = self.class_embed(hs)  # (L, B, Q, K+1)
            out["pred_logits"] = outputs_class[-1]

        if self.aux_loss:
            mask_embed = self.mask_embed(hs)  # (L, B, Q, mask_dim)
            outputs_seg_masks = torch.einsum("lbqc,bchw->lbqhw", mask_embed, mask_features)
            out["pred_masks"] = outputs_seg_masks[-1]  # (B, Q, H, W)
            out["aux_outputs"] = self._set_aux_loss(outputs_class, outputs_seg_masks)
        else:
            mask_embed = self.mask_embed(hs[-1])  # (B, Q, mask_dim)
            out["pred_masks"] = torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)
        return out

    def _set_aux_loss(self, outputs_class: Optional[Tensor], outputs_seg_masks: Tensor) -> List[Dict]:
        if outputs_class is not None:
            return [
                {"pred_logits": a, "pred_masks": b}
                for a, b in zip(outputs_class[:-1], outputs_seg_masks[:-1])
            ]
        return [{"pred_masks": b} for b in outputs_seg_masks[:-1]]


# MaskFormer (v1) configs name the same predictor "TransformerPredictor".
TRANSFORMER_DECODER_REGISTRY._do_register("TransformerPredictor", StandardTransformerDecoder)
