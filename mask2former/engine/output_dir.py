"""Guarding a run's OUTPUT_DIR: no silent overwrite, no resume with an incompatible config, room to save.

Called by :func:`default_setup` (``tools/train_net.py``) *before anything is written*:

* **training** into an OUTPUT_DIR that already holds a run (``last_checkpoint``, ``*.pth`` /
  ``*.safetensors``, ``metrics.json``, ``eval_results.json``) is an :class:`OutputDirError`
  unless ``--resume`` (continue it) or ``--overwrite`` (delete those files first) is given;
* ``--resume`` with a checkpoint compares the config with the run's saved ``config.yaml`` and
  raises :class:`ResumeConfigError` naming every key that differs, except the keys of
  :data:`SAFE_TO_CHANGE_ON_RESUME` (logged): schedule length and periods, evaluation-only and
  inference-only settings, where the data loading runs. Optimizer, model, data and seed keys
  must match: they make a resumed run crash (``KeyError: 'momentum'``, size mismatches) or
  silently differ from the run it continues;
* ``--eval-only`` never replaces an existing ``config.yaml`` (it writes ``config_eval_only.yaml``).

:func:`check_free_space` (called by ``DefaultTrainer``) refuses to start when the disk cannot
hold one checkpoint, and warns when it cannot hold all the run will write.
"""
from __future__ import annotations

import logging
import os
import shutil
from typing import Any, Dict, List, Sequence, Tuple

import torch

from ..checkpoint.file_io import NoSpaceLeftError, remove_partial_files
from ..config import CfgNode
from ..config.yaml_loader import load_yaml

__all__ = [
    "OutputDirError", "ResumeConfigError", "SAFE_TO_CHANGE_ON_RESUME", "check_free_space",
    "config_differences", "expected_checkpoint_bytes", "find_run_files", "prepare_output_dir",
]

logger = logging.getLogger(__name__)

# Keys (and key prefixes) that may differ between a run's config.yaml and a --resume of it.
SAFE_TO_CHANGE_ON_RESUME: Tuple[str, ...] = (
    "OUTPUT_DIR",                 # a moved / copied run folder
    "MODEL.WEIGHTS",              # not used: the run's checkpoint is loaded
    "MODEL.DEVICE",
    "SOLVER.MAX_ITER",            # extend or shorten the schedule (the LR curve follows it)
    "SOLVER.CHECKPOINT_PERIOD",
    "TEST",                       # evaluation only
    "MODEL.MASK_FORMER.TEST",     # inference only
    "DATASETS.TEST",
    "DATALOADER.NUM_WORKERS",     # the data stream does not depend on it
    "VIS_PERIOD",
    "CUDNN_BENCHMARK",
)
_CHECKPOINT_SUFFIXES = (".pth", ".safetensors")
_RUN_FILES = ("last_checkpoint", "metrics.json", "eval_results.json")


class OutputDirError(FileExistsError):
    """OUTPUT_DIR already holds a run that this command would overwrite."""


class ResumeConfigError(ValueError):
    """``--resume`` with a config whose training-relevant keys differ from the run's config.yaml."""


def find_run_files(output_dir: str) -> List[str]:
    """Files of a previous run in ``output_dir``: checkpoints, ``last_checkpoint``, metrics,
    results, TensorBoard event files."""
    if not output_dir or not os.path.isdir(output_dir):
        return []
    return sorted(
        os.path.join(output_dir, name) for name in os.listdir(output_dir)
        if os.path.isfile(os.path.join(output_dir, name))
        and (name in _RUN_FILES or name.startswith("events.out.tfevents.")
             or (name.endswith(_CHECKPOINT_SUFFIXES) and not name.startswith(".")))
    )


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = _plain(value)
    return flat


def _is_safe(key: str, safe: Sequence[str]) -> bool:
    return any(key == s or key.startswith(s + ".") for s in safe)


_ABSENT = "<absent>"


