"""Hugging Face ``config.json`` (Mask2Former / MaskFormer) <-> this package's config keys.

:func:`d2_config_from_hf` gives the YAML overrides (a nested dict) that make
``get_cfg().merge_from_file(...)`` build the network the HF config describes, at any size the
HF config allows; :func:`hf_config_from_d2` goes the other way. Values HF does not store
(inference thresholds, tasks) get the official configs' values; the pixel mean / std come from
``preprocessor_config.json`` when the folder has one, else transformers' defaults (ImageNet).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from .hf_conversion import hf_architecture

__all__ = ["d2_config_from_hf", "hf_config_from_d2", "id2label_from_hf"]

_IMAGENET_MEAN = [0.485, 0.456, 0.406]
_IMAGENET_STD = [0.229, 0.224, 0.225]
_STAGES = {"stage1": "res2", "stage2": "res3", "stage3": "res4", "stage4": "res5"}
_TO_STAGE = {v: k for k, v in _STAGES.items()}


def _feature_strides(features) -> List[int]:
    """Strides of backbone features named res2..res5: 4, 8, 16, 32."""
    return [2 ** int(f[len("res"):]) for f in features]


def id2label_from_hf(config: Mapping) -> Dict[int, str]:
    """``{contiguous id: class name}`` from ``config.json`` (``id2label``), sorted by id."""
    raw = config.get("id2label") or {}
    return {int(k): str(v) for k, v in sorted(raw.items(), key=lambda kv: int(kv[0]))}


def _require(config: Mapping, key: str, source: str) -> Any:
    if key not in config:
        raise ValueError(f"{source}: key {key!r} is missing")
    return config[key]


def _backbone(config: Mapping) -> Dict[str, Any]:
    bb = config.get("backbone_config") or {}
    kind = bb.get("model_type")
    out_features = [_STAGES[s] for s in bb.get("out_features") or list(_STAGES)]
    if kind in ("swin", "maskformer-swin"):
        if bb.get("use_absolute_embeddings"):
            raise ValueError("config.json: backbone_config.use_absolute_embeddings=true (absolute position "
                             "embeddings with a class token) has no counterpart in the D2 Swin backbone")
        return {"BACKBONE": {"NAME": "D2SwinTransformer", "FREEZE_AT": 0},
                "SWIN": {"EMBED_DIM": bb.get("embed_dim", 96), "DEPTHS": list(bb.get("depths", [2, 2, 6, 2])),
                         "NUM_HEADS": list(bb.get("num_heads", [3, 6, 12, 24])),
                         "WINDOW_SIZE": bb.get("window_size", 7), "MLP_RATIO": float(bb.get("mlp_ratio", 4.0)),
                         "QKV_BIAS": bool(bb.get("qkv_bias", True)), "PATCH_SIZE": bb.get("patch_size", 4),
                         "PRETRAIN_IMG_SIZE": bb.get("image_size", 224), "APE": False, "PATCH_NORM": True,
                         "DROP_PATH_RATE": float(bb.get("drop_path_rate", 0.3)), "OUT_FEATURES": out_features}}
    if kind == "resnet":
        depths = list(bb.get("depths", [3, 4, 6, 3]))
        depth = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}.get(tuple(depths))
        if bb.get("layer_type", "bottleneck") == "basic" and tuple(depths) == (3, 4, 6, 3):
            depth = 34
        if depth is None:
            raise ValueError(f"config.json: ResNet depths {depths} are not a standard ResNet-18/34/50/101/152")
        if bb.get("embedding_size", 64) != 64 or list(bb.get("hidden_sizes", [256, 512, 1024, 2048]))[0] not in (64, 256):
            raise ValueError("config.json: only the standard ResNet widths are supported")
        return {"BACKBONE": {"NAME": "build_resnet_backbone", "FREEZE_AT": 0},
                "RESNETS": {"DEPTH": depth, "STEM_TYPE": "basic", "STEM_OUT_CHANNELS": 64, "NORM": "FrozenBN",
                            "STRIDE_IN_1X1": bool(bb.get("downsample_in_bottleneck", False)),
                            "RES2_OUT_CHANNELS": 64 if depth in (18, 34) else 256, "OUT_FEATURES": out_features}}
    raise ValueError(f"config.json: backbone model_type {kind!r} is not supported "
                     "(supported: 'swin', 'maskformer-swin', 'resnet')")


def _pixel_stats(preprocessor: Optional[Mapping]) -> Dict[str, Any]:
    pre = preprocessor or {}
    scale = 255.0 if pre.get("do_rescale", True) else 1.0
    mean = pre.get("image_mean", _IMAGENET_MEAN)
    std = pre.get("image_std", _IMAGENET_STD)
    return {"PIXEL_MEAN": [round(m * scale, 6) for m in mean], "PIXEL_STD": [round(s * scale, 6) for s in std]}


def d2_config_from_hf(config: Mapping, preprocessor: Optional[Mapping] = None) -> Dict[str, Any]:
    """YAML overrides for ``get_cfg()`` from a HF ``config.json`` dict (and ``preprocessor_config.json``).

    Raises:
        ValueError: a setting this package cannot express, naming the key and value.
    """
    arch = hf_architecture(config)
    num_classes = len(id2label_from_hf(config)) or int(_require(config, "num_labels", "config.json"))
    model: Dict[str, Any] = {"META_ARCHITECTURE": "MaskFormer", **_pixel_stats(preprocessor), **_backbone(config)}
    in_features = model.get("SWIN", model.get("RESNETS"))["OUT_FEATURES"]
    test = {"SEMANTIC_ON": True, "INSTANCE_ON": False, "PANOPTIC_ON": False,
            "OBJECT_MASK_THRESHOLD": 0.8, "OVERLAP_THRESHOLD": 0.8}
    if arch == "mask2former":
        strides = _feature_strides(in_features)
        if list(config.get("feature_strides", strides)) != strides:
            raise ValueError(f"config.json: feature_strides={config['feature_strides']} are not the strides "
                             f"{strides} of backbone_config.out_features")
        if config.get("activation_function", "relu") != "relu":
            raise ValueError(f"config.json: activation_function={config['activation_function']!r}; only 'relu' exists here")
        model["SEM_SEG_HEAD"] = {
            "NAME": "MaskFormerHead", "PIXEL_DECODER_NAME": "MSDeformAttnPixelDecoder",
            "IN_FEATURES": in_features, "DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES": in_features[-3:],
            "NUM_CLASSES": num_classes, "CONVS_DIM": config.get("feature_size", 256),
            "MASK_DIM": config.get("mask_feature_size", 256), "NORM": "GN",
            "TRANSFORMER_ENC_LAYERS": config.get("encoder_layers", 6),
            "DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD": config.get("encoder_feedforward_dim", 1024),
            "COMMON_STRIDE": config.get("common_stride", 4), "IGNORE_VALUE": config.get("ignore_value", 255)}
        model["MASK_FORMER"] = {
            "TRANSFORMER_DECODER_NAME": "MultiScaleMaskedTransformerDecoder",
            "TRANSFORMER_IN_FEATURE": "multi_scale_pixel_decoder",
            "HIDDEN_DIM": config.get("hidden_dim", 256), "NUM_OBJECT_QUERIES": config.get("num_queries", 100),
            "NHEADS": config.get("num_attention_heads", 8), "DIM_FEEDFORWARD": config.get("dim_feedforward", 2048),
            "DEC_LAYERS": config.get("decoder_layers", 10), "PRE_NORM": bool(config.get("pre_norm", False)),
            "ENFORCE_INPUT_PROJ": bool(config.get("enforce_input_projection", False)),
            "DROPOUT": float(config.get("dropout", 0.0)), "DEEP_SUPERVISION": bool(config.get("use_auxiliary_loss", True)),
            "NO_OBJECT_WEIGHT": config.get("no_object_weight", 0.1), "CLASS_WEIGHT": config.get("class_weight", 2.0),
            "MASK_WEIGHT": config.get("mask_weight", 5.0), "DICE_WEIGHT": config.get("dice_weight", 5.0),
            "TRAIN_NUM_POINTS": config.get("train_num_points", 12544),
            "OVERSAMPLE_RATIO": config.get("oversample_ratio", 3.0),
            "IMPORTANCE_SAMPLE_RATIO": config.get("importance_sample_ratio", 0.75),
            "SIZE_DIVISIBILITY": 32, "CRITERION": "mask2former", "TEST": test}
    else:
        dec = config.get("decoder_config") or {}
        if dec.get("model_type", "detr") != "detr":
            raise ValueError(f"config.json: decoder_config.model_type={dec.get('model_type')!r}; only 'detr' is supported")
        queries = dec.get("num_queries", config.get("num_queries", 100))
        model["SEM_SEG_HEAD"] = {
            "NAME": "MaskFormerHead", "PIXEL_DECODER_NAME": "BasePixelDecoder", "IN_FEATURES": in_features,
            "NUM_CLASSES": num_classes, "CONVS_DIM": config.get("fpn_feature_size", 256),
            "MASK_DIM": config.get("mask_feature_size", 256), "NORM": "GN", "COMMON_STRIDE": 4}
        model["MASK_FORMER"] = {
            "TRANSFORMER_DECODER_NAME": "StandardTransformerDecoder", "TRANSFORMER_IN_FEATURE": in_features[-1],
            "HIDDEN_DIM": dec.get("d_model", 256), "NUM_OBJECT_QUERIES": queries,
            "NHEADS": dec.get("decoder_attention_heads", 8), "DIM_FEEDFORWARD": dec.get("decoder_ffn_dim", 2048),
            "DEC_LAYERS": dec.get("decoder_layers", 6), "ENC_LAYERS": 0, "PRE_NORM": False,
            "ENFORCE_INPUT_PROJ": False, "DROPOUT": float(dec.get("dropout", 0.1)),
            "DEEP_SUPERVISION": bool(config.get("use_auxiliary_loss", True)),
            "NO_OBJECT_WEIGHT": config.get("no_object_weight", 0.1), "DICE_WEIGHT": config.get("dice_weight", 1.0),
            "MASK_WEIGHT": config.get("mask_weight", 20.0), "CRITERION": "maskformer", "SIZE_DIVISIBILITY": 32,
            "TEST": {**test, "PANOPTIC_REQUIRE_MASK_PROB": False}}
    return {"MODEL": model, "INPUT": {"FORMAT": "RGB"}}


def _label_maps(id2label: Mapping[int, str]) -> Dict[str, Any]:
    return {"id2label": {str(i): n for i, n in id2label.items()}, "label2id": {n: i for i, n in id2label.items()}}


def hf_config_from_d2(cfg, id2label: Optional[Mapping[int, str]] = None) -> Dict[str, Any]:
    """A HF ``config.json`` dict for the model ``cfg`` builds (Swin or ResNet backbones).

    Raises:
        ValueError: a model transformers cannot express (other heads / pixel decoders), named.
    """
    m = cfg.MODEL
    num_classes = m.SEM_SEG_HEAD.NUM_CLASSES
    labels = dict(id2label) if id2label else {i: f"LABEL_{i}" for i in range(num_classes)}
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} class names for MODEL.SEM_SEG_HEAD.NUM_CLASSES={num_classes}")
    if m.META_ARCHITECTURE != "MaskFormer" or m.SEM_SEG_HEAD.NAME != "MaskFormerHead":
        raise ValueError(f"MODEL.META_ARCHITECTURE={m.META_ARCHITECTURE!r} / SEM_SEG_HEAD.NAME="
                         f"{m.SEM_SEG_HEAD.NAME!r}: transformers has only MaskFormer / MaskFormerHead")
    decoder = m.SEM_SEG_HEAD.PIXEL_DECODER_NAME
    in_features = list(m.SEM_SEG_HEAD.IN_FEATURES)
    backbone: Dict[str, Any]
    if m.BACKBONE.NAME == "D2SwinTransformer":
        s = m.SWIN
        if s.APE:
            raise ValueError("MODEL.SWIN.APE=True has no transformers counterpart")
        backbone = {"model_type": "swin" if decoder == "MSDeformAttnPixelDecoder" else "maskformer-swin",
                    "embed_dim": s.EMBED_DIM, "depths": list(s.DEPTHS), "num_heads": list(s.NUM_HEADS),
                    "window_size": s.WINDOW_SIZE, "mlp_ratio": s.MLP_RATIO, "qkv_bias": s.QKV_BIAS,
                    "patch_size": s.PATCH_SIZE, "image_size": s.PRETRAIN_IMG_SIZE, "drop_path_rate": s.DROP_PATH_RATE,
                    "use_absolute_embeddings": False, "hidden_size": s.EMBED_DIM * 2 ** (len(s.DEPTHS) - 1),
                    "out_features": [_TO_STAGE[f] for f in in_features]}
    elif m.BACKBONE.NAME == "build_resnet_backbone":
        r = m.RESNETS
        depths = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}[r.DEPTH]
        basic = r.DEPTH in (18, 34)
        backbone = {"model_type": "resnet", "depths": depths, "layer_type": "basic" if basic else "bottleneck",
                    "embedding_size": 64, "hidden_sizes": [64, 128, 256, 512] if basic else [256, 512, 1024, 2048],
                    "downsample_in_bottleneck": bool(r.STRIDE_IN_1X1), "out_features": [_TO_STAGE[f] for f in in_features]}
    else:
        raise ValueError(f"MODEL.BACKBONE.NAME={m.BACKBONE.NAME!r}: only D2SwinTransformer and "
                         "build_resnet_backbone have transformers counterparts")
    mf = m.MASK_FORMER
    if decoder == "MSDeformAttnPixelDecoder":
        encoder_features = list(m.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES)
        if encoder_features != in_features[-3:]:
            raise ValueError(f"MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES={encoder_features}: "
                             f"transformers' pixel decoder encodes the last three of IN_FEATURES ({in_features[-3:]})")
        return {
            "architectures": ["Mask2FormerForUniversalSegmentation"], "model_type": "mask2former",
            "backbone_config": backbone, "feature_size": m.SEM_SEG_HEAD.CONVS_DIM,
            "mask_feature_size": m.SEM_SEG_HEAD.MASK_DIM, "hidden_dim": mf.HIDDEN_DIM,
            "encoder_feedforward_dim": m.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD,
            "activation_function": "relu",
            "encoder_layers": m.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS, "decoder_layers": mf.DEC_LAYERS,
            "num_attention_heads": mf.NHEADS, "dropout": mf.DROPOUT, "dim_feedforward": mf.DIM_FEEDFORWARD,
            "pre_norm": mf.PRE_NORM, "enforce_input_projection": mf.ENFORCE_INPUT_PROJ,
            "common_stride": m.SEM_SEG_HEAD.COMMON_STRIDE, "ignore_value": m.SEM_SEG_HEAD.IGNORE_VALUE,
            "num_queries": mf.NUM_OBJECT_QUERIES, "no_object_weight": mf.NO_OBJECT_WEIGHT,
            "class_weight": mf.CLASS_WEIGHT, "mask_weight": mf.MASK_WEIGHT, "dice_weight": mf.DICE_WEIGHT,
            "train_num_points": mf.TRAIN_NUM_POINTS, "oversample_ratio": mf.OVERSAMPLE_RATIO,
            "importance_sample_ratio": mf.IMPORTANCE_SAMPLE_RATIO, "use_auxiliary_loss": mf.DEEP_SUPERVISION,
            "feature_strides": _feature_strides(in_features),
            "use_pretrained_backbone": False, **_label_maps(labels)}
    if decoder == "BasePixelDecoder" and mf.TRANSFORMER_DECODER_NAME == "StandardTransformerDecoder":
        if mf.ENC_LAYERS:
            raise ValueError(f"MODEL.MASK_FORMER.ENC_LAYERS={mf.ENC_LAYERS}: transformers' MaskFormer has no "
                             "transformer encoder")
        return {
            "architectures": ["MaskFormerForInstanceSegmentation"], "model_type": "maskformer",
            "backbone_config": backbone, "fpn_feature_size": m.SEM_SEG_HEAD.CONVS_DIM,
            "mask_feature_size": m.SEM_SEG_HEAD.MASK_DIM, "num_queries": mf.NUM_OBJECT_QUERIES,
            "no_object_weight": mf.NO_OBJECT_WEIGHT, "dice_weight": mf.DICE_WEIGHT, "mask_weight": mf.MASK_WEIGHT,
            "cross_entropy_weight": 1.0, "use_auxiliary_loss": mf.DEEP_SUPERVISION,
            "decoder_config": {"model_type": "detr", "d_model": mf.HIDDEN_DIM, "decoder_attention_heads": mf.NHEADS,
                               "decoder_ffn_dim": mf.DIM_FEEDFORWARD, "decoder_layers": mf.DEC_LAYERS,
                               "encoder_layers": 0, "num_queries": mf.NUM_OBJECT_QUERIES, "dropout": mf.DROPOUT,
                               "activation_function": "relu"},
            **_label_maps(labels)}
    raise ValueError(f"MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME={decoder!r} with TRANSFORMER_DECODER_NAME="
                     f"{mf.TRANSFORMER_DECODER_NAME!r} has no transformers counterpart")

