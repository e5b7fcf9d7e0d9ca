"""tools/benchmark.py on a video config (VideoMaskFormer, random weights, tiny clips)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VIDEO = REPO_ROOT / "configs" / "youtubevis_2019" / "video_maskformer2_R50_bs16_8ep.yaml"
TINY = ["MODEL.MASK_FORMER.DEC_LAYERS", "4", "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "1",
        "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "1024", "SOLVER.AMP.ENABLED", "False"]

_spec = importlib.util.spec_from_file_location("benchmark_tool_video", REPO_ROOT / "tools" / "benchmark.py")
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)


def _table(out: str) -> dict:
    return {m.group(1).strip(): float(m.group(2)) for m in
            re.finditer(r"^\| ([a-z ()-]+?)\s+\|\s+([\d.]+) \|", out, re.M)}


def test_video_inference_reports_seconds_per_clip(capsys):
    assert benchmark.main(["--config-file", str(VIDEO), "--task", "inference", "--input-size", "64x96",
                           "--num-frames", "3", "--num-iter", "1", "--warmup", "0", "--opts", *TINY]) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    assert {"backbone", "pixel decoder", "transformer decoder", "post-processing", "total"} <= set(rows)
    assert "median s/clip" in out and "(clips of 3 frames)" in out
    assert "Inference outputs: video instance" in out
    assert "MODEL.WEIGHTS model_final_3c8ec9.pkl is not available locally" in out
    assert re.search(r"Peak memory: \d+ MiB", out)


def test_video_train_step(capsys):
    assert benchmark.main(["--config-file", str(VIDEO), "--task", "train", "--input-size", "64x64",
                           "--num-iter", "1", "--warmup", "0", "--opts", *TINY]) == 0
    out = capsys.readouterr().out
    assert _table(out)["total"] > 0 and "(clips of 2 frames)" in out


def test_video_batches_and_bad_arguments():
    [video] = benchmark.random_video_batch(1, 4, (30, 40), num_classes=5, device="cpu", with_targets=True)
    assert len(video["image"]) == len(video["instances"]) == 4
    ids = [inst.gt_ids.tolist() for inst in video["instances"]]
    assert all(i == ids[0] for i in ids) and len(ids[0]) >= 1
    with pytest.raises(SystemExit):
        benchmark.main(["--config-file", str(VIDEO), "--batch-size", "2", "--opts", *TINY])
