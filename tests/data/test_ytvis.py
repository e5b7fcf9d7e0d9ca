"""YouTube-VIS registration and json loader; the synthetic shapes_video dataset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest

from mask2former.data import DatasetCatalog, MetadataCatalog
from mask2former.data.datasets import load_ytvis_json, register_ytvis_instances
from mask2former.data.datasets.meta.ytvis import ytvis_meta
from mask2former.data.datasets.shapes_video import generate_shapes_video_dataset, get_shapes_video_metadata
from mask2former.structures import BoxMode


def test_builtin_ytvis_splits_have_the_official_classes():
    for year in (2019, 2021):
        for split in ("train", "val"):
            name = f"ytvis_{year}_{split}"
            assert name in DatasetCatalog
            meta = MetadataCatalog.get(name)
            assert meta.evaluator_type == "ytvis"
            assert len(meta.thing_classes) == 40 and len(meta.thing_colors) == 40
            assert meta.thing_dataset_id_to_contiguous_id == {i: i - 1 for i in range(1, 41)}
            folder = {"train": "train", "val": "valid"}[split]
            assert meta.json_file.endswith(f"ytvis_{year}/{folder}.json")
            assert meta.image_root.endswith(f"ytvis_{year}/{folder}/JPEGImages")
    m19, m21 = ytvis_meta(2019), ytvis_meta(2021)
    assert m19["thing_classes"][:4] == ["person", "giant_panda", "lizard", "parrot"]
    assert m19["thing_classes"][-1] == "tennis_racket" and m19["thing_colors"][0] == [220, 20, 60]
    assert m21["thing_classes"][:3] == ["airplane", "bear", "bird"] and m21["thing_classes"][-2:] == ["whale", "zebra"]
    assert "sedan" in m19["thing_classes"] and "car" in m21["thing_classes"] and "car" not in m19["thing_classes"]


H, W = 8, 10


def _rle(mask: np.ndarray, compressed: bool = True) -> dict:
    if not compressed:  # uncompressed RLE: column-major run lengths starting with zeros
        flat = mask.flatten(order="F").astype(np.uint8)
        runs, value, count = [], 0, 0
        for v in flat:
            if v == value:
                count += 1
            else:
                runs.append(count)
                value, count = v, 1
        runs.append(count)
        return {"size": [H, W], "counts": runs}
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def _write_json(path: Path, annotations, videos=None) -> str:
    videos = videos or [
        {"id": 9, "file_names": ["b/0.jpg", "b/1.jpg", "b/2.jpg"], "height": H, "width": W, "length": 3},
        {"id": 4, "file_names": ["a/0.jpg", "a/1.jpg", "a/2.jpg"], "height": H, "width": W, "length": 3},
    ]
    data = {"videos": videos, "annotations": annotations,
            "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}]}
    path.write_text(json.dumps(data))
    return str(path)


SQUARE = np.zeros((H, W), bool)
SQUARE[2:5, 3:7] = True
POLYGON = [[1.0, 1.0, 6.0, 1.0, 6.0, 5.0, 1.0, 5.0]]


def test_loader_reads_rle_polygons_and_absent_frames(tmp_path: Path):
    annotations = [
        # video 4, dog: compressed RLE, absent (null) in frame 1, uncompressed RLE in frame 2, no bboxes
        {"id": 1, "video_id": 4, "category_id": 3, "iscrowd": 0,
         "segmentations": [_rle(SQUARE), None, _rle(SQUARE, compressed=False)]},
        # video 4, cat: polygons with boxes; frame 2's polygon has 2 points only (invalid)
        {"id": 2, "video_id": 4, "category_id": 7, "iscrowd": 0,
         "segmentations": [POLYGON, POLYGON, [[1.0, 1.0, 2.0, 2.0]]],
         "bboxes": [[1, 1, 5, 4], [1, 1, 5, 4], [1, 1, 1, 1]]},
    ]
    json_file = _write_json(tmp_path / "v.json", annotations)
    name = f"test_ytvis_loader_{tmp_path.name}"
    register_ytvis_instances(name, {}, json_file, "/root/images")
    videos = DatasetCatalog.get(name)
    meta = MetadataCatalog.get(name)
    assert meta.thing_classes == ["dog", "cat"]  # sorted by dataset id: 3, 7
    assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1}
    assert meta.evaluator_type == "ytvis" and meta.json_file == json_file

    assert [v["video_id"] for v in videos] == [4, 9]  # sorted by id
    v = videos[0]
    assert v["file_names"] == ["/root/images/a/0.jpg", "/root/images/a/1.jpg", "/root/images/a/2.jpg"]
    assert (v["height"], v["width"], v["length"]) == (H, W, 3)
    assert [[obj["id"] for obj in frame] for frame in v["annotations"]] == [[1, 2], [2], [1]]
    dog0, cat0 = v["annotations"][0]
    assert dog0["category_id"] == 0 and cat0["category_id"] == 1 and dog0["iscrowd"] == 0
    assert np.array_equal(mask_util.decode(dog0["segmentation"]).astype(bool), SQUARE)
    assert dog0["bbox"] == [3.0, 2.0, 4.0, 3.0] and dog0["bbox_mode"] == BoxMode.XYWH_ABS  # from the mask
    assert cat0["segmentation"] == POLYGON and cat0["bbox"] == [1, 1, 5, 4]
    dog2 = v["annotations"][2][0]  # uncompressed RLE -> compressed, same mask
    assert isinstance(dog2["segmentation"]["counts"], (bytes, str))
    assert np.array_equal(mask_util.decode(dog2["segmentation"]).astype(bool), SQUARE)
    assert videos[1]["annotations"] == [[], [], []]


@pytest.mark.parametrize("key", ["segmentations", "bboxes"])
def test_per_frame_list_of_wrong_length_names_video_and_annotation(tmp_path: Path, key: str):
    anno = {"id": 5, "video_id": 9, "category_id": 3, "segmentations": [_rle(SQUARE)] * 3}
    anno[key] = [_rle(SQUARE)] * 2 if key == "segmentations" else [[0, 0, 1, 1]] * 4
    json_file = _write_json(tmp_path / "bad.json", [anno])
    with pytest.raises(ValueError, match=rf"annotation 5 of video 9: '{key}' must list one entry per frame "
                                         rf"\(3 frames\), got {2 if key == 'segmentations' else 4}"):
        load_ytvis_json(json_file, "img")


def test_video_with_wrong_number_of_file_names(tmp_path: Path):
    videos = [{"id": 3, "file_names": ["a/0.jpg"], "height": H, "width": W, "length": 2}]
    json_file = _write_json(tmp_path / "bad.json", [], videos)
    with pytest.raises(ValueError, match="video 3 has length 2 but 1 file_names"):
        load_ytvis_json(json_file, "img")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_ytvis_json(str(tmp_path / "missing.json"), "img")


# --------------------------------------------------------------------------- shapes_video
@pytest.fixture(scope="module")
def tiny_shapes_video(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes_video_root") / "shapes_video"
    generate_shapes_video_dataset(str(out), splits={"train": 12, "val": 3}, image_size=48, num_frames=5)
    return out


def test_shapes_video_is_a_youtube_vis_dataset(tiny_shapes_video: Path):
    data = json.loads((tiny_shapes_video / "annotations" / "train.json").read_text())
    assert len(data["videos"]) == 12 and [c["id"] for c in data["categories"]] == [1, 2, 3, 4]
    assert all(len(a["segmentations"]) == 5 == len(a["bboxes"]) == len(a["areas"]) for a in data["annotations"])
    # objects appear late / leave early or are hidden: some frames are null, some tracks are not
    nulls = [sum(s is None for s in a["segmentations"]) for a in data["annotations"]]
    assert any(n > 0 for n in nulls) and any(n == 0 for n in nulls)
    per_video = np.bincount([a["video_id"] for a in data["annotations"]])
    assert per_video.max() >= 2  # several objects in a video (they may occlude each other)
    for a in data["annotations"]:  # the stored areas and boxes are those of the stored masks
        for segm, area, box in zip(a["segmentations"], a["areas"], a["bboxes"]):
            if segm is not None:
                assert mask_util.area(segm) == area
                x, y, w, h = mask_util.toBbox(segm)
                assert [x, y, w, h] == box

    videos = load_ytvis_json(str(tiny_shapes_video / "annotations" / "train.json"),
                             str(tiny_shapes_video / "train" / "JPEGImages"))
    assert all(Path(f).is_file() for v in videos for f in v["file_names"])
    assert get_shapes_video_metadata()["thing_classes"] == ["circle", "square", "triangle", "star"]


def test_shapes_video_generation_is_deterministic(tiny_shapes_video: Path, tmp_path: Path):
    again = tmp_path / "again"
    generate_shapes_video_dataset(str(again), splits={"train": 12, "val": 3}, image_size=48, num_frames=5)
    for split in ("train", "val"):
        rel = Path("annotations") / f"{split}.json"
        assert (again / rel).read_text() == (tiny_shapes_video / rel).read_text()
    frame = Path("train") / "JPEGImages" / "000004" / "00003.jpg"
    assert (again / frame).read_bytes() == (tiny_shapes_video / frame).read_bytes()


def test_shapes_video_is_registered():
    for split in ("train", "val"):
        meta = MetadataCatalog.get(f"shapes_video_{split}")
        assert meta.evaluator_type == "ytvis" and meta.thing_classes == ["circle", "square", "triangle", "star"]
        assert meta.json_file.endswith(f"shapes_video/annotations/{split}.json")
