#!/usr/bin/env python
"""Run a Mask2Former / MaskFormer model on images, a video or a webcam and draw the results.

Examples:
  python tools/demo.py --config-file configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml \\
      --input photo1.jpg photo2.jpg --output out/ --opts MODEL.WEIGHTS model_final.pkl
  python tools/demo.py --config-file CFG --input "images/*.jpg" --output out/
  python tools/demo.py --config-file CFG --video-input clip.mp4 --output clip_vis.mp4
  python tools/demo.py --config-file CFG --onnx export/r50_panoptic --input photo.jpg --output out/

What is drawn follows the model's outputs (panoptic, else instances, else semantic); --task
forces one. Without --output the results are shown in a window (needs an OpenCV build with
GUI support; the headless build can only write files).

With several input images, --output is a folder mirroring the inputs' sub-folders below their
common folder (a/x.jpg and b/x.jpg give out/a/x.jpg and out/b/x.jpg). An output path that is
one of the inputs is refused before anything runs. An image that cannot be read (missing,
truncated, corrupt) is reported and skipped; the demo then exits with status 1 and the list.
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time
from typing import List, Optional, Sequence

import cv2
import numpy as np
import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mask2former.engine.defaults import setup_cfg  # noqa: E402
from mask2former.data.detection_utils import read_image as read_image_file  # noqa: E402
from mask2former.engine.visualization_demo import TASKS, VisualizationDemo  # noqa: E402
from mask2former.utils.logger import setup_logger  # noqa: E402
from mask2former.utils.visualizer import ColorMode  # noqa: E402

WINDOW_NAME = "mask2former demo"
logger = logging.getLogger("mask2former.demo")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", metavar="FILE", help="path to config file",
                        default="configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml")
    parser.add_argument("--webcam", action="store_true", help="take inputs from webcam 0")
    parser.add_argument("--video-input", help="path to a video file")
    parser.add_argument("--input", nargs="+",
                        help="image files, or one glob pattern such as 'directory/*.jpg'")
    parser.add_argument("--output", help="file or folder to write drawings (images) or the "
                        "drawn video (.mp4) to; without it results are shown in a window")
    parser.add_argument("--confidence-threshold", type=float, default=0.5,
                        help="minimum score for instances to be drawn")
    parser.add_argument("--task", choices=TASKS, default="auto",
                        help="result to draw (default: panoptic, else instance, else semantic)")
    parser.add_argument("--instance-mode", choices=[m.name for m in ColorMode], default="IMAGE",
                        help="instance colouring: IMAGE (random), SEGMENTATION (per class), "
                        "IMAGE_BW (grey background)")
    parser.add_argument("--onnx", metavar="DIR",
                        help="predict with an exported folder (tools/export_model.py) on onnxruntime "
                        "instead of building the model; the config then only names the dataset "
                        "metadata (class names, colours) to draw with")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs")
    return parser


class OnnxDemoPredictor:
    """``ONNXPredictor`` with its numpy outputs turned into the torch structures the drawing reads."""

    def __init__(self, export_dir: str):
        from mask2former.deploy import ONNXPredictor

        self.predictor = ONNXPredictor(export_dir)

    def __call__(self, image: np.ndarray):
        import torch

        from mask2former.structures import Boxes, Instances

        out = dict(self.predictor(image))
        if "sem_seg" in out:
            out["sem_seg"] = torch.from_numpy(out["sem_seg"])
        if "panoptic_seg" in out:
            out["panoptic_seg"] = (torch.from_numpy(out["panoptic_seg"][0]), out["panoptic_seg"][1])
        if "instances" in out:
            found = out["instances"]
            instances = Instances(found["image_size"])
            instances.pred_masks = torch.from_numpy(found["pred_masks"])
            instances.pred_boxes = Boxes(torch.from_numpy(found["pred_boxes"]))
            instances.scores = torch.from_numpy(found["scores"])
            instances.pred_classes = torch.from_numpy(found["pred_classes"])
            out["instances"] = instances
        return out


def expand_inputs(patterns: Sequence[str]) -> List[str]:
    """A single glob pattern expands to its sorted matches; plain paths are kept as given."""
    if len(patterns) == 1 and glob.has_magic(patterns[0]):
        matches = sorted(glob.glob(os.path.expanduser(patterns[0])))
        if not matches:
            raise FileNotFoundError(f"--input pattern {patterns[0]!r} matches no file")
        return matches
    return list(patterns)


def read_image(path: str):
    """BGR uint8 image, or a clear error naming the file (``FileNotFoundError``, or
    ``CorruptImageError`` for a truncated / corrupt file: never a half-decoded picture)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Input image {path!r} does not exist")
    return np.ascontiguousarray(read_image_file(path, format="BGR"))


def plan_outputs(output: str, inputs: Sequence[str]) -> List[str]:
    """The file each input's drawing is written to.

    ``output`` is a folder when it exists as one, ends with a separator, or several inputs are
    given; inputs then keep their path below their common folder, so names never collide.
    Otherwise it is the file to write.

    Raises:
        ValueError: an output path is one of the input files (the drawing would replace it).
    """
    if len(inputs) > 1 or os.path.isdir(output) or output.endswith(("/", os.sep)):
        absolute = [os.path.abspath(p) for p in inputs]
        root = os.path.commonpath([os.path.dirname(p) for p in absolute])
        planned = [os.path.join(output, os.path.relpath(p, root)) for p in absolute]
    else:
        planned = [output]
    originals = {os.path.realpath(p): p for p in inputs}
    for source, target in zip(inputs, planned):
        clash = originals.get(os.path.realpath(target))
        if clash is not None:
            raise ValueError(f"Refusing to write the drawing of {source!r} to {target!r}: that is the input "
                             f"file {clash!r}. Choose an --output folder that holds no input.")
    return planned


