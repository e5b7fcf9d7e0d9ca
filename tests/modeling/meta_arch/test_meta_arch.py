"""MaskFormer and SemanticSegmentor meta-architectures on tiny real models."""
from __future__ import annotations

import types
from typing import Dict, List

import pytest
import torch
from torch.nn import functional as F

from mask2former.config import get_cfg
from mask2former.modeling.build import build_model
from mask2former.modeling.meta_arch.mask_former import MaskFormer
from mask2former.modeling.meta_arch.semantic_segmentor import SemanticSegmentor
from mask2former.modeling.postprocessing import sem_seg_postprocess, semantic_inference
from mask2former.structures import BitMasks, Instances

NUM_CLASSES = 5
THING_IDS = {0, 1, 2}  # classes 3 and 4 are stuff


def tiny_cfg(**test_flags: bool):
    """A tiny Swin + MSDeformAttn + masked-attention decoder Mask2Former (random weights)."""
    cfg = get_cfg()
    cfg.merge_from_list([
        "MODEL.META_ARCHITECTURE", "MaskFormer",
        "MODEL.BACKBONE.NAME", "D2SwinTransformer",
        "MODEL.SWIN.EMBED_DIM", 16, "MODEL.SWIN.DEPTHS", [1, 1, 1, 1],
        "MODEL.SWIN.NUM_HEADS", [1, 1, 2, 2], "MODEL.SWIN.WINDOW_SIZE", 4,
        "MODEL.SWIN.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
        "MODEL.SEM_SEG_HEAD.NAME", "MaskFormerHead",
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "MSDeformAttnPixelDecoder",
        "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res2", "res3", "res4", "res5"],
        "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES", ["res3", "res4", "res5"],
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", NUM_CLASSES,
        "MODEL.SEM_SEG_HEAD.CONVS_DIM", 32, "MODEL.SEM_SEG_HEAD.MASK_DIM", 32,
        "MODEL.SEM_SEG_HEAD.NORM", "GN", "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 1,
        "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME", "MultiScaleMaskedTransformerDecoder",
        "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE", "multi_scale_pixel_decoder",
        "MODEL.MASK_FORMER.HIDDEN_DIM", 32, "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 6,
        "MODEL.MASK_FORMER.NHEADS", 2, "MODEL.MASK_FORMER.DIM_FEEDFORWARD", 64,
        "MODEL.MASK_FORMER.DEC_LAYERS", 3, "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 64,
        "MODEL.MASK_FORMER.SIZE_DIVISIBILITY", 32, "MODEL.MASK_FORMER.NO_OBJECT_WEIGHT", 0.25,
        "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", 0.0,
        "TEST.DETECTIONS_PER_IMAGE", 4, "MODEL.DEVICE", "cpu",
    ])
    for name, value in test_flags.items():
        cfg.MODEL.MASK_FORMER.TEST[name.upper()] = value
    return cfg


def tiny_model(metadata=None, **test_flags: bool) -> MaskFormer:
    torch.manual_seed(0)
    model = build_model(tiny_cfg(**test_flags))
    if metadata is not None:
        model.metadata = metadata
    return model.eval()


def thing_metadata():
    return types.SimpleNamespace(name="tiny", thing_dataset_id_to_contiguous_id={10 + i: i for i in THING_IDS})


def odd_batch() -> List[Dict]:
    """Two differently sized images with odd sizes and output sizes different from the input."""
    g = torch.Generator().manual_seed(1)
    return [
        {"image": torch.rand(3, 37, 53, generator=g) * 255, "height": 45, "width": 61},
        {"image": torch.rand(3, 64, 29, generator=g) * 255, "height": 64, "width": 29},
    ]


def capture_head(model) -> Dict:
    captured: Dict = {}
    model.sem_seg_head.register_forward_hook(lambda m, args, out: captured.update(head=out))
    model.backbone.register_forward_hook(lambda m, args, out: captured.update(images=args[0]))
    return captured


