import json
import os

import numpy as np
import pytest

from mask2former.data import DatasetCatalog, MetadataCatalog
from mask2former.data.datasets import (
    load_coco_json,
    load_sem_seg,
    register_coco_instances,
    register_coco_panoptic,
    register_coco_panoptic_annos_sem_seg,
    register_sem_seg,
)
from mask2former.structures import BoxMode

_META = {
    "thing_classes": ["box"],
    "thing_colors": [[1, 2, 3]],
    "stuff_classes": ["box", "floor"],
    "stuff_colors": [[1, 2, 3], [4, 5, 6]],
    "thing_dataset_id_to_contiguous_id": {3: 0},
    "stuff_dataset_id_to_contiguous_id": {3: 0, 7: 1},
}


@pytest.fixture()
def cleanup():
    names = []
    yield names
    for n in names:
        if n in DatasetCatalog:
            DatasetCatalog.remove(n)
        if n in MetadataCatalog:
            MetadataCatalog.remove(n)


def test_register_coco_instances(hand_made, cleanup):
    root = hand_made["root"]
    cleanup.append("_t_inst")
    register_coco_instances("_t_inst", {}, str(root / "instances.json"), str(root / "images"))
    meta = MetadataCatalog.get("_t_inst")
    assert meta.evaluator_type == "coco" and meta.json_file.endswith("instances.json")
    dicts = DatasetCatalog.get("_t_inst")
    assert [d["image_id"] for d in dicts] == [10, 11]
    assert dicts[0]["file_name"] == str(root / "images" / "im0.jpg")
    (ann,) = dicts[1]["annotations"]
    assert ann["category_id"] == 0 and ann["bbox_mode"] == BoxMode.XYWH_ABS and ann["bbox"] == [14, 5, 8, 8]
    assert meta.thing_classes == ["box"] and meta.thing_dataset_id_to_contiguous_id == {3: 0}


def test_load_coco_json_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_coco_json(str(tmp_path / "missing.json"), str(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "height": 2, "width": 2}],
                               "annotations": [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1],
                                                "iscrowd": 0, "area": 1}],
                               "categories": [{"id": 1, "name": "x"}]}))
    with pytest.raises(KeyError, match="category_id=9"):
        load_coco_json(str(bad), str(tmp_path), "_t_bad_json")
    MetadataCatalog.remove("_t_bad_json")


def test_register_coco_panoptic(hand_made, cleanup):
    root = hand_made["root"]
    cleanup.append("_t_pan")
    register_coco_panoptic("_t_pan", _META, str(root / "images"), str(root / "pan"), str(root / "panoptic.json"))
    meta = MetadataCatalog.get("_t_pan")
    assert meta.evaluator_type == "coco_panoptic_seg" and meta.label_divisor == 1000 and meta.ignore_label == 255
    dicts = DatasetCatalog.get("_t_pan")
    assert len(dicts) == 2 and dicts[0]["pan_seg_file_name"].endswith("im0.png")
    segs = {s["id"]: s for s in dicts[0]["segments_info"]}
    assert segs[2]["category_id"] == 0 and segs[2]["isthing"] is True
    assert segs[1]["category_id"] == 1 and segs[1]["isthing"] is False
    # loading twice gives the same (the json is not modified in place)
    assert DatasetCatalog.get("_t_pan") == dicts


def test_register_panoptic_with_sem_seg(hand_made, cleanup):
    root = hand_made["root"]
    cleanup.extend(["_t_pan2", "_t_pan2_with_sem_seg"])
    MetadataCatalog.get("_t_pan2").set(thing_classes=["box", "floor"])
    register_coco_panoptic_annos_sem_seg(
        "_t_pan2", _META, str(root / "images"), str(root / "pan"), str(root / "panoptic.json"), str(root / "sem")
    )
    assert MetadataCatalog.get("_t_pan2").thing_classes == ["box"]
    dicts = DatasetCatalog.get("_t_pan2_with_sem_seg")
    assert dicts[1]["sem_seg_file_name"] == str(root / "sem" / "im1.png")
    assert MetadataCatalog.get("_t_pan2_with_sem_seg").sem_seg_root == str(root / "sem")


def test_register_sem_seg(hand_made, cleanup):
    root = hand_made["root"]
    cleanup.append("_t_sem")
    register_sem_seg("_t_sem", str(root / "images"), str(root / "sem"), ["box", "floor"], ignore_label=255)
    meta = MetadataCatalog.get("_t_sem")
    assert meta.stuff_classes == ["box", "floor"] and meta.evaluator_type == "sem_seg"
    dicts = DatasetCatalog.get("_t_sem")
    assert [(d["file_name"][-7:], d["sem_seg_file_name"][-7:]) for d in dicts] == [
        ("im0.jpg", "im0.png"),
        ("im1.jpg", "im1.png"),
    ]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_sem_seg(str(root / "nowhere"), str(root / "images"))


