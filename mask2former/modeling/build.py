"""Registries of swappable model parts and the builders that read the config."""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

from ..layers import ShapeSpec
from ..layers.ms_deform_attn_dispatch import set_ms_deform_attn_impl
from ..utils.env import resolve_device
from ..utils.registry import Registry
from .execution import apply_execution_options

__all__ = [
    "BACKBONE_REGISTRY", "SEM_SEG_HEADS_REGISTRY", "PIXEL_DECODER_REGISTRY",
    "TRANSFORMER_DECODER_REGISTRY", "META_ARCH_REGISTRY",
    "build_backbone", "build_sem_seg_head", "build_pixel_decoder", "build_transformer_decoder",
    "build_model",
]

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = "Backbones: fn(cfg, input_shape: ShapeSpec) -> Backbone (MODEL.BACKBONE.NAME)."

SEM_SEG_HEADS_REGISTRY = Registry("SEM_SEG_HEADS")
SEM_SEG_HEADS_REGISTRY.__doc__ = "Segmentation heads: cls(cfg, input_shape) (MODEL.SEM_SEG_HEAD.NAME)."

PIXEL_DECODER_REGISTRY = Registry("PIXEL_DECODER")
PIXEL_DECODER_REGISTRY.__doc__ = (
    "Pixel decoders: cls(cfg, input_shape) (MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME)."
)

TRANSFORMER_DECODER_REGISTRY = Registry("TRANSFORMER_MODULE")
TRANSFORMER_DECODER_REGISTRY.__doc__ = (
    "Transformer decoders: cls(cfg, in_channels, mask_classification) "
    "(MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME)."
)

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = "Meta-architectures: cls(cfg) (MODEL.META_ARCHITECTURE)."


def _get(registry: Registry, name: str, key: str):
    try:
        return registry.get(name)
    except KeyError:
        known = sorted(name for name, _ in registry)
        raise KeyError(f"{key}={name!r} is not registered; known names: {known}") from None


def build_backbone(cfg, input_shape: Optional[ShapeSpec] = None) -> nn.Module:
    """Build ``cfg.MODEL.BACKBONE.NAME`` for images with ``len(cfg.MODEL.PIXEL_MEAN)`` channels."""
    if input_shape is None:
        input_shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
    backbone = _get(BACKBONE_REGISTRY, cfg.MODEL.BACKBONE.NAME, "MODEL.BACKBONE.NAME")(cfg, input_shape)
    return backbone


def build_sem_seg_head(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """Build ``cfg.MODEL.SEM_SEG_HEAD.NAME`` on the backbone's output shapes."""
    return _get(SEM_SEG_HEADS_REGISTRY, cfg.MODEL.SEM_SEG_HEAD.NAME, "MODEL.SEM_SEG_HEAD.NAME")(
        cfg, input_shape
    )


def build_pixel_decoder(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """Build ``cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME``; it must offer ``forward_features``
    and ``output_shape`` (the ``modeling.pixel_decoder.base.PixelDecoder`` contract)."""
    name = cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME
    model = _get(PIXEL_DECODER_REGISTRY, name, "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME")(cfg, input_shape)
    missing = [m for m in ("forward_features", "output_shape") if not callable(getattr(model, m, None))]
    if missing:
        raise ValueError(
            f"Pixel decoder {name} must implement {' and '.join(missing)} (see PixelDecoder: "
            "forward_features(features) -> PixelDecoderOutput(mask_features, "
            "transformer_encoder_features, multi_scale_features); output_shape() -> the same of ShapeSpecs)"
        )
    return model


def build_transformer_decoder(cfg, in_channels: int, mask_classification: bool = True) -> nn.Module:
    """Build ``cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME``."""
    name = cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
    cls = _get(TRANSFORMER_DECODER_REGISTRY, name, "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME")
    return cls(cfg, in_channels, mask_classification)


def build_model(cfg) -> nn.Module:
    """Build the whole model named by ``cfg.MODEL.META_ARCHITECTURE`` on ``cfg.MODEL.DEVICE``.

    Every built-in part is registered by importing ``mask2former.modeling`` (which importing
    this module implies).
    """
    impl = cfg.MODEL.MS_DEFORM_ATTN.IMPL
    if impl != "auto":  # process-wide, as the op is a free function; "auto" keeps the env choice
        set_ms_deform_attn_impl(impl)

    meta_arch = cfg.MODEL.META_ARCHITECTURE
    model = _get(META_ARCH_REGISTRY, meta_arch, "MODEL.META_ARCHITECTURE")(cfg)
    model.to(torch.device(resolve_device(cfg.MODEL.DEVICE)))
    return apply_execution_options(model, cfg)  # MODEL.PRECISION, MODEL.COMPILE
