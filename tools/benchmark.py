#!/usr/bin/env python
"""Time inference or training of a config's model on random inputs; report speed and memory.

Examples:
  python tools/benchmark.py --config-file configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml \\
      --task inference --device cpu
  python tools/benchmark.py --config-file CFG --task train --device cuda --precision bf16 --batch-size 2

inference: eval mode, ``torch.no_grad()``, one call of the model on ``--batch-size`` random
images of ``--input-size`` (the model's pre-processing and post-processing included); the
median over ``--num-iter`` timed calls after ``--warmup`` untimed ones, in seconds per image,
split into stages with forward hooks (pre-processing, backbone, pixel decoder, transformer
decoder, post-processing). Mask-classification models run semantic + instance + panoptic
inference (as the official speed measurements of these configs did) unless
``--outputs config`` keeps the config's MODEL.MASK_FORMER.TEST.*_ON.
train: train mode, synthetic targets (random instances of the config's classes), forward +
backward + optimizer step (SOLVER.OPTIMIZER with its gradient clipping), seconds per iteration.
Video configs (VideoMaskFormer): each batch item is a clip of ``--num-frames`` random frames
(default INPUT.SAMPLING_FRAME_NUM); inference takes one clip per call and reports seconds per
clip (the official top-10 video inference included); training gets random tracks present in
every frame.

Yardsticks (issue 11), inference of image configs: the ratio of the whole inference to our own
backbone in the same run, and a torchvision ``resnet50`` feature forward (random weights, up to
layer4) on the same images, timed right after every model call (``--no-yardstick`` skips it;
its weights and activations are then not in the peak RSS either). ``--compare-hf`` also times the
network forward alone (backbone + sem_seg_head, no pre-/post-processing) against transformers'
``Mask2FormerForUniversalSegmentation`` built from the same config (random weights), alternately.

Weights: random, or MODEL.WEIGHTS when it can be read locally (speed does not depend on them,
except for the number of segments post-processing keeps).
Peak memory: CUDA ``max_memory_allocated``; CPU peak resident set size of the process.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from tabulate import tabulate
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mask2former.engine.arguments import parse_input_size  # noqa: E402
from mask2former.checkpoint import DetectionCheckpointer  # noqa: E402
from mask2former.engine.defaults import setup_cfg as setup_tool_cfg  # noqa: E402
from mask2former.data import MetadataCatalog  # noqa: E402
from mask2former.modeling import build_model  # noqa: E402
from mask2former.modeling.meta_arch.mask_former import head_outputs  # noqa: E402
from mask2former.utils.memory import configure_cpu_memory  # noqa: E402
from mask2former.solver import build_optimizer  # noqa: E402
from mask2former.structures import BitMasks, Instances  # noqa: E402

STAGES = ("pre-processing", "backbone", "pixel decoder", "transformer decoder", "post-processing")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# ---------------------------------------------------------------------- inputs
def random_batch(batch_size: int, size: Tuple[int, int], num_classes: int, device: str,
                 with_targets: bool, seed: int = 0) -> List[Dict[str, Any]]:
    """Random images (3, H, W) in 0..255; with targets: 1-8 random rectangles per image as
    ``instances`` (gt_classes in [0, num_classes), gt_masks) and the matching ``sem_seg``."""
    gen = torch.Generator().manual_seed(seed)
    height, width = size
    batch = []
    for _ in range(batch_size):
        item: Dict[str, Any] = {"image": (torch.rand(3, height, width, generator=gen) * 255).round(),
                                "height": height, "width": width}
        if with_targets:
            num = int(torch.randint(1, 9, (1,), generator=gen))
            masks = torch.zeros(num, height, width, dtype=torch.bool)
            for mask in masks:
                y0, y1 = sorted(torch.randint(0, height, (2,), generator=gen).tolist())
                x0, x1 = sorted(torch.randint(0, width, (2,), generator=gen).tolist())
                mask[y0:y1 + 1, x0:x1 + 1] = True
            classes = torch.randint(0, num_classes, (num,), generator=gen)
            instances = Instances((height, width))
            instances.gt_classes = classes
            instances.gt_masks = BitMasks(masks)
            sem_seg = torch.full((height, width), int(classes[0]), dtype=torch.long)
            for mask, cls in zip(masks, classes):
                sem_seg[mask] = cls
            item.update(instances=instances.to(device), sem_seg=sem_seg.to(device))
        item["image"] = item["image"].to(device)
        batch.append(item)
    return batch


def random_video_batch(batch_size: int, num_frames: int, size: Tuple[int, int], num_classes: int,
                       device: str, with_targets: bool, seed: int = 0) -> List[Dict[str, Any]]:
    """Clips of ``num_frames`` random frames; with targets, the random rectangles of
    :func:`random_batch` become tracks (``gt_ids``) that move one pixel right per frame."""
    videos = []
    for v in range(batch_size):
        frames = random_batch(num_frames, size, num_classes, device, with_targets=False, seed=seed + v)
        video: Dict[str, Any] = {"image": [f["image"] for f in frames], "height": size[0], "width": size[1]}
        if with_targets:
            first = random_batch(1, size, num_classes, device, with_targets=True, seed=seed + v)[0]["instances"]
            per_frame = []
            for t in range(num_frames):
                instances = Instances(size)
                instances.gt_classes = first.gt_classes
                instances.gt_ids = torch.arange(len(first), device=device)
                instances.gt_masks = BitMasks(first.gt_masks.tensor.roll(t, dims=-1))
                per_frame.append(instances)
            video["instances"] = per_frame
        videos.append(video)
    return videos


# ---------------------------------------------------------------------- timing helpers
class StageTimer:
    """Forward (pre-)hooks stamping the start / end of the model's main parts."""

    def __init__(self, model: nn.Module, sync: Callable[[], None]):
        self.sync = sync
        self.stamps: Dict[str, float] = {}
        self.handles = []
        parts = {"model": model, "backbone": getattr(model, "backbone", None)}
        head = getattr(model, "sem_seg_head", None)
        parts["head"] = head
        parts["predictor"] = getattr(head, "predictor", None) if head is not None else None
        for name, module in parts.items():
            if module is not None:
                self.handles.append(module.register_forward_pre_hook(self._stamp(name + ".start")))
                self.handles.append(module.register_forward_hook(self._stamp(name + ".end")))

    def _stamp(self, key: str):
        def hook(*_: Any) -> None:
            self.sync()
            self.stamps[key] = time.perf_counter()
        return hook

    def stages(self) -> Dict[str, float]:
        """Seconds per stage of the last call (stages whose modules are missing are absent)."""
        s = self.stamps
        out = {}
        if "backbone.start" in s:
            out["pre-processing"] = s["backbone.start"] - s["model.start"]
            out["backbone"] = s["backbone.end"] - s["backbone.start"]
        if "head.start" in s:
            if "predictor.start" in s:
                out["pixel decoder"] = s["predictor.start"] - s["head.start"]
                out["transformer decoder"] = s["head.end"] - s["predictor.start"]
            else:
                out["pixel decoder"] = s["head.end"] - s["head.start"]
            out["post-processing"] = s["model.end"] - s["head.end"]
        return out

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _rss_bytes() -> Optional[int]:
    """Current resident set size (Linux /proc), else None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if platform.system() == "Darwin" else peak * 1024  # KiB on Linux


def _mib(num_bytes: float) -> str:
    return f"{num_bytes / 2 ** 20:.0f} MiB"


# ---------------------------------------------------------------------- benchmarks
def benchmark_inference(model: nn.Module, batch: List[Dict[str, Any]], num_iter: int, warmup: int,
                        autocast: Any, sync: Callable[[], None],
                        yardsticks: Optional[Dict[str, Callable[[], Any]]] = None,
                        ) -> Tuple[List[float], Dict[str, List[float]]]:
    """Per-call seconds and per-stage seconds of ``num_iter`` timed calls.

    ``yardsticks`` (name -> no-argument callable) are timed right after every model call, so
    that load on a shared machine affects both alike; their seconds join the stage dict
    under their names.
    """
    model.eval()
    timer = StageTimer(model, sync)
    totals, stages = [], {}
    try:
        with torch.no_grad():
            for i in range(warmup + num_iter):
                sync()
                start = time.perf_counter()
                with autocast:
                    model(batch)
                sync()
                elapsed = time.perf_counter() - start
                if i >= warmup:
                    totals.append(elapsed)
                    for name, seconds in timer.stages().items():
                        stages.setdefault(name, []).append(seconds)
                for name, fn in (yardsticks or {}).items():
                    sync()
                    start = time.perf_counter()
                    fn()
                    sync()
                    if i >= warmup:
                        stages.setdefault(name, []).append(time.perf_counter() - start)
    finally:
        timer.remove()
    return totals, stages


RESNET50_YARDSTICK = "torchvision resnet50 features (yardstick)"


def exported_runner(cfg, model: nn.Module, batch: List[Dict[str, Any]], backend: str,
                    threads: int) -> Callable[[], Any]:
    """A no-argument call running ``batch`` (one image) end to end through an export of ``model``
    (made in a temporary folder, deleted once loaded): pre-processing, network, post-processing."""
    import tempfile

    from mask2former.deploy import ONNXPredictor
    from mask2former.deploy.export import export_model
    from mask2former.structures import ImageList

    size = tuple(batch[0]["image"].shape[-2:])
    with tempfile.TemporaryDirectory(prefix="m2f_benchmark_") as folder:  # loaded into memory below
        export_model(cfg, model, folder, fmt="onnx" if backend == "onnxruntime" else "torch_export",
                     input_size=size)
        if backend == "onnxruntime":
            predictor = ONNXPredictor(folder, num_threads=threads)
        else:
            program = torch.export.load(os.path.join(folder, "model.pt2")).module()
    if backend == "onnxruntime":
        inputs = [{"image": x["image"].cpu().numpy(), "height": x["height"], "width": x["width"]} for x in batch]
        return lambda: predictor.predict_inputs(inputs)

    def run() -> Any:
        images = ImageList.from_tensors([(x["image"] - model.pixel_mean) / model.pixel_std for x in batch],
                                        model.size_divisibility)
        logits, masks = program(images.tensor)
        return model.inference(logits, masks, batch, images)
    return run


def benchmark_callable(fn: Callable[[], Any], num_iter: int, warmup: int,
                       yardsticks: Dict[str, Callable[[], Any]]) -> Tuple[List[float], Dict[str, List[float]]]:
    """Seconds of ``num_iter`` timed calls of ``fn`` (after ``warmup``), yardsticks after each."""
    totals: List[float] = []
    parts: Dict[str, List[float]] = {}
    with torch.no_grad():
        for i in range(warmup + num_iter):
            for name, call in [("total", fn)] + list(yardsticks.items()):
                start = time.perf_counter()
                call()
                if i >= warmup:
                    (totals if name == "total" else parts.setdefault(name, [])).append(time.perf_counter() - start)
    return totals, parts


def resnet50_yardstick(batch: List[Dict[str, Any]], device: str) -> Callable[[], Any]:
    """A forward of torchvision's ``resnet50`` (random weights, up to ``layer4``; no pooling or
    classifier) on the batch's images: the same convolutions as our R50 backbone, written by
    someone else, as a second machine-independent yardstick."""
    from torchvision.models import resnet50

    net = nn.Sequential(*list(resnet50(weights=None).children())[:-2]).to(device).eval()
    images = torch.stack([item["image"] if torch.is_tensor(item["image"]) else item["image"][0]
                          for item in batch]).float()  # (B, 3, H, W)

    def forward() -> Any:
        with torch.no_grad():
            return net(images)  # (B, 2048, H/32, W/32)
    return forward


def yardstick_lines(totals: List[float], parts: Dict[str, List[float]]) -> List[str]:
    """The issue's machine-independent ratios from one run's medians."""
    total = statistics.median(totals)
    lines = []
    if "backbone" in parts:
        backbone = statistics.median(parts["backbone"])
        lines.append(f"Yardstick: whole inference / our backbone = {total / backbone:.2f} "
                     f"(medians {total:.3f} / {backbone:.3f} s; issue 11 asks <= 3.5, the official code ~7)")
    if RESNET50_YARDSTICK in parts:
        ref = statistics.median(parts[RESNET50_YARDSTICK])
        lines.append(f"Yardstick: whole inference / torchvision resnet50 features = {total / ref:.2f} "
                     f"(medians {total:.3f} / {ref:.3f} s)")
        if "backbone" in parts:
            lines.append(f"Yardstick: our backbone / torchvision resnet50 features = "
                         f"{statistics.median(parts['backbone']) / ref:.2f}")
    return lines


def benchmark_train(model: nn.Module, optimizer: torch.optim.Optimizer, batch: List[Dict[str, Any]],
                    num_iter: int, warmup: int, autocast: Any, scaler: Any,
                    sync: Callable[[], None]) -> Tuple[List[float], Dict[str, List[float]]]:
    """Per-iteration seconds (forward + backward + step) and the split into those three."""
    model.train()
    totals, parts = [], {"forward (losses)": [], "backward": [], "optimizer step": []}
    for i in range(warmup + num_iter):
        sync()
        t0 = time.perf_counter()
        with autocast:
            losses = model(batch)
            loss = sum(losses.values())
        sync()
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        sync()
        t2 = time.perf_counter()
        scaler.step(optimizer)
        scaler.update()
        sync()
        t3 = time.perf_counter()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"Loss became {loss.item()} at iteration {i}")
        if i >= warmup:
            totals.append(t3 - t0)
            for name, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                parts[name].append(seconds)
    return totals, parts


def hf_network_forward(cfg, model: nn.Module, batch: List[Dict[str, Any]],
                       ) -> Tuple[Callable[[], Any], Callable[[], Any], str, Tuple[int, int]]:
    """Network forwards (no pre- or post-processing) of our model and of transformers'
    ``Mask2FormerForUniversalSegmentation`` built with the same architecture (random weights),
    on the same normalised, padded images; and both parameter counts (ours, transformers')."""
    try:
        from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
    except ImportError as e:
        raise SystemExit(f"--compare-hf needs the transformers package: {e}") from None
    from mask2former.checkpoint.hf_config import hf_config_from_d2
    from mask2former.modeling.meta_arch.preprocessing import preprocess_images

    try:
        hf_dict = hf_config_from_d2(cfg)
    except ValueError as e:
        raise SystemExit(f"--compare-hf: {e}") from None
    if hf_dict.get("model_type") != "mask2former":
        raise SystemExit(f"--compare-hf compares Mask2Former models; {cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME} "
                         "configs map to transformers' MaskFormer")
    hf_cfg = Mask2FormerConfig.from_dict({k: v for k, v in hf_dict.items() if k != "architectures"})
    torch.manual_seed(0)
    hf_model = Mask2FormerForUniversalSegmentation(hf_cfg).to(model.device).eval()
    images = preprocess_images(batch, model.pixel_mean, model.pixel_std, model.size_divisibility,
                               getattr(model.backbone, "padding_constraints", None)).tensor  # (B, 3, Hp, Wp)

    def ours() -> Any:  # as in inference: only the last decoder layer predicts full-size masks
        with torch.no_grad():
            return head_outputs(model.sem_seg_head, model.backbone(images), training=False)

    def theirs() -> Any:
        with torch.no_grad():
            return hf_model(pixel_values=images)

    import transformers
    counts = (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in hf_model.parameters()))
    return ours, theirs, f"transformers {transformers.__version__}", counts


