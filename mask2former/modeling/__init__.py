"""Models: registries of swappable parts and ``build_model``.

Importing this package registers every built-in backbone, pixel decoder, transformer decoder,
head and meta-architecture, here and nowhere else (a new part adds its module below).
"""
# flake8: noqa: F401
from ..layers import ShapeSpec
from .backbone.backbone import Backbone
from .build import (
    BACKBONE_REGISTRY, META_ARCH_REGISTRY, PIXEL_DECODER_REGISTRY, SEM_SEG_HEADS_REGISTRY,
    TRANSFORMER_DECODER_REGISTRY, build_backbone, build_model, build_pixel_decoder,
    build_sem_seg_head, build_transformer_decoder,
)
from .test_time_augmentation import SemanticSegmentorWithTTA

# import-time registration of every part (the registries' decorators run on import)
from .backbone import resnet, swin, timm_backbone
from .pixel_decoder import fapn, fpn, msdeformattn
from .transformer_decoder import (
    mask2former_transformer_decoder, maskformer_transformer_decoder, video_mask2former_transformer_decoder,
)
from .heads import mask_former_head, per_pixel_baseline
from .meta_arch import mask_former, semantic_segmentor, video_mask_former

__all__ = [
    "BACKBONE_REGISTRY", "META_ARCH_REGISTRY", "PIXEL_DECODER_REGISTRY", "SEM_SEG_HEADS_REGISTRY",
    "TRANSFORMER_DECODER_REGISTRY", "Backbone", "SemanticSegmentorWithTTA", "ShapeSpec", "build_backbone", "build_model",
    "build_pixel_decoder", "build_sem_seg_head", "build_transformer_decoder",
]
