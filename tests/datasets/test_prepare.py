"""The ``datasets/prepare_*.py`` scripts on tiny synthetic datasets, and the built-in
registrations reading what they write."""
from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image

from mask2former.checkpoint.safe_pickle import UnsafePickleError
from mask2former.data import DatasetCatalog, MetadataCatalog
from mask2former.data.detection_utils import read_image
from mask2former.utils.panoptic_utils import id2rgb, rgb2id
from prepare_scripts import load_script

coco_sem = load_script("prepare_coco_semantic_annos_from_panoptic_annos")
ade_sem = load_script("prepare_ade20k_sem_seg")
ade_pan = load_script("prepare_ade20k_pan_seg")
ade_ins = load_script("prepare_ade20k_ins_seg")
ade_full = load_script("prepare_ade20k_full_sem_seg")
coco_stuff = load_script("prepare_coco_stuff_10k_v1.0_sem_seg")
utils = load_script("_prepare_utils")

ALL_SCRIPTS = [coco_sem, ade_sem, ade_pan, ade_ins, ade_full, coco_stuff]


def _jpg(path: Path, h: int, w: int, value: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


# --------------------------------------------------------------------------- command lines
@pytest.mark.parametrize("script", ALL_SCRIPTS, ids=lambda m: m.__name__)
def test_help_names_the_root_variable(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--root" in out and "DETECTRON2_DATASETS" in out and "--workers" in out


def test_bbox_is_inclusive_xywh():
    mask = np.zeros((6, 8), bool)
    mask[2:4, 3:7] = True
    mask[5, 3] = True
    assert utils.bbox_xywh(mask) == [3, 2, 4, 4]
    with pytest.raises(ValueError, match="empty"):
        utils.bbox_xywh(np.zeros((2, 2), bool))


# --------------------------------------------------------------------------- COCO panoptic -> semantic
H, W = 6, 8
BIG_ID = 3 * 256 * 256 + 7  # uses the blue channel


def _coco_panoptic_ids():
    first = np.zeros((H, W), np.int64)  # row 0: void
    first[1:3] = 5  # person (1) -> 0
    first[3:5, :4] = BIG_ID  # banner (92) -> 80
    first[3:5, 4:] = 300  # rug-merged (200) -> 132
    first[5] = 42  # in the PNG, not in the json -> 255
    second = np.full((H, W), 9, np.int64)  # toothbrush (90) -> 79
    second[0, 0] = 0
    return first, second


def _expected_coco_semantic():
    first = np.full((H, W), 255, np.uint8)
    first[1:3] = 0
    first[3:5, :4] = 80
    first[3:5, 4:] = 132
    second = np.full((H, W), 79, np.uint8)
    second[0, 0] = 255
    return first, second


@pytest.fixture()
def fake_coco(tmp_path: Path) -> Path:
    """``coco/`` with a 2-image val2017 panoptic set (no train2017)."""
    coco = tmp_path / "coco"
    segments = [
        [{"id": 5, "category_id": 1, "iscrowd": 0}, {"id": BIG_ID, "category_id": 92, "iscrowd": 0},
         {"id": 300, "category_id": 200, "iscrowd": 0}],
        [{"id": 9, "category_id": 90, "iscrowd": 0}],
    ]
    images, annotations = [], []
    for i, (ids, segs) in enumerate(zip(_coco_panoptic_ids(), segments), start=1):
        stem = f"{i:012d}"
        _jpg(coco / "val2017" / f"{stem}.jpg", H, W)
        _png(coco / "panoptic_val2017" / f"{stem}.png", id2rgb(ids))
        images.append({"id": i, "file_name": f"{stem}.jpg", "height": H, "width": W})
        annotations.append({"image_id": i, "file_name": f"{stem}.png", "segments_info": segs})
    (coco / "annotations").mkdir()
    (coco / "annotations" / "panoptic_val2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": []})
    )
    return tmp_path


def test_coco_id_map_is_contiguous_over_133_categories():
    id_map = coco_sem.coco_semantic_id_map()
    assert len(id_map) == 133 and sorted(id_map.values()) == list(range(133))
    assert (id_map[1], id_map[90], id_map[92], id_map[200]) == (0, 79, 80, 132)


