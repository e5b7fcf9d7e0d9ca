"""Semantic segmentation metrics: mIoU, fwIoU, mACC, pACC and per-class IoU / accuracy."""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pycocotools.mask as mask_util
import torch
from iopath.common.file_io import g_pathmgr
from PIL import Image

from ..utils.catalog import DatasetCatalog, MetadataCatalog
from ..utils import comm
from ..utils.label_checks import LabelError, check_semantic_label
from .evaluator import DatasetEvaluator

__all__ = ["SemSegEvaluator", "load_image_into_numpy_array", "semantic_metrics"]

logger = logging.getLogger(__name__)


def load_image_into_numpy_array(filename: str, dtype: Any = np.int64) -> np.ndarray:
    """Read a label image (PNG) into an (H, W) array of ``dtype``; a truncated or corrupt file is a
    ``LabelError`` naming it."""
    with g_pathmgr.open(filename, "rb") as f:
        try:
            return np.array(Image.open(f), dtype=dtype)
        except (OSError, SyntaxError, ValueError) as err:  # PIL: truncated, corrupt, not an image
            raise LabelError(f"Cannot read label file {filename!r}: it is truncated, corrupt or not an image "
                             f"({type(err).__name__}: {err})") from err


def semantic_metrics(conf_matrix: np.ndarray, class_names: List[str]) -> Dict[str, float]:
    """Metrics (in percent) from a ``(K+1, K+1)`` confusion matrix indexed ``[pred, gt]``.

    The last row / column counts ignored ground-truth pixels and never enters a metric.
    A class absent from the ground truth has NaN IoU / accuracy and is left out of the means.
    """
    num_classes = conf_matrix.shape[0] - 1
    acc = np.full(num_classes, np.nan, dtype=np.float64)
    iou = np.full(num_classes, np.nan, dtype=np.float64)
    tp = conf_matrix.diagonal()[:-1].astype(np.float64)
    pos_gt = np.sum(conf_matrix[:-1, :-1], axis=0).astype(np.float64)
    class_weights = pos_gt / np.sum(pos_gt)
    pos_pred = np.sum(conf_matrix[:-1, :-1], axis=1).astype(np.float64)
    acc_valid = pos_gt > 0
    acc[acc_valid] = tp[acc_valid] / pos_gt[acc_valid]
    union = pos_gt + pos_pred - tp
    iou_valid = np.logical_and(acc_valid, union > 0)
    iou[iou_valid] = tp[iou_valid] / union[iou_valid]
    macc = np.sum(acc[acc_valid]) / np.sum(acc_valid)
    miou = np.sum(iou[iou_valid]) / np.sum(iou_valid)
    fiou = np.sum(iou[iou_valid] * class_weights[iou_valid])
    pacc = np.sum(tp) / np.sum(pos_gt)

    res: Dict[str, float] = {"mIoU": 100 * miou, "fwIoU": 100 * fiou}
    for i, name in enumerate(class_names):
        res[f"IoU-{name}"] = 100 * iou[i]
    res["mACC"] = 100 * macc
    res["pACC"] = 100 * pacc
    for i, name in enumerate(class_names):
        res[f"ACC-{name}"] = 100 * acc[i]
    return {k: float(v) for k, v in res.items()}


