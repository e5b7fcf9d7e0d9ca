import numpy as np
import pytest
import torch

from mask2former.config import get_cfg
from mask2former.data import (
    MAPPER_BY_NAME,
    COCOInstanceNewBaselineDatasetMapper,
    COCOPanopticNewBaselineDatasetMapper,
    DatasetCatalog,
    DatasetMapper,
    MaskFormerInstanceDatasetMapper,
    MaskFormerPanopticDatasetMapper,
    MaskFormerSemanticDatasetMapper,
    MetadataCatalog,
)
from mask2former.data import transforms as T
from mask2former.data.datasets import load_coco_json, load_coco_panoptic_json, load_sem_seg
from mask2former.data.datasets.shapes import get_shapes_metadata


def _panoptic_dicts(root):
    return load_coco_panoptic_json(
        str(root / "annotations/panoptic_train.json"), str(root / "train/images"), str(root / "train/panoptic"),
        get_shapes_metadata(), str(root / "train/semantic"),
    )


def _check_common(out, size):
    assert out["image"].dtype == torch.uint8 and tuple(out["image"].shape) == (3, size, size)
    inst = out["instances"]
    n = len(inst.gt_classes)
    assert inst.gt_classes.dtype == torch.int64
    assert tuple(inst.gt_masks.shape) == (n, size, size)
    return inst


def test_semantic_mapper_crop_and_pad(tiny_shapes):
    d = load_sem_seg(str(tiny_shapes / "train/semantic"), str(tiny_shapes / "train/images"))[0]
    mapper = MaskFormerSemanticDatasetMapper(
        is_train=True,
        augmentations=[T.ResizeShortestEdge(48, 1000, "choice"), T.RandomCrop_CategoryAreaConstraint("absolute", (32, 32), 1.0, 255), T.RandomFlip()],
        image_format="RGB",
        ignore_label=255,
        size_divisibility=40,
    )
    out = mapper(d)
    inst = _check_common(out, 40)
    assert out["sem_seg"].dtype == torch.int64 and tuple(out["sem_seg"].shape) == (40, 40)
    assert (out["sem_seg"][32:, :] == 255).all() and (out["image"][:, :, 32:] == 128).all()
    # one mask per class present, matching sem_seg exactly
    present = sorted(set(out["sem_seg"].unique().tolist()) - {255})
    assert inst.gt_classes.tolist() == present
    for c, m in zip(inst.gt_classes, inst.gt_masks):
        assert torch.equal(m, out["sem_seg"] == c)
    assert "sem_seg_file_name" not in out and "sem_seg_file_name" in d  # input not modified


def test_panoptic_mapper(tiny_shapes):
    d = _panoptic_dicts(tiny_shapes)[0]
    mapper = MaskFormerPanopticDatasetMapper(
        is_train=True, augmentations=[T.RandomFlip(prob=1.0)], image_format="RGB", ignore_label=255, size_divisibility=-1
    )
    out = mapper(d)
    inst = _check_common(out, 64)
    assert inst.gt_classes.tolist() == [s["category_id"] for s in d["segments_info"]]
    assert inst.gt_masks.dtype == torch.bool and inst.gt_masks.sum(0).max() == 1  # disjoint
    # thing masks agree with the semantic map
    for c, m in zip(inst.gt_classes, inst.gt_masks):
        assert (out["sem_seg"][m] == c).all()


def test_panoptic_mapper_recolors_things_only(tiny_shapes):
    d = _panoptic_dicts(tiny_shapes)[0]
    kwargs = dict(is_train=True, augmentations=[], image_format="RGB", ignore_label=255, size_divisibility=-1)
    plain = MaskFormerPanopticDatasetMapper(**kwargs)(d)
    np.random.seed(0)
    out = MaskFormerPanopticDatasetMapper(**kwargs, thing_recolor_prob=1.0)(d)
    assert torch.equal(out["instances"].gt_masks, plain["instances"].gt_masks)
    things = torch.zeros(plain["image"].shape[1:], dtype=torch.bool)
    for s, m in zip(d["segments_info"], plain["instances"].gt_masks):
        if s["isthing"]:
            things |= m
            assert not torch.equal(out["image"][:, m], plain["image"][:, m])
    assert things.any() and torch.equal(out["image"][:, ~things], plain["image"][:, ~things])
    del d["segments_info"][0]["isthing"]
    with pytest.raises(ValueError, match="isthing.*000000"):
        MaskFormerPanopticDatasetMapper(**kwargs, thing_recolor_prob=1.0)(d)


def test_instance_mapper(tiny_shapes):
    dicts = load_coco_json(str(tiny_shapes / "annotations/instances_train.json"), str(tiny_shapes / "train/images"), "_t_shapes_inst")
    MetadataCatalog.remove("_t_shapes_inst")
    mapper = MaskFormerInstanceDatasetMapper(
        is_train=True, augmentations=[T.Resize((32, 32))], image_format="BGR", size_divisibility=48
    )
    out = mapper(dicts[0])
    inst = _check_common(out, 48)
    assert inst.gt_classes.tolist() == [a["category_id"] for a in dicts[0]["annotations"]]
    assert inst.gt_masks[:, 32:, :].sum() == 0 and inst.gt_masks.any(dim=(1, 2)).all()