def config_differences(saved: Dict[str, Any], current: Dict[str, Any]) -> List[Tuple[str, Any, Any]]:
    """``(key, saved value, current value)`` for every leaf key that differs (``<absent>`` for a
    key only one side has), sorted by key."""
    old, new = _flatten(saved), _flatten(current)
    return [(k, old.get(k, _ABSENT), new.get(k, _ABSENT)) for k in sorted(set(old) | set(new))
            if old.get(k, _ABSENT) != new.get(k, _ABSENT)]


def _check_resume_config(cfg: CfgNode, saved_path: str) -> None:
    with open(saved_path) as f:
        saved = load_yaml(f, saved_path) or {}
    current = load_yaml(cfg.dump(), "<current config>")
    differences = config_differences(saved, current)
    # a key only one side knows comes from another version of the project, not from the user
    versioned = [d for d in differences if _ABSENT in (d[1], d[2])]
    unsafe = [d for d in differences if d not in versioned and not _is_safe(d[0], SAFE_TO_CHANGE_ON_RESUME)]
    safe = [d for d in differences if d not in versioned and _is_safe(d[0], SAFE_TO_CHANGE_ON_RESUME)]
    for key, old, new in safe:
        logger.warning("--resume: %s changed from %r (saved in %s) to %r", key, old, saved_path, new)
    for key, old, new in versioned:
        logger.warning("--resume: key %s is %r in %s and %r now (another version of the project's "
                       "config); check that the run continues as intended", key, old, saved_path, new)
    if unsafe:
        lines = "\n".join(f"  {key}: {old!r} (run) -> {new!r} (now)" for key, old, new in unsafe)
        raise ResumeConfigError(
            f"--resume: the config differs from the run's {saved_path} in {len(unsafe)} key(s) that a "
            f"resumed run cannot change (optimizer, model, data, seed ...):\n{lines}\n"
            "Restore these values to continue the run, or start a new one (another OUTPUT_DIR, or "
            f"--overwrite). Keys that may change on --resume: {', '.join(SAFE_TO_CHANGE_ON_RESUME)}.")


def prepare_output_dir(cfg: CfgNode, *, resume: bool, overwrite: bool, eval_only: bool,
                       is_main_process: bool = True) -> str:
    """Check OUTPUT_DIR for this command (see the module docstring) before anything is written,
    delete a previous run's files under ``overwrite``, and return the file name under which the
    config is to be saved (``config.yaml``, or ``config_eval_only.yaml`` next to a run's)."""
    output_dir = cfg.OUTPUT_DIR
    if resume and overwrite:
        raise ValueError("--resume continues the run in OUTPUT_DIR, --overwrite deletes it: give only one")
    if not output_dir:
        return "config.yaml"
    run_files = find_run_files(output_dir)
    saved_config = os.path.join(output_dir, "config.yaml")
    if eval_only:
        return "config_eval_only.yaml" if os.path.isfile(saved_config) else "config.yaml"
    if resume:
        if os.path.isfile(os.path.join(output_dir, "last_checkpoint")) and os.path.isfile(saved_config):
            _check_resume_config(cfg, saved_config)
        return "config.yaml"
    if run_files and not overwrite:
        shown = ", ".join(os.path.basename(p) for p in run_files[:8]) + (" ..." if len(run_files) > 8 else "")
        raise OutputDirError(
            f"OUTPUT_DIR {output_dir!r} already holds a run ({shown}). Training there would replace "
            "its checkpoints, config.yaml and eval_results.json and append to its metrics.json. "
            "Pass --resume to continue that run, --overwrite to delete those files and start over, "
            "or set OUTPUT_DIR to a new folder.")
    if run_files and is_main_process:
        for path in run_files + [p[: -len(".safetensors")] + ".state.pth" for p in run_files
                                 if p.endswith(".safetensors")]:
            if os.path.isfile(path):
                os.remove(path)
        remove_partial_files(output_dir)
        logger.warning("--overwrite: deleted the previous run's files in %s: %s", output_dir,
                       [os.path.basename(p) for p in run_files])
    return "config.yaml"


