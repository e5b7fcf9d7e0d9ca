"""tools/predict.py: the files it writes hold exactly the model's predictions, and read back by
pycocotools / this package's PQ and mIoU code they give the same metrics as the in-memory
evaluation of the same predictions; --resume skips done images; --raw writes the per-query
outputs."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mask2former.config import get_cfg
from mask2former.data import DatasetCatalog, MetadataCatalog
from mask2former.data.datasets import ensure_shapes_dataset, get_shapes_metadata, load_coco_panoptic_json
from mask2former.data.detection_utils import read_image
from mask2former.engine import DefaultTrainer
from mask2former.engine.defaults import DefaultPredictor
from mask2former.engine.predictions import encode_semantic
from mask2former.evaluation import COCOEvaluator, COCOPanopticEvaluator, SemSegEvaluator
from mask2former.evaluation.panoptic_quality import pq_compute
from mask2former.utils.panoptic_utils import rgb2id

REPO = Path(__file__).resolve().parents[2]
CONFIG = sorted((REPO / "configs" / "shapes" / "panoptic-segmentation").glob("maskformer2_R18_*.yaml"))[0]
DATASET = "predict_test_tiny_shapes_val"
TINY = ["MODEL.RESNETS.DEPTH", "18", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
        "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "1", "MODEL.MASK_FORMER.HIDDEN_DIM", "32",
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8", "MODEL.MASK_FORMER.DIM_FEEDFORWARD", "64",
        "MODEL.MASK_FORMER.DEC_LAYERS", "3", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
        "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "True", "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "True",
        "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", "True", "MODEL.DEVICE", "cpu", "SEED", "7"]
# a few iterations on the 4 images themselves: predictions good enough for non-zero PQ / AP / mIoU
QUICK_TRAINING = ["SOLVER.MAX_ITER", "30", "SOLVER.BASE_LR", "0.008", "SOLVER.IMS_PER_BATCH", "2",
                  "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256", "INPUT.MIN_SIZE_TRAIN", "(64,)",
                  "INPUT.MAX_SIZE_TRAIN", "64", "DATALOADER.NUM_WORKERS", "0", "SOLVER.CHECKPOINT_PERIOD", "100000"]


def _predict_tool():
    spec = importlib.util.spec_from_file_location("predict_tool", REPO / "tools" / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny shapes val split (4 images, 64x64) registered here, and a tiny model quickly trained
    on it, saved to a file (so the tool and the in-memory run use the same weights)."""
    root = tmp_path_factory.mktemp("predict")
    ensure_shapes_dataset(str(root), splits={"train": 1, "val": 4}, image_size=64)
    base = root / "shapes"
    paths = {"image_root": str(base / "val" / "images"), "panoptic_root": str(base / "val" / "panoptic"),
             "sem_seg_root": str(base / "val" / "semantic"),
             "panoptic_json": str(base / "annotations" / "panoptic_val.json"),
             "json_file": str(base / "annotations" / "instances_val.json")}
    meta = get_shapes_metadata()
    if DATASET not in DatasetCatalog:
        DatasetCatalog.register(DATASET, lambda: load_coco_panoptic_json(
            paths["panoptic_json"], paths["image_root"], paths["panoptic_root"], meta, paths["sem_seg_root"]))
        MetadataCatalog.get(DATASET).set(evaluator_type="coco_panoptic_seg", ignore_label=255, label_divisor=1000,
                                         **paths, **meta)
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG))
    cfg.merge_from_list(TINY + ["DATASETS.TEST", f"('{DATASET}',)", "DATASETS.TRAIN", f"('{DATASET}',)"])
    train_cfg = cfg.clone()
    train_cfg.merge_from_list(QUICK_TRAINING + ["DATASETS.TEST", "()", "OUTPUT_DIR", str(root / "train")])
    train_cfg.freeze()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        DefaultTrainer(train_cfg).train()
    finally:
        torch.set_num_threads(threads)
    cfg.MODEL.WEIGHTS = str(root / "train" / "model_final.pth")
    cfg_file = root / "config.yaml"
    cfg_file.write_text(cfg.dump())
    cfg.freeze()
    return root, cfg, cfg_file, paths