def test_builtin_coco_panoptic_metadata():
    meta = MetadataCatalog.get("coco_2017_val_panoptic_with_sem_seg")
    things = meta.thing_dataset_id_to_contiguous_id
    assert len(things) == 80 and sorted(things.values()) == list(range(80))
    assert min(things) == 1 and max(things) == 90 and things[1] == 0 and things[90] == 79
    stuff_only = {k: v for k, v in meta.stuff_dataset_id_to_contiguous_id.items() if k not in things}
    assert len(stuff_only) == 53 and sorted(stuff_only.values()) == list(range(80, 133))
    assert stuff_only[92] == 80 and stuff_only[200] == 132
    assert len(meta.thing_classes) == 80 and len(meta.stuff_classes) == 133
    assert meta.stuff_classes[0] == "person" and meta.stuff_classes[-1] == "rug-merged"
    assert meta.evaluator_type == "coco_panoptic_seg" and meta.panoptic_root.endswith("coco/panoptic_val2017")
    assert meta.json_file.endswith("coco/annotations/instances_val2017.json")
    std = MetadataCatalog.get("coco_2017_val_panoptic")
    assert len(std.thing_classes) == 80 and len(std.stuff_dataset_id_to_contiguous_id) == 53


def test_builtin_other_metadata():
    ade = MetadataCatalog.get("ade20k_sem_seg_val")
    assert len(ade.stuff_classes) == 150 and ade.stuff_classes[8] == "window " and len(ade.stuff_colors) == 150
    assert ade.ignore_label == 255 and ade.evaluator_type == "sem_seg"
    pan = MetadataCatalog.get("ade20k_panoptic_val")
    assert len(pan.thing_classes) == 100 and len(pan.stuff_classes) == 150
    assert pan.evaluator_type == "ade20k_panoptic_seg"
    assert len(MetadataCatalog.get("ade20k_instance_val").thing_classes) == 100
    full = MetadataCatalog.get("ade20k_full_sem_seg_val")
    assert len(full.stuff_classes) == 847 and full.ignore_label == 65535
    assert len(MetadataCatalog.get("coco_2017_train_stuff_10k_sem_seg").stuff_classes) == 171
    mv = MetadataCatalog.get("mapillary_vistas_sem_seg_val")
    assert len(mv.stuff_classes) == 65 and mv.ignore_label == 65
    mvp = MetadataCatalog.get("mapillary_vistas_panoptic_val")
    assert len(mvp.thing_dataset_id_to_contiguous_id) == 37 and len(mvp.stuff_classes) == 65
    cs = MetadataCatalog.get("cityscapes_fine_sem_seg_val")
    assert len(cs.stuff_classes) == 19 and len(cs.thing_classes) == 8
    csp = MetadataCatalog.get("cityscapes_fine_panoptic_val")
    assert csp.thing_dataset_id_to_contiguous_id[26] == 13
    assert len(MetadataCatalog.get("coco_2017_val").thing_classes) == 80


def test_builtin_registration_is_lazy():
    json_file = MetadataCatalog.get("coco_2017_val").json_file
    if os.path.exists(json_file):
        pytest.skip("COCO is installed here")
    # registration worked without the data; loading names the missing file
    with pytest.raises(FileNotFoundError, match="instances_val2017.json"):
        DatasetCatalog.get("coco_2017_val")


def test_cityscapes_loaders(tmp_path):
    from PIL import Image

    from mask2former.data.datasets import load_cityscapes_instances, load_cityscapes_semantic

    img_dir = tmp_path / "leftImg8bit" / "val" / "city"
    gt_dir = tmp_path / "gtFine" / "val" / "city"
    img_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(img_dir / "city_000_000_leftImg8bit.png")
    inst = np.full((8, 10), 7, np.uint16)  # road (16-bit PNG, as Cityscapes)
    inst[1:5, 1:5] = 26000  # car instance 0
    inst[5:8, 6:9] = 24  # person crowd region
    Image.fromarray(inst).save(gt_dir / "city_000_000_gtFine_instanceIds.png")
    Image.fromarray(np.zeros((8, 10), np.uint8)).save(gt_dir / "city_000_000_gtFine_labelTrainIds.png")
    (gt_dir / "city_000_000_gtFine_polygons.json").write_text(json.dumps({"imgHeight": 8, "imgWidth": 10}))
    sem = load_cityscapes_semantic(str(tmp_path / "leftImg8bit" / "val"), str(tmp_path / "gtFine" / "val"))
    assert sem[0]["sem_seg_file_name"].endswith("labelTrainIds.png") and sem[0]["height"] == 8
    (d,) = load_cityscapes_instances(str(tmp_path / "leftImg8bit" / "val"), str(tmp_path / "gtFine" / "val"))
    cats = sorted((a["category_id"], a["iscrowd"]) for a in d["annotations"])
    assert cats == [(0, True), (2, False)]  # person (crowd) -> 0, car -> 2
