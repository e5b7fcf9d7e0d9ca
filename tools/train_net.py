#!/usr/bin/env python
"""Train or evaluate a MaskFormer / Mask2Former model (detectron2's ``train_net.py`` flags).

Examples:
    python tools/train_net.py --config-file configs/shapes/panoptic-segmentation/maskformer2_R18_bs8_1k.yaml
    python tools/train_net.py --config-file configs/shapes/panoptic-segmentation/maskformer2_R18_bs8_1k.yaml \\
        --eval-only MODEL.WEIGHTS output/model_final.pth OUTPUT_DIR output/eval
    python tools/train_net.py --config-file configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml \\
        --num-gpus 8 --resume

Training into an OUTPUT_DIR that holds a previous run is an error unless ``--resume`` (continue
it; the config must match the run's config.yaml, see ``mask2former.engine.output_dir``) or
``--overwrite`` (delete its checkpoints and results first). ``--eval-only`` without
MODEL.WEIGHTS evaluates a random model: a loud warning, and results marked as such.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mask2former.checkpoint import DetectionCheckpointer  # noqa: E402
from mask2former.config import get_cfg  # noqa: E402
from mask2former.engine import DefaultTrainer, default_argument_parser, default_setup, launch  # noqa: E402
from mask2former.evaluation.testing import apply_published_results, verify_results  # noqa: E402
from mask2former.engine.output_dir import OutputDirError, ResumeConfigError, warn_if_random_init  # noqa: E402
from mask2former.utils import comm  # noqa: E402


def setup(args):
    """Config from ``--config-file`` plus trailing ``KEY VALUE`` overrides, frozen."""
    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    if args.eval_only:  # official configs: compare with the paper's numbers
        apply_published_results(cfg, args.config_file)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = DefaultTrainer.build_model(cfg)
        checkpointer = DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        random_init = warn_if_random_init(cfg, resumed=args.resume and checkpointer.has_checkpoint())
        results = DefaultTrainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            results.update(DefaultTrainer.test_with_TTA(cfg, model))
        if comm.is_main_process():
            DefaultTrainer.save_results(cfg, results, random_init=random_init)
            verify_results(cfg, results, config_file=args.config_file)  # prints the difference to the paper
        return results
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    if comm.is_main_process() and results:
        DefaultTrainer.save_results(cfg, results)
    return results


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    try:
        launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
    except (OutputDirError, ResumeConfigError) as err:  # before anything was written: no traceback
        sys.exit(f"train_net.py: error: {err}")
