"""MaskFormer's per-pixel classification baselines (used by ``SemanticSegmentor``).

``PerPixelBaselineHead``: pixel decoder, then a 1x1 conv classifier on the mask features.
``PerPixelBaselinePlusHead``: the per-pixel logits come from a transformer predictor with one
query per class (``pred_masks`` read as class logits), optionally deeply supervised.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from torch import Tensor, nn
from torch.nn import functional as F

from ...config.configurable import configurable
from ...layers import Conv2d, ShapeSpec, c2_msra_fill
from ..build import SEM_SEG_HEADS_REGISTRY, build_pixel_decoder
from ..transformer_decoder.maskformer_transformer_decoder import StandardTransformerDecoder
from ..pixel_decoder.base import predictor_input
from .mask_former_head import predictor_in_channels, upgrade_head_state_dict

__all__ = ["PerPixelBaselineHead", "PerPixelBaselinePlusHead"]


@SEM_SEG_HEADS_REGISTRY.register()
class PerPixelBaselineHead(nn.Module):
    """Per-pixel cross-entropy classifier on the pixel decoder's mask features."""

    _version = 2

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        num_classes: int,
        pixel_decoder: nn.Module,
        loss_weight: float = 1.0,
        ignore_value: int = -1,
    ):
        """
        Args:
            input_shape: shapes of the backbone features the head reads.
            num_classes: number of classes.
            pixel_decoder: a :class:`~..pixel_decoder.base.PixelDecoder` (its declared
                ``mask_features`` channels size the classifier).
            loss_weight: weight of the cross-entropy loss.
            ignore_value: target value excluded from the loss.
        """
        super().__init__()
        del input_shape
        self.ignore_value = ignore_value
        self.common_stride = 4
        self.loss_weight = loss_weight
        self.pixel_decoder = pixel_decoder
        mask_dim = pixel_decoder.output_shape().mask_features.channels
        self.predictor = Conv2d(mask_dim, num_classes, kernel_size=1, stride=1, padding=0)
        c2_msra_fill(self.predictor)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> Dict:
        in_features = cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in in_features},
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "pixel_decoder": build_pixel_decoder(cfg, input_shape),
            "loss_weight": cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT,
        }

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        upgrade_head_state_dict(self, state_dict, prefix, local_metadata)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, features: Dict[str, Tensor],
                targets: Optional[Tensor] = None) -> Tuple[Optional[Tensor], Dict[str, Tensor]]:
        """Training: ``(None, {"loss_sem_seg": ...})`` against (B, H, W) int64 ``targets``.
        Inference: ``((B, K, H, W) logits upsampled x4 from stride 4, {})``."""
        x = self.layers(features)  # (B, K, H/4, W/4)
        if self.training:
            return None, self.losses(x, targets)
        return self._upsample(x), {}

    def layers(self, features: Dict[str, Tensor]) -> Tensor:
        mask_features = self.pixel_decoder.forward_features(features).mask_features  # (B, mask_dim, H/4, W/4)
        return self.predictor(mask_features)  # (B, K, H/4, W/4)

    def _upsample(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=self.common_stride, mode="bilinear", align_corners=False)

    def losses(self, predictions: Tensor, targets: Optional[Tensor]) -> Dict[str, Tensor]:
        """Cross-entropy (mean over non-ignored pixels) of x4-upsampled logits, times loss_weight."""
        if targets is None:
            raise ValueError(f"{type(self).__name__} needs sem_seg targets in training mode")
        predictions = self._upsample(predictions.float())  # (B, K, H, W)
        loss = F.cross_entropy(predictions, targets, reduction="mean", ignore_index=self.ignore_value)
        return {"loss_sem_seg": loss * self.loss_weight}


@SEM_SEG_HEADS_REGISTRY.register()
class PerPixelBaselinePlusHead(PerPixelBaselineHead):
    """Per-pixel baseline whose logits come from a transformer predictor (one query per class)."""

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        transformer_predictor: nn.Module,
        transformer_in_feature: str,
        deep_supervision: bool,
        num_classes: int,
        pixel_decoder: nn.Module,
        loss_weight: float = 1.0,
        ignore_value: int = -1,
    ):
        """
        Args:
            transformer_predictor: ``predictor(x, mask_features) -> {"pred_masks", ...}``
                built with ``mask_classification=False`` and one query per class.
            transformer_in_feature: ``"transformer_encoder"`` or a backbone feature name.
            deep_supervision: add a loss (``loss_sem_seg_{i}``) on every earlier decoder layer.
            Other arguments as :class:`PerPixelBaselineHead`.
        """
        super().__init__(input_shape, num_classes=num_classes, pixel_decoder=pixel_decoder,
                         loss_weight=loss_weight, ignore_value=ignore_value)
        self.predictor = transformer_predictor  # replaces the 1x1 classifier
        self.transformer_in_feature = transformer_in_feature
        self.deep_supervision = deep_supervision

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> Dict:
        ret = super().from_config(cfg, input_shape)
        in_feature = cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE
        ret["transformer_in_feature"] = in_feature
        ret["transformer_predictor"] = StandardTransformerDecoder(
            cfg, predictor_in_channels(in_feature, ret["pixel_decoder"], input_shape),
            mask_classification=False,
        )
        ret["deep_supervision"] = cfg.MODEL.MASK_FORMER.DEEP_SUPERVISION
        return ret

    def forward(self, features: Dict[str, Tensor],
                targets: Optional[Tensor] = None) -> Tuple[Optional[Tensor], Dict[str, Tensor]]:
        """As :meth:`PerPixelBaselineHead.forward`; with deep supervision the training losses
        also hold ``loss_sem_seg_{i}`` for every earlier decoder layer."""
        x, aux_outputs = self.layers(features)  # (B, K, H/4, W/4)
        if not self.training:
            return self._upsample(x), {}
        losses = self.losses(x, targets)
        if self.deep_supervision:
            for i, aux in enumerate(aux_outputs):
                losses[f"loss_sem_seg_{i}"] = self.losses(aux["pred_masks"], targets)["loss_sem_seg"]
        return None, losses

    def layers(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Optional[List[Dict]]]:
        decoded = self.pixel_decoder.forward_features(features)
        x = predictor_input(self.transformer_in_feature, decoded, features, self.pixel_decoder)
        predictions = self.predictor(x, decoded.mask_features)
        if not self.deep_supervision:
            return predictions["pred_masks"], None
        if "aux_outputs" not in predictions:
            raise ValueError(
                "deep_supervision=True needs a transformer predictor built with deep_supervision=True "
                "(MODEL.MASK_FORMER.DEEP_SUPERVISION)"
            )
        return predictions["pred_masks"], predictions["aux_outputs"]
