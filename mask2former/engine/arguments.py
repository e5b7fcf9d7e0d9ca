"""Command-line arguments and per-run set-up shared by the tools (detectron2's flags)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Tuple

import torch

from ..checkpoint.file_io import atomic_write
from ..config import CfgNode
from ..utils import comm
from ..utils.env import seed_all_rng
from ..utils.logger import setup_logger
from .output_dir import prepare_output_dir

__all__ = ["default_argument_parser", "default_setup", "parse_input_size"]


def parse_input_size(text: str) -> Tuple[int, int]:
    """``--input-size HxW`` of the tools: ``"480x640"`` -> ``(480, 640)``, with a clear error."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input-size must look like 480x640, got {text!r}") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"--input-size must be positive, got {text!r}")
    return height, width


def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """The flags of detectron2's ``train_net.py``: config, resume, eval-only, multi-process."""
    parser = argparse.ArgumentParser(
        epilog=epilog or (
            "Examples:\n"
            "  Train on one machine:  python tools/train_net.py --num-gpus 8 --config-file cfg.yaml\n"
            "  Change options:        ... --config-file cfg.yaml SOLVER.MAX_ITER 1000\n"
            "  Run on two machines:   (machine0) ... --machine-rank 0 --num-machines 2 "
            "--dist-url tcp://ip:port\n"
            "                         (machine1) ... --machine-rank 1 --num-machines 2 "
            "--dist-url tcp://ip:port\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument("--resume", action="store_true",
                        help="resume from OUTPUT_DIR/last_checkpoint if it exists, else load MODEL.WEIGHTS")
    parser.add_argument("--overwrite", action="store_true",
                        help="train into an OUTPUT_DIR that holds a previous run: delete its checkpoints, "
                        "metrics.json and eval_results.json first (without it, or --resume, that is an error)")
    parser.add_argument("--eval-only", action="store_true", help="perform evaluation only")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="processes per machine (GPUs; CPU processes when CUDA is absent)")
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="rank of this machine (0-based)")
    port = 2 ** 15 + 2 ** 14 + hash(os.getuid() if sys.platform != "win32" else 1) % 2 ** 14
    parser.add_argument("--dist-url", default=f"tcp://127.0.0.1:{port}",
                        help="initialisation URL for torch.distributed ('auto' picks a free port)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="Modify config options at the end of the command: KEY VALUE pairs")
    return parser


def default_setup(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Check OUTPUT_DIR, create it, set up logging, dump the config, log the environment and seed RNGs.

    Before anything is written, :func:`.output_dir.prepare_output_dir` refuses to train over a
    previous run without ``--resume`` / ``--overwrite`` and compares a ``--resume``'s config with
    the run's ``config.yaml`` (raising ``OutputDirError`` / ``ResumeConfigError``).
    """
    output_dir = cfg.OUTPUT_DIR
    config_name = prepare_output_dir(
        cfg, resume=bool(getattr(args, "resume", False)), overwrite=bool(getattr(args, "overwrite", False)),
        eval_only=bool(getattr(args, "eval_only", False)), is_main_process=comm.is_main_process())
    if comm.is_main_process() and output_dir:
        os.makedirs(output_dir, exist_ok=True)
    rank = comm.get_rank()
    setup_logger(output_dir, distributed_rank=rank, name="fvcore")
    logger = setup_logger(output_dir, distributed_rank=rank)
    logger.info("Rank of current process: %d. World size: %d", rank, comm.get_world_size())
    logger.info("Environment: python %s, torch %s, CUDA available: %s", sys.version.split()[0],
                torch.__version__, torch.cuda.is_available())
    logger.info("Command line arguments: %s", args)
    if getattr(args, "config_file", ""):
        logger.info("Contents of args.config_file=%s:\n%s", args.config_file,
                    open(args.config_file).read())
    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, config_name)
        text = cfg.dump()
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))
        logger.info("Full config saved to %s", path)
    seed = seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    if cfg.SEED < 0:
        logger.info("SEED < 0: using random seed %d", seed)
    if not (hasattr(args, "eval_only") and args.eval_only):
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