def test_coco_semantic_values(fake_coco: Path):
    coco = fake_coco / "coco"
    n = coco_sem.separate_coco_semantic_from_panoptic(
        str(coco / "annotations" / "panoptic_val2017.json"),
        str(coco / "panoptic_val2017"),
        str(coco / "panoptic_semseg_val2017"),
    )
    assert n == 2
    for i, expected in enumerate(_expected_coco_semantic(), start=1):
        out = _read(coco / "panoptic_semseg_val2017" / f"{i:012d}.png")
        assert out.dtype == np.uint8 and out.shape == (H, W)
        np.testing.assert_array_equal(out, expected)


def test_coco_main_with_workers_and_builtin_registration(fake_coco: Path, monkeypatch, builtin_catalog):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(fake_coco))
    coco_sem.main(["--splits", "val2017", "--workers", "2"])
    out_dir = fake_coco / "coco" / "panoptic_semseg_val2017"
    for i, expected in enumerate(_expected_coco_semantic(), start=1):
        np.testing.assert_array_equal(_read(out_dir / f"{i:012d}.png"), expected)

    builtin_catalog(fake_coco)
    dicts = DatasetCatalog.get("coco_2017_val_panoptic_with_sem_seg")
    assert [d["image_id"] for d in dicts] == [1, 2]
    first = dicts[0]
    assert first["file_name"] == str(fake_coco / "coco" / "val2017" / "000000000001.jpg")
    assert first["sem_seg_file_name"] == str(out_dir / "000000000001.png")
    assert first["pan_seg_file_name"] == str(fake_coco / "coco" / "panoptic_val2017" / "000000000001.png")
    assert [(s["category_id"], s["isthing"]) for s in first["segments_info"]] == [(0, True), (80, False), (132, False)]
    # the semantic file agrees with the contiguous ids the loader gives each panoptic segment
    sem = read_image(first["sem_seg_file_name"])
    pan = rgb2id(read_image(first["pan_seg_file_name"]))
    for seg in first["segments_info"]:
        assert set(np.unique(sem[pan == seg["id"]])) == {seg["category_id"]}
    meta = MetadataCatalog.get("coco_2017_val_panoptic_with_sem_seg")
    assert meta.ignore_label == 255 and len(meta.stuff_classes) == 133 and len(meta.thing_classes) == 80
    standard = DatasetCatalog.get("coco_2017_val_panoptic")  # register_coco_panoptic (no semantic files)
    assert len(standard) == 2 and "sem_seg_file_name" not in standard[0]


def test_coco_unknown_category_names_file_and_id(fake_coco: Path):
    coco = fake_coco / "coco"
    pan_json = coco / "annotations" / "panoptic_val2017.json"
    data = json.loads(pan_json.read_text())
    data["annotations"][1]["segments_info"][0]["category_id"] = 12  # 12 is not a COCO panoptic id
    pan_json.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"000000000002\.png.*category_id=12"):
        coco_sem.separate_coco_semantic_from_panoptic(
            str(pan_json), str(coco / "panoptic_val2017"), str(coco / "panoptic_semseg_val2017")
        )


def test_coco_missing_json_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="panoptic_val2017.json"):
        coco_sem.main(["--root", str(tmp_path), "--splits", "val2017", "--workers", "1"])


# --------------------------------------------------------------------------- ADE20K (150 classes)
AH, AW = 8, 10


def _ade_annotations():
    """Image 1: wall / sky / bed (+ "other") with a bed and two person instances; image 2: building."""
    sem1 = np.zeros((AH, AW), np.uint8)
    sem1[0:4] = 1  # wall (id 0, stuff)
    sem1[4:6] = 3  # sky (id 2, stuff)
    sem1[6:8, 0:5] = 8  # bed (id 7, thing): comes from the instance annotation only
    ins1 = np.zeros((AH, AW, 3), np.uint8)
    ins1[6:8, 0:3] = (1, 1, 0)  # instance 1: bed (instance class 1)
    ins1[1:3, 1:4] = (4, 2, 0)  # instance 2: person (class 4), on top of the wall
    ins1[4:6, 7:9] = (4, 3, 0)  # instance 3: another person, on the sky
    sem2 = np.full((AH, AW), 2, np.uint8)  # building (id 1)
    ins2 = np.zeros((AH, AW, 3), np.uint8)
    return [("ADE_val_00000001", sem1, ins1), ("ADE_val_00000002", sem2, ins2)]


