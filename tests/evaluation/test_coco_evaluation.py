"""COCOEvaluator: instance AP agrees with pycocotools COCOeval run directly on the same JSON."""

import contextlib
import io
import json
import math
import uuid

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mask2former.utils.catalog import DatasetCatalog, MetadataCatalog
from mask2former.evaluation import COCOEvaluator, convert_to_coco_dict
from mask2former.structures import Boxes, Instances

H = W = 40
DATASET_IDS = {0: 5, 1: 9}  # contiguous -> COCO category id


def _box_mask(x0, y0, x1, y1):
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


# ground truth: image id -> [(contiguous class, mask)]
GT = {
    11: [(0, _box_mask(0, 0, 10, 10)), (1, _box_mask(20, 20, 40, 40))],
    12: [(0, _box_mask(5, 5, 25, 15)), (0, _box_mask(0, 30, 8, 38))],
}
# predictions: image id -> [(class, mask, score)]: hits, a near miss, a wrong class, a false positive
PRED = {
    11: [
        (0, _box_mask(0, 0, 10, 9), 0.9),
        (1, _box_mask(22, 20, 40, 40), 0.8),
        (0, _box_mask(20, 0, 30, 10), 0.7),
    ],
    12: [
        (0, _box_mask(5, 5, 22, 15), 0.95),
        (1, _box_mask(0, 30, 8, 38), 0.6),
        (0, _box_mask(0, 29, 8, 36), 0.4),
    ],
}


def _gt_json():
    images, annotations = [], []
    for image_id, objs in GT.items():
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "height": H, "width": W})
        for cls, mask in objs:
            rle = _rle(mask)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": DATASET_IDS[cls],
                    "segmentation": rle,
                    "area": float(mask.sum()),
                    "bbox": mask_util.toBbox(rle).tolist(),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def _outputs(image_id, preds):
    inst = Instances((H, W))
    inst.pred_masks = torch.as_tensor(np.stack([m for _, m, _ in preds]))
    inst.scores = torch.tensor([s for _, _, s in preds])
    inst.pred_classes = torch.tensor([c for c, _, _ in preds])
    inst.pred_boxes = Boxes(torch.zeros(len(preds), 4))  # Mask2Former returns empty boxes
    return [{"image_id": image_id, "file_name": f"{image_id}.jpg"}], [{"instances": inst}]


def _run(ev, preds=PRED):
    ev.reset()
    for image_id, p in preds.items():
        ev.process(*_outputs(image_id, p))
    return ev.evaluate()


def _cocoeval_directly(json_file, preds=PRED):
    results = [
        {"image_id": image_id, "category_id": DATASET_IDS[c], "segmentation": _rle(m), "score": s}
        for image_id, p in preds.items()
        for c, m, s in p
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(json_file))
        e = COCOeval(gt, gt.loadRes(results), "segm")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def _same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9)


@pytest.fixture
def json_dataset(tmp_path):
    json_file = tmp_path / "instances.json"
    json_file.write_text(json.dumps(_gt_json()))
    name = f"test_coco_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).set(
        json_file=str(json_file),
        thing_classes=["cat", "dog"],
        thing_dataset_id_to_contiguous_id={5: 0, 9: 1},
    )
    yield name, json_file
    MetadataCatalog.remove(name)


def test_ap_matches_cocoeval(json_dataset, tmp_path):
    name, json_file = json_dataset
    res = _run(COCOEvaluator(name, output_dir=str(tmp_path / "out")))
    assert list(res) == ["segm"]
    segm = res["segm"]
    ref = _cocoeval_directly(json_file)
    for idx, metric in enumerate(["AP", "AP50", "AP75", "APs", "APm", "APl"]):
        expected = ref.stats[idx] * 100 if ref.stats[idx] >= 0 else float("nan")
        assert _same(segm[metric], expected), metric
    assert 0 < segm["AP"] < 100
    precision = ref.eval["precision"]
    for k, cls in enumerate(["cat", "dog"]):
        p = precision[:, :, k, 0, -1]
        assert _same(segm[f"AP-{cls}"], float(np.mean(p[p > -1])) * 100)
    dumped = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    assert sorted({d["category_id"] for d in dumped}) == [5, 9]  # mapped back to dataset ids