def expected_checkpoint_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Size of one training checkpoint: the model's state plus the optimizer's per-parameter
    state once it exists (Adam-style: 2 tensors per parameter; SGD with momentum: 1)."""
    model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    param_bytes = sum(p.numel() * p.element_size() for g in optimizer.param_groups for p in g["params"])
    defaults = optimizer.defaults
    per_param = 2 if "betas" in defaults else (1 if defaults.get("momentum", 0) else 0)
    return model_bytes + per_param * param_bytes


def check_free_space(directory: str, checkpoint_bytes: int, num_checkpoints: int) -> None:
    """Raise :class:`NoSpaceLeftError` when ``directory``'s disk cannot hold one checkpoint
    (plus 10 %); warn when it cannot hold ``num_checkpoints`` of them."""
    os.makedirs(directory, exist_ok=True)
    free = shutil.disk_usage(directory).free
    needed = int(checkpoint_bytes * 1.1)
    mib = 2 ** 20
    if free < needed:
        raise NoSpaceLeftError(
            28, f"No space left on device for checkpoints in {directory}: one checkpoint needs about "
            f"{needed / mib:.1f} MiB, {free / mib:.1f} MiB are free. Free some space or set OUTPUT_DIR "
            "to another disk.")
    if free < needed * num_checkpoints:
        logger.warning("%s has %.1f MiB free; this run writes up to %d checkpoints of about %.1f MiB "
                       "(SOLVER.CHECKPOINT_PERIOD): the disk may fill up before the end.",
                       directory, free / mib, num_checkpoints, needed / mib)


# ---- evaluation of randomly initialised weights -------------------------------------------------
RANDOM_INIT_KEY = "random_initialization"
RANDOM_INIT_RESULTS = "eval_results_random_init.json"


def warn_if_random_init(cfg: CfgNode, *, resumed: bool) -> bool:
    """Log a WARNING and return True when an evaluation runs on randomly initialised weights
    (empty MODEL.WEIGHTS and no checkpoint resumed)."""
    if cfg.MODEL.WEIGHTS or resumed:
        return False
    logger.warning(
        "\n%s\nMODEL.WEIGHTS is empty: evaluating a RANDOMLY INITIALISED model. The numbers below mean "
        "nothing; pass MODEL.WEIGHTS <file> (or --resume in a run's OUTPUT_DIR) to evaluate trained "
        "weights. The results are marked '%s'.\n%s", "!" * 80, RANDOM_INIT_KEY, "!" * 80)
    return True


def _holds_real_results(path: str) -> bool:
    import json

    try:
        with open(path) as f:
            return RANDOM_INIT_KEY not in json.load(f)
    except (OSError, ValueError, TypeError):
        return True  # unreadable: keep it


def eval_results_target(output_dir: str, results: Dict[str, Any], *, random_init: bool) -> Tuple[str, Dict[str, Any]]:
    """Where to write evaluation ``results`` and what: ``eval_results.json`` as they are, or for a
    random initialisation the results under a ``random_initialization`` marker, written to
    ``eval_results_random_init.json`` when ``eval_results.json`` holds results of real weights
    (those are never replaced by a random model's numbers)."""
    path = os.path.join(output_dir, "eval_results.json")
    if not random_init:
        return path, results
    marked = {RANDOM_INIT_KEY: {"MODEL.WEIGHTS": "", "warning": "randomly initialised weights were evaluated"},
              **results}
    if os.path.isfile(path) and _holds_real_results(path):
        path = os.path.join(output_dir, RANDOM_INIT_RESULTS)
        logger.warning("%s holds results of trained weights: the random model's results go to %s",
                       os.path.join(output_dir, "eval_results.json"), path)
    return path, marked