@pytest.fixture()
def fake_ade(tmp_path: Path) -> Path:
    """``ADEChallengeData2016`` with two validation images (and their instance annotations)."""
    base = tmp_path / "ADEChallengeData2016"
    for stem, sem, ins in _ade_annotations():
        _jpg(base / "images" / "validation" / f"{stem}.jpg", AH, AW)
        _png(base / "annotations" / "validation" / f"{stem}.png", sem)
        _png(base / "annotations_instance" / "validation" / f"{stem}.png", ins)
    return tmp_path


def test_ade20k_sem_seg_shift_and_registration(fake_ade: Path, monkeypatch, builtin_catalog):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(fake_ade))
    label = np.array([[0, 1, 5], [150, 8, 0]], np.uint8)
    np.testing.assert_array_equal(ade_sem.convert_ade20k_label(label), [[255, 0, 4], [149, 7, 255]])

    ade_sem.main(["--splits", "validation", "--workers", "1"])  # root from $DETECTRON2_DATASETS
    out_dir = fake_ade / "ADEChallengeData2016" / "annotations_detectron2" / "validation"
    (_, sem1, _), (_, sem2, _) = _ade_annotations()
    out1 = _read(out_dir / "ADE_val_00000001.png")
    assert out1.dtype == np.uint8
    assert out1[0, 0] == 0 and out1[4, 0] == 2 and out1[6, 0] == 7 and out1[6, 9] == 255
    np.testing.assert_array_equal(out1, np.where(sem1 == 0, 255, sem1 - 1))
    np.testing.assert_array_equal(_read(out_dir / "ADE_val_00000002.png"), np.ones((AH, AW)))

    builtin_catalog(fake_ade)
    dicts = DatasetCatalog.get("ade20k_sem_seg_val")
    assert [Path(d["sem_seg_file_name"]).name for d in dicts] == ["ADE_val_00000001.png", "ADE_val_00000002.png"]
    assert Path(dicts[0]["file_name"]).parent.name == "validation"
    meta = MetadataCatalog.get("ade20k_sem_seg_val")
    assert meta.ignore_label == 255 and len(meta.stuff_classes) == 150


def test_ade20k_sem_seg_rejects_16bit_labels(tmp_path: Path):
    bad = tmp_path / "ADEChallengeData2016" / "annotations" / "training" / "x.png"
    _png(bad, np.zeros((2, 2), np.uint16))
    with pytest.raises(ValueError, match=r"x\.png.*uint8"):
        ade_sem.prepare_ade20k_sem_seg(str(tmp_path), ["training"])


def test_ade20k_panoptic_pngs_and_json(fake_ade: Path):
    assert ade_pan.prepare_ade20k_pan_seg(str(fake_ade), ["val"]) == {"val": 2}
    base = fake_ade / "ADEChallengeData2016"
    data = json.loads((base / "ade20k_panoptic_val.json").read_text())
    assert data["images"][0] == {
        "id": "ADE_val_00000001", "file_name": "ADE_val_00000001.jpg", "width": AW, "height": AH
    }
    cats = data["categories"]
    assert len(cats) == 150 and sum(c["isthing"] for c in cats) == 100
    assert cats[8] == {"color": [230, 230, 230], "id": 8, "isthing": 1, "name": "window "}

    ann = data["annotations"][0]
    assert ann["image_id"] == "ADE_val_00000001" and ann["file_name"] == "ADE_val_00000001.png"
    segs = ann["segments_info"]
    # stuff first (area / bbox of the whole semantic region, as official), then instances by id
    assert [(s["category_id"], s["area"], s["bbox"], s["iscrowd"]) for s in segs] == [
        (0, 40, [0, 0, 10, 4], 0),
        (2, 20, [0, 4, 10, 2], 0),
        (7, 6, [0, 6, 3, 2], 0),
        (12, 6, [1, 1, 3, 2], 0),
        (12, 4, [7, 4, 2, 2], 0),
    ]
    wall, sky, bed, person, person2 = (s["id"] for s in segs)
    # stuff and the first instance of a class take the class colour; a second instance a nearby one
    assert wall == rgb2id([120, 120, 120]) and sky == rgb2id([6, 230, 230])
    assert bed == rgb2id([204, 5, 255]) and person == rgb2id([150, 5, 61])
    color2 = np.array(id2rgb(person2))
    assert person2 not in (person, 0) and np.abs(color2 - [150, 5, 61]).max() <= 30

    pan = rgb2id(_read(base / "ade20k_panoptic_val" / "ADE_val_00000001.png"))
    expected = np.zeros((AH, AW), np.int64)  # "other" and uncovered bed pixels stay void
    expected[0:4], expected[4:6] = wall, sky
    expected[6:8, 0:3] = bed
    expected[1:3, 1:4] = person
    expected[4:6, 7:9] = person2
    np.testing.assert_array_equal(pan, expected)

    second = data["annotations"][1]["segments_info"]
    assert [(s["category_id"], s["area"]) for s in second] == [(1, AH * AW)]

    first_bytes = (base / "ade20k_panoptic_val" / "ADE_val_00000001.png").read_bytes()
    ade_pan.prepare_ade20k_pan_seg(str(fake_ade), ["val"])  # seeded per image: same files again
    assert (base / "ade20k_panoptic_val" / "ADE_val_00000001.png").read_bytes() == first_bytes


