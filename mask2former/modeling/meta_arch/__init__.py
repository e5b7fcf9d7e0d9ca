"""Meta-architectures: the whole model from image batch to losses or results."""
from .mask_former import MaskFormer
from .semantic_segmentor import SemanticSegmentor
from .video_mask_former import VideoMaskFormer

__all__ = ["MaskFormer", "SemanticSegmentor", "VideoMaskFormer"]
