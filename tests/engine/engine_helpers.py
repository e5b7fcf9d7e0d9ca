"""Helpers of the engine tests: tiny configs, ``train_net.py`` runs, log capture, checkpoint loading.

Every run here trains a ~11M-parameter Mask2Former (ResNet-18, 32-d decoder, 8 queries) on 64x64
images with 2 images per batch, single-threaded: about 0.1-0.2 s per iteration on a CPU core.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_NET = REPO_ROOT / "tools" / "train_net.py"
# the panoptic shapes config (whatever its schedule suffix): PQ, mask AP and mIoU evaluation
PANOPTIC_CONFIG = sorted((REPO_ROOT / "configs" / "shapes" / "panoptic-segmentation").glob("maskformer2_R18_*.yaml"))[0]
TINY_SPLITS = {"train": 8, "val": 4}
TINY_IMAGE_SIZE = 64
IN_PROCESS_TRAIN = "engine_tiny_shapes_panoptic_train"
IN_PROCESS_VAL = "engine_tiny_shapes_panoptic_val"

# Small model, small images of one fixed size (the MaskFormer mappers still flip at random, whatever
# INPUT.RANDOM_FLIP says, as the official ones do), no data workers, fixed seed.
TINY_OPTS: List[str] = [
    "MODEL.RESNETS.DEPTH", "18",
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
    "INPUT.MIN_SIZE_TRAIN", "(64,)",
    "INPUT.MAX_SIZE_TRAIN", "64",
    "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64",
    "DATALOADER.NUM_WORKERS", "0",
    "TEST.DETECTIONS_PER_IMAGE", "8",
    "SEED", "7",
]

# More random augmentation: three short-edge sizes (on top of the flip).
AUGMENTATION_OPTS: List[str] = [
    "INPUT.MIN_SIZE_TRAIN", "(48, 64, 80)",
    "INPUT.MAX_SIZE_TRAIN", "96",
]


def tiny_opts(output_dir: os.PathLike, *extra: object) -> List[str]:
    """``TINY_OPTS`` plus ``OUTPUT_DIR`` and ``extra`` KEY VALUE pairs (later ones win)."""
    return TINY_OPTS + ["OUTPUT_DIR", str(output_dir)] + [str(x) for x in extra]


@contextlib.contextmanager
def captured_logs(name: str = "mask2former", level: int = logging.WARNING) -> Iterator[List[logging.LogRecord]]:
    """Records of logger ``name`` and its children at ``level`` or above (works when the
    project logger does not propagate to the root, where ``caplog`` listens)."""
    records: List[logging.LogRecord] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = _Collect(level)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def subprocess_env(shapes_root: Path, **extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        DETECTRON2_DATASETS=str(shapes_root),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def train_net_command(args: Sequence[object], module_launcher: Optional[Sequence[str]] = None) -> List[str]:
    """``python [launcher...] tools/train_net.py --config-file <tiny panoptic> args...``."""
    launcher = list(module_launcher or [])
    return [sys.executable, *launcher, str(TRAIN_NET), "--config-file", str(PANOPTIC_CONFIG),
            *[str(a) for a in args]]


def run_train_net(shapes_root: Path, args: Sequence[object], *, timeout: float = 300,
                  module_launcher: Optional[Sequence[str]] = None) -> subprocess.CompletedProcess:
    """Run ``tools/train_net.py`` as users do; fail the test with its output if it fails."""
    proc = subprocess.run(train_net_command(args, module_launcher), cwd=REPO_ROOT, env=subprocess_env(shapes_root),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"train_net.py {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc


def start_and_kill_after(shapes_root: Path, args: Sequence[object], output_dir: Path, checkpoint: str, *,
                         timeout: float = 300) -> None:
    """Start ``train_net.py args`` and SIGKILL it (with its data workers) as soon as
    ``output_dir/last_checkpoint`` names ``checkpoint``."""
    console = output_dir.parent / f"{output_dir.name}.killed_run.txt"  # a file: a pipe could fill up
    with open(console, "wb") as out:
        proc = subprocess.Popen(train_net_command(args), cwd=REPO_ROOT, env=subprocess_env(shapes_root),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    last_checkpoint = output_dir / "last_checkpoint"
    deadline = time.monotonic() + timeout
    try:
        while not (last_checkpoint.exists() and last_checkpoint.read_text().strip() == checkpoint):
            if proc.poll() is not None:
                out = console.read_text(errors="replace")
                pytest.fail(f"train_net.py ended ({proc.returncode}) before writing {checkpoint}:\n{out[-6000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{checkpoint} not written within {timeout} s")
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the process group: trainer and its loader workers
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"train_net.py was not killed (return code {proc.returncode})"


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
