"""Imports every model part so that its registry decorator runs (used by ``build_model``)."""
# flake8: noqa: F401
from .backbone import resnet, swin, timm_backbone
from .pixel_decoder import fapn, fpn, msdeformattn
from .transformer_decoder import mask2former_transformer_decoder, maskformer_transformer_decoder
from .heads import mask_former_head, per_pixel_baseline
from .meta_arch import mask_former, semantic_segmentor
from .transformer_decoder import video_mask2former_transformer_decoder
from .meta_arch import video_mask_former
