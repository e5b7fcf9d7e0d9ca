"""The pixel-decoder contract: what every pixel decoder returns and declares.

A pixel decoder turns backbone features ``{name: (B, C_l, H_l, W_l)}`` into

* ``mask_features`` (B, mask_dim, H/s, W/s): per-pixel embeddings at the finest stride s
  (4 for a res2..res5 backbone), dotted with the mask embeddings of the queries;
* ``transformer_encoder_features`` (B, C_enc, H/S, W/S) or None: the lowest-resolution
  (stride S, 32 for res5) output of a transformer encoder, for decoders that have one;
* ``multi_scale_features``: up to 3 maps (B, conv_dim, H_l, W_l), lowest resolution first,
  for Mask2Former's multi-scale transformer decoder.

:meth:`PixelDecoder.output_shape` declares these as the same tuple holding :class:`ShapeSpec` s,
so that heads size their predictor from the decoder instead of re-reading config keys.
:func:`predictor_input` is the one place where ``MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE``
picks what the transformer predictor reads.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, NamedTuple, Optional

from torch import Tensor, nn

from ...layers import ShapeSpec

__all__ = ["PREDICTOR_INPUTS", "PixelDecoder", "PixelDecoderOutput", "predictor_input", "shape_channels"]

logger = logging.getLogger(__name__)


class PixelDecoderOutput(NamedTuple):
    """What :meth:`PixelDecoder.forward_features` returns (tensors) and
    :meth:`PixelDecoder.output_shape` declares (the same fields holding ``ShapeSpec`` s)."""

    mask_features: Any  # (B, mask_dim, H/s, W/s), s the finest input stride
    transformer_encoder_features: Any  # (B, C_enc, H/S, W/S), S the coarsest stride; or None
    multi_scale_features: List[Any]  # <= 3 maps (B, conv_dim, H_l, W_l), lowest resolution first


class PixelDecoder(nn.Module):
    """Base class of pixel decoders: ``forward_features`` + ``output_shape``.

    Subclasses set ``in_features`` (backbone feature names, highest resolution first).
    """

    in_features: List[str]

    def forward_features(self, features: Dict[str, Tensor]) -> PixelDecoderOutput:
        """Backbone features {name: (B, C_l, H_l, W_l)} -> :class:`PixelDecoderOutput` of tensors."""
        raise NotImplementedError

    def output_shape(self) -> PixelDecoderOutput:
        """Channels / stride of every output: a :class:`PixelDecoderOutput` of ``ShapeSpec`` s
        (``transformer_encoder_features`` None when the decoder has no encoder)."""
        raise NotImplementedError

    def forward(self, features: Dict[str, Tensor], targets=None) -> PixelDecoderOutput:
        logger.warning("Calling forward() may cause unpredicted behavior of PixelDecoder module.")
        return self.forward_features(features)


# MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE values naming a pixel-decoder output -> its field
PREDICTOR_INPUTS: Dict[str, str] = {
    "multi_scale_pixel_decoder": "multi_scale_features",
    "transformer_encoder": "transformer_encoder_features",
    "pixel_embedding": "mask_features",
}


def predictor_input(name: str, decoder_output: PixelDecoderOutput, backbone: Mapping[str, Any],
                    decoder: Optional[nn.Module] = None) -> Any:
    """What the transformer predictor reads for ``TRANSFORMER_IN_FEATURE=name``.

    Works alike on tensors (``forward_features`` output + backbone features) and on shapes
    (``output_shape()`` + backbone ``ShapeSpec`` s): the pixel-decoder field named in
    :data:`PREDICTOR_INPUTS`, else the backbone feature ``name``.

    Raises:
        ValueError: ``transformer_encoder`` asked of a decoder without an encoder.
        KeyError: ``name`` is neither a pixel-decoder output nor a backbone feature.
    """
    field = PREDICTOR_INPUTS.get(name)
    if field is not None:
        value = getattr(decoder_output, field)
        if value is None:
            kind = type(decoder).__name__ if decoder is not None else "this pixel decoder"
            raise ValueError(
                f"TRANSFORMER_IN_FEATURE={name!r} needs a pixel decoder with a transformer encoder "
                f"(e.g. TransformerEncoderPixelDecoder), got {kind}"
            )
        return value
    if name not in backbone:
        raise KeyError(
            f"MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE={name!r} is neither a pixel-decoder output "
            f"{sorted(PREDICTOR_INPUTS)} nor a backbone feature {sorted(backbone)}"
        )
    return backbone[name]


def shape_channels(shape: Any) -> int:
    """Channels of a declared predictor input (a ``ShapeSpec`` or the multi-scale list of them)."""
    if isinstance(shape, (list, tuple)):
        channels = {s.channels for s in shape}
        if len(channels) != 1:
            raise ValueError(f"multi-scale features must share one channel count, got {sorted(channels)}")
        return channels.pop()
    return shape.channels
