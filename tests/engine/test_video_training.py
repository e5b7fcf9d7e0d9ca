"""Video training end to end on a tiny shapes_video: ``tools/train_net_video.py`` trains,
evaluates (YouTube-VIS AP, results.json) and resumes exactly after being killed; the
``VideoTrainer`` resumes exactly in-process too."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Sequence

import pytest
import torch
from engine_helpers import REPO_ROOT, load_checkpoint, subprocess_env
from test_training import assert_same_tree

from mask2former.config import get_cfg
from mask2former.data import DatasetCatalog
from mask2former.data.datasets import ensure_shapes_video_dataset, get_shapes_video_metadata, register_ytvis_instances
from mask2former.data.datasets.shapes_video import shapes_video_paths
from mask2former.engine.video_trainer import VideoTrainer

TRAIN_NET_VIDEO = REPO_ROOT / "tools" / "train_net_video.py"
VIDEO_CONFIG = sorted((REPO_ROOT / "configs" / "shapes" / "video-instance-segmentation").glob("*.yaml"))[0]

# a ~11M-parameter video model on 48x48 clips of 2 frames, 2 clips per batch, no data workers
TINY_VIDEO_OPTS: List[str] = [
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32",
    "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "1",
    "MODEL.MASK_FORMER.HIDDEN_DIM", "32",
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8",
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD", "64",
    "MODEL.MASK_FORMER.DEC_LAYERS", "3",
    "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256",
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.CHECKPOINT_PERIOD", "100000",
    "INPUT.MIN_SIZE_TRAIN", "(40, 48, 56)",
    "INPUT.MAX_SIZE_TRAIN", "96",
    "INPUT.MIN_SIZE_TEST", "48",
    "INPUT.MAX_SIZE_TEST", "96",
    "DATALOADER.NUM_WORKERS", "0",
    "SEED", "5",
]


@pytest.fixture(scope="module")
def video_root(tmp_path_factory) -> Path:
    """``$DETECTRON2_DATASETS`` with a tiny shapes_video (6 train / 2 val videos of 4 frames, 48x48)."""
    root = tmp_path_factory.mktemp("video_datasets")
    ensure_shapes_video_dataset(str(root), splits={"train": 6, "val": 2}, image_size=48, num_frames=4)
    return root


def _opts(output_dir: Path, *extra: object) -> List[str]:
    return TINY_VIDEO_OPTS + ["OUTPUT_DIR", str(output_dir)] + [str(x) for x in extra]


def _command(args: Sequence[object]) -> List[str]:
    return [sys.executable, str(TRAIN_NET_VIDEO), "--config-file", str(VIDEO_CONFIG), *[str(a) for a in args]]


def _run(root: Path, args: Sequence[object]) -> None:
    proc = subprocess.run(_command(args), cwd=REPO_ROOT, env=subprocess_env(root), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"train_net_video.py failed ({proc.returncode}):\n{proc.stdout[-6000:]}")


@pytest.mark.slow
def test_train_net_video_trains_and_evaluates(video_root: Path, tmp_path: Path):
    out = tmp_path / "output"
    _run(video_root, _opts(out, "SOLVER.MAX_ITER", 4))
    for name in ("config.yaml", "log.txt", "metrics.json", "model_final.pth", "eval_results.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / "eval_results.json").read_text())
    assert {"AP", "AP50", "AP75", "AR1", "AR10"} <= set(results["segm"])
    predictions = json.loads((out / "inference" / "shapes_video_val" / "results.json").read_text())
    # at most 10 tracks per video (the official top-10), one RLE per frame, dataset category ids
    assert {p["video_id"] for p in predictions} == {1, 2}
    assert all(len(p["segmentations"]) == 4 and p["category_id"] in (1, 2, 3, 4) for p in predictions)
    assert len(predictions) <= 2 * 10
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines() if line.strip()]
    assert metrics[-1]["iteration"] == 4 and "segm/AP" in metrics[-1]
    assert load_checkpoint(out / "model_final.pth")["iteration"] == 3

    # --eval-only with the final weights gives the same predictions and metrics
    evaluated = tmp_path / "eval"
    _run(video_root, ["--eval-only", *_opts(evaluated, "MODEL.WEIGHTS", out / "model_final.pth")])
    again = json.loads((evaluated / "inference" / "shapes_video_val" / "results.json").read_text())
    assert again == predictions
    assert json.loads((evaluated / "eval_results.json").read_text()) == results


def _start_and_kill_after(root: Path, args: Sequence[object], output_dir: Path, checkpoint: str) -> None:
    """Start ``train_net_video.py args``; SIGKILL it once ``last_checkpoint`` names ``checkpoint``."""
    console = output_dir.parent / "killed_run.txt"
    with open(console, "wb") as f:
        proc = subprocess.Popen(_command(args), cwd=REPO_ROOT, env=subprocess_env(root), stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
    last = output_dir / "last_checkpoint"
    deadline = time.monotonic() + 600
    try:
        while not (last.exists() and last.read_text().strip() == checkpoint):
            if proc.poll() is not None:
                pytest.fail(f"ended ({proc.returncode}) before {checkpoint}:\n{console.read_text()[-6000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{checkpoint} not written in time")
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_kill_and_resume_is_bit_identical(video_root: Path, tmp_path: Path):
    opts = ["SOLVER.MAX_ITER", 6, "SOLVER.CHECKPOINT_PERIOD", 3, "DATASETS.TEST", "()"]
    reference = tmp_path / "reference"
    _run(video_root, _opts(reference, *opts))

    resumed = tmp_path / "resumed"
    _start_and_kill_after(video_root, _opts(resumed, *opts), resumed, "model_0000002.pth")
    assert not (resumed / "model_final.pth").exists()
    _run(video_root, ["--resume", *_opts(resumed, *opts)])
    assert "Starting training from iteration 3" in (resumed / "log.txt").read_text()
    for name in ("model_0000005.pth", "model_final.pth"):
        # weights, optimizer, scheduler, iteration, RNG states
        assert_same_tree(load_checkpoint(reference / name), load_checkpoint(resumed / name), name)


@pytest.fixture()
def video_cfg(video_root: Path, tmp_path: Path):
    names = {}
    for split in ("train", "val"):
        name = f"engine_tiny_shapes_video_{split}"
        if name not in DatasetCatalog:
            paths = shapes_video_paths(str(video_root), split)
            register_ytvis_instances(name, get_shapes_video_metadata(), paths["json_file"], paths["image_root"])
        names[split] = name

    def make(*extra: object):
        cfg = get_cfg()
        cfg.merge_from_file(str(VIDEO_CONFIG))
        cfg.merge_from_list(_opts(tmp_path / "output", "DATASETS.TRAIN", f"('{names['train']}',)",
                                  "DATASETS.TEST", f"('{names['val']}',)", *extra))
        cfg.freeze()
        return cfg

    return make


@pytest.mark.slow
def test_video_trainer_resumes_exactly_in_process(video_cfg, one_thread, tmp_path: Path):
    cfg = video_cfg("SOLVER.MAX_ITER", 4, "SOLVER.CHECKPOINT_PERIOD", 2, "DATASETS.TEST", "()")
    trainer = VideoTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    full = Path(cfg.OUTPUT_DIR)
    losses = trainer.storage.history("total_loss").values()
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(v)) for v, _ in losses)

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "model_0000001.pth").write_bytes((full / "model_0000001.pth").read_bytes())
    (resumed / "last_checkpoint").write_text("model_0000001.pth")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = str(resumed)
    torch.manual_seed(999)  # whatever ran before must not matter
    trainer = VideoTrainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 2
    trainer.train()
    assert_same_tree(load_checkpoint(full / "model_final.pth"), load_checkpoint(resumed / "model_final.pth"))


def test_video_trainer_rejects_image_datasets_for_evaluation(video_cfg):
    with pytest.raises(NotImplementedError, match="evaluator_type='coco_panoptic_seg'"):
        VideoTrainer.build_evaluator(video_cfg(), "shapes_panoptic_val")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: launch would use GPUs and NCCL")
def test_two_processes_train_and_gather_the_evaluation(video_root: Path, tmp_path: Path):
    out = tmp_path / "output"
    _run(video_root, ["--num-gpus", "2", "--dist-url", "auto", *_opts(out, "SOLVER.MAX_ITER", 2)])
    assert load_checkpoint(out / "model_final.pth")["iteration"] == 1
    predictions = json.loads((out / "inference" / "shapes_video_val" / "results.json").read_text())
    assert {p["video_id"] for p in predictions} == {1, 2}  # one val video per process, gathered
    assert "AP" in json.loads((out / "eval_results.json").read_text())["segm"]
