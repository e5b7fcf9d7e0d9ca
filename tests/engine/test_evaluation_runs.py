"""Evaluation runs of DefaultTrainer / train_net.py: semantic TTA under the official ``_TTA`` keys
(one and two gloo processes), and a custom panoptic dataset registered without an instances json."""
from __future__ import annotations

import contextlib
import io
import json
import uuid
from pathlib import Path

import pytest
import torch
from engine_helpers import PANOPTIC_CONFIG, captured_logs, run_train_net, tiny_opts
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mask2former.config import get_cfg
from mask2former.data import DatasetCatalog, MetadataCatalog
from mask2former.data.datasets import get_shapes_metadata, register_coco_panoptic
from mask2former.engine import DefaultTrainer
from mask2former.modeling import build_model

TTA_OPTS = ["TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(48, 80)", "TEST.AUG.MAX_SIZE", "96",
            "TEST.AUG.FLIP", "True"]


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    """A tiny untrained panoptic Mask2Former saved as a checkpoint (the same weights in every run)."""
    cfg = get_cfg()
    cfg.merge_from_file(str(PANOPTIC_CONFIG))
    cfg.merge_from_list(tiny_opts(tmp_path_factory.mktemp("unused")))
    torch.manual_seed(3)
    state = build_model(cfg).state_dict()
    # sharpen the class and mask predictions, so that the untrained model's semantic argmax varies
    # over the image (at init it is one class everywhere, whatever the augmentation)
    state["sem_seg_head.predictor.class_embed.weight"] *= 20
    state["sem_seg_head.predictor.mask_embed.layers.2.weight"] *= 100
    path = tmp_path_factory.mktemp("weights") / "random.pth"
    torch.save({"model": state}, path)
    return path


@pytest.mark.slow  # two train_net.py evaluations (one with two processes): ~40 s on a busy machine
def test_eval_only_with_tta_one_and_two_processes(shapes_root, random_weights, tmp_path):
    runs = {}
    for procs in (1, 2):
        out = tmp_path / f"procs{procs}"
        run_train_net(shapes_root, ["--eval-only", "--num-gpus", procs,
                                    *tiny_opts(out, "MODEL.WEIGHTS", random_weights, *TTA_OPTS)])
        runs[procs] = json.loads((out / "eval_results.json").read_text())
    one, two = runs[1], runs[2]
    # the panoptic config's evaluations, then the TTA one under the official key (semantic only)
    assert list(one) == ["panoptic_seg", "segm", "sem_seg", "sem_seg_TTA"]
    assert set(one["sem_seg_TTA"]) == set(one["sem_seg"]) and "mIoU" in one["sem_seg_TTA"]
    assert one["sem_seg_TTA"] != one["sem_seg"]  # the augmented copies changed the predictions
    assert two["sem_seg_TTA"] == one["sem_seg_TTA"]
    assert (tmp_path / "procs1" / "inference_TTA").is_dir()


def test_custom_panoptic_dataset_without_instances_json(shapes_root, tiny_cfg, tmp_path, one_thread,
                                                        coco_encoder_layout):
    """The README's register_coco_panoptic (no instances_json): PQ and mask AP are computed (AP on
    the derived json, as COCOeval gives it), mIoU is skipped with a warning (no semantic labels)."""
    base = shapes_root / "shapes"
    name = f"custom_panoptic_{uuid.uuid4().hex[:8]}"
    register_coco_panoptic(name, get_shapes_metadata(), str(base / "val" / "images"), str(base / "val" / "panoptic"),
                           str(base / "annotations" / "panoptic_val.json"))
    try:
        # the COCO configs' encoder layout (res3-res5, an FPN level at 1/4): the random model of
        # this seed predicts thing masks (the shapes recipe's res2-res4 one of this seed predicts none)
        cfg = tiny_cfg("DATASETS.TEST", f"('{name}',)", *coco_encoder_layout)
        torch.manual_seed(5)
        model = DefaultTrainer.build_model(cfg)
        with captured_logs() as records:
            results = DefaultTrainer.test(cfg, model)
        assert list(results) == ["panoptic_seg", "segm"]
        assert any("no semantic labels" in r.getMessage() for r in records)
        assert DefaultTrainer.save_results(cfg, results)

        inference = Path(cfg.OUTPUT_DIR) / "inference"
        derived = inference / f"{name}_coco_format.json"
        dets = json.loads((inference / "coco_instances_results.json").read_text())
        assert derived.is_file() and dets
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(derived))
            for d in dets:
                d.pop("bbox", None)  # mask AP uses the mask area, as the evaluator does
            e = COCOeval(gt, gt.loadRes(dets), "segm")
            e.evaluate()
            e.accumulate()
            e.summarize()
        assert results["segm"]["AP"] == pytest.approx(max(e.stats[0], 0) * 100)
        assert results["segm"]["AP50"] == pytest.approx(max(e.stats[1], 0) * 100)
        assert json.loads((Path(cfg.OUTPUT_DIR) / "eval_results.json").read_text()).keys() == {"panoptic_seg", "segm"}
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
