#!/usr/bin/env python
"""Train or evaluate a video Mask2Former (the official ``train_net_video.py``; the flags of
``train_net.py``: --config-file, --eval-only, --resume, --num-gpus, --num-machines, ...).

Examples:
    python tools/train_net_video.py --config-file configs/shapes/video-instance-segmentation/video_maskformer2_R18_bs4_500.yaml
    python tools/train_net_video.py --config-file configs/youtubevis_2019/video_maskformer2_R50_bs16_8ep.yaml \\
        --eval-only MODEL.WEIGHTS model_final_3c8ec9.pkl      # writes inference/ytvis_2019_val/results.json
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mask2former.checkpoint import DetectionCheckpointer  # noqa: E402
from mask2former.config import get_cfg  # noqa: E402
from mask2former.engine import default_argument_parser, default_setup, launch  # noqa: E402
from mask2former.engine.video_trainer import VideoTrainer, is_video_config  # noqa: E402
from mask2former.utils import comm  # noqa: E402


def setup(args):
    """Config from ``--config-file`` plus trailing ``KEY VALUE`` overrides, frozen."""
    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    if not is_video_config(cfg):
        raise SystemExit(f"train_net_video.py: MODEL.META_ARCHITECTURE is {cfg.MODEL.META_ARCHITECTURE!r}, not "
                         "'VideoMaskFormer'; use tools/train_net.py for image models")
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = VideoTrainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = VideoTrainer.test(cfg, model)
        if comm.is_main_process():
            VideoTrainer.save_results(cfg, results)
        return results
    trainer = VideoTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    if comm.is_main_process() and results:
        VideoTrainer.save_results(cfg, results)
    return results


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
