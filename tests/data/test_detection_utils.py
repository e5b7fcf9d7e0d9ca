import numpy as np
import pytest
import torch
from PIL import Image

from mask2former.config import get_cfg
from mask2former.data import detection_utils as utils
from mask2former.data import transforms as T
from mask2former.data.polygons import PolygonMasks
from mask2former.structures import BitMasks, BoxMode


def test_read_image_formats(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert utils.read_image(tmp_path / "a.png", "RGB")[0, 0].tolist() == [200, 0, 0]
    assert utils.read_image(tmp_path / "a.png", "BGR")[0, 0].tolist() == [0, 0, 200]
    assert utils.read_image(tmp_path / "a.png", "L").shape == (4, 5, 1)
    Image.fromarray(np.full((4, 5), 9, np.uint8)).save(tmp_path / "l.png")
    label = utils.read_image(tmp_path / "l.png")
    assert label.shape == (4, 5) and label[0, 0] == 9


def test_read_image_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        utils.read_image(missing)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg"):
        utils.read_image(broken, "RGB")


def test_read_image_applies_exif_orientation(tmp_path):
    img = Image.fromarray(np.zeros((2, 6, 3), np.uint8))  # w=6, h=2
    exif = img.getexif()
    exif[274] = 6  # rotate 270 (i.e. 90 clockwise) on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert utils.read_image(tmp_path / "r.jpg", "RGB").shape == (6, 2, 3)


def test_check_image_size():
    img = np.zeros((3, 4, 3), np.uint8)
    d = {"file_name": "x.jpg"}
    utils.check_image_size(d, img)
    assert (d["height"], d["width"]) == (3, 4)
    with pytest.raises(utils.SizeMismatchError, match="x.jpg"):
        utils.check_image_size({"file_name": "x.jpg", "height": 4, "width": 4}, img)


def _anno(poly, cat=1, iscrowd=0):
    xs, ys = poly[0::2], poly[1::2]
    return {
        "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
        "bbox_mode": BoxMode.XYWH_ABS,
        "category_id": cat,
        "segmentation": [list(poly)],
        "iscrowd": iscrowd,
    }


def test_transform_annotations_and_instances_polygon_and_bitmask():
    anno = _anno([2, 2, 6, 2, 6, 6, 2, 6], cat=3)
    tfms = T.TransformList([T.HFlipTransform(10), T.CropTransform(0, 0, 8, 8)])
    out = utils.transform_instance_annotations(dict(anno), tfms, (8, 8))
    np.testing.assert_allclose(out["bbox"], [4, 2, 8, 6])
    assert out["bbox_mode"] == BoxMode.XYXY_ABS
    inst = utils.annotations_to_instances([out], (8, 8))
    assert isinstance(inst.gt_masks, PolygonMasks)
    assert inst.gt_classes.tolist() == [3]
    np.testing.assert_allclose(inst.gt_masks.get_bounding_boxes().tensor.numpy(), [[4, 2, 8, 6]])
    bit = utils.annotations_to_instances([out], (8, 8), mask_format="bitmask")
    assert isinstance(bit.gt_masks, BitMasks) and bit.gt_masks.tensor.shape == (1, 8, 8)
    assert bit.gt_masks.tensor[0, 2:6, 4:8].all() and bit.gt_masks.tensor.sum() == 16


def test_rle_annotation_is_decoded_and_transformed():
    import pycocotools.mask as mask_util

    mask = np.zeros((6, 6), np.uint8, order="F")
    mask[1:3, 0:2] = 1
    rle = mask_util.encode(mask)
    anno = {"bbox": [0, 1, 2, 2], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "segmentation": rle}
    out = utils.transform_instance_annotations(anno, [T.HFlipTransform(6)], (6, 6))
    assert out["segmentation"][1:3, 4:6].all() and out["segmentation"].sum() == 4


def test_filter_empty_instances():
    annos = [_anno([0, 0, 4, 0, 4, 4]), _anno([1, 1, 1, 1, 1, 1])]
    for a in annos:
        a["bbox_mode"] = BoxMode.XYWH_ABS
    inst = utils.annotations_to_instances(annos, (8, 8))
    inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
    kept, m = utils.filter_empty_instances(inst, return_mask=True)
    assert m.tolist() == [True, False] and len(kept) == 1


def test_build_augmentation_from_cfg():
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TEST = 256
    cfg.INPUT.MAX_SIZE_TEST = 512
    augs = utils.build_augmentation(cfg, is_train=False)
    assert len(augs) == 1 and augs[0].short_edge_length == (256, 256) and augs[0].max_size == 512
    train_augs = utils.build_augmentation(cfg, is_train=True)
    assert isinstance(train_augs[-1], T.RandomFlip)
    cfg.INPUT.RANDOM_FLIP = "none"
    assert len(utils.build_augmentation(cfg, is_train=True)) == 1


def test_polygon_masks_indexing():
    pm = PolygonMasks([[[0, 0, 2, 0, 2, 2]], [[1, 1, 5, 1, 5, 5]], []])
    assert pm.nonempty().tolist() == [True, True, False]
    assert len(pm[torch.tensor([False, True, True])]) == 2
    assert pm.to_bitmasks(6, 6).tensor.shape == (3, 6, 6)
    with pytest.raises(ValueError):
        PolygonMasks([[[0, 0, 1, 1]]])