def test_perfect_predictions_give_100(json_dataset):
    name, _ = json_dataset
    perfect = {i: [(c, m, 1.0) for c, m in objs] for i, objs in GT.items()}
    segm = _run(COCOEvaluator(name, distributed=False), perfect)["segm"]
    assert segm["AP"] == pytest.approx(100.0) and segm["AP50"] == pytest.approx(100.0)
    assert segm["AP-cat"] == pytest.approx(100.0) and segm["AP-dog"] == pytest.approx(100.0)
    assert math.isnan(segm["APl"])  # no large objects: COCOeval says -1 -> NaN


def test_max_dets_per_image(json_dataset):
    """12 confident false positives push the only true cat of image 11 out of the top 11."""
    name, json_file = json_dataset
    fps = [(0, _box_mask(2 * k, 12, 2 * k + 2, 14), 0.5) for k in range(12)]
    preds = {11: fps + [(0, _box_mask(0, 0, 10, 10), 0.05)]}
    capped = _run(COCOEvaluator(name, distributed=False, max_dets_per_image=11), preds)["segm"]
    full = _run(COCOEvaluator(name, distributed=False), preds)["segm"]
    assert full["AP-cat"] > 0 and capped["AP-cat"] == 0.0

    results = [
        {"image_id": 11, "category_id": DATASET_IDS[c], "segmentation": _rle(m), "score": s}
        for c, m, s in preds[11]
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(json_file))
        e = COCOeval(gt, gt.loadRes(results), "segm")
        e.params.maxDets = [1, 10, 11]
        e.evaluate()
        e.accumulate()
    p = e.eval["precision"][:, :, :, 0, -1]
    assert _same(capped["AP"], float(np.mean(p[p > -1])) * 100)


def test_dataset_without_json_is_converted(tmp_path):
    """Dataset dicts with polygons / RLE and XYXY boxes -> COCO json, then the same AP as COCOeval."""
    name = f"test_coco_dicts_{uuid.uuid4().hex[:8]}"
    records = []
    for image_id, objs in GT.items():
        annos = []
        for cls, mask in objs:
            ys, xs = np.nonzero(mask)
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            seg = [[x0, y0, x1, y0, x1, y1, x0, y1]] if image_id == 11 else _rle(mask)
            annos.append(
                {"bbox": [x0, y0, x1, y1], "bbox_mode": 0, "category_id": cls, "segmentation": seg}
            )
        records.append(
            {
                "file_name": f"{image_id}.jpg",
                "image_id": image_id,
                "height": H,
                "width": W,
                "annotations": annos,
            }
        )
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(
        thing_classes=["cat", "dog"], thing_dataset_id_to_contiguous_id={5: 0, 9: 1}
    )
    try:
        coco = convert_to_coco_dict(name)
        assert [a["area"] for a in coco["annotations"]] == [100.0, 400.0, 200.0, 64.0]
        assert coco["annotations"][0]["bbox"] == [0.0, 0.0, 10.0, 10.0]
        assert [a["category_id"] for a in coco["annotations"]] == [5, 9, 5, 5]
        assert coco["categories"] == [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]

        with pytest.raises(ValueError, match="output_dir"):
            COCOEvaluator(name)
        out = tmp_path / "out"
        segm = _run(COCOEvaluator(name, output_dir=str(out)))["segm"]
        cached = out / f"{name}_coco_format.json"
        assert cached.is_file()
        ref = _cocoeval_directly(cached)
        assert _same(segm["AP"], ref.stats[0] * 100)
        assert _same(segm["AP50"], ref.stats[1] * 100)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_bad_inputs_raise(json_dataset):
    name, _ = json_dataset
    with pytest.raises(ValueError, match="keypoints"):
        COCOEvaluator(name, tasks=("keypoints",))
    ev = COCOEvaluator(name, distributed=False)
    bad = {11: [(3, _box_mask(0, 0, 5, 5), 0.5)]}
    with pytest.raises(KeyError, match="Predicted category 3"):
        _run(ev, bad)
