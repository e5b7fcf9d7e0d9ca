"""Tiny configs for the deploy tests: every backbone / pixel decoder / transformer decoder kind."""
from __future__ import annotations

import types
from typing import Dict, List

import numpy as np
import torch

from mask2former.config import get_cfg
from mask2former.modeling.build import build_model

NUM_CLASSES = 5
THING_IDS = (0, 1, 2)  # classes 3 and 4 are stuff

_SWIN = [
    "MODEL.BACKBONE.NAME", "D2SwinTransformer",
    "MODEL.SWIN.EMBED_DIM", 16, "MODEL.SWIN.DEPTHS", [1, 1, 2, 1],
    "MODEL.SWIN.NUM_HEADS", [1, 1, 2, 2], "MODEL.SWIN.WINDOW_SIZE", 7,
    "MODEL.SWIN.DROP_PATH_RATE", 0.0,
]
_RESNET = [
    "MODEL.BACKBONE.NAME", "build_resnet_backbone", "MODEL.RESNETS.DEPTH", 18,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64, "MODEL.RESNETS.NORM", "FrozenBN",
    "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
]
_MSDEFORM = [
    "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "MSDeformAttnPixelDecoder",
    "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES", ["res3", "res4", "res5"],
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 1,
]
_M2F_DECODER = [
    "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME", "MultiScaleMaskedTransformerDecoder",
    "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE", "multi_scale_pixel_decoder",
    "MODEL.MASK_FORMER.DEC_LAYERS", 4,
]
_STANDARD_DECODER = [
    "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME", "StandardTransformerDecoder",
    "MODEL.MASK_FORMER.DEC_LAYERS", 2, "MODEL.MASK_FORMER.ENC_LAYERS", 0,
]

# name -> (overrides, task flags); together: both backbones, the three pixel decoders,
# both transformer decoders, and semantic / panoptic / instance inference
VARIANTS: Dict[str, List] = {
    "swin_msdeform_m2f": _SWIN + _MSDEFORM + _M2F_DECODER,
    "resnet_msdeform_m2f": _RESNET + _MSDEFORM + _M2F_DECODER,
    "resnet_fpn_standard": _RESNET + _STANDARD_DECODER + [
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "BasePixelDecoder",
        "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE", "res5"],
    "resnet_transformer_encoder_m2f": _RESNET + _M2F_DECODER + [
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "TransformerEncoderPixelDecoder",
        "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 1],
    # FaPN: modulated deformable convs in the pixel decoder (ONNX DeformConv, opset 19)
    "resnet_fapn_m2f": _RESNET + _M2F_DECODER + [
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "MSFaPNPixelDecoder"],
}


def tiny_cfg(variant: str, *, semantic: bool = True, panoptic: bool = True, instance: bool = True):
    cfg = get_cfg()
    cfg.merge_from_list([
        "MODEL.META_ARCHITECTURE", "MaskFormer", "MODEL.DEVICE", "cpu",
        "MODEL.SEM_SEG_HEAD.NAME", "MaskFormerHead",
        "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res2", "res3", "res4", "res5"],
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", NUM_CLASSES,
        "MODEL.SEM_SEG_HEAD.CONVS_DIM", 32, "MODEL.SEM_SEG_HEAD.MASK_DIM", 32,
        "MODEL.SEM_SEG_HEAD.NORM", "GN",
        "MODEL.MASK_FORMER.HIDDEN_DIM", 32, "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 8,
        "MODEL.MASK_FORMER.NHEADS", 2, "MODEL.MASK_FORMER.DIM_FEEDFORWARD", 64,
        "MODEL.MASK_FORMER.SIZE_DIVISIBILITY", 32,
        "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", 0.2,
        "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", semantic,
        "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", panoptic,
        "MODEL.MASK_FORMER.TEST.INSTANCE_ON", instance,
        "TEST.DETECTIONS_PER_IMAGE", 6, "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 96,
        # the eager reference computes in NCHW like the exported graphs do: the tests compare
        # discrete outputs (argmax, panoptic ids) exactly, and channels-last's other summation
        # order can move a near-tie pixel
        "MODEL.CHANNELS_LAST", False,
    ] + VARIANTS[variant])
    return cfg


def thing_metadata():
    return types.SimpleNamespace(
        name="tiny_deploy", thing_dataset_id_to_contiguous_id={10 + i: i for i in THING_IDS},
        stuff_classes=[f"class{i}" for i in range(NUM_CLASSES)],
        thing_classes=[f"class{i}" for i in THING_IDS], label_divisor=1000,
    )


def tiny_model(variant: str, **flags):
    """Random weights with more spread than the init, so that post-processing keeps segments."""
    torch.manual_seed(0)
    cfg = tiny_cfg(variant, **flags)
    model = build_model(cfg)
    model.metadata = thing_metadata()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        predictor = model.sem_seg_head.predictor
        predictor.class_embed.weight.normal_(0, 1.0, generator=g)
        predictor.class_embed.bias.normal_(0, 1.0, generator=g)
        last = predictor.mask_embed.layers[-1]
        last.weight.normal_(0, 2.0 / last.weight.shape[1] ** 0.5, generator=g)
        predictor.query_embed.weight.normal_(0, 1.0, generator=g)
        for module in model.modules():  # FaPN: offsets away from the identity start
            if hasattr(module, "conv_offset_mask"):
                module.conv_offset_mask.weight.normal_(0, 0.05, generator=g)
    return cfg, model.eval()


def random_image(seed: int, height: int, width: int) -> np.ndarray:
    """A BGR uint8 image with smooth structure (blocks of colour plus noise)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(max(height // 8, 1), max(width // 8, 1), 3)).astype(np.float32)
    import cv2

    image = cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR)
    image += rng.normal(0, 10, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


INPUT_SIZE = (64, 96)  # padded network input of the static test exports