def test_state_dict_has_criterion_weights_but_no_pixel_stats():
    model = tiny_model()
    state = model.state_dict()
    assert "pixel_mean" not in state and "pixel_std" not in state
    empty_weight = state["criterion.empty_weight"]
    assert empty_weight.shape == (NUM_CLASSES + 1,)
    assert empty_weight[-1].item() == pytest.approx(0.25) and (empty_weight[:-1] == 1).all()
    assert model.pixel_mean.shape == (3, 1, 1)
    assert model.size_divisibility == 32 and model.sem_seg_head.predictor.num_queries == 6
    assert model.test_topk_per_image == 4


def test_semantic_inference_follows_the_official_order_of_operations():
    model = tiny_model(semantic_on=True)
    assert not model.sem_seg_postprocess_before_inference
    captured = capture_head(model)
    batch = odd_batch()
    with torch.no_grad():
        results = model(batch)
    images = captured["images"]
    assert images.shape == (2, 3, 64, 64)  # both padded to the common size, a multiple of 32
    # official order: upsample the whole batch to the padded size, infer, crop, resize
    masks = F.interpolate(captured["head"]["pred_masks"], size=(64, 64), mode="bilinear", align_corners=False)
    for result, inputs, cls, mask in zip(results, batch, captured["head"]["pred_logits"], masks):
        expected = semantic_inference(cls, mask)  # (K, 64, 64)
        expected = sem_seg_postprocess(expected, inputs["image"].shape[-2:], inputs["height"], inputs["width"])
        assert set(result) == {"sem_seg"}
        assert result["sem_seg"].shape == (NUM_CLASSES, inputs["height"], inputs["width"])
        torch.testing.assert_close(result["sem_seg"], expected, atol=1e-6, rtol=1e-6)


def test_pixel_normalisation_and_zero_padding():
    model = tiny_model()
    captured = capture_head(model)
    batch = odd_batch()
    with torch.no_grad():
        model(batch)
    images = captured["images"]
    expected0 = (batch[0]["image"] - model.pixel_mean) / model.pixel_std
    torch.testing.assert_close(images[0, :, :37, :53], expected0)
    assert images[0, :, 37:].abs().sum() == 0 and images[1, :, :, 29:].abs().sum() == 0


def test_all_three_tasks_on_a_batch_of_odd_sizes():
    model = tiny_model(thing_metadata(), semantic_on=True, panoptic_on=True, instance_on=True)
    assert model.sem_seg_postprocess_before_inference
    with torch.no_grad():
        results = model(odd_batch())
    for result, inputs in zip(results, odd_batch()):
        h, w = inputs["height"], inputs["width"]
        assert result["sem_seg"].shape == (NUM_CLASSES, h, w)
        panoptic_seg, segments_info = result["panoptic_seg"]
        assert panoptic_seg.shape == (h, w) and panoptic_seg.dtype == torch.int32
        assert sorted(set(panoptic_seg.unique().tolist()) - {0}) == [s["id"] for s in segments_info]
        for s in segments_info:
            assert s["isthing"] == (s["category_id"] in THING_IDS)
        instances = result["instances"]
        assert instances.image_size == (h, w) and len(instances) <= 4
        assert instances.pred_masks.shape == (len(instances), h, w)
        assert set(instances.pred_classes.tolist()) <= THING_IDS  # stuff dropped: panoptic is on
        assert ((instances.scores >= 0) & (instances.scores <= 1)).all()


def test_instance_only_keeps_every_class_and_height_width_default_to_image_size():
    model = tiny_model(semantic_on=False, instance_on=True)
    batch = [{"image": torch.rand(3, 40, 50) * 255}]
    with torch.no_grad():
        (result,) = model(batch)
    assert set(result) == {"instances"}
    assert result["instances"].image_size == (40, 50) and len(result["instances"]) == 4


def test_panoptic_without_thing_metadata_names_the_problem():
    model = tiny_model(types.SimpleNamespace(name="plain"), panoptic_on=True)
    with pytest.raises(ValueError, match="thing_dataset_id_to_contiguous_id"), torch.no_grad():
        model(odd_batch()[:1])


