"""COCO instance segmentation AP (pycocotools ``COCOeval``) of ``output["instances"]``."""

from __future__ import annotations

import contextlib
import copy
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
from iopath.common.file_io import g_pathmgr
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tabulate import tabulate

from ..utils.catalog import MetadataCatalog
from ..structures.boxes import BoxMode
from ..utils import comm
from .coco_json import convert_to_coco_json
from .evaluator import DatasetEvaluator
from .testing import create_small_table

__all__ = ["COCOEvaluator", "instances_to_coco_json", "evaluate_predictions_on_coco"]

logger = logging.getLogger(__name__)

_METRICS = {
    "bbox": ["AP", "AP50", "AP75", "APs", "APm", "APl"],
    "segm": ["AP", "AP50", "AP75", "APs", "APm", "APl"],
}


class COCOEvaluator(DatasetEvaluator):
    """AP / AP50 / AP75 / APs / APm / APl and per-category AP, in percent, per task.

    The ground truth is the COCO JSON of metadata ``json_file``. A dataset without one (unset or
    None: a custom panoptic dataset registered without ``instances_json``) is converted from its
    dataset dicts, instance or panoptic, into ``output_dir/<dataset>_coco_format.json`` by the
    main process at :meth:`evaluate` (cached: an existing file is reused).

    Predicted classes are contiguous ids, mapped back through ``thing_dataset_id_to_contiguous_id``.
    As detectron2's COCOEvaluator, this one requires those contiguous ids to be exactly
    0..K-1 for the K thing classes; :class:`InstanceSegEvaluator` accepts any (ADE20K and
    Mapillary Vistas panoptic number things among all classes).

    Nothing is read from disk at construction; :meth:`reset` (called by
    ``inference_on_dataset`` before inference) checks that a given ``json_file`` exists.

    Args:
        tasks: subset of ("bbox", "segm"); None infers them from the predictions ("bbox",
            plus "segm" when masks are predicted).
        max_dets_per_image: detections per image kept by COCOeval (default 100).
    """

    def __init__(
        self,
        dataset_name: str,
        tasks: Optional[Sequence[str]] = ("segm",),
        distributed: bool = True,
        output_dir: Optional[str] = None,
        *,
        max_dets_per_image: Optional[int] = None,
        allow_cached_coco: bool = True,
    ):
        if tasks is not None:
            unknown = [t for t in tasks if t not in _METRICS]
            if unknown:
                raise ValueError(
                    f"COCOEvaluator: unsupported tasks {unknown}; choose from {sorted(_METRICS)}"
                )
            tasks = tuple(tasks)
        self._tasks = tasks
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        self._allow_cached_coco = allow_cached_coco
        self._cpu_device = torch.device("cpu")
        self._max_dets_per_image = [
            1,
            10,
            100 if max_dets_per_image is None else max_dets_per_image,
        ]

        self._metadata = MetadataCatalog.get(dataset_name)
        self._json_file: Optional[str] = self._metadata.get("json_file", None)
        if self._json_file is None and output_dir is None:
            raise ValueError(
                f"Dataset '{dataset_name}' has no metadata 'json_file': {type(self).__name__} needs "
                "output_dir to write the COCO-format conversion of its annotations"
            )
        self._reverse_id_mapping = self._contiguous_to_dataset_id()
        self._coco_api: Optional[COCO] = None
        self._predictions: List[Dict[str, Any]] = []  # reset(), which checks json_file, runs before inference

    def _contiguous_to_dataset_id(self) -> Optional[Dict[int, int]]:
        """contiguous id -> dataset id, or None without ``thing_dataset_id_to_contiguous_id``.

        detectron2's rule: the contiguous ids must be exactly 0..K-1."""
        id_map = self._metadata.get("thing_dataset_id_to_contiguous_id", None)
        if id_map is None:
            return None
        contiguous = sorted(id_map.values())
        if contiguous != list(range(len(contiguous))):
            raise ValueError(
                f"COCOEvaluator: thing_dataset_id_to_contiguous_id of '{self._dataset_name}' maps to "
                f"{contiguous[:5]}{'...' if len(contiguous) > 5 else ''}, not to 0..{len(contiguous) - 1}; "
                "use InstanceSegEvaluator for datasets whose things are numbered among all classes "
                "(ADE20K / Mapillary Vistas panoptic)"
            )
        return {v: k for k, v in id_map.items()}

    def _map_category_id(self, category_id: int) -> int:
        """Dataset category id of a predicted contiguous id."""
        if self._reverse_id_mapping is None:
            return category_id
        if category_id not in self._reverse_id_mapping:
            raise KeyError(
                f"Predicted category {category_id} is not a value of "
                f"thing_dataset_id_to_contiguous_id of '{self._dataset_name}' "
                f"(contiguous ids 0..{len(self._reverse_id_mapping) - 1})"
            )
        return self._reverse_id_mapping[category_id]

    def reset(self) -> None:
        self._predictions: List[Dict[str, Any]] = []
        if self._json_file is not None and "://" not in self._json_file and not os.path.isfile(self._json_file):
            raise FileNotFoundError(
                f"COCO json_file {self._json_file} of dataset '{self._dataset_name}' does not exist"
            )

    def _ground_truth(self) -> COCO:
        """The COCO api of the ground truth: metadata ``json_file``, or the cached conversion."""
        if self._coco_api is None:
            json_file = self._json_file
            if json_file is None:
                json_file = os.path.join(self._output_dir, f"{self._dataset_name}_coco_format.json")
                logger.info(
                    "Dataset '%s' has no COCO instances json; using its conversion %s",
                    self._dataset_name, json_file,
                )
                convert_to_coco_json(self._dataset_name, json_file, allow_cached=self._allow_cached_coco)
            with contextlib.redirect_stdout(io.StringIO()):
                self._coco_api = COCO(g_pathmgr.get_local_path(json_file))
        return self._coco_api

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            if "instances" not in out:
                continue
            instances = out["instances"].to(self._cpu_device)
            self._predictions.append(
                {
                    "image_id": inp["image_id"],
                    "instances": instances_to_coco_json(instances, inp["image_id"]),
                }
            )

    def evaluate(
        self, img_ids: Optional[Sequence[int]] = None
    ) -> Optional["OrderedDict[str, Dict[str, float]]"]:
        """Per-task metric dicts; None on non-main processes, {} without predictions."""
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
            if not comm.is_main_process():
                return None
        else:
            predictions = self._predictions

        if len(predictions) == 0:
            logger.warning("[%s] Did not receive valid predictions.", type(self).__name__)
            return OrderedDict()

        if self._output_dir:
            g_pathmgr.mkdirs(self._output_dir)
            with g_pathmgr.open(
                os.path.join(self._output_dir, "instances_predictions.pth"), "wb"
            ) as f:
                torch.save(predictions, f)

        return self._eval_predictions(predictions, img_ids=img_ids)

    def _class_names(self, coco_gt: COCO) -> List[str]:
        """Per-category names in COCOeval's category order (sorted dataset ids): ``thing_classes``
        when it has one name per ground-truth category, else the json's own names."""
        cat_ids = sorted(coco_gt.getCatIds())
        thing_classes = self._metadata.get("thing_classes", None)
        if thing_classes is not None and len(thing_classes) == len(cat_ids):
            return list(thing_classes)
        return [c["name"] for c in coco_gt.loadCats(cat_ids)]

    def _eval_predictions(self, predictions, img_ids=None) -> "OrderedDict[str, Dict[str, float]]":
        coco_results = list(itertools.chain(*[x["instances"] for x in predictions]))
        tasks = self._tasks or _tasks_from_predictions(coco_results)
        for result in coco_results:
            result["category_id"] = self._map_category_id(result["category_id"])

        if self._output_dir:
            path = os.path.join(self._output_dir, "coco_instances_results.json")
            logger.info("Saving results to %s", path)
            with g_pathmgr.open(path, "w") as f:
                f.write(json.dumps(coco_results))

        results: "OrderedDict[str, Dict[str, float]]" = OrderedDict()
        coco_gt = self._ground_truth()
        # Test-set JSONs have no annotations: predictions are only saved, not scored.
        if "annotations" not in coco_gt.dataset:
            logger.info("Annotations are not available for evaluation.")
            return results

        for task in sorted(tasks):
            coco_eval = (
                evaluate_predictions_on_coco(
                    coco_gt,
                    coco_results,
                    task,
                    img_ids=img_ids,
                    max_dets_per_image=self._max_dets_per_image,
                )
                if len(coco_results) > 0
                else None  # cocoapi does not handle empty results
            )
            results[task] = derive_coco_results(coco_eval, task, class_names=self._class_names(coco_gt))
        return results


