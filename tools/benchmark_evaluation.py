#!/usr/bin/env python
"""Time the evaluators on generated data of COCO-val and Cityscapes-val image size.

Usage:
  python tools/benchmark_evaluation.py                       # 50 COCO-like + 8 Cityscapes-like images
  python tools/benchmark_evaluation.py --coco-images 200 --cityscapes-images 20 --workers 4

A temporary folder receives a synthetic ground truth in the real formats (COCO panoptic PNG +
json, COCO instances json, semantic PNGs; Cityscapes gtFine labelIds / instanceIds PNGs) and
each evaluator sees model outputs derived from it: ``sem_seg`` scores (K, H, W) whose argmax is
the ground truth with a shifted block, 100 ``instances`` per image (the ground-truth things
shifted by a few pixels, then random low-score boxes, as Mask2Former's top-100 output) and a
``panoptic_seg``. Generating the outputs is not timed; ``process`` (per image, during inference)
and ``evaluate`` (once, at the end) are. The full validation sets (COCO 5000 images at
~480x640, Cityscapes 500 at 1024x2048) are too large for a quick run: the table reports
seconds per image and the extrapolation ``process * N + evaluate * N / n`` (``evaluate`` grows
about linearly with the number of images). ``--workers`` processes run PQ
(``COCOPanopticEvaluator(num_workers=)``) and the Cityscapes evaluators (one evaluator per
process, started by ``launch`` as ``train_net.py --num-gpus`` does).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mask2former.evaluation import (  # noqa: E402
    COCOEvaluator,
    COCOPanopticEvaluator,
    CityscapesInstanceEvaluator,
    CityscapesSemSegEvaluator,
    SemSegEvaluator,
)
from mask2former.structures import Instances  # noqa: E402
from mask2former.utils import comm  # noqa: E402
from mask2former.utils.catalog import MetadataCatalog  # noqa: E402
from mask2former.utils.panoptic_utils import id2rgb  # noqa: E402

COCO_HW, CITYSCAPES_HW = (480, 640), (1024, 2048)
COCO_THINGS, COCO_STUFF = 80, 53
FULL_SIZE = {"coco": 5000, "cityscapes": 500}
NUM_PREDICTIONS = 100


# ----------------------------------------------------------------------------- synthetic ground truth
def _boxes(rng: np.random.Generator, hw: Tuple[int, int], n: int, lo: int, hi: int) -> List[Tuple[int, int, int, int]]:
    h, w = hw
    out = []
    for _ in range(n):
        bh, bw = rng.integers(lo, hi, size=2)
        y, x = rng.integers(0, h - bh), rng.integers(0, w - bw)
        out.append((int(y), int(x), int(y + bh), int(x + bw)))
    return out


def coco_like_image(seed: int) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """(H, W) segment ids and segments (contiguous ``category_id``, ``isthing``) of one image:
    3 stuff bands, then ~7 thing instances on top (COCO val averages 7.3 instances per image)."""
    rng = np.random.default_rng(seed)
    h, w = COCO_HW
    ids = np.zeros((h, w), np.int32)
    segments = []
    for k, cat in enumerate(rng.choice(COCO_STUFF, 3, replace=False)):
        ids[k * h // 3 : (k + 1) * h // 3] = k + 1
        segments.append({"id": k + 1, "category_id": COCO_THINGS + int(cat), "isthing": False})
    for k, (y0, x0, y1, x1) in enumerate(_boxes(rng, COCO_HW, int(rng.integers(3, 12)), 16, 200)):
        ids[y0:y1, x0:x1] = 10 + k
        segments.append({"id": 10 + k, "category_id": int(rng.integers(COCO_THINGS)), "isthing": True})
    present = set(np.unique(ids).tolist())
    return ids, [s for s in segments if s["id"] in present]


def write_coco_like(root: str, n: int) -> str:
    """COCO-format panoptic, instances and semantic ground truth of ``n`` images; registers and
    returns a dataset name with the metadata the three evaluators read."""
    pan_dir, sem_dir = os.path.join(root, "panoptic"), os.path.join(root, "semantic")
    os.makedirs(pan_dir), os.makedirs(sem_dir)
    h, w = COCO_HW
    categories = [{"id": i + 1, "name": f"c{i}", "isthing": int(i < COCO_THINGS)} for i in range(COCO_THINGS + COCO_STUFF)]
    images, pan_anns, inst_anns = [], [], []
    for i in range(n):
        ids, segments = coco_like_image(i)
        name = f"{i:012d}"
        images.append({"id": i, "file_name": name + ".jpg", "height": h, "width": w})
        Image.fromarray(id2rgb(ids)).save(os.path.join(pan_dir, name + ".png"))
        semantic = np.full((h, w), 255, np.uint8)
        infos = []
        for s in segments:
            mask = ids == s["id"]
            semantic[mask] = s["category_id"]
            ys, xs = np.nonzero(mask)
            bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
            infos.append({"id": s["id"], "category_id": s["category_id"] + 1, "area": int(mask.sum()), "bbox": bbox, "iscrowd": 0})
            if s["isthing"]:
                rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode()
                inst_anns.append({"id": len(inst_anns) + 1, "image_id": i, "category_id": s["category_id"] + 1,
                                  "segmentation": rle, "area": int(mask.sum()), "bbox": bbox, "iscrowd": 0})
        Image.fromarray(semantic).save(os.path.join(sem_dir, name + ".png"))
        pan_anns.append({"image_id": i, "file_name": name + ".png", "segments_info": infos})
    with open(os.path.join(root, "panoptic.json"), "w") as f:
        json.dump({"images": images, "annotations": pan_anns, "categories": categories}, f)
    with open(os.path.join(root, "instances.json"), "w") as f:
        json.dump({"images": images, "annotations": inst_anns, "categories": categories[:COCO_THINGS]}, f)
    name = f"bench_coco_{os.getpid()}"
    MetadataCatalog.get(name).set(
        panoptic_json=os.path.join(root, "panoptic.json"), panoptic_root=pan_dir,
        json_file=os.path.join(root, "instances.json"), sem_seg_root=sem_dir,
        thing_dataset_id_to_contiguous_id={i + 1: i for i in range(COCO_THINGS)},
        stuff_dataset_id_to_contiguous_id={i + 1: i for i in range(COCO_THINGS, COCO_THINGS + COCO_STUFF)},
        thing_classes=[f"c{i}" for i in range(COCO_THINGS)],
        stuff_classes=[f"c{i}" for i in range(COCO_THINGS + COCO_STUFF)], ignore_label=255,
    )
    return name


CS_STUFF = [7, 8, 11, 21, 23]  # road, sidewalk, building, vegetation, sky (label ids)
CS_THINGS = [24, 25, 26, 27, 28, 31, 32, 33]  # person ... bicycle


def cityscapes_like_image(seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(labelIds, instanceIds) of one 1024x2048 image: 5 stuff bands, ~20 instances, ego vehicle."""
    rng = np.random.default_rng(seed)
    h, w = CITYSCAPES_HW
    label_ids = np.zeros((h, w), np.uint8)
    for k, lab in enumerate(CS_STUFF):
        label_ids[k * h // 5 : (k + 1) * h // 5] = lab
    instance_ids = label_ids.astype(np.int32)
    for k, (y0, x0, y1, x1) in enumerate(_boxes(rng, CITYSCAPES_HW, int(rng.integers(10, 30)), 20, 300)):
        lab = int(rng.choice(CS_THINGS))
        label_ids[y0:y1, x0:x1] = lab
        instance_ids[y0:y1, x0:x1] = lab * 1000 + k
    label_ids[-80:] = instance_ids[-80:] = 1  # ego vehicle: ignored
    return label_ids, instance_ids


def write_cityscapes_like(root: str, n: int) -> List[str]:
    """``root/gtFine/val/bench/*_gtFine_{labelIds,instanceIds}.png``; returns the image names."""
    gt_dir = os.path.join(root, "gtFine", "val", "bench")
    os.makedirs(gt_dir)
    names = []
    for i in range(n):
        stem = f"bench_{i:06d}_000019_"
        label_ids, instance_ids = cityscapes_like_image(i)
        Image.fromarray(label_ids).save(os.path.join(gt_dir, stem + "gtFine_labelIds.png"))
        Image.fromarray(instance_ids.astype(np.uint16)).save(os.path.join(gt_dir, stem + "gtFine_instanceIds.png"))
        names.append(os.path.join(root, "leftImg8bit", "val", "bench", stem + "leftImg8bit.png"))
    return names


def register_cityscapes_like(root: str) -> str:
    from mask2former.data.datasets.meta import cityscapes_meta

    name = "bench_cityscapes"
    MetadataCatalog.get(name).set(gt_dir=os.path.join(root, "gtFine", "val"), **cityscapes_meta())
    return name


# ----------------------------------------------------------------------------- model outputs
def _scores(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """(K, H, W) scores whose argmax is ``labels`` with a 64x64 block moved by 32 px."""
    labels = labels.copy()
    labels[100:164, 100:164] = labels[132:196, 132:196]
    one_hot = torch.nn.functional.one_hot(torch.as_tensor(labels).long(), num_classes)  # (H, W, K)
    return one_hot.permute(2, 0, 1).float().contiguous()  # (K, H, W), laid out as a model's output


def _instances(masks: List[np.ndarray], classes: List[int], hw: Tuple[int, int], num_classes: int, seed: int) -> Instances:
    """The given masks shifted by 3 px (scores 0.5-1), then random boxes up to 100 (scores < 0.3)."""
    rng = np.random.default_rng(seed)
    masks = [np.roll(m, 3, axis=1) for m in masks][:NUM_PREDICTIONS]
    scores = list(rng.uniform(0.5, 1.0, len(masks)))
    classes = list(classes)
    for y0, x0, y1, x1 in _boxes(rng, hw, NUM_PREDICTIONS - len(masks), 10, min(hw) // 4):
        m = np.zeros(hw, bool)
        m[y0:y1, x0:x1] = True
        masks.append(m)
        scores.append(float(rng.uniform(0.0, 0.3)))
        classes.append(int(rng.integers(num_classes)))
    r = Instances(hw)
    r.pred_masks = torch.as_tensor(np.stack(masks))  # (100, H, W)
    r.pred_classes = torch.tensor(classes)
    r.scores = torch.tensor(scores, dtype=torch.float32)
    return r


def coco_outputs(i: int) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    ids, segments = coco_like_image(i)
    semantic = np.zeros(ids.shape, np.int64)
    for s in segments:
        semantic[ids == s["id"]] = s["category_id"]
    things = [s for s in segments if s["isthing"]]
    pan = ids.copy()
    pan[100:164, 100:164] = ids[132:196, 132:196]  # the block error of the semantic output
    present = set(np.unique(pan).tolist())
    inputs = {"file_name": f"{i:012d}.jpg", "image_id": i, "sem_seg_file_name": ""}
    outputs = {
        "sem_seg": _scores(semantic, COCO_THINGS + COCO_STUFF),
        "instances": _instances([ids == s["id"] for s in things], [s["category_id"] for s in things], COCO_HW, COCO_THINGS, i),
        "panoptic_seg": (torch.as_tensor(pan), [dict(s) for s in segments if s["id"] in present]),
    }
    return inputs, outputs


def cityscapes_outputs(file_name: str, i: int) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    from cityscapesscripts.helpers.labels import id2label

    label_ids, instance_ids = cityscapes_like_image(i)
    lut = np.array([id2label[k].trainId if k in id2label else 255 for k in range(256)])
    train_ids = lut[label_ids]
    train_ids[train_ids == 255] = 0
    inst = [k for k in np.unique(instance_ids).tolist() if k >= 1000]
    classes = [CS_THINGS.index(k // 1000) for k in inst]
    outputs = {
        "sem_seg": _scores(train_ids, 19),
        "instances": _instances([instance_ids == k for k in inst], classes, CITYSCAPES_HW, len(CS_THINGS), i),
    }
    return {"file_name": file_name}, outputs


# ----------------------------------------------------------------------------- timing
def time_evaluator(evaluator, samples: Callable[[], Any]) -> Tuple[float, float, Dict[str, Any]]:
    """(seconds in process, seconds in evaluate, results) over the (inputs, outputs) of ``samples``."""
    evaluator.reset()
    t_process = 0.0
    for inputs, outputs in samples():
        start = time.perf_counter()
        evaluator.process([inputs], [outputs])
        t_process += time.perf_counter() - start
    start = time.perf_counter()
    results = evaluator.evaluate()
    return t_process, time.perf_counter() - start, results


def _cityscapes_worker(root: str, names: List[str], out_file: str) -> None:
    """One of ``--workers`` processes: its share of the images through both Cityscapes evaluators."""
    dataset = register_cityscapes_like(root)
    rank, world = comm.get_rank(), comm.get_world_size()
    mine = [(names[i], i) for i in range(rank, len(names), world)]
    rows = {}
    for cls in (CityscapesSemSegEvaluator, CityscapesInstanceEvaluator):
        comm.synchronize()
        start = time.perf_counter()
        t_process, t_eval, results = time_evaluator(cls(dataset), lambda: (cityscapes_outputs(n, i) for n, i in mine))
        wall = time.perf_counter() - start
        t_processes = comm.gather(t_process)
        if rank == 0:
            rows[cls.__name__] = {"process": max(t_processes), "evaluate": t_eval, "wall": wall, "results": results}
    if rank == 0:
        with open(out_file, "w") as f:
            json.dump(rows, f)


def benchmark(coco_images: int, cityscapes_images: int, workers: int, repeats: int) -> List[Dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        if coco_images:
            dataset = write_coco_like(os.path.join(tmp, "coco"), coco_images)
            samples = lambda: (coco_outputs(i) for i in range(coco_images))  # noqa: E731
            sem_dir = MetadataCatalog.get(dataset).sem_seg_root

            def sem_samples():
                for inputs, outputs in samples():
                    inputs["sem_seg_file_name"] = os.path.join(sem_dir, f"{inputs['image_id']:012d}.png")
                    yield inputs, outputs

            cases = [
                ("SemSegEvaluator", lambda: SemSegEvaluator(dataset, distributed=False), sem_samples, 1),
                ("COCOEvaluator (segm)", lambda: COCOEvaluator(dataset, ("segm",), distributed=False), samples, 1),
                ("COCOPanopticEvaluator", lambda: COCOPanopticEvaluator(dataset), samples, 1),
            ]
            if workers > 1:
                cases.append(("COCOPanopticEvaluator", lambda: COCOPanopticEvaluator(dataset, num_workers=workers), samples, workers))
            for label, make, gen, procs in cases:
                print(f"{label}, {procs} process(es), {coco_images} COCO-like images ...", file=sys.stderr, flush=True)
                runs = [time_evaluator(make(), gen)[:2] for _ in range(repeats)]
                rows.append(_row("coco", label, procs, coco_images, runs))
        if cityscapes_images:
            from mask2former.engine.launch import launch

            root = os.path.join(tmp, "cityscapes")
            names = write_cityscapes_like(root, cityscapes_images)
            for procs in sorted({1, workers}):
                print(f"Cityscapes evaluators, {procs} process(es), {cityscapes_images} images ...", file=sys.stderr, flush=True)
                runs: Dict[str, List[Tuple[float, float]]] = {}
                for _ in range(repeats):
                    out_file = os.path.join(tmp, "cityscapes_times.json")
                    launch(_cityscapes_worker, procs, dist_url="auto", args=(root, names, out_file))
                    with open(out_file) as f:
                        for label, r in json.load(f).items():
                            runs.setdefault(label, []).append((r["process"], r["evaluate"]))
                for label, r in runs.items():
                    rows.append(_row("cityscapes", label, procs, cityscapes_images, r))
    return rows


def _row(family: str, label: str, procs: int, n: int, runs: List[Tuple[float, float]]) -> Dict[str, Any]:
    """Medians over the repeats; process time is that of the slowest process."""
    t_process = statistics.median(r[0] for r in runs)
    t_eval = statistics.median(r[1] for r in runs)
    full = FULL_SIZE[family]
    return {
        "data": f"{family} ({n} images)", "evaluator": label, "processes": procs,
        "process s/img": t_process / n, "evaluate s": t_eval,
        f"full val s (est.)": t_process / n * full + t_eval * full / n,
    }


def main(argv=None) -> List[Dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco-images", type=int, default=50)
    parser.add_argument("--cityscapes-images", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="processes for PQ and the Cityscapes evaluators")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; the median is reported")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"  # also for the launched processes
    torch.set_num_threads(1)
    rows = benchmark(args.coco_images, args.cityscapes_images, args.workers, args.repeats)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads 1, "
          f"python {platform.python_version()}, torch {torch.__version__}")
    print("| data | evaluator | processes | process s/img | evaluate s | full val s (est.) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['data']} | {r['evaluator']} | {r['processes']} | {r['process s/img']:.4f} | "
              f"{r['evaluate s']:.2f} | {r['full val s (est.)']:.0f} |")
    return rows


if __name__ == "__main__":
    main()
