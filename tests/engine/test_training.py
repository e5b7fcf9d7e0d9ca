"""End-to-end training behaviour: the loss goes down, the output files, eval-only parity, exact
kill-and-resume, non-finite losses, device fallback and AMP (multi-process: test_distributed.py)."""
from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any, List

import pytest
import torch
from engine_helpers import (
    AUGMENTATION_OPTS,
    captured_logs,
    load_checkpoint,
    run_train_net,
    start_and_kill_after,
    tiny_opts,
)

from mask2former.engine import AMPTrainer, DefaultTrainer, NonFiniteLossError, SimpleTrainer


def read_metrics(output_dir: Path) -> List[dict]:
    with open(output_dir / "metrics.json") as f:
        return [json.loads(line) for line in f if line.strip()]


def assert_same_tree(a: Any, b: Any, path: str = "checkpoint") -> None:
    """Bit-identical nested dicts / lists of tensors and plain values (NaN equals NaN)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(a, b), f"{path} differs (max abs diff {(a.double() - b.double()).abs().max().item()})"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(map(str, set(a) ^ set(b)))}"
        for key in a:
            assert_same_tree(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


# --------------------------------------------------------------------------- a real training run
TRAIN_ITERS = 40


@pytest.fixture(scope="module")
def trained_run(shapes_root, tmp_path_factory) -> Path:
    """``train_net.py`` for 40 iterations on the tiny panoptic shapes, with end-of-training eval."""
    output_dir = tmp_path_factory.mktemp("trained") / "output"
    run_train_net(shapes_root, tiny_opts(output_dir, "SOLVER.MAX_ITER", TRAIN_ITERS, "SOLVER.BASE_LR", "0.004"))
    return output_dir


@pytest.mark.slow
def test_training_lowers_the_loss_and_writes_the_outputs(trained_run: Path):
    names = {p.name for p in trained_run.iterdir()}
    for expected in ("config.yaml", "log.txt", "metrics.json", "last_checkpoint", "model_final.pth",
                     "eval_results.json"):
        assert expected in names, f"{expected} missing from {sorted(names)}"
    assert any(name.startswith("events.out.tfevents.") for name in names), sorted(names)
    assert (trained_run / "last_checkpoint").read_text().strip() == "model_final.pth"
    assert "Starting training from iteration 0" in (trained_run / "log.txt").read_text()
    assert f"OUTPUT_DIR: {trained_run}" in (trained_run / "config.yaml").read_text()

    # metrics.json: a line every 20 iterations with the total loss smoothed (median of the last
    # 20 iterations), then the evaluation results.
    metrics = read_metrics(trained_run)
    losses = {m["iteration"]: m["total_loss"] for m in metrics if "total_loss" in m}
    assert sorted(losses) == [19, 39]
    assert all(math.isfinite(v) for v in losses.values())
    assert losses[39] < 0.85 * losses[19], losses
    assert {"lr", "time", "data_time", "loss_ce", "loss_mask", "loss_dice", "loss_ce_0"} <= set(metrics[0])
    assert "sem_seg/mIoU" in metrics[-1] and metrics[-1]["iteration"] == TRAIN_ITERS

    final = load_checkpoint(trained_run / "model_final.pth")
    assert final["iteration"] == TRAIN_ITERS - 1
    assert final["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == TRAIN_ITERS


@pytest.mark.slow
def test_eval_only_reproduces_the_end_of_training_evaluation(shapes_root, trained_run: Path, tmp_path: Path):
    trained = json.loads((trained_run / "eval_results.json").read_text())
    assert set(trained) == {"sem_seg", "panoptic_seg", "segm"}
    assert trained["sem_seg"]["mIoU"] > 0  # the comparison below is not between all-zero tables

    eval_dir = tmp_path / "eval"
    weights = trained_run / "model_final.pth"
    run_train_net(shapes_root, ["--eval-only", *tiny_opts(eval_dir, "MODEL.WEIGHTS", weights)])
    evaluated = json.loads((eval_dir / "eval_results.json").read_text())
    assert_same_tree(trained, evaluated, "eval_results.json")


# --------------------------------------------------------------------------- exact resume
RESUME_ITERS, RESUME_PERIOD = 10, 4


def _resume_opts(num_workers: int) -> list:
    """Random augmentation on; with workers also a periodic evaluation right after each checkpoint
    (test-loader workers start there), without them no evaluation at all."""
    evaluation = ["TEST.EVAL_PERIOD", RESUME_PERIOD] if num_workers else ["DATASETS.TEST", "()"]
    return ["SOLVER.MAX_ITER", RESUME_ITERS, "SOLVER.CHECKPOINT_PERIOD", RESUME_PERIOD,
            "DATALOADER.NUM_WORKERS", num_workers, "SOLVER.BASE_LR", "0.002", *evaluation, *AUGMENTATION_OPTS]


@pytest.fixture(scope="module")
def uninterrupted_runs(shapes_root, tmp_path_factory) -> dict:
    """{num_workers: output dir} of uninterrupted 10-iteration runs with random augmentation."""
    runs = {}
    for workers in (0, 2):
        output_dir = tmp_path_factory.mktemp(f"uninterrupted_w{workers}") / "output"
        run_train_net(shapes_root, tiny_opts(output_dir, *_resume_opts(workers)))
        runs[workers] = output_dir
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("num_workers", [0, 2])
def test_kill_and_resume_is_bit_identical(shapes_root, uninterrupted_runs, tmp_path: Path, num_workers: int):
    output_dir = tmp_path / "output"
    opts = tiny_opts(output_dir, *_resume_opts(num_workers))
    first = f"model_{RESUME_PERIOD - 1:07d}.pth"
    start_and_kill_after(shapes_root, opts, output_dir, first)
    assert not (output_dir / "model_final.pth").exists()
    assert (output_dir / "last_checkpoint").read_text().strip() == first

    run_train_net(shapes_root, ["--resume", *opts])
    assert f"Starting training from iteration {RESUME_PERIOD}" in (output_dir / "log.txt").read_text()

    reference = uninterrupted_runs[num_workers]
    for name in (f"model_{2 * RESUME_PERIOD - 1:07d}.pth", "model_final.pth"):
        expected, resumed = load_checkpoint(reference / name), load_checkpoint(output_dir / name)
        # weights, optimizer (AdamW moments and steps), LR scheduler, iteration and RNG states
        assert_same_tree(expected, resumed, name)
    assert resumed["iteration"] == RESUME_ITERS - 1
    assert resumed["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == RESUME_ITERS


@pytest.mark.slow
def test_data_workers_do_not_change_the_training(uninterrupted_runs):
    """The same samples, augmentations and model randomness with 0 or 2 loader workers."""
    zero = load_checkpoint(uninterrupted_runs[0] / "model_final.pth")
    two = load_checkpoint(uninterrupted_runs[2] / "model_final.pth")
    assert_same_tree(zero, two, "model_final.pth")


# --------------------------------------------------------------------------- in-process DefaultTrainer
def test_non_finite_loss_stops_training_naming_iteration_and_losses(tiny_cfg, one_thread):
    cfg = tiny_cfg("SOLVER.MAX_ITER", 10, "DATASETS.TEST", "()")
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)

    def poison(criterion, inputs, losses):  # the criterion's loss dict turns NaN at iteration 2
        if trainer.iter == 2:
            return {**losses, "loss_dice_1": losses["loss_dice_1"] * float("nan")}
        return losses

    trainer.model.criterion.register_forward_hook(poison)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.train()
    message = str(info.value)
    assert message.startswith("Loss became infinite or NaN at iteration=2!"), message
    assert "loss_dice_1=nan" in message
    assert re.search(r"loss_ce=\d+\.\d+", message) and "loss_mask_0=" in message, message
    assert isinstance(info.value, FloatingPointError)  # detectron2's exception type
    assert trainer.iter == 2
    assert not (Path(cfg.OUTPUT_DIR) / "model_final.pth").exists()
    # the step was not taken: the optimizer has done exactly the two finite steps
    steps = {int(state["step"]) for state in trainer.optimizer.state.values()}
    assert steps == {2}


def test_diverging_model_stops_naming_the_iteration(tiny_cfg, one_thread):
    # With a huge LR the predictions become NaN and the matcher fails before any loss exists.
    cfg = tiny_cfg("SOLVER.MAX_ITER", 10, "DATASETS.TEST", "()", "SOLVER.BASE_LR", 1e30,
                   "SOLVER.CLIP_GRADIENTS.ENABLED", False)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    with pytest.raises(NonFiniteLossError, match=r"at iteration=\d+") as info:
        trainer.train()
    assert f"iteration={trainer.iter}" in str(info.value)
    assert trainer.iter >= 1


def test_cuda_device_falls_back_to_cpu_with_a_warning(tiny_cfg, one_thread):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: nothing falls back")
    cfg = tiny_cfg("MODEL.DEVICE", "cuda", "SOLVER.MAX_ITER", 2, "DATASETS.TEST", "()")
    with captured_logs() as records:
        trainer = DefaultTrainer(cfg)
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any("MODEL.DEVICE=cuda" in w and "CPU" in w for w in warnings), warnings
    assert {p.device.type for p in trainer.model.parameters()} == {"cpu"}
    trainer.train()
    assert trainer.iter == 2


class _DtypeProbe:
    """Records the output dtype of a Linear layer of the transformer decoder."""

    def __init__(self, model: torch.nn.Module):
        layer = next(m for name, m in model.named_modules()
                     if isinstance(m, torch.nn.Linear) and "predictor" in name)
        self.dtypes: List[torch.dtype] = []
        layer.register_forward_hook(lambda mod, inputs, output: self.dtypes.append(output.dtype))


def test_amp_bfloat16_autocasts_on_cpu(tiny_cfg, one_thread, monkeypatch):
    import mask2former.engine.default_trainer as default_trainer

    monkeypatch.setattr(default_trainer, "cpu_has_fast_bfloat16", lambda: True)  # also where it is slow
    cfg = tiny_cfg("SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.PRECISION", "bfloat16", "SOLVER.MAX_ITER", 3,
                   "DATASETS.TEST", "()")
    trainer = DefaultTrainer(cfg)
    assert isinstance(trainer._trainer, AMPTrainer)
    assert trainer._trainer.precision == torch.bfloat16 and not trainer._trainer.grad_scaler.is_enabled()
    probe = _DtypeProbe(trainer.model)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    assert probe.dtypes and set(probe.dtypes) == {torch.bfloat16}
    after = trainer.model.state_dict()
    assert all(v.dtype == before[k].dtype for k, v in after.items())  # weights stay float32
    assert any(not torch.equal(v, before[k]) for k, v in after.items())
    losses = trainer.storage.history("total_loss").values()
    assert len(losses) == 3 and all(math.isfinite(v) for v, _ in losses)


@pytest.mark.parametrize("precision, native_bf16", [("float16", True), ("bfloat16", False)])
def test_amp_without_cpu_support_warns_and_trains_in_float32(tiny_cfg, one_thread, monkeypatch, precision: str,
                                                             native_bf16: bool):
    """float16 autocast needs CUDA; bfloat16 needs a CPU where it is faster than float32
    (``cpu_has_fast_bfloat16``: AMX tiles, or AVX512-BF16 measured fast; else float32)."""
    import mask2former.engine.default_trainer as default_trainer

    monkeypatch.setattr(default_trainer, "cpu_has_fast_bfloat16", lambda: native_bf16)
    cfg = tiny_cfg("SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.PRECISION", precision, "SOLVER.MAX_ITER", 2,
                   "DATASETS.TEST", "()")
    with captured_logs() as records:
        trainer = DefaultTrainer(cfg)
    assert any(precision in r.getMessage() and "float32" in r.getMessage() for r in records)
    assert type(trainer._trainer) is SimpleTrainer
    probe = _DtypeProbe(trainer.model)
    trainer.train()
    assert probe.dtypes and set(probe.dtypes) == {torch.float32}


@pytest.mark.parametrize("seed", [7, -1])
def test_in_process_resume_continues_exactly(tiny_cfg, one_thread, tmp_path: Path, seed: int):
    """``resume_or_load`` restores weights, optimizer, scheduler, RNG and data position, also
    for SEED -1 (a random data seed, which the resumed run must reuse)."""
    cfg = tiny_cfg("SOLVER.MAX_ITER", 6, "SOLVER.CHECKPOINT_PERIOD", 3, "DATASETS.TEST", "()", "SEED", seed,
                   *AUGMENTATION_OPTS)
    DefaultTrainer(cfg).train()
    full = Path(cfg.OUTPUT_DIR)

    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    (resumed_dir / "model_0000002.pth").write_bytes((full / "model_0000002.pth").read_bytes())
    (resumed_dir / "last_checkpoint").write_text("model_0000002.pth")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = str(resumed_dir)
    torch.manual_seed(12345)  # whatever this process did before must not matter
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 3
    trainer.train()
    assert_same_tree(load_checkpoint(full / "model_final.pth"), load_checkpoint(resumed_dir / "model_final.pth"))