def _in_memory(cfg, out_dir: Path):
    """The model's outputs per image and the in-memory metrics of the three evaluators."""
    predictor = DefaultPredictor(cfg)
    evaluators = [COCOPanopticEvaluator(DATASET), COCOEvaluator(DATASET, distributed=False),
                  SemSegEvaluator(DATASET, distributed=False)]
    for e in evaluators:
        e.reset()
    outputs = {}
    for d in DatasetCatalog.get(DATASET):
        with torch.no_grad():
            out = predictor(read_image(d["file_name"], format="BGR"))
        inp = {k: d[k] for k in ("file_name", "image_id", "sem_seg_file_name")}
        for e in evaluators:
            e.process([inp], [out])
        outputs[d["image_id"]] = out
    results = {}
    for e in evaluators:
        results.update(e.evaluate())
    return outputs, results


@pytest.mark.slow
def test_files_match_predictions_and_metrics(setup, tmp_path, capsys):
    root, cfg, cfg_file, paths = setup
    out = tmp_path / "preds"
    assert _predict_tool()(["--config-file", str(cfg_file), "--dataset", DATASET, "--output", str(out),
                            "--raw", "--no-progress"]) == 0
    outputs, expected = _in_memory(cfg, tmp_path)
    assert "Predicted 4 image(s)" in capsys.readouterr().out

    # --- the files hold exactly the predictions
    panoptic_json = json.loads((out / "panoptic_predictions.json").read_text())
    instances = json.loads((out / "instances_predictions.json").read_text())
    meta = MetadataCatalog.get(DATASET)
    thing_ids = {v: k for k, v in meta.thing_dataset_id_to_contiguous_id.items()}
    stuff_ids = {v: k for k, v in meta.stuff_dataset_id_to_contiguous_id.items()}
    assert len(panoptic_json["annotations"]) == 4 and len(panoptic_json["categories"]) == 7
    for ann in panoptic_json["annotations"]:
        ids, segments = outputs[ann["image_id"]]["panoptic_seg"]
        png = rgb2id(np.asarray(Image.open(out / "panoptic" / ann["file_name"]), dtype=np.uint32))
        assert np.array_equal(png, ids.numpy())
        want = [(s["id"], (thing_ids if s["isthing"] else stuff_ids)[s["category_id"]]) for s in segments]
        assert [(s["id"], s["category_id"]) for s in ann["segments_info"]] == want
        stem = os.path.splitext(ann["file_name"])[0]
        sem = np.asarray(Image.open(out / "semantic" / f"{stem}.png"))
        assert np.array_equal(sem, outputs[ann["image_id"]]["sem_seg"].argmax(0).numpy())
        raw = np.load(out / "raw" / f"{stem}.npz")
        assert raw["class_logits"].shape == (8, 8) and raw["mask_probs"].shape == (8, 16, 16)
        assert 0.0 <= raw["mask_probs"].min() and raw["mask_probs"].max() <= 1.0
        assert list(raw["output_size"]) == [64, 64]
        mine = [r for r in instances if r["image_id"] == ann["image_id"]]
        inst = outputs[ann["image_id"]]["instances"]
        assert len(mine) == len(inst) > 0
        for r, mask, score, cls in zip(mine, inst.pred_masks, inst.scores, inst.pred_classes):
            assert np.array_equal(mask_util.decode(r["segmentation"]).astype(bool), mask.numpy())
            assert r["score"] == pytest.approx(float(score)) and r["category_id"] == thing_ids[int(cls)]

    # --- read back: pycocotools (instances), our PQ (panoptic), our mIoU (semantic)
    gt = COCO(paths["json_file"])
    coco_eval = COCOeval(gt, gt.loadRes(str(out / "instances_predictions.json")), "segm")
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    assert 100 * coco_eval.stats[0] == pytest.approx(expected["segm"]["AP"], abs=1e-9)
    assert 100 * coco_eval.stats[1] == pytest.approx(expected["segm"]["AP50"], abs=1e-9)

    pq = pq_compute(paths["panoptic_json"], str(out / "panoptic_predictions.json"),
                    gt_folder=paths["panoptic_root"], pred_folder=str(out / "panoptic"))
    for name, suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
        assert 100 * pq[name]["pq"] == pytest.approx(expected["panoptic_seg"]["PQ" + suffix], abs=1e-9)
        assert 100 * pq[name]["sq"] == pytest.approx(expected["panoptic_seg"]["SQ" + suffix], abs=1e-9)

    sem_eval = SemSegEvaluator(DATASET, distributed=False)
    sem_eval.reset()
    for d in DatasetCatalog.get(DATASET):
        labels = torch.from_numpy(np.asarray(Image.open(out / "semantic" / (Path(d["file_name"]).stem + ".png")),
                                             dtype=np.int64))
        one_hot = torch.nn.functional.one_hot(labels, 7).permute(2, 0, 1).float()  # (K, H, W)
        sem_eval.process([{k: d[k] for k in ("file_name", "image_id", "sem_seg_file_name")}], [{"sem_seg": one_hot}])
    from_files = sem_eval.evaluate()["sem_seg"]
    for key in ("mIoU", "fwIoU", "mACC", "pACC"):
        assert from_files[key] == pytest.approx(expected["sem_seg"][key], abs=1e-9)
    # real numbers to compare (a quickly trained model, evaluated on its training images)
    assert expected["panoptic_seg"]["PQ"] > 1 and expected["segm"]["AP"] > 1 and expected["sem_seg"]["mIoU"] > 1