def _tasks_from_predictions(coco_results: List[Dict[str, Any]]) -> tuple:
    """("bbox",) plus "segm" when masks are predicted; no "bbox" when no boxes are."""
    tasks = set()
    if not coco_results or any("bbox" in r for r in coco_results):
        tasks.add("bbox")
    if any("segmentation" in r for r in coco_results):
        tasks.add("segm")
    return tuple(sorted(tasks))


def instances_to_coco_json(instances, img_id: int) -> List[Dict[str, Any]]:
    """One COCO result dict per instance: ``category_id`` (still contiguous), ``score``,
    ``bbox`` (XYWH, when ``pred_boxes`` is present) and ``segmentation`` (RLE, when
    ``pred_masks`` (N, H, W) is present)."""
    num_instance = len(instances)
    if num_instance == 0:
        return []
    scores = instances.scores.tolist()
    classes = instances.pred_classes.tolist()
    boxes = None
    if instances.has("pred_boxes"):
        boxes = BoxMode.convert(
            instances.pred_boxes.tensor.numpy(), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS
        ).tolist()
    rles = None
    if instances.has("pred_masks"):
        masks = instances.pred_masks
        masks = masks.numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
        # pycocotools wants Fortran-ordered uint8; a bool mask would not encode
        rles = [
            mask_util.encode(np.array(mask[:, :, None], order="F", dtype="uint8"))[0]
            for mask in masks
        ]
        for rle in rles:
            rle["counts"] = rle["counts"].decode("utf-8")  # JSON cannot hold bytes

    results = []
    for k in range(num_instance):
        result: Dict[str, Any] = {"image_id": img_id, "category_id": classes[k], "score": scores[k]}
        if boxes is not None:
            result["bbox"] = boxes[k]
        if rles is not None:
            result["segmentation"] = rles[k]
        results.append(result)
    return results