def compare_hf(cfg, model: nn.Module, batch: List[Dict[str, Any]], num_iter: int, warmup: int,
               autocast: Any, sync: Callable[[], None]) -> List[str]:
    """Median seconds of both network forwards, timed alternately (each iteration runs both)."""
    model.eval()
    ours, theirs, version, (n_ours, n_hf) = hf_network_forward(cfg, model, batch)
    times: Dict[str, List[float]] = {"ours": [], "hf": []}
    for i in range(warmup + num_iter):
        for name, fn in (("ours", ours), ("hf", theirs)):
            sync()
            start = time.perf_counter()
            with autocast:
                fn()
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    a, b = statistics.median(times["ours"]), statistics.median(times["hf"])
    rows = [["this project (backbone + sem_seg_head)", f"{a:.3f}", f"{min(times['ours']):.3f}"],
            [f"{version} Mask2FormerForUniversalSegmentation", f"{b:.3f}", f"{min(times['hf']):.3f}"]]
    table = tabulate(rows, headers=["network forward, random weights", "median s", "min s"],
                     tablefmt="pipe", disable_numparse=True, colalign=("left", "right", "right"))
    return [table, f"Parameters: this project {n_ours:,}, transformers {n_hf:,}",
            f"Speed-up over transformers (medians): {b / a:.2f}x"]