def test_ade20k_instance_json(fake_ade: Path):
    assert ade_ins.prepare_ade20k_ins_seg(str(fake_ade), ["val"]) == {"val": 3}
    data = json.loads((fake_ade / "ADEChallengeData2016" / "ade20k_instance_val.json").read_text())
    assert [img["id"] for img in data["images"]] == ["ADE_val_00000001", "ADE_val_00000002"]
    cats = data["categories"]
    assert len(cats) == 100 and cats[0] == {"id": 7, "name": "bed"} and cats[3] == {"id": 12, "name": "person"}
    assert cats[-1] == {"id": 149, "name": "flag"}
    anns = data["annotations"]
    assert [(a["id"], a["image_id"], a["category_id"], a["bbox"], a["area"], a["iscrowd"]) for a in anns] == [
        (1, "ADE_val_00000001", 7, [0, 6, 3, 2], 6, 0),
        (2, "ADE_val_00000001", 12, [1, 1, 3, 2], 6, 0),
        (3, "ADE_val_00000001", 12, [7, 4, 2, 2], 4, 0),
    ]
    expected = np.zeros((AH, AW), np.uint8)
    expected[4:6, 7:9] = 1
    rle = dict(anns[2]["segmentation"], counts=anns[2]["segmentation"]["counts"].encode())
    np.testing.assert_array_equal(mask_util.decode(rle), expected)


def test_ade20k_instance_with_two_classes_is_refused(fake_ade: Path):
    path = fake_ade / "ADEChallengeData2016" / "annotations_instance" / "validation" / "ADE_val_00000002.png"
    ins = np.zeros((AH, AW, 3), np.uint8)
    ins[0, 0:2] = (4, 5, 0)
    ins[0, 2] = (9, 5, 0)  # instance 5 labelled with two classes
    _png(path, ins)
    for prepare in (ade_ins.prepare_ade20k_ins_seg, ade_pan.prepare_ade20k_pan_seg):
        with pytest.raises(ValueError, match=r"ADE_val_00000002\.png: instance 5 has instance class\(es\) \[4, 9\]"):
            prepare(str(fake_ade), ["val"])


def test_ade20k_missing_instance_annotations_point_to_download(tmp_path: Path):
    _jpg(tmp_path / "ADEChallengeData2016" / "images" / "validation" / "ADE_val_00000001.jpg", 4, 4)
    with pytest.raises(FileNotFoundError, match="annotations_instance.*annotations_instance.tar"):
        ade_ins.prepare_ade20k_ins_seg(str(tmp_path), ["val"])


