"""tools/demo.py --onnx and tools/benchmark.py --backend on tiny exports."""
from __future__ import annotations

import subprocess
import sys

import cv2
import pytest

from deploy_helpers import random_image, tiny_cfg

pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_demo_draws_onnx_predictions(repo_root, static_export, tmp_path):
    exported = static_export("swin_msdeform_m2f")
    cv2.imwrite(str(tmp_path / "in.png"), random_image(2, 64, 96))
    proc = subprocess.run(
        [sys.executable, "tools/demo.py", "--onnx", exported["dir"], "--input", str(tmp_path / "in.png"),
         "--output", str(tmp_path / "out.png")],
        cwd=str(repo_root), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "panoptic segments" in proc.stderr + proc.stdout
    drawn = cv2.imread(str(tmp_path / "out.png"))
    assert drawn is not None and drawn.shape[:2] == (64, 96)


def test_demo_onnx_missing_folder(repo_root, tmp_path):
    cv2.imwrite(str(tmp_path / "in.png"), random_image(2, 32, 32))
    proc = subprocess.run(
        [sys.executable, "tools/demo.py", "--onnx", str(tmp_path / "nothing"), "--input", str(tmp_path / "in.png"),
         "--output", str(tmp_path / "out.png")],
        cwd=str(repo_root), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "--onnx:" in proc.stderr and "deploy.json does not exist" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "torch_export"])
def test_benchmark_backend(repo_root, tmp_path, backend):
    config = tmp_path / "tiny.yaml"
    cfg = tiny_cfg("resnet_fpn_standard")
    cfg.DATASETS.TEST = ("coco_2017_val_panoptic_with_sem_seg",)  # metadata with thing classes
    config.write_text(cfg.dump())
    proc = subprocess.run(
        [sys.executable, "tools/benchmark.py", "--config-file", str(config), "--backend", backend,
         "--input-size", "64x96", "--num-iter", "2", "--warmup", "1", "--no-yardstick", "--threads", "1"],
        cwd=str(repo_root), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"backend {backend}: whole inference" in proc.stdout
    assert "| total" in proc.stdout
