#!/usr/bin/env python
"""Run a video Mask2Former on one video and draw its tracks, one stable colour per track.

Examples:
  python tools/demo_video.py --config-file configs/youtubevis_2019/video_maskformer2_R50_bs16_8ep.yaml \\
      --video-input clip.mp4 --output out/ --opts MODEL.WEIGHTS model_final_3c8ec9.pkl
  python tools/demo_video.py --config-file CFG --input frames_dir/ --output out/ --save-frames

The whole video is one clip (as the official demo_video.py): all frames go through the model at
once, so memory grows with the number of frames. ``--output`` is a folder receiving
``visualization.mp4`` (and with ``--save-frames`` one drawn image per frame, named as the input
frames), or a file ending in .mp4.
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mask2former.config import get_cfg  # noqa: E402
from mask2former.engine.video_predictor import VideoPredictor, draw_video_predictions  # noqa: E402
from mask2former.utils.logger import setup_logger  # noqa: E402
from mask2former.utils.visualizer import ColorMode  # noqa: E402

logger = logging.getLogger("mask2former.demo_video")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", metavar="FILE", required=True, help="path to a video model config")
    parser.add_argument("--video-input", help="a video file")
    parser.add_argument("--input", nargs="+", help="a folder of frames, frame files in order, or one glob "
                        "pattern such as 'frames/*.jpg'")
    parser.add_argument("--output", required=True, help="folder (or .mp4 file) to write the drawn video to")
    parser.add_argument("--save-frames", action="store_true", help="also write each drawn frame as an image")
    parser.add_argument("--confidence-threshold", type=float, default=0.5, help="minimum score of a drawn track")
    parser.add_argument("--instance-mode", choices=[m.name for m in ColorMode], default="IMAGE",
                        help="IMAGE (a random colour per track), SEGMENTATION (per class) or IMAGE_BW")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of the written video "
                        "(default: the input video's, else 5 for frames)")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    return parser


def frame_paths(inputs: Sequence[str]) -> List[str]:
    """A folder (its image files, sorted), one glob pattern (its sorted matches) or files as given."""
    if len(inputs) == 1 and os.path.isdir(inputs[0]):
        paths = sorted(os.path.join(inputs[0], n) for n in os.listdir(inputs[0]) if n.lower().endswith(IMAGE_EXTENSIONS))
        if not paths:
            raise FileNotFoundError(f"--input folder {inputs[0]!r} holds no image file ({', '.join(IMAGE_EXTENSIONS)})")
        return paths
    if len(inputs) == 1 and glob.has_magic(inputs[0]):
        paths = sorted(glob.glob(os.path.expanduser(inputs[0])))
        if not paths:
            raise FileNotFoundError(f"--input pattern {inputs[0]!r} matches no file")
        return paths
    return list(inputs)


def read_frames(paths: Sequence[str]) -> List[np.ndarray]:
    frames = []
    for k, path in enumerate(paths):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Frame {k} ({path!r}) does not exist")
        frame = cv2.imread(path, cv2.IMREAD_COLOR)
        if frame is None:
            raise ValueError(f"Frame {k} ({path!r}) cannot be read as an image")
        frames.append(frame)
    return frames


def read_video(path: str) -> Tuple[List[np.ndarray], float]:
    """BGR frames and frame rate of a video file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Input video {path!r} does not exist")
    video = cv2.VideoCapture(path)
    if not video.isOpened():
        raise ValueError(f"Input {path!r} cannot be opened as a video")
    try:
        fps = video.get(cv2.CAP_PROP_FPS) or 5.0
        frames = []
        while True:
            ok, frame = video.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        video.release()
    if not frames:
        raise ValueError(f"Input video {path!r} has no readable frame")
    return frames, fps


def write_outputs(drawn_rgb: Sequence[np.ndarray], names: Sequence[str], output: str, fps: float,
                  save_frames: bool) -> str:
    """Write the drawn video (and the frames); returns the video's path."""
    if output.lower().endswith(".mp4"):
        video_path, frame_dir = output, os.path.splitext(output)[0] + "_frames"
    else:
        video_path, frame_dir = os.path.join(output, "visualization.mp4"), output
    os.makedirs(os.path.dirname(os.path.abspath(video_path)), exist_ok=True)
    h, w = drawn_rgb[0].shape[:2]
    writer = cv2.VideoWriter(video_path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h), True)
    if not writer.isOpened():
        raise OSError(f"Cannot open {video_path!r} for writing a video")
    try:
        for frame in drawn_rgb:
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    finally:
        writer.release()
    if save_frames:
        os.makedirs(frame_dir, exist_ok=True)
        for frame, name in zip(drawn_rgb, names):
            path = os.path.join(frame_dir, os.path.splitext(os.path.basename(name))[0] + ".png")
            if not cv2.imwrite(path, np.ascontiguousarray(frame[:, :, ::-1])):
                raise OSError(f"Cannot write {path!r}")
    return video_path


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if bool(args.input) == bool(args.video_input):
        parser.error("give exactly one of --input or --video-input")
    if not os.path.isfile(args.config_file):
        parser.error(f"--config-file {args.config_file!r} does not exist")
    setup_logger(name="mask2former")
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    try:
        if args.video_input:
            frames, fps = read_video(args.video_input)
            names = [f"{k:05d}" for k in range(len(frames))]
        else:
            names = frame_paths(args.input)
            frames, fps = read_frames(names), 5.0
        predictor = VideoPredictor(cfg)
        start = time.perf_counter()
        predictions = predictor(frames)
        logger.info("%d frames: %d tracks predicted in %.2fs", len(frames), len(predictions["pred_scores"]),
                    time.perf_counter() - start)
        drawn = draw_video_predictions([f[:, :, ::-1] for f in frames], predictions, predictor.metadata,
                                       args.confidence_threshold, ColorMode[args.instance_mode])
        path = write_outputs(drawn, names, args.output, args.fps or fps, args.save_frames)
        logger.info("Wrote %s", path)
    except (FileNotFoundError, ValueError, OSError) as err:
        parser.exit(1, f"demo_video.py: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