def test_ade20k_prepared_files_load_through_builtin_registrations(fake_ade: Path, builtin_catalog):
    root = str(fake_ade)
    ade_sem.prepare_ade20k_sem_seg(root, ["validation"])
    ade_pan.main(["--root", root, "--splits", "val", "--workers", "1"])
    ade_ins.main(["--root", root, "--splits", "val", "--workers", "1"])
    builtin_catalog(fake_ade)

    pan = DatasetCatalog.get("ade20k_panoptic_val")
    assert [d["image_id"] for d in pan] == ["ADE_val_00000001", "ADE_val_00000002"]
    first = pan[0]
    assert Path(first["sem_seg_file_name"]).parent.name == "validation"
    assert [(s["category_id"], s["isthing"]) for s in first["segments_info"]] == [
        (0, False), (2, False), (7, True), (12, True), (12, True)
    ]
    meta = MetadataCatalog.get("ade20k_panoptic_val")
    assert meta.evaluator_type == "ade20k_panoptic_seg" and meta.json_file.endswith("ade20k_instance_val.json")

    inst = DatasetCatalog.get("ade20k_instance_val")
    assert [d["image_id"] for d in inst] == ["ADE_val_00000001", "ADE_val_00000002"]
    # dataset ids 7 (bed) and 12 (person) -> contiguous 0 and 3 of the 100 thing classes
    assert [a["category_id"] for a in inst[0]["annotations"]] == [0, 3, 3] and inst[1]["annotations"] == []
    assert MetadataCatalog.get("ade20k_instance_val").thing_classes[:4] == ["bed", "windowpane", "cabinet", "person"]


