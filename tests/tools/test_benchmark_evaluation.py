"""tools/benchmark_evaluation.py: its synthetic data is valid input for every evaluator (nothing
is timed here)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))
import benchmark_evaluation as bench  # noqa: E402

from mask2former.evaluation import (  # noqa: E402
    COCOEvaluator,
    COCOPanopticEvaluator,
    CityscapesInstanceEvaluator,
    CityscapesSemSegEvaluator,
    SemSegEvaluator,
)
from mask2former.utils.catalog import MetadataCatalog  # noqa: E402


def test_generated_images_are_deterministic_and_cover_the_classes():
    ids, segments = bench.coco_like_image(3)
    again, _ = bench.coco_like_image(3)
    np.testing.assert_array_equal(ids, again)
    assert set(np.unique(ids).tolist()) == {s["id"] for s in segments}
    assert sum(s["isthing"] for s in segments) >= 1 and sum(not s["isthing"] for s in segments) == 3
    label_ids, instance_ids = bench.cityscapes_like_image(0)
    assert label_ids.shape == instance_ids.shape == bench.CITYSCAPES_HW
    assert (instance_ids[instance_ids >= 1000] // 1000 == label_ids[instance_ids >= 1000]).all()


@pytest.mark.slow  # full-size images (480x640 with 133 classes, 1024x2048): ~5-20 s
def test_every_evaluator_scores_the_generated_outputs(tmp_path):
    n = 2
    dataset = bench.write_coco_like(str(tmp_path / "coco"), n)
    sem_dir = MetadataCatalog.get(dataset).sem_seg_root

    def samples():
        for i in range(n):
            inputs, outputs = bench.coco_outputs(i)
            inputs["sem_seg_file_name"] = str(Path(sem_dir) / f"{i:012d}.png")
            yield inputs, outputs

    results = {}
    for evaluator in (
        SemSegEvaluator(dataset, distributed=False),
        COCOEvaluator(dataset, ("segm",), distributed=False),
        COCOPanopticEvaluator(dataset),
    ):
        t_process, t_eval, res = bench.time_evaluator(evaluator, samples)
        assert t_process > 0 and t_eval >= 0
        results.update(res)
    # outputs are the ground truth with small errors: high but imperfect scores
    assert 80 < results["sem_seg"]["mIoU"] < 100
    assert 50 < results["panoptic_seg"]["PQ"] < 100
    assert 10 < results["segm"]["AP"] < 100

    names = bench.write_cityscapes_like(str(tmp_path / "cityscapes"), 1)
    cs = bench.register_cityscapes_like(str(tmp_path / "cityscapes"))
    for evaluator, task, key in (
        (CityscapesSemSegEvaluator(cs), "sem_seg", "IoU"),
        (CityscapesInstanceEvaluator(cs), "segm", "AP"),
    ):
        _, _, res = bench.time_evaluator(evaluator, lambda: [bench.cityscapes_outputs(names[0], 0)])
        assert 10 < res[task][key] < 100, res
    MetadataCatalog.remove(dataset)
    MetadataCatalog.remove(cs)


def test_rows_extrapolate_to_the_full_validation_sets():
    row = bench._row("cityscapes", "X", 2, 10, [(2.0, 1.0), (4.0, 3.0), (3.0, 2.0)])
    assert row["process s/img"] == pytest.approx(0.3) and row["evaluate s"] == pytest.approx(2.0)
    assert row["full val s (est.)"] == pytest.approx(0.3 * 500 + 2.0 * 50)