# ---------------------------------------------------------------------- set-up
def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    parser.add_argument("--task", choices=["inference", "train"], default="inference")
    parser.add_argument("--backend", choices=["torch", "onnxruntime", "torch_export"], default="torch",
                        help="inference: eager PyTorch, or the network exported (at --input-size) and "
                        "run by onnxruntime (ONNXPredictor, numpy post-processing) or as a "
                        "torch.export program (torch post-processing); see docs/deployment.md")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=sorted(DTYPES), default="fp32",
                        help="autocast precision (fp32: no autocast)")
    parser.add_argument("--input-size", type=parse_input_size, default=(480, 640), metavar="HxW")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--num-frames", type=int, default=None,
                        help="video configs: frames per clip (default INPUT.SAMPLING_FRAME_NUM)")
    parser.add_argument("--num-iter", type=int, default=None,
                        help="timed iterations (default: 10 inference, 5 train)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--cpu-memory", choices=["cache", "release", "system"], default=None,
                        help="glibc malloc policy (mask2former.utils.memory; default: "
                             "$MASK2FORMER_CPU_MEMORY_CACHE, else cache)")
    parser.add_argument("--outputs", choices=["all", "config"], default="all",
                        help="inference results: semantic+instance+panoptic (all, where the "
                        "dataset metadata allows panoptic) or the config's")
    parser.add_argument("--no-yardstick", action="store_true",
                        help="inference: do not time torchvision's resnet50 next to the model")
    parser.add_argument("--compare-hf", action="store_true",
                        help="inference: also time the network forward (no pre-/post-processing) "
                        "against transformers' Mask2FormerForUniversalSegmentation of the same "
                        "architecture, random weights, alternately in the same run")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs")
    return parser


