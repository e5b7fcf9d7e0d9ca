"""SOLVER.CHECKPOINT_FORMAT safetensors in a real training run: the trainer writes
.safetensors + .state.pth pairs, and resuming from one continues bit for bit."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mask2former.checkpoint import load_checkpoint_file
from mask2former.config import get_cfg
from mask2former.data import DatasetCatalog, MetadataCatalog
from mask2former.data.datasets import ensure_shapes_dataset, get_shapes_metadata, load_coco_panoptic_json
from mask2former.engine import DefaultTrainer

REPO = Path(__file__).resolve().parents[2]
CONFIG = sorted((REPO / "configs" / "shapes" / "panoptic-segmentation").glob("maskformer2_R18_*.yaml"))[0]
DATASET = "safetensors_test_tiny_shapes_train"
TINY = ["MODEL.RESNETS.DEPTH", "18", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
        "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "1", "MODEL.MASK_FORMER.HIDDEN_DIM", "32",
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8", "MODEL.MASK_FORMER.DIM_FEEDFORWARD", "64",
        "MODEL.MASK_FORMER.DEC_LAYERS", "3", "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256", "SOLVER.IMS_PER_BATCH", "2",
        "INPUT.MIN_SIZE_TRAIN", "(48, 64)", "INPUT.MAX_SIZE_TRAIN", "64", "DATALOADER.NUM_WORKERS", "0",
        "MODEL.DEVICE", "cpu", "SEED", "7", "DATASETS.TEST", "()", "SOLVER.MAX_ITER", "6",
        "SOLVER.CHECKPOINT_PERIOD", "3", "SOLVER.CHECKPOINT_FORMAT", "safetensors"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("st_data")
    ensure_shapes_dataset(str(root), splits={"train": 6, "val": 1}, image_size=64)
    base = root / "shapes"
    paths = {"image_root": str(base / "train" / "images"), "panoptic_root": str(base / "train" / "panoptic"),
             "sem_seg_root": str(base / "train" / "semantic"),
             "panoptic_json": str(base / "annotations" / "panoptic_train.json"),
             "json_file": str(base / "annotations" / "instances_train.json")}
    meta = get_shapes_metadata()
    if DATASET not in DatasetCatalog:
        DatasetCatalog.register(DATASET, lambda: load_coco_panoptic_json(
            paths["panoptic_json"], paths["image_root"], paths["panoptic_root"], meta, paths["sem_seg_root"]))
        MetadataCatalog.get(DATASET).set(evaluator_type="coco_panoptic_seg", ignore_label=255, label_divisor=1000,
                                         **paths, **meta)
    return DATASET


def _cfg(output_dir: Path):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG))
    cfg.merge_from_list(TINY + ["DATASETS.TRAIN", f"('{DATASET}',)", "OUTPUT_DIR", str(output_dir)])
    cfg.freeze()
    return cfg


def _same(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"


@pytest.mark.slow
def test_trainer_resumes_exactly_from_safetensors(dataset, tmp_path):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        full = tmp_path / "full"
        DefaultTrainer(_cfg(full)).train()
        names = sorted(p.name for p in full.iterdir() if "model_" in p.name)
        assert names == ["model_0000002.safetensors", "model_0000002.state.pth", "model_0000005.safetensors",
                         "model_0000005.state.pth", "model_final.safetensors", "model_final.state.pth"]

        resumed = tmp_path / "resumed"
        resumed.mkdir()
        for name in ("model_0000002.safetensors", "model_0000002.state.pth"):
            shutil.copy(full / name, resumed / name)
        (resumed / "last_checkpoint").write_text("model_0000002.safetensors")
        torch.manual_seed(12345)  # whatever this process did before must not matter
        trainer = DefaultTrainer(_cfg(resumed))
        trainer.resume_or_load(resume=True)
        assert trainer.start_iter == 3
        trainer.train()
    finally:
        torch.set_num_threads(previous)
    _same(load_checkpoint_file(str(full / "model_final.safetensors")),
          load_checkpoint_file(str(resumed / "model_final.safetensors")))
