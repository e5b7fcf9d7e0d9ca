"""``MaskFormerHead``: pixel decoder + transformer decoder (MaskFormer and Mask2Former)."""
from __future__ import annotations

import logging
from typing import Dict

from torch import Tensor, nn

from ...config.configurable import configurable
from ...layers import ShapeSpec
from ..build import SEM_SEG_HEADS_REGISTRY, build_pixel_decoder, build_transformer_decoder
from ..pixel_decoder.base import predictor_input, shape_channels

__all__ = ["MaskFormerHead", "predictor_in_channels", "upgrade_head_state_dict"]

logger = logging.getLogger(__name__)


def upgrade_head_state_dict(module: nn.Module, state_dict: Dict, prefix: str,
                            local_metadata: Dict) -> None:
    """Rename an old-layout head checkpoint in place, as the official heads do.

    Head checkpoints without version information (``local_metadata`` has no ``version``,
    or one < 2) are taken to predate the ``pixel_decoder`` submodule: every key under
    ``prefix`` that contains ``sem_seg_head`` and is not under ``prefix + "predictor"``
    moves to ``prefix + "pixel_decoder."``. A state_dict saved by torch carries this
    version in its ``_metadata``; a plain dict without it is therefore read as old layout.
    """
    version = local_metadata.get("version", None)
    if version is not None and version >= 2:
        return
    renamed = False
    for k in list(state_dict.keys()):
        if (prefix and "sem_seg_head" in k and k.startswith(prefix)
                and not k.startswith(prefix + "predictor")):
            state_dict[prefix + "pixel_decoder." + k[len(prefix):]] = state_dict.pop(k)
            renamed = True
    if renamed:
        logger.warning(
            f"Weight format of {type(module).__name__} have changed! "
            "Please upgrade your models. Applying automatic conversion now ..."
        )


def predictor_in_channels(transformer_in_feature: str, pixel_decoder: nn.Module,
                          input_shape: Dict[str, ShapeSpec]) -> int:
    """Channels of what the predictor reads, from the pixel decoder's declared ``output_shape()``
    (or the backbone's ``input_shape`` for a backbone feature name)."""
    return shape_channels(predictor_input(transformer_in_feature, pixel_decoder.output_shape(),
                                          input_shape, pixel_decoder))


@SEM_SEG_HEADS_REGISTRY.register()
class MaskFormerHead(nn.Module):
    """Runs the pixel decoder, then the transformer decoder on the feature it asks for."""

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
        transformer_predictor: nn.Module,
        transformer_in_feature: str,
    ):
        """
        Args:
            input_shape: shapes of the backbone features the head reads.
            num_classes: number of classes.
            pixel_decoder: a :class:`~..pixel_decoder.base.PixelDecoder`.
            loss_weight, ignore_value: accepted for the official config interface and unused
                (losses live in the criterion).
            transformer_predictor: ``predictor(x, mask_features) -> dict``.
            transformer_in_feature: ``"multi_scale_pixel_decoder"``, ``"transformer_encoder"``,
                ``"pixel_embedding"`` or a backbone feature name: what the predictor reads.
        """
        super().__init__()
        del input_shape, loss_weight, ignore_value
        self.pixel_decoder = pixel_decoder
        self.predictor = transformer_predictor
        self.transformer_in_feature = transformer_in_feature
        self.num_classes = num_classes

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> Dict:
        in_features = cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES
        pixel_decoder = build_pixel_decoder(cfg, input_shape)
        in_feature = cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in in_features},
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "pixel_decoder": pixel_decoder,
            "loss_weight": cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT,
            "transformer_in_feature": in_feature,
            "transformer_predictor": build_transformer_decoder(
                cfg, predictor_in_channels(in_feature, pixel_decoder, input_shape), mask_classification=True
            ),
        }

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        upgrade_head_state_dict(self, state_dict, prefix, local_metadata)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, features: Dict[str, Tensor]) -> Dict:
        """Backbone features -> the predictor's dict (``pred_logits`` (B, Q, K+1),
        ``pred_masks`` (B, Q, H/4, W/4), ``aux_outputs``)."""
        return self.layers(features)

    def layers(self, features: Dict[str, Tensor]) -> Dict:
        decoded = self.pixel_decoder.forward_features(features)
        x = predictor_input(self.transformer_in_feature, decoded, features, self.pixel_decoder)
        return self.predictor(x, decoded.mask_features)