class SemSegEvaluator(DatasetEvaluator):
    """Semantic segmentation metrics (http://cocodataset.org/#stuff-eval) over a dataset.

    Classes are ``MetadataCatalog.get(dataset_name).stuff_classes``; ground-truth pixels equal
    to ``ignore_label`` are not counted. The prediction of an image is the argmax over classes
    of ``output["sem_seg"]`` (K, H, W); its ground truth is the label PNG named by the input's
    ``sem_seg_file_name`` or, when the test mapper dropped that key, by the dataset dict with the
    same ``file_name`` in ``DatasetCatalog``.
    """

    def __init__(
        self,
        dataset_name: str,
        distributed: bool = True,
        output_dir: Optional[str] = None,
        *,
        sem_seg_loading_fn: Callable[..., np.ndarray] = load_image_into_numpy_array,
        num_classes: Optional[int] = None,
        ignore_label: Optional[int] = None,
    ):
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        self._cpu_device = torch.device("cpu")
        self.sem_seg_loading_fn = sem_seg_loading_fn

        meta = MetadataCatalog.get(dataset_name)
        try:
            self._class_names: List[str] = list(meta.stuff_classes)
        except AttributeError as err:
            raise AttributeError(
                f"SemSegEvaluator needs metadata 'stuff_classes' of dataset '{dataset_name}'"
            ) from err
        self._num_classes = len(self._class_names)
        if num_classes is not None and num_classes != self._num_classes:
            raise ValueError(
                f"SemSegEvaluator(num_classes={num_classes}) disagrees with the "
                f"{self._num_classes} stuff_classes of dataset '{dataset_name}'"
            )
        if ignore_label is None:
            ignore_label = meta.get("ignore_label", None)
            if ignore_label is None:
                raise AttributeError(
                    f"SemSegEvaluator needs metadata 'ignore_label' of dataset '{dataset_name}' "
                    "(or the ignore_label argument)"
                )
        self._ignore_label = int(ignore_label)
        c2d = meta.get("stuff_dataset_id_to_contiguous_id", None)
        self._contiguous_id_to_dataset_id = None if c2d is None else {v: k for k, v in c2d.items()}
        self._input_file_to_gt_file: Optional[Dict[str, str]] = None
        self.reset()

    def reset(self) -> None:
        k = self._num_classes + 1
        self._conf_matrix = np.zeros((k, k), dtype=np.int64)
        self._predictions: List[dict] = []

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            pred = (
                out["sem_seg"].argmax(dim=0).to(self._cpu_device).numpy().astype(np.int64)
            )  # (H, W)
            gt_filename = self._gt_file(inp)
            gt = check_semantic_label(  # (H, W): colour labels, other sizes, unknown ids are errors
                np.asarray(self.sem_seg_loading_fn(gt_filename, dtype=np.int64)), num_classes=self._num_classes,
                ignore_label=self._ignore_label, label_file=gt_filename, image_file=inp.get("file_name"),
                image_hw=pred.shape,
            ).copy()
            ignored = gt == self._ignore_label
            gt[ignored] = self._num_classes
            self._conf_matrix += np.bincount(
                (self._num_classes + 1) * pred.reshape(-1) + gt.reshape(-1),
                minlength=self._conf_matrix.size,
            ).reshape(self._conf_matrix.shape)
            if self._output_dir:
                self._predictions.extend(self.encode_json_sem_seg(pred, inp["file_name"]))

    def evaluate(self) -> Optional["OrderedDict[str, Dict[str, float]]"]:
        """mIoU, fwIoU, IoU-<class>, mACC, pACC, ACC-<class> (percent); None on non-main ranks."""
        if self._distributed:
            comm.synchronize()
            conf_matrix_list = comm.all_gather(self._conf_matrix)
            predictions = comm.all_gather(self._predictions)
            if not comm.is_main_process():
                return None
            self._conf_matrix = np.sum(conf_matrix_list, axis=0).astype(np.int64)
            self._predictions = list(itertools.chain(*predictions))

        if self._output_dir:
            g_pathmgr.mkdirs(self._output_dir)
            with g_pathmgr.open(
                os.path.join(self._output_dir, "sem_seg_predictions.json"), "w"
            ) as f:
                f.write(json.dumps(self._predictions))

        res = semantic_metrics(self._conf_matrix, self._class_names)
        if self._output_dir:
            with g_pathmgr.open(
                os.path.join(self._output_dir, "sem_seg_evaluation.pth"), "wb"
            ) as f:
                torch.save(res, f)
        results = OrderedDict({"sem_seg": res})
        logger.info(results)
        return results

    def encode_json_sem_seg(self, sem_seg: np.ndarray, input_file_name: str) -> List[dict]:
        """One COCO-stuff result per predicted label, the mask as RLE (COCO results format)."""
        json_list = []
        for label in np.unique(sem_seg):
            label = int(label)
            if self._contiguous_id_to_dataset_id is not None:
                if label not in self._contiguous_id_to_dataset_id:
                    raise KeyError(
                        f"Label {label} is not in stuff_dataset_id_to_contiguous_id of '{self._dataset_name}'"
                    )
                dataset_id = self._contiguous_id_to_dataset_id[label]
            else:
                dataset_id = label
            mask = (sem_seg == label).astype(np.uint8)
            rle = mask_util.encode(np.array(mask[:, :, None], order="F"))[0]
            rle["counts"] = rle["counts"].decode("utf-8")
            json_list.append(
                {"file_name": input_file_name, "category_id": dataset_id, "segmentation": rle}
            )
        return json_list

    def _gt_file(self, inp: Dict[str, Any]) -> str:
        if "sem_seg_file_name" in inp:
            return inp["sem_seg_file_name"]
        if self._input_file_to_gt_file is None:  # the test mapper drops sem_seg_file_name
            self._input_file_to_gt_file = {
                d["file_name"]: d["sem_seg_file_name"]
                for d in DatasetCatalog.get(self._dataset_name)
                if "sem_seg_file_name" in d
            }
        try:
            return self._input_file_to_gt_file[inp["file_name"]]
        except KeyError:
            raise KeyError(
                f"No sem_seg_file_name for input {inp.get('file_name')!r}: neither in the input dict "
                f"nor in the dataset dicts of '{self._dataset_name}'"
            ) from None
