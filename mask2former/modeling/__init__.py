"""Models: registries of swappable parts and ``build_model``.

Importing this package registers every built-in backbone, pixel decoder, transformer decoder,
head and meta-architecture.
"""
from ..layers import ShapeSpec
from . import _register_all  # noqa: F401
from .backbone.backbone import Backbone
from .build import (
    BACKBONE_REGISTRY, META_ARCH_REGISTRY, PIXEL_DECODER_REGISTRY, SEM_SEG_HEADS_REGISTRY,
    TRANSFORMER_DECODER_REGISTRY, build_backbone, build_model, build_pixel_decoder,
    build_sem_seg_head, build_transformer_decoder,
)

__all__ = [
    "BACKBONE_REGISTRY", "META_ARCH_REGISTRY", "PIXEL_DECODER_REGISTRY", "SEM_SEG_HEADS_REGISTRY",
    "TRANSFORMER_DECODER_REGISTRY", "Backbone", "ShapeSpec", "build_backbone", "build_model",
    "build_pixel_decoder", "build_sem_seg_head", "build_transformer_decoder",
]
