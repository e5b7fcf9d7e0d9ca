"""tools/evaluate_pq_for_semantic_segmentation.py on SemSegEvaluator's own prediction file, against
a hand-computed PQ."""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mask2former.evaluation import SemSegEvaluator
from mask2former.utils.catalog import DatasetCatalog, MetadataCatalog

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:  # importable by name, also in the tool's worker processes
    sys.path.insert(0, str(TOOLS))
import evaluate_pq_for_semantic_segmentation as tool  # noqa: E402

# 4 classes (d never appears), 255 = ignore
GT = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 2, 2]], np.uint8)
PRED = np.array([[0, 0, 1, 0], [0, 1, 1, 1], [2, 2, 0, 1], [2, 2, 1, 2]])
# Image 1 (PRED), one segment per class; union = pred + gt - intersection - pred-on-void:
#   a: gt 4, pred 5 (1 on void), intersection 3 -> IoU 3 / (5 + 4 - 3 - 1) = 0.6  -> TP
#   b: gt 4, pred 6 (1 on void), intersection 3 -> IoU 3 / (6 + 4 - 3 - 1) = 0.5  -> FN + FP (not > 0.5)
#   c: gt 6, pred 5,             intersection 5 -> IoU 5 / (5 + 6 - 5) = 5/6      -> TP
# Image 2 predicts its ground truth exactly: a, b, c TP with IoU 1.
PQ_A = (0.6 + 1) / 2  # sum IoU / (TP + FP/2 + FN/2)
PQ_B = 1 / (1 + 0.5 + 0.5)
PQ_C = (5 / 6 + 1) / 2
SQ_B = 1.0
RQ_B = 1 / 2


@pytest.fixture
def predictions(tmp_path):
    name = f"test_pq_semantic_{uuid.uuid4().hex[:8]}"
    records = []
    for stem in ("img1", "img2"):
        Image.fromarray(GT).save(tmp_path / f"{stem}.png")
        records.append({"file_name": f"/images/{stem}.jpg", "sem_seg_file_name": str(tmp_path / f"{stem}.png")})
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(stuff_classes=["a", "b", "c", "d"], ignore_label=255)
    evaluator = SemSegEvaluator(name, distributed=False, output_dir=str(tmp_path / "out"))
    evaluator.reset()
    for record, pred in zip(records, [PRED, np.where(GT == 255, 3, GT)]):
        scores = torch.nn.functional.one_hot(torch.as_tensor(pred).long(), 4).permute(2, 0, 1).float()
        evaluator.process([dict(record)], [{"sem_seg": scores}])
    miou = evaluator.evaluate()["sem_seg"]["mIoU"]
    yield name, str(tmp_path / "out" / "sem_seg_predictions.json"), miou
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_pq_by_hand_and_miou_of_the_evaluator(predictions, capsys):
    name, json_file, miou = predictions
    res = tool.main(["--dataset-name", name, "--json-file", json_file])
    assert res["All"]["n"] == 3 and res["Stuff"] == res["All"]
    assert res["All"]["pq"] == pytest.approx((PQ_A + PQ_B + PQ_C) / 3)
    assert res["All"]["sq"] == pytest.approx((PQ_A + SQ_B + PQ_C) / 3)  # SQ = PQ where RQ = 1
    assert res["All"]["rq"] == pytest.approx((1 + RQ_B + 1) / 3)
    assert res["per_class"][1] == pytest.approx({"pq": PQ_B, "sq": SQ_B, "rq": RQ_B})
    assert res["sem_seg"]["mIoU"] == pytest.approx(miou)
    out = capsys.readouterr().out
    assert f"All       |  {100 * (PQ_A + PQ_B + PQ_C) / 3:4.1f}" in out and "mIoU:" in out


def test_two_worker_processes_give_the_same_numbers(predictions):
    name, json_file, _ = predictions
    one = tool.main(["--dataset-name", name, "--json-file", json_file])
    two = tool.main(["--dataset-name", name, "--json-file", json_file, "--workers", "2"])
    assert two["All"] == pytest.approx(one["All"]) and two["sem_seg"]["mIoU"] == pytest.approx(one["sem_seg"]["mIoU"])


def test_unknown_images_and_missing_files_are_named(predictions, tmp_path):
    name, _, _ = predictions
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        tool.main(["--dataset-name", name, "--json-file", str(tmp_path / "nothing.json")])
    with pytest.raises(KeyError, match="'other'"):
        tool.evaluate_pq_for_semantic_segmentation(
            name, [{"file_name": "x/other.jpg", "category_id": 0, "segmentation": None}]
        )
