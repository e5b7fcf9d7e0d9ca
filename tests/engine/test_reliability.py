"""Nothing a user owns is overwritten or lost (issue: reliability 2, 3, 4): OUTPUT_DIR guard,
--resume config comparison, random-weights evaluation, full disk, free space, partial files."""
from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict

import pytest
import torch
from engine_helpers import REPO_ROOT, captured_logs, run_train_net, subprocess_env, train_net_command, tiny_opts
from torch import nn

from mask2former.checkpoint import DetectionCheckpointer
from mask2former.checkpoint import file_io
from mask2former.checkpoint.file_io import NoSpaceLeftError, atomic_write, remove_partial_files
from mask2former.config import get_cfg
from mask2former.engine import DefaultTrainer, default_argument_parser, default_setup
from mask2former.engine.output_dir import (
    RANDOM_INIT_KEY, OutputDirError, ResumeConfigError, check_free_space, expected_checkpoint_bytes,
    warn_if_random_init,
)


def checksums(folder: Path) -> Dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _args(*argv: str) -> argparse.Namespace:
    return default_argument_parser().parse_args(list(argv))


def _cfg(output_dir: Path, *opts: object):
    cfg = get_cfg()
    cfg.merge_from_list(["OUTPUT_DIR", str(output_dir), *[str(o) for o in opts]])
    cfg.freeze()
    return cfg


@pytest.fixture()
def previous_run(tmp_path: Path) -> Path:
    """An OUTPUT_DIR as a finished training run leaves it."""
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": {"w": torch.ones(3)}, "iteration": 99}, run / "model_final.pth")
    (run / "last_checkpoint").write_text("model_final.pth")
    (run / "config.yaml").write_text(_cfg(run).dump())
    (run / "metrics.json").write_text('{"iteration": 99, "total_loss": 1.5}\n')
    (run / "eval_results.json").write_text(json.dumps({"sem_seg": {"mIoU": 42.0}}))
    return run


# ---------------------------------------------------------------- 2: no silent overwrite
def test_training_over_a_previous_run_is_refused_and_changes_nothing(previous_run):
    before = checksums(previous_run)
    with pytest.raises(OutputDirError) as info:
        default_setup(_cfg(previous_run), _args())
    message = str(info.value)
    assert str(previous_run) in message and "model_final.pth" in message and "metrics.json" in message
    assert "--resume" in message and "--overwrite" in message
    assert checksums(previous_run) == before  # not even config.yaml or log.txt was written