# --------------------------------------------------------------------------- ADE20K-full (847 classes)
def _seg_png_pixel(class_value: int) -> tuple:
    """An (R, G, B) object-mask pixel whose class value R // 10 * 256 + G is ``class_value``."""
    return (class_value // 256) * 10 + 3, class_value % 256, 0


WALL, BUILDING, UNLISTED = 2978, 312, 1  # contiguous 0, 1; 1 is not one of the 847 classes


@pytest.fixture()
def fake_ade_full(tmp_path: Path) -> Path:
    """``ADE20K_2021_17_01`` with a small val image and a 520x600 train image (resized)."""
    base = tmp_path / "ADE20K_2021_17_01"
    entries = []
    images = (("validation", "ADE_val_00000001", (6, 7)), ("training", "ADE_train_00000001", (520, 600)))
    for split, name, (h, w) in images:
        folder = f"ADE20K_2021_17_01/images/ADE/{split}/urban/street"
        seg = np.zeros((h, w, 3), np.uint8)  # class 0: unlabeled
        seg[: h // 2] = _seg_png_pixel(WALL)
        seg[h // 2 :, : w // 2] = _seg_png_pixel(BUILDING)
        seg[h - 1, w - 1] = _seg_png_pixel(UNLISTED)
        _jpg(tmp_path / folder / f"{name}.jpg", h, w)
        _png(tmp_path / folder / f"{name}_seg.png", seg)
        entries.append((folder, f"{name}.jpg"))
    index = {
        "folder": [f for f, _ in entries],
        "filename": [n for _, n in entries],
        "objectPresence": np.zeros((3, 2), np.int64),
        "objectnames": ["-", "wall", "building, edifice"],
    }
    with open(base / "index_ade20k.pkl", "wb") as f:
        pickle.dump(index, f)
    return tmp_path


def test_ade20k_full_class_values_and_resize_rule():
    seg = np.array([[_seg_png_pixel(WALL), _seg_png_pixel(BUILDING), (0, 0, 0)]], np.uint8)
    np.testing.assert_array_equal(ade_full.ade20k_full_class_mask(seg), [[WALL, BUILDING, 0]])
    lut = ade_full.ade20k_full_label_lut()
    assert (lut[WALL], lut[BUILDING], lut[0], lut[UNLISTED]) == (0, 1, 65535, 65535)
    assert int((lut != 65535).sum()) == 847
    assert ade_full.resized_shape(520, 600) == (512, 591)
    assert ade_full.resized_shape(700, 600) == (597, 512)
    assert ade_full.resized_shape(512, 2000) is None and ade_full.resized_shape(300, 400) is None


def test_ade20k_full_outputs_and_registration(fake_ade_full: Path, monkeypatch, builtin_catalog):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(fake_ade_full))
    ade_full.main(["--workers", "1"])
    base = fake_ade_full / "ADE20K_2021_17_01"

    val_label = read_image(base / "annotations_detectron2" / "validation" / "ADE_val_00000001.tif")
    expected = np.full((6, 7), 65535, np.uint16)
    expected[:3] = 0
    expected[3:, :3] = 1
    assert val_label.dtype == np.uint16
    np.testing.assert_array_equal(val_label, expected)
    assert read_image(base / "images_detectron2" / "validation" / "ADE_val_00000001.jpg").shape == (6, 7, 3)

    train_label = read_image(base / "annotations_detectron2" / "training" / "ADE_train_00000001.tif")
    assert train_label.shape == (512, 591)
    assert Counter(np.unique(train_label).tolist()) == Counter([0, 1, 65535])
    assert train_label[0, 0] == 0 and train_label[511, 0] == 1 and train_label[511, 590] == 65535
    assert read_image(base / "images_detectron2" / "training" / "ADE_train_00000001.jpg").shape == (512, 591, 3)

    builtin_catalog(fake_ade_full)
    (record,) = DatasetCatalog.get("ade20k_full_sem_seg_val")
    assert record["sem_seg_file_name"].endswith("validation/ADE_val_00000001.tif")
    assert record["file_name"].endswith("images_detectron2/validation/ADE_val_00000001.jpg")
    assert len(DatasetCatalog.get("ade20k_full_sem_seg_train")) == 1
    meta = MetadataCatalog.get("ade20k_full_sem_seg_val")
    assert meta.ignore_label == 65535 and len(meta.stuff_classes) == 847


class _Sneaky:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_ade20k_full_index_refuses_code_and_explains(tmp_path: Path, capsys):
    index = tmp_path / "index_ade20k.pkl"
    index.write_bytes(pickle.dumps({"folder": ["a"], "filename": ["ADE_val_1.jpg"], "x": _Sneaky()}))
    with pytest.raises(UnsafePickleError, match=r"index_ade20k\.pkl.*builtins\.print.*arbitrary code.*--index"):
        ade_full.load_ade20k_index(str(index))
    assert "this would have run" not in capsys.readouterr().out

    as_json = tmp_path / "index_ade20k.json"
    as_json.write_text(json.dumps({"folder": ["a"], "filename": ["ADE_val_1.jpg"]}))
    assert ade_full.load_ade20k_index(str(as_json)) == {"folder": ["a"], "filename": ["ADE_val_1.jpg"]}
    as_json.write_text(json.dumps({"folder": ["a"]}))
    with pytest.raises(ValueError, match="'folder' and 'filename'"):
        ade_full.load_ade20k_index(str(as_json))


# --------------------------------------------------------------------------- COCO-Stuff-10k
def test_coco_stuff_10k_labels_and_registration(tmp_path: Path, builtin_catalog):
    from scipy.io import savemat

    base = tmp_path / "coco" / "coco_stuff_10k"
    names = {"train": "COCO_train2014_000000000077", "test": "COCO_train2014_000000000078"}
    label = np.array([[1, 2, 3], [172, 90, 2]], np.uint8)  # 1 = unlabeled; 2..172 -> 0..170
    for split, name in names.items():
        _jpg(base / "images" / f"{name}.jpg", 2, 3)
        (base / "annotations").mkdir(exist_ok=True)
        savemat(base / "annotations" / f"{name}.mat", {"S": label, "names": np.array(["unlabeled"])})
        (base / "imageLists").mkdir(exist_ok=True)
        (base / "imageLists" / f"{split}.txt").write_text(name + "\n")
    assert coco_stuff.prepare_coco_stuff_10k(str(tmp_path)) == {"test": 1, "train": 1}
    out = _read(base / "annotations_detectron2" / "test" / f"{names['test']}.png")
    np.testing.assert_array_equal(out, [[255, 0, 1], [170, 88, 0]])

    builtin_catalog(tmp_path)
    (record,) = DatasetCatalog.get("coco_2017_train_stuff_10k_sem_seg")
    assert record["file_name"] == str(base / "images_detectron2" / "train" / f"{names['train']}.jpg")
    assert len(MetadataCatalog.get("coco_2017_train_stuff_10k_sem_seg").stuff_classes) == 171


def test_coco_stuff_reads_matlab_v73_files(tmp_path: Path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "a.mat"
    label = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    with h5py.File(path, "w") as f:
        f["S"] = label.T  # MATLAB v7.3 stores the column-major matrix transposed
    np.testing.assert_array_equal(coco_stuff.read_coco_stuff_mat(str(path)), label)


def test_ade20k_panoptic_rejects_unknown_semantic_label():
    categories = {c["id"]: c for c in ade_pan.ade20k_150_categories()}
    semantic = np.array([[1, 200]], np.uint8)
    zeros = np.zeros((1, 2), np.uint8)
    with pytest.raises(ValueError, match=r"x\.png: semantic label 200 is not an ADE20K-150 class"):
        ade_pan.ade20k_panoptic_segments(semantic, zeros, zeros, categories, {}, source="x.png")
