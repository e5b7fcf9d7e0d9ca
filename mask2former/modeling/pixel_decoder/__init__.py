"""Pixel decoders: backbone features -> per-pixel mask features (+ encoder / multi-scale features)."""
from .base import PixelDecoder, PixelDecoderOutput, predictor_input

__all__ = ["PixelDecoder", "PixelDecoderOutput", "predictor_input"]
