"""YouTube-VIS video instance segmentation AP (the protocol of the youtubevos cocoapi ``YTVOSeval``).

The IoU of a predicted and a ground-truth track is taken over the whole spatio-temporal volume:
the sum over frames of their intersections divided by the sum over frames of their unions (a
frame where one of them is absent adds the other's area to the union). Matching, precision /
recall accumulation and the summary are pycocotools' ``COCOeval`` (videos in the place of
images) with the YouTube-VIS area ranges (small < 128^2 <= medium < 256^2 <= large, on the
track's mean area over the frames where it is present) and 1 / 10 / 100 detections per video.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..utils import comm
from ..utils.catalog import MetadataCatalog
from .coco_evaluation import derive_coco_results
from .evaluator import DatasetEvaluator

__all__ = ["YTVISEvaluator", "evaluate_ytvis", "instances_to_ytvis_json"]

logger = logging.getLogger(__name__)

AREA_RANGES = [[0, 1e5**2], [0, 128**2], [128**2, 256**2], [256**2, 1e5**2]]


def instances_to_ytvis_json(video_id: Any, output: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One challenge-server result per predicted track: ``video_id``, ``score``, ``category_id``
    (still contiguous) and ``segmentations`` (one RLE per frame). ``output`` is the video
    model's result: ``pred_scores`` (K,), ``pred_labels`` (K,), ``pred_masks`` K x (T, H, W) bool."""
    results = []
    for score, label, masks in zip(output["pred_scores"], output["pred_labels"], output["pred_masks"]):
        masks = masks.cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)  # (T, H, W)
        rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
        for rle in rles:
            rle["counts"] = rle["counts"].decode("utf-8")  # JSON cannot hold bytes
        results.append({"video_id": video_id, "score": float(score), "category_id": int(label),
                        "segmentations": list(rles)})
    return results


def _frame_rles(segmentations: Sequence[Any], height: int, width: int) -> List[Optional[dict]]:
    """Per-frame compressed RLE (None where absent) of polygons / RLE / null."""
    rles: List[Optional[dict]] = []
    for segm in segmentations:
        if not segm:
            rles.append(None)
        elif isinstance(segm, list):  # polygons
            rles.append(mask_util.merge(mask_util.frPyObjects(segm, height, width)))
        elif isinstance(segm["counts"], list):  # uncompressed RLE
            rles.append(mask_util.frPyObjects(segm, height, width))
        else:
            rles.append(segm)
    return rles


def _mean_area(rles: Sequence[Optional[dict]]) -> float:
    areas = [float(mask_util.area(r)) for r in rles if r is not None]
    return float(np.mean(areas)) if areas else 0.0


def spatio_temporal_ious(dts: Sequence[Sequence[Optional[dict]]], gts: Sequence[Sequence[Optional[dict]]]) -> np.ndarray:
    """(D, G) IoUs of tracks given as per-frame RLE lists (None = absent) of equal length:
    sum of per-frame intersections / sum of per-frame unions (0 where the union is empty)."""
    ious = np.zeros((len(dts), len(gts)))
    if not len(dts) or not len(gts):
        return ious
    inter = np.zeros((len(dts), len(gts)))
    area_d = np.array([sum(float(mask_util.area(r)) for r in d if r is not None) for d in dts])
    area_g = np.array([sum(float(mask_util.area(r)) for r in g if r is not None) for g in gts])
    for frame in range(len(gts[0])):
        di = [i for i, d in enumerate(dts) if d[frame] is not None]
        gi = [j for j, g in enumerate(gts) if g[frame] is not None]
        if not di or not gi:
            continue
        d_rles, g_rles = [dts[i][frame] for i in di], [gts[j][frame] for j in gi]
        iou = np.asarray(mask_util.iou(d_rles, g_rles, [0] * len(gi))).reshape(len(di), len(gi))
        a = np.asarray(mask_util.area(d_rles), dtype=np.float64)[:, None] + \
            np.asarray(mask_util.area(g_rles), dtype=np.float64)[None, :]
        inter[np.ix_(di, gi)] += np.round(iou * a / (1.0 + iou))  # |A & B| from IoU and |A| + |B| (exact integers)
    union = area_d[:, None] + area_g[None, :] - inter
    np.divide(inter, union, out=ious, where=union > 0)
    return ious


class _VideoCOCOeval(COCOeval):
    """COCOeval over videos: ``imgIds`` are video ids, IoUs are spatio-temporal. Constructed
    with iouType "bbox" only so that COCOeval leaves the annotations as they are."""

    def __init__(self, gt: COCO, dt: COCO, tracks: Dict[str, Dict[int, List[Optional[dict]]]]):
        super().__init__(gt, dt, "bbox")
        self._tracks = tracks
        self.params.areaRng = AREA_RANGES
        self.params.maxDets = [1, 10, 100]

    def computeIoU(self, imgId, catId):
        gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
        if len(gt) == 0 and len(dt) == 0:
            return []
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in order][: self.params.maxDets[-1]]
        return spatio_temporal_ious([self._tracks["dt"][d["id"]] for d in dt], [self._tracks["gt"][g["id"]] for g in gt])