@pytest.mark.slow
def test_resume_skips_done_images(setup, tmp_path, capsys):
    root, cfg, cfg_file, paths = setup
    image_dir = Path(paths["image_root"])
    out = tmp_path / "preds"
    run = _predict_tool()
    args = ["--config-file", str(cfg_file), "--input", str(image_dir), "--output", str(out), "--no-progress"]
    assert run(args) == 0
    first = {p.name: p.stat().st_mtime_ns for p in (out / "panoptic").iterdir()}
    assert len(first) == 4 and "Predicted 4 image(s)" in capsys.readouterr().out

    records = sorted((out / "records").iterdir())
    records[0].unlink()  # as if interrupted before this image was complete
    assert run(args + ["--resume"]) == 0
    assert "Predicted 1 image(s) (3 already done)" in capsys.readouterr().out
    again = {p.name: p.stat().st_mtime_ns for p in (out / "panoptic").iterdir()}
    changed = [n for n in first if again[n] != first[n]]
    assert changed == [records[0].stem + ".png"]
    assert len(json.loads((out / "panoptic_predictions.json").read_text())["annotations"]) == 4

    with pytest.raises(SystemExit):
        run(["--config-file", str(cfg_file), "--input", str(tmp_path / "nothing-*.jpg"), "--output", str(out)])
    assert "matches no file" in capsys.readouterr().err


def test_semantic_encodings():
    labels = np.array([[0, 1], [18, 2]])
    assert encode_semantic(labels, "ids").tolist() == [[0, 1], [18, 2]]
    assert encode_semantic(labels, "ade20k").tolist() == [[1, 2], [19, 3]]
    # Cityscapes train ids -> label ids: road 7, sidewalk 8, building 11, bicycle 33
    assert encode_semantic(labels, "cityscapes").tolist() == [[7, 8], [33, 11]]
    with pytest.raises(ValueError, match="train ids 0..18"):
        encode_semantic(np.array([[19]]), "cityscapes")