def _show(image_bgr) -> bool:
    """Show a frame; False when the user pressed Esc. Explains a GUI-less OpenCV."""
    try:
        cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_NORMAL)
        cv2.imshow(WINDOW_NAME, image_bgr)
        return cv2.waitKey(1 if image_bgr is not None else 0) != 27
    except cv2.error as err:
        raise SystemExit("Cannot open a window to show the results (OpenCV without GUI "
                         f"support, or no display): pass --output to write files instead. ({err})")


def _write_video(frames, output: str, fps: float, size, total: Optional[int]) -> None:
    writer = cv2.VideoWriter(output, cv2.VideoWriter_fourcc(*"mp4v"), fps, size, True)
    if not writer.isOpened():
        raise OSError(f"Cannot open {output!r} for writing a video")
    try:
        for frame in tqdm.tqdm(frames, total=total, desc="frames"):
            writer.write(frame)
    finally:
        writer.release()


def _describe(predictions) -> str:
    found = []
    if "panoptic_seg" in predictions:
        found.append(f"{len(predictions['panoptic_seg'][1])} panoptic segments")
    if "instances" in predictions:
        found.append(f"{len(predictions['instances'])} instances")
    if "sem_seg" in predictions:
        found.append("a semantic map")
    return "predicted " + ", ".join(found)


def run_images(demo: VisualizationDemo, args: argparse.Namespace) -> List[str]:
    """Predict and draw every input image; returns ``"<path>: <reason>"`` of those that failed
    (unreadable files are reported and skipped, the others still run)."""
    paths = list(dict.fromkeys(expand_inputs(args.input)))  # a file given twice is drawn once
    outputs = plan_outputs(args.output, paths) if args.output else [None] * len(paths)
    failures: List[str] = []
    for path, output in tqdm.tqdm(list(zip(paths, outputs)), disable=not args.output or len(paths) == 1,
                                  desc="images"):
        try:
            image = read_image(path)
        except (FileNotFoundError, ValueError) as err:
            logger.error(f"Skipping {path}: {err}")
            failures.append(f"{path}: {err}")
            continue
        start = time.perf_counter()
        predictions, drawing = demo.run_on_image(image)
        logger.info(f"{path}: {_describe(predictions)} in {time.perf_counter() - start:.2f}s")
        if output:
            os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
            drawing.save(output)
        elif not _show(drawing.get_image()[:, :, ::-1]):
            break
    return failures


def run_video(demo: VisualizationDemo, args: argparse.Namespace) -> None:
    path = args.video_input
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Input video {path!r} does not exist")
    video = cv2.VideoCapture(path)
    if not video.isOpened():
        raise ValueError(f"Input {path!r} cannot be opened as a video")
    width, height = int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = video.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(video.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    try:
        if args.output:
            output = args.output
            if os.path.isdir(output) or output.endswith(("/", os.sep)):
                os.makedirs(output, exist_ok=True)
                output = os.path.join(output, os.path.splitext(os.path.basename(path))[0] + ".mp4")
            plan_outputs(output, [path])  # never write over the input video
            os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
            _write_video(demo.run_on_video(video), output, fps, (width, height), total)
            logger.info(f"Wrote {output}")
        else:
            for frame in tqdm.tqdm(demo.run_on_video(video), total=total, desc="frames"):
                if not _show(frame):
                    break
    finally:
        video.release()


def run_webcam(demo: VisualizationDemo, args: argparse.Namespace) -> None:
    camera = cv2.VideoCapture(0)
    if not camera.isOpened():
        raise SystemExit("--webcam: no camera could be opened (camera 0). Check that a webcam "
                         "is connected and accessible, or use --input / --video-input.")
    try:
        if args.output:
            width = int(camera.get(cv2.CAP_PROP_FRAME_WIDTH))
            height = int(camera.get(cv2.CAP_PROP_FRAME_HEIGHT))
            output = args.output if not os.path.isdir(args.output) else \
                os.path.join(args.output, "webcam.mp4")
            _write_video(demo.run_on_video(camera), output, 30.0, (width, height), None)
        else:
            for frame in demo.run_on_video(camera):
                if not _show(frame):
                    break
    except KeyboardInterrupt:
        pass
    finally:
        camera.release()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    sources = [bool(args.input), bool(args.video_input), args.webcam]
    if sum(sources) != 1:
        parser.error("give exactly one of --input, --video-input or --webcam")
    if not os.path.isfile(args.config_file):
        parser.error(f"--config-file {args.config_file!r} does not exist")
    setup_logger(name="mask2former")
    logger.info("Arguments: " + str(args))
    cfg = setup_cfg(args)
    try:
        predictor = OnnxDemoPredictor(args.onnx) if args.onnx else None
    except (FileNotFoundError, ValueError) as err:
        parser.exit(1, f"demo.py: error: --onnx: {err}\n")
    demo = VisualizationDemo(cfg, instance_mode=ColorMode[args.instance_mode], task=args.task,
                             confidence_threshold=args.confidence_threshold, predictor=predictor)
    try:
        if args.input:
            failures = run_images(demo, args)
            if failures:
                parser.exit(1, f"demo.py: {len(failures)} input image(s) failed:\n  " + "\n  ".join(failures) + "\n")
        elif args.video_input:
            run_video(demo, args)
        else:
            run_webcam(demo, args)
    except (FileNotFoundError, ValueError, OSError) as err:
        parser.exit(1, f"demo.py: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
