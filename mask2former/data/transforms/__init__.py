"""Augmentations and transforms (detectron2-compatible API on top of fvcore's ``Transform``)."""
from fvcore.transforms.transform import GridSampleTransform, ScaleTransform

from .augmentation import (
    Augmentation,
    AugInput,
    AugmentationList,
    RandomApply,
    StandardAugInput,
    apply_augmentations,
    apply_transform_gens,
)
from .augmentation_impl import (
    FixedSizeCrop,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomCrop_CategoryAreaConstraint,
    RandomFlip,
    RandomSaturation,
    Resize,
    ResizeScale,
    ResizeShortestEdge,
)
from .color_augmentation import ColorAugSSDTransform
from .segment_recolor import recolor_segments
from .transform import (
    clip_polygon,
    BlendTransform,
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    PadTransform,
    ResizeTransform,
    Transform,
    TransformList,
    VFlipTransform,
)

__all__ = [
    "AugInput", "Augmentation", "AugmentationList", "BlendTransform", "ColorAugSSDTransform",
    "CropTransform", "FixedSizeCrop", "GridSampleTransform", "HFlipTransform", "NoOpTransform",
    "PadTransform", "RandomApply", "RandomBrightness", "RandomContrast", "RandomCrop",
    "RandomCrop_CategoryAreaConstraint", "RandomFlip", "RandomSaturation", "Resize", "ResizeScale",
    "ResizeShortestEdge", "ResizeTransform", "ScaleTransform", "StandardAugInput", "Transform",
    "TransformList", "VFlipTransform", "apply_augmentations", "apply_transform_gens", "clip_polygon",
    "recolor_segments",
]