def setup_cfg(args: argparse.Namespace):
    cfg = setup_tool_cfg(args, freeze=False)
    cfg.MODEL.DEVICE = args.device
    notes = []
    if args.task == "inference" and args.outputs == "all" and cfg.MODEL.META_ARCHITECTURE == "MaskFormer":
        names = list(cfg.DATASETS.TRAIN) or list(cfg.DATASETS.TEST)
        meta = MetadataCatalog.get(names[0]) if names else None
        can_panoptic = meta is not None and meta.get("thing_dataset_id_to_contiguous_id") is not None
        test = cfg.MODEL.MASK_FORMER.TEST
        test.SEMANTIC_ON, test.INSTANCE_ON = True, True
        test.PANOPTIC_ON = test.PANOPTIC_ON or can_panoptic
        if not can_panoptic and not test.PANOPTIC_ON:
            notes.append("panoptic inference off: the dataset metadata has no thing classes")
    cfg.freeze()
    return cfg, notes


def _outputs_description(cfg) -> str:
    if cfg.MODEL.META_ARCHITECTURE == "VideoMaskFormer":
        return "video instance (top-10 (query, class) pairs per clip)"
    if cfg.MODEL.META_ARCHITECTURE != "MaskFormer":
        return f"{cfg.MODEL.META_ARCHITECTURE} (semantic)"
    test = cfg.MODEL.MASK_FORMER.TEST
    on = [name for name, flag in (("semantic", test.SEMANTIC_ON), ("instance", test.INSTANCE_ON),
                                  ("panoptic", test.PANOPTIC_ON)) if flag]
    return " + ".join(on) or "none"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if not os.path.isfile(args.config_file):
        parser.error(f"--config-file {args.config_file!r} does not exist")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    if args.batch_size < 1 or args.warmup < 0:
        parser.error("--batch-size must be >= 1 and --warmup >= 0")
    num_iter = args.num_iter or (10 if args.task == "inference" else 5)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, notes = setup_cfg(args)

    torch.manual_seed(0)  # random weights, the same in every run (post-processing depends on them)
    memory_policy = configure_cpu_memory(args.cpu_memory)  # as DefaultPredictor / DefaultTrainer do
    model = build_model(cfg)
    weights = "random"
    if cfg.MODEL.WEIGHTS:
        try:
            DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
            weights = cfg.MODEL.WEIGHTS
        except FileNotFoundError:
            notes.append(f"MODEL.WEIGHTS {cfg.MODEL.WEIGHTS} is not available locally: random weights")
    cuda = args.device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    dtype = DTYPES[args.precision]
    autocast = torch.autocast(device_type=args.device, dtype=dtype) if dtype != torch.float32 \
        else contextlib.nullcontext()
    video = cfg.MODEL.META_ARCHITECTURE == "VideoMaskFormer"
    if video:
        if args.task == "inference" and args.batch_size != 1:
            parser.error("video inference takes one clip per call: use --batch-size 1")
        if args.task == "train" and args.num_frames not in (None, cfg.INPUT.SAMPLING_FRAME_NUM):
            parser.error("video training clips have INPUT.SAMPLING_FRAME_NUM frames: set that with --opts")
        num_frames = args.num_frames or cfg.INPUT.SAMPLING_FRAME_NUM
        batch = random_video_batch(args.batch_size, num_frames, args.input_size,
                                   cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, args.device,
                                   with_targets=args.task == "train")
    else:
        batch = random_batch(args.batch_size, args.input_size, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
                             args.device, with_targets=args.task == "train")

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_before = _rss_bytes()
    if args.compare_hf and (args.task != "inference" or video):
        parser.error("--compare-hf times image inference: use it with --task inference and an image config")
    if args.task == "inference":
        yardsticks = {} if (video or args.no_yardstick) else {
            RESNET50_YARDSTICK: resnet50_yardstick(batch, args.device)}
        if args.backend == "torch":
            totals, parts = benchmark_inference(model, batch, num_iter, args.warmup, autocast, sync, yardsticks)
        else:
            if video or cuda or args.batch_size != 1 or args.precision != "fp32" or args.compare_hf:
                parser.error(f"--backend {args.backend} times fp32 CPU image inference, one image per call")
            model.eval()
            notes.append(f"backend {args.backend}: whole inference (pre-processing, exported network, "
                         "post-processing); export time not included")
            runner = exported_runner(cfg, model, batch, args.backend, torch.get_num_threads())
            totals, parts = benchmark_callable(runner, num_iter, args.warmup, yardsticks)
        per, unit = args.batch_size, ("s/clip" if video else "s/image")
    else:
        optimizer = build_optimizer(cfg, model)
        scaler = torch.amp.GradScaler(args.device, enabled=(dtype == torch.float16 and cuda))
        totals, parts = benchmark_train(model, optimizer, batch, num_iter, args.warmup, autocast,
                                        scaler, sync)
        per, unit = 1, "s/iter"

    if cuda:
        memory = f"{_mib(torch.cuda.max_memory_allocated())} (CUDA max_memory_allocated)"
    else:
        peak = _peak_rss_bytes()
        memory = f"{_mib(peak)} (peak RSS of the process" + (
            ", torchvision yardstick included" if args.task == "inference" and not video
            and not args.no_yardstick else "") + (
            f"; +{_mib(max(peak - rss_before, 0))} over the RSS before the first iteration)"
            if rss_before is not None else ")")
    device_name = torch.cuda.get_device_name() if cuda else \
        f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"

    total = statistics.median(totals) / per
    rows = [[name, f"{statistics.median(v) / per:.3f}", f"{min(v) / per:.3f}",
             f"{100 * statistics.median(v) / per / total:.0f}%"] for name, v in parts.items()
            if name != RESNET50_YARDSTICK]
    rows.append(["total", f"{total:.3f}", f"{min(totals) / per:.3f}", "100%"])
    if RESNET50_YARDSTICK in parts:
        v = parts[RESNET50_YARDSTICK]
        rows.append([RESNET50_YARDSTICK, f"{statistics.median(v) / per:.3f}", f"{min(v) / per:.3f}", "-"])
    clip_note = f" (clips of {len(batch[0]['image'])} frames)" if video else ""
    print(f"Config: {args.config_file}")
    print(f"Task: {args.task}; device: {device_name}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; precision {args.precision}; input "
          f"{args.input_size[0]}x{args.input_size[1]}; batch size {args.batch_size}"
          f"{clip_note}; "
          f"{num_iter} timed iterations after {args.warmup} warm-up; weights: {weights}; "
          f"CPU memory policy {memory_policy}")
    if args.task == "inference":
        print(f"Inference outputs: {_outputs_description(cfg)}")
    for note in notes:
        print(f"Note: {note}")
    print(tabulate(rows, headers=["stage", f"median {unit}", f"min {unit}", "share"],
                   tablefmt="pipe", disable_numparse=True, colalign=("left", "right", "right", "right")))
    print(f"Medians / minima are taken per stage, so they need not add up to the total "
          f"(max total {max(totals) / per:.3f} {unit}; on a shared machine the minima are the "
          f"steadier figures).")
    print(f"Peak memory: {memory}")
    if args.task == "inference" and not video:
        for line in yardstick_lines(totals, parts):
            print(line)
    if args.compare_hf:
        for line in compare_hf(cfg, model, batch, num_iter, args.warmup, autocast, sync):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