class _COCOevalMaxDets(COCOeval):
    """COCOeval whose summary reports AP / AR at ``params.maxDets[2]`` instead of a fixed 100."""

    def summarize(self):
        def _summarize(ap=1, iouThr=None, areaRng="all", maxDets=100):
            p = self.params
            aind = [i for i, a in enumerate(p.areaRngLbl) if a == areaRng]
            mind = [i for i, m in enumerate(p.maxDets) if m == maxDets]
            s = self.eval["precision"] if ap == 1 else self.eval["recall"]
            if iouThr is not None:
                t = np.where(np.isclose(iouThr, p.iouThrs))[0]
                s = s[t]
            s = s[:, :, :, aind, mind] if ap == 1 else s[:, :, aind, mind]
            valid = s[s > -1]
            return -1 if len(valid) == 0 else float(np.mean(valid))

        if not self.eval:
            raise RuntimeError("Please run accumulate() first")
        m = self.params.maxDets
        self.stats = np.array(
            [
                _summarize(1, maxDets=m[2]),
                _summarize(1, iouThr=0.5, maxDets=m[2]),
                _summarize(1, iouThr=0.75, maxDets=m[2]),
                _summarize(1, areaRng="small", maxDets=m[2]),
                _summarize(1, areaRng="medium", maxDets=m[2]),
                _summarize(1, areaRng="large", maxDets=m[2]),
                _summarize(0, maxDets=m[0]),
                _summarize(0, maxDets=m[1]),
                _summarize(0, maxDets=m[2]),
                _summarize(0, areaRng="small", maxDets=m[2]),
                _summarize(0, areaRng="medium", maxDets=m[2]),
                _summarize(0, areaRng="large", maxDets=m[2]),
            ]
        )


