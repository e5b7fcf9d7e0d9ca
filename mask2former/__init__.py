"""Mask2Former and MaskFormer: universal image segmentation by mask classification."""

__version__ = "0.1.0"