def evaluate_ytvis(gt_json: Dict[str, Any], results: List[Dict[str, Any]]) -> COCOeval:
    """Run the YouTube-VIS evaluation of ``results`` (dataset category ids) against a
    YouTube-VIS json dict; returns the evaluated, summarized COCOeval (``stats``: AP, AP50, AP75,
    APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl as fractions)."""
    videos = {v["id"]: v for v in gt_json["videos"]}
    tracks: Dict[str, Dict[int, List[Optional[dict]]]] = {"gt": {}, "dt": {}}
    gt_annos = []
    for anno in gt_json["annotations"]:
        video = videos[anno["video_id"]]
        rles = _frame_rles(anno["segmentations"], video["height"], video["width"])
        tracks["gt"][anno["id"]] = rles
        areas = [a for a in anno.get("areas") or [] if a]
        gt_annos.append({"id": anno["id"], "image_id": anno["video_id"], "category_id": anno["category_id"],
                         "iscrowd": int(anno.get("iscrowd", 0)),
                         "area": float(np.mean(areas)) if areas else _mean_area(rles)})
    dt_annos = []
    for k, result in enumerate(results, start=1):
        video = videos.get(result["video_id"])
        if video is None:
            raise ValueError(f"A result names video {result['video_id']}, which is not in the ground truth")
        if len(result["segmentations"]) != video["length"]:
            raise ValueError(f"A result for video {result['video_id']} has {len(result['segmentations'])} frames, "
                             f"the video has {video['length']}")
        rles = _frame_rles(result["segmentations"], video["height"], video["width"])
        tracks["dt"][k] = rles
        dt_annos.append({"id": k, "image_id": result["video_id"], "category_id": result["category_id"],
                         "iscrowd": 0, "score": float(result["score"]), "area": _mean_area(rles)})

    images = [{"id": v["id"]} for v in gt_json["videos"]]
    coco_gt, coco_dt = COCO(), COCO()
    coco_gt.dataset = {"images": images, "annotations": gt_annos, "categories": gt_json["categories"]}
    coco_dt.dataset = {"images": images, "annotations": dt_annos, "categories": gt_json["categories"]}
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        coco_gt.createIndex()
        coco_dt.createIndex()
        coco_eval = _VideoCOCOeval(coco_gt, coco_dt, tracks)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    logger.info("YouTube-VIS evaluation:\n%s", stdout.getvalue().strip())
    return coco_eval


class YTVISEvaluator(DatasetEvaluator):
    """AP / AP50 / AP75 / APs / APm / APl / AR1 / AR10 (percent) and per-category AP of the
    video model's outputs against the YouTube-VIS json of metadata ``json_file``, reported
    under ``"segm"`` as the official evaluator. Writes ``output_dir/results.json`` in the
    challenge-server format (a json without annotations, e.g. the val split, is not scored:
    zip and submit that file). Gathers the predictions of all processes when ``distributed``.
    """

    def __init__(self, dataset_name: str, tasks: Any = None, distributed: bool = True,
                 output_dir: Optional[str] = None):
        self._metadata = MetadataCatalog.get(dataset_name)
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        self._predictions: List[Dict[str, Any]] = []

    def reset(self) -> None:
        self._predictions = []

    def process(self, inputs: List[Dict[str, Any]], outputs: Any) -> None:
        """``inputs``: one video dict (``video_id``); ``outputs``: the model's result dict
        (or a one-element list of it)."""
        if isinstance(outputs, (list, tuple)):
            if len(outputs) != len(inputs):
                raise ValueError(f"{len(inputs)} videos but {len(outputs)} outputs")
            pairs = zip(inputs, outputs)
        else:
            if len(inputs) != 1:
                raise ValueError(f"YTVISEvaluator takes one video per batch, got {len(inputs)}")
            pairs = [(inputs[0], outputs)]
        for inp, out in pairs:
            self._predictions.extend(instances_to_ytvis_json(inp["video_id"], out))

    def _dataset_category_ids(self, results: List[Dict[str, Any]]) -> None:
        mapping = self._metadata.get("thing_dataset_id_to_contiguous_id", None)
        if mapping is None:
            return
        reverse = {v: k for k, v in mapping.items()}
        for result in results:
            if result["category_id"] not in reverse:
                raise ValueError(f"A prediction has class {result['category_id']}, but {self._dataset_name} has "
                                 f"contiguous ids {sorted(reverse)}")
            result["category_id"] = reverse[result["category_id"]]

    def evaluate(self) -> Optional["OrderedDict[str, Dict[str, float]]"]:
        """{"segm": metrics}; None on non-main processes; {} when not scored."""
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
            if not comm.is_main_process():
                return None
        else:
            predictions = list(self._predictions)
        predictions = [dict(p) for p in predictions]
        self._dataset_category_ids(predictions)
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            path = os.path.join(self._output_dir, "results.json")
            logger.info("Saving results to %s", path)
            with open(path, "w") as f:
                json.dump(predictions, f)

        json_file = self._metadata.get("json_file", None)
        if json_file is None or not os.path.isfile(json_file):
            raise FileNotFoundError(f"Ground-truth json of {self._dataset_name} not found: {json_file!r}")
        with open(json_file) as f:
            gt_json = json.load(f)
        if "annotations" not in gt_json:
            logger.info("%s has no annotations: results are only saved for submission.", json_file)
            return OrderedDict()
        metrics = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"]
        if not predictions:
            logger.warning("[YTVISEvaluator] Did not receive valid predictions.")
            return OrderedDict(segm={m: float("nan") for m in metrics})
        coco_eval = evaluate_ytvis(gt_json, predictions)
        cat_ids = sorted(c["id"] for c in gt_json["categories"])
        names = self._metadata.get("thing_classes", None)
        if names is None or len(names) != len(cat_ids):
            by_id = {c["id"]: c["name"] for c in gt_json["categories"]}
            names = [by_id[i] for i in cat_ids]
        results = derive_coco_results(coco_eval, "segm", class_names=names)
        for idx, name in ((6, "AR1"), (7, "AR10")):
            results[name] = float(coco_eval.stats[idx] * 100) if coco_eval.stats[idx] >= 0 else float("nan")
        ordered = {m: results[m] for m in metrics}
        ordered.update((k, v) for k, v in results.items() if k.startswith("AP-"))
        return OrderedDict(segm=ordered)
