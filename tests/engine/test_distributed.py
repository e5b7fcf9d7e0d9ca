"""Multi-process training on CPU (gloo): ``launch`` spawning, torchrun, and equivalence with one
process training on the same total batch."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from engine_helpers import load_checkpoint, run_train_net, tiny_opts

from mask2former.engine import launch
from mask2former.utils import comm

# Deterministic, batch-splittable math: no BatchNorm batch statistics (FrozenBN), the MaskFormer v1
# loss (full-resolution masks, no random points in the loss or the matcher), a no-object class
# weight of 1 (so every process's class-loss mean has the same denominator), no aspect-ratio
# grouping, SGD (Adam would turn rounding noise in gradients that are numerically zero into
# lr-sized steps), and no random augmentation: the MaskFormer mappers always flip (as the
# official ones), and sample p of rank r is augmented with a seed of (r, p), so one and two
# processes would flip different images. The LSJ mapper at scale 1 on 64x64 images with
# RANDOM_FLIP none changes nothing. Float32 (the shapes config trains in bfloat16 where the CPU
# has it, whose rounding depends on how the batch is split).
# With CUDA, ``launch`` / torchrun give each process a GPU and NCCL; these tests are about CPU gloo.
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: launch would use GPUs and NCCL")

EQUIVALENCE_OPTS = [
    "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "4", "SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR", "0.01",
    "MODEL.RESNETS.NORM", "FrozenBN", "MODEL.MASK_FORMER.CRITERION", "maskformer",
    "MODEL.MASK_FORMER.NO_OBJECT_WEIGHT", "1.0", "DATALOADER.ASPECT_RATIO_GROUPING", "False",
    "INPUT.DATASET_MAPPER_NAME", "coco_panoptic_lsj", "INPUT.IMAGE_SIZE", "64", "INPUT.MIN_SCALE", "1.0",
    "INPUT.MAX_SCALE", "1.0", "INPUT.RANDOM_FLIP", "none",
    "DATASETS.TEST", "()", "SOLVER.AMP.ENABLED", "False",
]


def _train(shapes_root: Path, output_dir: Path, *launcher_args: str, module_launcher=None) -> dict:
    run_train_net(shapes_root, [*launcher_args, *tiny_opts(output_dir, *EQUIVALENCE_OPTS)],
                  module_launcher=module_launcher)
    return load_checkpoint(output_dir / "model_final.pth")


def _last_total_loss(output_dir: Path) -> float:
    lines = [json.loads(line) for line in (output_dir / "metrics.json").read_text().splitlines() if line]
    return [m["total_loss"] for m in lines if "total_loss" in m][-1]


@pytest.fixture(scope="module")
def one_process_run(shapes_root, tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("one_process") / "output"
    _train(shapes_root, output_dir)
    return output_dir


@pytest.fixture(scope="module")
def two_process_run(shapes_root, tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("two_processes") / "output"
    _train(shapes_root, output_dir, "--num-gpus", "2", "--dist-url", "auto")
    return output_dir


def _assert_close_weights(expected: dict, actual: dict) -> None:
    assert set(expected) == set(actual)
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")


def _momentum_buffers(checkpoint: dict) -> dict:
    state = checkpoint["trainer"]["_trainer"]["optimizer"]["state"]
    return {str(k): v["momentum_buffer"] for k, v in state.items()}


@cpu_only
@pytest.mark.slow
def test_two_gloo_processes_train_like_one_process_with_the_same_total_batch(one_process_run, two_process_run):
    one = load_checkpoint(one_process_run / "model_final.pth")
    two = load_checkpoint(two_process_run / "model_final.pth")
    _assert_close_weights(one["model"], two["model"])
    assert one["iteration"] == two["iteration"] == 2
    # the SGD momentum buffers (a running sum of the gradients) agree as well, and are not zero
    momentum_one = _momentum_buffers(one)
    momentum_two = _momentum_buffers(two)
    _assert_close_weights(momentum_one, momentum_two)
    assert sum(int(buf.count_nonzero()) for buf in momentum_one.values()) > 0.5 * sum(
        buf.numel() for buf in momentum_one.values())
    # rank 0 logs the mean of the per-process losses: the one-process loss
    assert _last_total_loss(two_process_run) == pytest.approx(_last_total_loss(one_process_run), rel=1e-5)
    log = (two_process_run / "log.txt").read_text()
    assert "World size: 2" in log
    assert (two_process_run / "log.txt.rank1").exists()


@cpu_only
@pytest.mark.slow
def test_torchrun_two_processes_match_launch(shapes_root, two_process_run, tmp_path):
    output_dir = tmp_path / "output"
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    final = _train(shapes_root, output_dir, module_launcher=torchrun)
    spawned = load_checkpoint(two_process_run / "model_final.pth")
    _assert_close_weights(spawned["model"], final["model"])
    assert "World size: 2" in (output_dir / "log.txt").read_text()


# --------------------------------------------------------------------------- launch itself
def _report_rank(out_dir: str) -> None:
    """Runs in every launched process: write what the process group looks like."""
    info = {
        "rank": comm.get_rank(), "world_size": comm.get_world_size(), "local_rank": comm.get_local_rank(),
        "backend": dist.get_backend() if dist.is_initialized() else None,
        "gathered": comm.all_gather(comm.get_rank()),
    }
    with open(os.path.join(out_dir, f"rank{info['rank']}.json"), "w") as f:
        json.dump(info, f)


@cpu_only
@pytest.mark.slow  # two fresh interpreters importing torch: ~10 s on a busy machine
def test_launch_spawns_gloo_processes_without_cuda(tmp_path):
    launch(_report_rank, 2, dist_url="auto", args=(str(tmp_path),))
    infos = sorted((json.loads(p.read_text()) for p in tmp_path.glob("rank*.json")), key=lambda i: i["rank"])
    assert [i["rank"] for i in infos] == [0, 1]
    for info in infos:
        assert info["world_size"] == 2 and info["backend"] == "gloo"
        assert info["local_rank"] == info["rank"]
        assert info["gathered"] == [0, 1]
    assert not dist.is_initialized()  # the parent process stays out of the group


def test_launch_with_one_process_calls_the_function_here(tmp_path, monkeypatch):
    # torchrun with a single process sets WORLD_SIZE=1: no process group is needed
    for name, value in {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    calls = []
    launch(lambda x: calls.append((x, os.getpid(), dist.is_initialized())), 1, args=("arg",))
    assert calls == [("arg", os.getpid(), False)]


def test_amp_trainer_accepts_a_cpu_ddp_model(tmp_path):
    """CPU DDP has ``device_ids`` None (it once made AMPTrainer raise a TypeError)."""
    from torch.nn.parallel import DistributedDataParallel

    from mask2former.engine import AMPTrainer

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = DistributedDataParallel(torch.nn.Linear(2, 1))
        assert model.device_ids is None
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        trainer = AMPTrainer(model, [], optimizer, precision=torch.bfloat16)
        assert trainer.precision == torch.bfloat16 and not trainer.grad_scaler.is_enabled()
    finally:
        dist.destroy_process_group()
