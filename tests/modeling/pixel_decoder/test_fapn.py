"""FaPN pixel decoders: start-up equals bilinear FPN, gradients reach the offsets, official
key names, shapes on every backbone, and use inside MaskFormer / Mask2Former heads."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch
import torch.nn.functional as F

import mask2former.modeling  # noqa: F401  (registers heads, transformer decoders)
from mask2former.config import get_cfg
from mask2former.layers import ShapeSpec
from mask2former.modeling.backbone.resnet import build_resnet
from mask2former.modeling.backbone.swin import D2SwinTransformer
from mask2former.modeling.build import PIXEL_DECODER_REGISTRY, build_pixel_decoder, build_sem_seg_head
from mask2former.modeling.pixel_decoder.fapn import (
    BasePixelFANDecoder, FaPNPixelDecoder, FeatureAlign, FeatureSelectionModule, MSFaPNPixelDecoder,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
CONV_DIM, MASK_DIM = 32, 16
IMAGE_HW = (64, 96)
DECODERS = [FaPNPixelDecoder, MSFaPNPixelDecoder]


def _shapes(channels=(16, 24, 40, 64)) -> Dict[str, ShapeSpec]:
    return {f"res{i + 2}": ShapeSpec(channels=c, stride=4 * 2 ** i) for i, c in enumerate(channels)}


def _features(shapes: Dict[str, ShapeSpec], batch: int = 2, relu: bool = False) -> Dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    H, W = IMAGE_HW
    out = {k: torch.randn(batch, s.channels, H // s.stride, W // s.stride, generator=gen)
           for k, s in shapes.items()}
    return {k: v.relu() for k, v in out.items()} if relu else out


# ----------------------------------------------------------------------------- alignment module
def test_feature_align_at_zero_offsets_is_bilinear_upsampling():
    torch.manual_seed(0)
    fam = FeatureAlign(CONV_DIM, norm=torch.nn.GroupNorm(8, CONV_DIM))
    with torch.no_grad():  # any offset-branch input: the offsets start at exactly 0
        fam.offset.norm.weight.normal_()
        fam.offset.norm.bias.normal_()
    lateral = torch.randn(2, CONV_DIM, 16, 24)
    coarse = torch.randn(2, CONV_DIM, 8, 12)  # signed on purpose
    upsampled = F.interpolate(coarse, size=(16, 24), mode="bilinear", align_corners=False)

    offset, mask = fam.dcpack_L2.offset_and_mask(fam.offset(torch.cat([lateral, 2 * upsampled], 1)))
    assert offset.shape == (2, 2 * 8 * 9, 16, 24) and torch.count_nonzero(offset) == 0
    torch.testing.assert_close(fam.align(upsampled, lateral), upsampled, atol=1e-6, rtol=0)
    torch.testing.assert_close(fam(lateral, coarse), upsampled.relu() + lateral, atol=1e-6, rtol=0)
    # same-size inputs skip the upsampling
    torch.testing.assert_close(fam(lateral, lateral), lateral.relu() + lateral, atol=1e-6, rtol=0)


@pytest.mark.parametrize("decoder_cls", DECODERS)
def test_decoder_at_start_is_fpn_with_bilinear_upsampling(decoder_cls):
    """At init every FAM is bilinear upsampling (+ lateral): the decoder is a bilinear FPN."""
    torch.manual_seed(0)
    shapes = _shapes()
    decoder = decoder_cls(shapes, conv_dim=CONV_DIM, mask_dim=MASK_DIM, norm="GN").eval()
    features = _features(shapes)
    with torch.no_grad():
        mask_features, _, multi_scale = decoder.forward_features(features)

        y = decoder.layer_4(features["res5"])
        expected: List[torch.Tensor] = [y]
        for i in (3, 2, 1):
            lateral = getattr(decoder, f"adapter_{i}")(features[f"res{i + 1}"])
            up = F.interpolate(y, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            y = getattr(decoder, f"layer_{i}")(up + lateral)
            expected.append(y)
    for got, ref in zip(multi_scale, expected[:3]):
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(mask_features, decoder.mask_features(expected[-1]), atol=1e-6, rtol=0)


def test_gradients_reach_the_offset_convs():
    torch.manual_seed(0)
    shapes = _shapes()
    decoder = FaPNPixelDecoder(shapes, conv_dim=CONV_DIM, mask_dim=MASK_DIM, norm="GN")
    features = _features(shapes)
    optimizer = torch.optim.SGD(decoder.parameters(), lr=0.1)

    def step() -> None:
        optimizer.zero_grad()
        mask_features, _, multi_scale = decoder.forward_features(features)
        upstream = torch.randn_like(mask_features)
        (mask_features * upstream).sum().backward()

    step()
    for i in (1, 2, 3):
        align = getattr(decoder, f"align_{i}")
        grad = align.dcpack_L2.conv_offset_mask.weight.grad
        assert grad is not None and grad[:2 * 8 * 9].abs().sum() > 0  # the offset channels
        # the 1x1 offset conv feeds conv_offset_mask, which starts at 0: no gradient yet ...
        assert align.offset.weight.grad.abs().sum() == 0
    optimizer.step()
    step()
    for i in (1, 2, 3):
        align = getattr(decoder, f"align_{i}")
        assert align.offset.weight.grad.abs().sum() > 0  # ... but from the second step on
        offset, _ = align.dcpack_L2.offset_and_mask(torch.randn(1, CONV_DIM, 4, 4))
        assert offset.abs().max() > 0  # the alignment is no longer the identity


# ----------------------------------------------------------------------------- official names
def _official_keys(num_levels: int = 4) -> List[str]:
    """Keys of the published MaskFormer + FaPN ``BasePixelFANDecoder`` (NORM: GN)."""
    keys = []
    for i in range(1, num_levels):
        keys += [f"adapter_{i}.weight", f"adapter_{i}.norm.weight", f"adapter_{i}.norm.bias",
                 f"align_{i}.offset.weight", f"align_{i}.offset.norm.weight", f"align_{i}.offset.norm.bias",
                 f"align_{i}.dcpack_L2.weight", f"align_{i}.dcpack_L2.bias",
                 f"align_{i}.dcpack_L2.conv_offset_mask.weight", f"align_{i}.dcpack_L2.conv_offset_mask.bias",
                 f"layer_{i}.weight", f"layer_{i}.norm.weight", f"layer_{i}.norm.bias"]
    keys += [f"layer_{num_levels}.weight", f"layer_{num_levels}.norm.weight",
             f"layer_{num_levels}.norm.bias", "mask_features.weight", "mask_features.bias"]
    return keys


def test_fapn_decoder_has_the_official_state_dict():
    r50 = _shapes((256, 512, 1024, 2048))
    decoder = BasePixelFANDecoder(r50, conv_dim=256, mask_dim=256, norm="GN")
    state = decoder.state_dict()
    assert list(state) == _official_keys()
    assert state["adapter_2.weight"].shape == (256, 512, 1, 1)
    assert state["align_1.offset.weight"].shape == (256, 512, 1, 1)
    assert state["align_1.dcpack_L2.weight"].shape == (256, 256, 3, 3)
    assert state["align_1.dcpack_L2.conv_offset_mask.weight"].shape == (3 * 8 * 9, 256, 3, 3)
    assert state["layer_4.weight"].shape == (256, 2048, 3, 3)
    assert state["mask_features.weight"].shape == (256, 256, 3, 3)
    # as the reference code, the FAM's offset conv shares the output conv's norm
    assert decoder.align_1.offset.norm is decoder.layer_1.norm

    # a checkpoint with those keys (identical values under both shared-norm keys) loads strictly
    gen = torch.Generator().manual_seed(1)
    ckpt = {k: torch.randn(v.shape, generator=gen) for k, v in state.items()}
    for i in (1, 2, 3):
        for p in ("weight", "bias"):
            ckpt[f"align_{i}.offset.norm.{p}"] = ckpt[f"layer_{i}.norm.{p}"]
    fresh = FaPNPixelDecoder(r50, conv_dim=256, mask_dim=256, norm="GN")
    fresh.load_state_dict(ckpt, strict=True)
    assert torch.equal(fresh.align_3.dcpack_L2.conv_offset_mask.bias,
                       ckpt["align_3.dcpack_L2.conv_offset_mask.bias"])


def test_ms_fapn_uses_feature_selection_laterals():
    decoder = MSFaPNPixelDecoder(_shapes(), conv_dim=CONV_DIM, mask_dim=MASK_DIM, norm="GN")
    assert isinstance(decoder.adapter_1, FeatureSelectionModule)
    assert set(decoder.adapter_1.state_dict()) == {"conv_atten.weight", "conv.weight", "conv.norm.weight",
                                                   "conv.norm.bias"}
    assert decoder.mask_features.kernel_size == (1, 1)


def test_feature_selection_module_math():
    torch.manual_seed(0)
    fsm = FeatureSelectionModule(8, 4, norm="")
    x = torch.randn(2, 8, 5, 6)
    attention = torch.sigmoid(F.conv2d(x.mean((2, 3), keepdim=True), fsm.conv_atten.weight))
    expected = F.conv2d(x * (1 + attention), fsm.conv.weight, fsm.conv.bias)
    torch.testing.assert_close(fsm(x), expected, atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------- config / errors
@pytest.mark.parametrize("name, cls", [("FaPNPixelDecoder", FaPNPixelDecoder),
                                       ("BasePixelFANDecoder", FaPNPixelDecoder),
                                       ("MSFaPNPixelDecoder", MSFaPNPixelDecoder)])
def test_built_from_config(name, cls):
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = name
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 64
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 48
    cfg.MODEL.SEM_SEG_HEAD.NORM = ""
    decoder = build_pixel_decoder(cfg, _shapes())
    assert isinstance(decoder, cls) and PIXEL_DECODER_REGISTRY.get(name) is type(decoder)
    assert decoder.in_features == ["res3", "res4", "res5"]
    assert decoder.mask_features.out_channels == 48
    assert decoder.layer_1.norm is None and decoder.layer_1.bias is not None  # NORM "" -> bias
    mask_features, _, multi_scale = decoder.forward_features(_features(_shapes(), batch=1))
    assert mask_features.shape == (1, 48, 8, 12)
    assert [tuple(f.shape) for f in multi_scale] == [(1, 64, 2, 3), (1, 64, 4, 6), (1, 64, 8, 12)]


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="CONVS_DIM.*divisible by deformable_groups=8"):
        FaPNPixelDecoder(_shapes(), conv_dim=20, mask_dim=MASK_DIM)
    with pytest.raises(ValueError, match="at least 3 input features"):
        MSFaPNPixelDecoder({k: v for k, v in _shapes().items() if k in ("res4", "res5")},
                           conv_dim=CONV_DIM, mask_dim=MASK_DIM)
    with pytest.raises(ValueError, match="IN_FEATURES"):
        FaPNPixelDecoder({}, conv_dim=CONV_DIM, mask_dim=MASK_DIM)


# ----------------------------------------------------------------------------- every backbone
def _timm_backbone(name: str, out_indices):
    pytest.importorskip("timm")
    from mask2former.modeling.backbone.timm_backbone import TimmBackbone

    return TimmBackbone(model_name=name, out_indices=out_indices)


BACKBONES = {
    "resnet18": lambda: build_resnet(depth=18, norm="BN"),
    "swin_tiny": lambda: D2SwinTransformer(embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8],
                                           window_size=7, drop_path_rate=0.0),
    "timm_resnet18": lambda: _timm_backbone("resnet18", (1, 2, 3, 4)),
    "timm_convnext_atto": lambda: _timm_backbone("convnext_atto", (0, 1, 2, 3)),
}
_FEATURE_CACHE: Dict[str, Tuple[Dict[str, ShapeSpec], Dict[str, torch.Tensor]]] = {}


def _backbone_features(name: str) -> Tuple[Dict[str, ShapeSpec], Dict[str, torch.Tensor]]:
    """(output_shape, features of a (1, 3, 64, 96) image), the strides checked against the maps."""
    if name not in _FEATURE_CACHE:
        torch.manual_seed(0)
        backbone = BACKBONES[name]().eval()
        with torch.no_grad():
            features = backbone(torch.randn(1, 3, *IMAGE_HW))
        shapes = backbone.output_shape()
        assert sorted(features) == sorted(shapes) == ["res2", "res3", "res4", "res5"]
        for k, s in shapes.items():
            assert features[k].shape[1:] == (s.channels, IMAGE_HW[0] // s.stride, IMAGE_HW[1] // s.stride), k
        assert [shapes[f"res{i}"].stride for i in range(2, 6)] == [4, 8, 16, 32]
        _FEATURE_CACHE[name] = (shapes, features)
    return _FEATURE_CACHE[name]


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("decoder_cls", DECODERS)
def test_fapn_on_every_backbone(backbone, decoder_cls):
    shapes, features = _backbone_features(backbone)
    torch.manual_seed(0)
    decoder = decoder_cls(shapes, conv_dim=CONV_DIM, mask_dim=MASK_DIM, norm="GN").eval()
    with torch.no_grad():
        mask_features, encoder_features, multi_scale = decoder.forward_features(features)
    H, W = IMAGE_HW
    assert mask_features.shape == (1, MASK_DIM, H // 4, W // 4)
    assert [tuple(f.shape) for f in multi_scale] == [(1, CONV_DIM, H // s, W // s) for s in (32, 16, 8)]
    if decoder_cls is MSFaPNPixelDecoder:
        assert encoder_features is multi_scale[0]
    else:
        assert encoder_features is None
    assert torch.isfinite(mask_features).all()


# ----------------------------------------------------------------------------- inside the heads
def _tiny_head_cfg(config_file: str):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO_ROOT / config_file))
    head, mf = cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.MASK_FORMER
    head.CONVS_DIM, head.MASK_DIM, head.NUM_CLASSES = CONV_DIM, MASK_DIM, 5
    mf.HIDDEN_DIM, mf.NHEADS, mf.NUM_OBJECT_QUERIES, mf.DIM_FEEDFORWARD, mf.DEC_LAYERS = 32, 2, 6, 64, 3
    return cfg


@pytest.mark.parametrize("config_file, decoder_cls", [
    ("configs/ade20k/semantic-segmentation/maskformer2_R50_bs16_160k_fapn.yaml", MSFaPNPixelDecoder),
    ("configs/ade20k/semantic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k_res640_fapn.yaml",
     MSFaPNPixelDecoder),
    ("configs/maskformer/ade20k-150/maskformer_R50_bs16_160k_fapn.yaml", FaPNPixelDecoder),
])
def test_configs_build_a_working_head(config_file, decoder_cls):
    cfg = _tiny_head_cfg(config_file)
    shapes, features = _backbone_features("resnet18")
    head = build_sem_seg_head(cfg, shapes).eval()
    assert type(head.pixel_decoder) is decoder_cls
    with torch.no_grad():
        out = head(features)
    H, W = IMAGE_HW
    assert out["pred_logits"].shape == (1, 6, 5 + 1)
    assert out["pred_masks"].shape == (1, 6, H // 4, W // 4)


# ----------------------------------------------------------------------------- training
@pytest.mark.slow
def test_short_shapes_training_with_fapn_lowers_the_loss(tmp_path):
    from mask2former.data import DatasetCatalog, MetadataCatalog
    from mask2former.data.datasets.coco import load_sem_seg
    from mask2former.data.datasets.shapes import generate_shapes_dataset, get_shapes_metadata
    from mask2former.engine import DefaultTrainer

    root = tmp_path / "shapes"
    generate_shapes_dataset(str(root), splits={"train": 16}, image_size=64)
    name = f"fapn_test_shapes_sem_seg_{tmp_path.name}"
    images, masks = str(root / "train" / "images"), str(root / "train" / "semantic")
    DatasetCatalog.register(name, lambda: load_sem_seg(masks, images, gt_ext="png", image_ext="jpg"))
    meta = get_shapes_metadata()
    MetadataCatalog.get(name).set(image_root=images, sem_seg_root=masks, evaluator_type="sem_seg",
                                  ignore_label=255, stuff_classes=meta["stuff_classes"])

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO_ROOT / "configs/shapes/Base-Shapes.yaml"))
    cfg.merge_from_list([
        "INPUT.DATASET_MAPPER_NAME", "mask_former_semantic",
        "MODEL.MASK_FORMER.TEST.INSTANCE_ON", False, "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", False,
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "MSFaPNPixelDecoder",
        "MODEL.SEM_SEG_HEAD.CONVS_DIM", 32, "MODEL.SEM_SEG_HEAD.MASK_DIM", 32,
        "MODEL.MASK_FORMER.HIDDEN_DIM", 32, "MODEL.MASK_FORMER.DIM_FEEDFORWARD", 64,
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 8, "MODEL.MASK_FORMER.DEC_LAYERS", 3,
        "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 256,
        "DATASETS.TRAIN", (name,), "DATASETS.TEST", (),
        "INPUT.MIN_SIZE_TRAIN", (64,), "INPUT.MAX_SIZE_TRAIN", 64,
        "SOLVER.IMS_PER_BATCH", 4, "SOLVER.MAX_ITER", 25, "SOLVER.BASE_LR", 0.001,
        "SOLVER.CHECKPOINT_PERIOD", 1000, "TEST.EVAL_PERIOD", 0,
        "DATALOADER.NUM_WORKERS", 0, "SEED", 0, "OUTPUT_DIR", str(tmp_path / "out"),
    ])
    trainer = DefaultTrainer(cfg)
    assert isinstance(trainer.model.sem_seg_head.pixel_decoder, MSFaPNPixelDecoder)
    trainer.resume_or_load(resume=False)
    trainer.train()

    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    assert len(losses) == 25 and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.9 * first, (first, last)  # observed: about 0.75