def test_invalid_inference_flags():
    model = tiny_model()
    kwargs = dict(
        backbone=model.backbone, sem_seg_head=model.sem_seg_head, criterion=model.criterion,
        object_mask_threshold=0.8, overlap_threshold=0.8, metadata=None,
        size_divisibility=-1, pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3,
    )
    with pytest.raises(ValueError, match="SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE"):
        MaskFormer(sem_seg_postprocess_before_inference=False, semantic_on=False, **kwargs)
    with pytest.raises(ValueError, match="panoptic / instance"):
        MaskFormer(sem_seg_postprocess_before_inference=False, instance_on=True, **kwargs)
    by_hand = MaskFormer(sem_seg_postprocess_before_inference=True, **kwargs)
    assert by_hand.size_divisibility == model.backbone.size_divisibility  # -1: the backbone's


def gt_instances(h: int, w: int, classes: List[int], seed: int) -> Instances:
    g = torch.Generator().manual_seed(seed)
    inst = Instances((h, w))
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    inst.gt_masks = BitMasks(torch.rand(len(classes), h, w, generator=g) > 0.5).tensor
    return inst


def test_training_returns_weighted_losses_on_padded_targets():
    model = tiny_model().train()
    batch = odd_batch()
    batch[0]["instances"] = gt_instances(37, 53, [0, 3], seed=2)
    batch[1]["instances"] = gt_instances(64, 29, [4], seed=3)
    targets_seen = {}
    criterion_forward = model.criterion.forward

    def recording(outputs, targets):
        targets_seen["targets"] = targets
        raw = criterion_forward(outputs, targets)
        targets_seen["raw"] = {k: v.detach().clone() for k, v in raw.items()}
        return raw

    model.criterion.forward = recording
    torch.manual_seed(0)
    losses = model(batch)
    weights = model.criterion.weight_dict
    assert set(losses) == set(weights)  # 3 losses x (final + 2 aux)
    assert len(losses) == 9
    for name, value in losses.items():
        torch.testing.assert_close(value.detach(), targets_seen["raw"][name] * weights[name])
    sum(losses.values()).backward()
    assert model.sem_seg_head.predictor.class_embed.weight.grad is not None

    targets = targets_seen["targets"]
    assert targets[0]["masks"].shape == (2, 64, 64) and targets[1]["masks"].shape == (1, 64, 64)
    assert torch.equal(targets[0]["masks"][:, :37, :53], batch[0]["instances"].gt_masks)
    assert not targets[0]["masks"][:, 37:].any() and not targets[1]["masks"][:, :, 29:].any()
    assert targets[0]["labels"].tolist() == [0, 3]


def test_semantic_segmentor_per_pixel_baseline():
    cfg = tiny_cfg()
    cfg.merge_from_list([
        "MODEL.META_ARCHITECTURE", "SemanticSegmentor",
        "MODEL.SEM_SEG_HEAD.NAME", "PerPixelBaselineHead",
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "BasePixelDecoder",
        "MODEL.SEM_SEG_HEAD.IGNORE_VALUE", 255,
    ])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert isinstance(model, SemanticSegmentor)
    assert "pixel_mean" not in model.state_dict()
    batch = odd_batch()
    with torch.no_grad():
        results = model(batch)
    for result, inputs in zip(results, batch):
        assert result["sem_seg"].shape == (NUM_CLASSES, inputs["height"], inputs["width"])

    model.train()
    batch[0]["sem_seg"] = torch.randint(0, NUM_CLASSES, (37, 53))
    batch[1]["sem_seg"] = torch.full((64, 29), 255, dtype=torch.int64)  # all ignored
    seen = {}
    model.sem_seg_head.register_forward_pre_hook(lambda m, args: seen.update(targets=args[1]))
    losses = model(batch)
    assert set(losses) == {"loss_sem_seg"} and torch.isfinite(losses["loss_sem_seg"])
    targets = seen["targets"]
    assert targets.shape == (2, 64, 64)  # padded with the ignore value
    assert (targets[0, 37:] == 255).all() and torch.equal(targets[0, :37, :53], batch[0]["sem_seg"])
