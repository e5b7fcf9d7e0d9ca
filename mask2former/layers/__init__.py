"""Ground-floor neural-network layers shared by the models."""
from .deform_conv import DeformConv, ModulatedDeformConvPack
from .batch_norm import FrozenBatchNorm2d, GroupNorm, LayerNorm2d, get_norm
from .mlp import MLP
from .position_encoding import PositionEmbeddingSine, PositionEmbeddingSine3D
from .shape_spec import ShapeSpec
from .transformer_encoder import TransformerEncoder, TransformerEncoderLayer, TransformerEncoderOnly
from .transformer_utils import get_activation_fn, get_clones, with_pos_embed, xavier_init_matrices
from .wrappers import Conv2d, c2_msra_fill, c2_xavier_fill

__all__ = [
    "Conv2d", "DeformConv", "FrozenBatchNorm2d", "GroupNorm", "ModulatedDeformConvPack", "LayerNorm2d",
    "MLP", "PositionEmbeddingSine", "PositionEmbeddingSine3D", "ShapeSpec", "TransformerEncoder",
    "TransformerEncoderLayer", "TransformerEncoderOnly", "c2_msra_fill", "c2_xavier_fill",
    "get_activation_fn", "get_clones", "get_norm", "with_pos_embed", "xavier_init_matrices",
]