def evaluate_predictions_on_coco(
    coco_gt: COCO,
    coco_results: List[Dict[str, Any]],
    iou_type: str,
    *,
    img_ids: Optional[Sequence[int]] = None,
    max_dets_per_image: Optional[Sequence[int]] = None,
) -> COCOeval:
    """Run COCOeval (evaluate, accumulate, summarize) on non-empty ``coco_results``."""
    if len(coco_results) == 0:
        raise ValueError("evaluate_predictions_on_coco needs at least one result")
    if iou_type == "segm":
        # With a "bbox" field, cocoapi would take the box area as the instance area (which
        # decides small / medium / large); drop it so mask AP uses the mask area.
        coco_results = copy.deepcopy(coco_results)
        for c in coco_results:
            c.pop("bbox", None)
    elif iou_type == "bbox" and not all("bbox" in c for c in coco_results):
        raise ValueError("bbox evaluation needs 'bbox' (the instances' pred_boxes) in every result")

    max_dets = [1, 10, 100] if max_dets_per_image is None else list(max_dets_per_image)
    if len(max_dets) < 3:
        raise ValueError(f"max_dets_per_image must have at least 3 entries, got {max_dets}")
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(coco_results)
    eval_cls = COCOeval if max_dets[2] == 100 else _COCOevalMaxDets
    coco_eval = eval_cls(coco_gt, coco_dt, iou_type)
    coco_eval.params.maxDets = max_dets
    if img_ids is not None:
        coco_eval.params.imgIds = list(img_ids)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    logger.info("COCOeval (%s):\n%s", iou_type, stdout.getvalue().strip())
    return coco_eval


def derive_coco_results(
    coco_eval: Optional[COCOeval], iou_type: str, class_names: Optional[Sequence[str]] = None
) -> Dict[str, float]:
    """Standard metrics (and ``AP-<class>`` when several classes) in percent from a COCOeval.

    A metric COCOeval could not compute (-1) is NaN; with no predictions (``coco_eval`` None)
    every metric is NaN.
    """
    metrics = _METRICS[iou_type]
    if coco_eval is None:
        logger.warning("No predictions from the model!")
        return {metric: float("nan") for metric in metrics}

    results = {
        metric: float(coco_eval.stats[idx] * 100 if coco_eval.stats[idx] >= 0 else "nan")
        for idx, metric in enumerate(metrics)
    }
    logger.info("Evaluation results for %s: \n%s", iou_type, create_small_table(results))
    if not np.isfinite(sum(results.values())):
        logger.info("Some metrics cannot be computed and is shown as NaN.")
    if class_names is None or len(class_names) <= 1:
        return results

    precisions = coco_eval.eval["precision"]  # (iou, recall, cls, area range, max dets)
    if len(class_names) != precisions.shape[2]:
        raise ValueError(
            f"{len(class_names)} class names but COCOeval has {precisions.shape[2]} categories"
        )
    per_category = []
    for idx, name in enumerate(class_names):
        precision = precisions[:, :, idx, 0, -1]  # all areas, the largest max-dets
        precision = precision[precision > -1]
        ap = np.mean(precision) if precision.size else float("nan")
        per_category.append((f"{name}", float(ap * 100)))

    n_cols = min(6, len(per_category) * 2)
    flat = list(itertools.chain(*per_category))
    rows = itertools.zip_longest(*[flat[i::n_cols] for i in range(n_cols)])
    table = tabulate(
        rows,
        tablefmt="pipe",
        floatfmt=".3f",
        headers=["category", "AP"] * (n_cols // 2),
        numalign="left",
    )
    logger.info("Per-category %s AP: \n%s", iou_type, table)
    results.update({"AP-" + name: ap for name, ap in per_category})
    return results