def test_lsj_panoptic_mapper(tiny_shapes):
    d = _panoptic_dicts(tiny_shapes)[1]
    mapper = COCOPanopticNewBaselineDatasetMapper(
        is_train=True, tfm_gens=[T.ResizeScale(0.5, 1.5, 96, 96), T.FixedSizeCrop((96, 96))], image_format="RGB"
    )
    np.random.seed(0)
    out = mapper(d)
    inst = _check_common(out, 96)
    assert inst.gt_masks.dtype == torch.bool
    assert tuple(inst.gt_boxes.tensor.shape) == (len(inst.gt_classes), 4)
    for box, m in zip(inst.gt_boxes.tensor, inst.gt_masks):
        if m.any():
            ys, xs = torch.nonzero(m, as_tuple=True)
            assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
    test_out = COCOPanopticNewBaselineDatasetMapper(is_train=False, tfm_gens=[], image_format="RGB")(d)
    assert "instances" not in test_out and tuple(test_out["image"].shape) == (3, 64, 64)


def test_lsj_instance_mapper(tiny_shapes):
    dicts = load_coco_json(str(tiny_shapes / "annotations/instances_train.json"), str(tiny_shapes / "train/images"), "_t_shapes_inst2")
    MetadataCatalog.remove("_t_shapes_inst2")
    mapper = COCOInstanceNewBaselineDatasetMapper(
        is_train=True, tfm_gens=[T.RandomFlip(), T.ResizeScale(0.5, 1.5, 80, 80), T.FixedSizeCrop((80, 80))], image_format="RGB"
    )
    np.random.seed(1)
    out = mapper(dicts[0])
    inst = _check_common(out, 80)
    assert out["padding_mask"].shape == (80, 80) and out["padding_mask"].dtype == torch.bool
    assert len(inst.gt_boxes) == len(inst.gt_classes) and inst.gt_masks.any(dim=(1, 2)).all()


def test_dataset_mapper_inference(tiny_shapes):
    d = {"file_name": str(tiny_shapes / "val/images/000000.jpg"), "image_id": 1}
    mapper = DatasetMapper(is_train=False, augmentations=[T.ResizeShortestEdge(96, 200, "choice")], image_format="BGR")
    out = mapper(d)
    assert tuple(out["image"].shape) == (3, 96, 96) and (out["height"], out["width"]) == (64, 64)


def test_mappers_from_config(tiny_shapes):
    DatasetCatalog.register("_t_cfg_sem", lambda: [])
    MetadataCatalog.get("_t_cfg_sem").set(ignore_label=255)
    try:
        cfg = get_cfg()
        cfg.DATASETS.TRAIN = ("_t_cfg_sem",)
        cfg.INPUT.CROP.ENABLED = True
        cfg.INPUT.CROP.TYPE = "absolute"
        cfg.INPUT.CROP.SIZE = (32, 32)
        cfg.INPUT.COLOR_AUG_SSD = True
        cfg.INPUT.SIZE_DIVISIBILITY = 32
        sem = MAPPER_BY_NAME["mask_former_semantic"](cfg, True)
        assert [type(a).__name__ for a in sem.tfm_gens] == [
            "ResizeShortestEdge", "RandomCrop_CategoryAreaConstraint", "ColorAugSSDTransform", "RandomFlip",
        ]
        assert sem.ignore_label == 255 and sem.size_divisibility == 32
        assert MAPPER_BY_NAME["mask_former_panoptic"](cfg, True).ignore_label == 255
        assert type(MAPPER_BY_NAME["mask_former_instance"](cfg, True).tfm_gens[1]).__name__ == "RandomCrop"
        cfg.INPUT.THING_RECOLOR_PROB = 0.5
        assert MAPPER_BY_NAME["mask_former_panoptic"](cfg, True).thing_recolor_prob == 0.5
        assert MAPPER_BY_NAME["mask_former_instance"](cfg, True).thing_recolor_prob == 0.5
        cfg.INPUT.IMAGE_SIZE = 96
        lsj = MAPPER_BY_NAME["coco_panoptic_lsj"](cfg, True)
        assert [type(a).__name__ for a in lsj.tfm_gens] == ["RandomFlip", "ResizeScale", "FixedSizeCrop"]
        assert lsj.tfm_gens[2].crop_size == (96, 96)
        assert isinstance(MAPPER_BY_NAME["coco_instance_lsj"](cfg, True), COCOInstanceNewBaselineDatasetMapper)
        dm = DatasetMapper(cfg, False)
        assert dm.augmentations.augs[0].short_edge_length == (cfg.INPUT.MIN_SIZE_TEST,) * 2
    finally:
        DatasetCatalog.remove("_t_cfg_sem")
        MetadataCatalog.remove("_t_cfg_sem")


def test_semantic_mapper_refuses_inference_and_missing_labels(tiny_shapes):
    kwargs = dict(augmentations=[], image_format="RGB", ignore_label=255, size_divisibility=-1)
    with pytest.raises(RuntimeError, match="training"):
        MaskFormerSemanticDatasetMapper(is_train=False, **kwargs)({"file_name": "x"})
    with pytest.raises(ValueError, match="sem_seg_file_name"):
        MaskFormerSemanticDatasetMapper(is_train=True, **kwargs)({"file_name": str(tiny_shapes / "val/images/000000.jpg")})