def test_train_net_refuses_before_writing_anything(previous_run, tmp_path):
    # the README's command, run a second time in the same folder
    before = checksums(previous_run)
    proc = subprocess.run(train_net_command(tiny_opts(previous_run)), cwd=REPO_ROOT,
                          env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "already holds a run" in proc.stderr and "Traceback" not in proc.stderr
    assert checksums(previous_run) == before


def test_overwrite_deletes_the_previous_run_files(previous_run):
    (previous_run / ".model_0000009.pth.abc.tmp").write_bytes(b"partial")
    (previous_run / "events.out.tfevents.1700000000.host.1.0").write_bytes(b"tb")
    default_setup(_cfg(previous_run), _args("--overwrite"))
    assert sorted(p.name for p in previous_run.iterdir()) == ["config.yaml", "log.txt"]


def test_resume_and_overwrite_exclude_each_other(previous_run):
    with pytest.raises(ValueError, match="give only one"):
        default_setup(_cfg(previous_run), _args("--resume", "--overwrite"))


def test_a_fresh_or_empty_output_dir_needs_no_flag(tmp_path):
    default_setup(_cfg(tmp_path / "new"), _args())
    assert (tmp_path / "new" / "config.yaml").is_file()


# ---------------------------------------------------------------- 3: --resume compares configs first
def test_resume_with_changed_training_keys_names_them_before_writing(previous_run):
    before = checksums(previous_run)
    changed = _cfg(previous_run, "SOLVER.OPTIMIZER", "SGD", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 7,
                   "SOLVER.BASE_LR", 0.5)
    with pytest.raises(ResumeConfigError) as info:
        default_setup(changed, _args("--resume"))
    message, run = str(info.value), get_cfg()
    assert "in 3 key(s)" in message
    assert f"SOLVER.OPTIMIZER: {run.SOLVER.OPTIMIZER!r} (run) -> 'SGD' (now)" in message
    assert f"MODEL.SEM_SEG_HEAD.NUM_CLASSES: {run.MODEL.SEM_SEG_HEAD.NUM_CLASSES} (run) -> 7 (now)" in message
    assert f"SOLVER.BASE_LR: {run.SOLVER.BASE_LR!r} (run) -> 0.5 (now)" in message
    assert checksums(previous_run) == before  # config.yaml untouched


def test_resume_may_change_schedule_length_and_evaluation(previous_run):
    allowed = _cfg(previous_run, "SOLVER.MAX_ITER", 5000, "TEST.EVAL_PERIOD", 100,
                   "DATALOADER.NUM_WORKERS", 0, "MODEL.WEIGHTS", "elsewhere.pkl")
    with captured_logs("mask2former.engine.output_dir") as records:
        default_setup(allowed, _args("--resume"))
    changed = {r.getMessage().split(" changed")[0] for r in records}
    assert changed == {"--resume: SOLVER.MAX_ITER", "--resume: TEST.EVAL_PERIOD",
                       "--resume: DATALOADER.NUM_WORKERS", "--resume: MODEL.WEIGHTS"}


def test_resume_tolerates_keys_of_another_project_version(previous_run):
    saved = (previous_run / "config.yaml").read_text()
    (previous_run / "config.yaml").write_text(saved.replace("VIS_PERIOD: 0\n", "VIS_PERIOD: 0\nOLD_KEY: 3\n"))
    with captured_logs("mask2former.engine.output_dir") as records:
        default_setup(_cfg(previous_run), _args("--resume"))
    assert any("key OLD_KEY is 3" in r.getMessage() for r in records)


def test_resume_without_a_checkpoint_starts_fresh(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(_cfg(run, "SOLVER.BASE_LR", 1.0).dump())
    default_setup(_cfg(run), _args("--resume"))  # nothing to continue: no comparison


# ---------------------------------------------------------------- 2: evaluating random weights
def test_eval_only_keeps_the_runs_config_yaml(previous_run):
    before = checksums(previous_run)["config.yaml"]
    default_setup(_cfg(previous_run, "MODEL.WEIGHTS", "x.pth"), _args("--eval-only"))
    assert checksums(previous_run)["config.yaml"] == before
    assert (previous_run / "config_eval_only.yaml").is_file()


def test_random_weights_evaluation_warns_and_never_replaces_trained_results(previous_run):
    cfg = _cfg(previous_run)
    trained = checksums(previous_run)["eval_results.json"]
    with captured_logs("mask2former.engine.output_dir") as records:
        random_init = warn_if_random_init(cfg, resumed=False)
    assert random_init and any("MODEL.WEIGHTS is empty" in r.getMessage() for r in records)
    path = DefaultTrainer.save_results(cfg, {"sem_seg": {"mIoU": 3.0}}, random_init=True)
    assert Path(path).name == "eval_results_random_init.json"
    assert checksums(previous_run)["eval_results.json"] == trained
    saved = json.loads(Path(path).read_text())
    assert saved[RANDOM_INIT_KEY]["MODEL.WEIGHTS"] == "" and saved["sem_seg"] == {"mIoU": 3.0}


def test_random_weights_results_are_marked_in_eval_results_json(tmp_path):
    cfg = _cfg(tmp_path)
    path = DefaultTrainer.save_results(cfg, {"sem_seg": {"mIoU": 3.0}}, random_init=True)
    assert Path(path).name == "eval_results.json" and RANDOM_INIT_KEY in json.loads(Path(path).read_text())
    # a later random evaluation may replace a random one; trained weights' results replace anything
    DefaultTrainer.save_results(cfg, {"sem_seg": {"mIoU": 4.0}}, random_init=True)
    assert json.loads(Path(path).read_text())["sem_seg"]["mIoU"] == 4.0
    DefaultTrainer.save_results(cfg, {"sem_seg": {"mIoU": 50.0}})
    assert json.loads(Path(path).read_text()) == {"sem_seg": {"mIoU": 50.0}}


@pytest.mark.slow
def test_eval_only_without_weights_in_a_trained_run_folder(shapes_root, previous_run):
    # before: a random model's numbers silently replaced the trained run's eval_results.json
    before = checksums(previous_run)
    proc = run_train_net(shapes_root, ["--eval-only", *tiny_opts(previous_run)])
    assert "MODEL.WEIGHTS is empty: evaluating a RANDOMLY INITIALISED model" in proc.stdout
    after = checksums(previous_run)
    assert {name: after[name] for name in before} == before  # results, config, checkpoint, metrics kept
    random_results = json.loads((previous_run / "eval_results_random_init.json").read_text())
    assert random_results[RANDOM_INIT_KEY]["MODEL.WEIGHTS"] == ""
    assert {"sem_seg", "panoptic_seg", "segm"} <= set(random_results)


def test_trained_weights_or_resume_are_not_random():
    assert not warn_if_random_init(_cfg(Path("/nonexistent"), "MODEL.WEIGHTS", "m.pth"), resumed=False)
    assert not warn_if_random_init(_cfg(Path("/nonexistent")), resumed=True)


# ---------------------------------------------------------------- 4: full disk, free space, partial files
@pytest.fixture()
def full_disk(monkeypatch, tmp_path):
    """Temp files of atomic_write land on /dev/full: every write fails with the kernel's real ENOSPC
    (a full disk cannot be produced otherwise without root)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is not available")
    placeholder = tmp_path / "placeholder.tmp"

    def mkstemp(dir=None, prefix=None, suffix=None):
        placeholder.write_bytes(b"")
        return os.open("/dev/full", os.O_WRONLY), str(placeholder)

    monkeypatch.setattr(file_io.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(file_io.os, "chmod", lambda *a: None)


def test_full_disk_during_a_checkpoint_says_no_space_left_with_the_path(tmp_path, full_disk):
    out = tmp_path / "out"
    out.mkdir()
    model = nn.Linear(300, 300)
    (out / "model_0000009.pth").write_bytes(b"previous checkpoint")
    before = checksums(out)
    with pytest.raises(NoSpaceLeftError) as info:
        DetectionCheckpointer(model, str(out), save_to_disk=True).save("model_0000009")
    assert info.value.errno == errno.ENOSPC
    assert "No space left on device while writing" in str(info.value)
    assert str(out / "model_0000009.pth") in str(info.value)
    # the real torch error is kept as the cause
    assert "unexpected pos" in str(info.value.__cause__) or isinstance(info.value.__cause__, OSError)
    assert checksums(out) == before


def test_full_disk_while_writing_text(tmp_path, full_disk):
    with pytest.raises(NoSpaceLeftError, match="eval_results.json"):
        atomic_write(str(tmp_path / "eval_results.json"), lambda f: f.write(b"x" * 100000))


def test_free_space_check_refuses_a_disk_that_cannot_hold_one_checkpoint(tmp_path, monkeypatch):
    free = 10 * 2 ** 20
    monkeypatch.setattr("mask2former.engine.output_dir.shutil.disk_usage",
                        lambda path: shutil._ntuple_diskusage(100 * free, 99 * free, free))
    with pytest.raises(NoSpaceLeftError, match=r"one checkpoint needs about 22\.0 MiB, 10\.0 MiB are free"):
        check_free_space(str(tmp_path), 20 * 2 ** 20, 3)
    with captured_logs("mask2former.engine.output_dir") as records:
        check_free_space(str(tmp_path), 4 * 2 ** 20, 3)
    assert any("may fill up" in r.getMessage() for r in records)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_expected_checkpoint_size_matches_a_real_checkpoint(tmp_path, optimizer):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(200, 300), nn.BatchNorm1d(300), nn.Linear(300, 10))
    opt = (torch.optim.AdamW(model.parameters()) if optimizer == "adamw"
           else torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    estimate = expected_checkpoint_bytes(model, opt)  # before the first step: no state yet
    model(torch.randn(4, 200)).sum().backward()
    opt.step()
    DetectionCheckpointer(model, str(tmp_path), save_to_disk=True, optimizer=opt).save("m")
    actual = (tmp_path / "m.pth").stat().st_size
    assert 0.95 * actual < estimate < 1.05 * actual


def test_partial_checkpoint_files_are_removed_on_the_next_start(tiny_cfg, one_thread):
    cfg = tiny_cfg("SOLVER.MAX_ITER", 1)
    out = Path(cfg.OUTPUT_DIR)
    out.mkdir(parents=True)
    partial = [out / ".model_0000004.pth.k2j3h4.tmp", out / ".last_checkpoint.a1b2.tmp"]
    for p in partial:
        p.write_bytes(b"half a checkpoint")
    keep = out / "notes.tmp"  # not ours: kept
    keep.write_text("mine")
    DefaultTrainer(cfg)
    assert not any(p.exists() for p in partial) and keep.exists()


def test_remove_partial_files_only_touches_atomic_write_temp_files(tmp_path):
    fd, tmp = tempfile.mkstemp(dir=tmp_path, prefix=".model_final.pth.", suffix=".tmp")
    os.close(fd)
    (tmp_path / "model_final.pth").write_bytes(b"x")
    assert remove_partial_files(str(tmp_path)) == [tmp]
    assert sorted(os.listdir(tmp_path)) == ["model_final.pth"]


def test_train_net_docstring_names_configs_that_exist():
    import re

    doc = (REPO_ROOT / "tools" / "train_net.py").read_text().split('"""')[1]
    configs = re.findall(r"--config-file (configs/\S+\.yaml)", doc)
    assert configs and all((REPO_ROOT / c).is_file() for c in configs), configs
