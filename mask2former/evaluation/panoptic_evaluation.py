"""COCO panoptic evaluation: predictions -> COCO panoptic PNG + JSON, then PQ / SQ / RQ."""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import tempfile
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import numpy as np
from iopath.common.file_io import g_pathmgr
from PIL import Image
from tabulate import tabulate

from ..utils.catalog import MetadataCatalog
from ..utils import comm
from .evaluator import DatasetEvaluator
from .panoptic_quality import id2rgb, pq_compute

__all__ = ["COCOPanopticEvaluator"]

logger = logging.getLogger(__name__)


class COCOPanopticEvaluator(DatasetEvaluator):
    """Panoptic Quality of ``output["panoptic_seg"]`` against the dataset's COCO panoptic GT.

    Needs metadata ``panoptic_json``, ``panoptic_root``, ``thing_dataset_id_to_contiguous_id``
    and ``stuff_dataset_id_to_contiguous_id`` (``label_divisor`` for models that return no
    ``segments_info``). The predicted PNGs go to a temporary folder, ``predictions.json`` to
    ``output_dir`` when given. Call ``evaluate`` from every process (it synchronises).
    """

    def __init__(
        self, dataset_name: str, output_dir: Optional[str] = None, *, num_workers: int = 0
    ):
        self._metadata = MetadataCatalog.get(dataset_name)
        self._dataset_name = dataset_name
        for key in ("thing_dataset_id_to_contiguous_id", "stuff_dataset_id_to_contiguous_id"):
            if not hasattr(self._metadata, key):
                raise AttributeError(
                    f"COCOPanopticEvaluator needs metadata '{key}' of dataset '{dataset_name}'"
                )
        self._thing_contiguous_id_to_dataset_id = {
            v: k for k, v in self._metadata.thing_dataset_id_to_contiguous_id.items()
        }
        self._stuff_contiguous_id_to_dataset_id = {
            v: k for k, v in self._metadata.stuff_dataset_id_to_contiguous_id.items()
        }
        self._output_dir = output_dir
        if self._output_dir is not None:
            g_pathmgr.mkdirs(self._output_dir)
        self._num_workers = num_workers
        self.last_pq_result: Optional[Dict[str, Any]] = (
            None  # full pq_compute output, per class too
        )
        self.reset()

    def reset(self) -> None:
        self._predictions: List[Dict[str, Any]] = []

    def _convert_category_id(self, segment_info: Dict[str, Any]) -> Dict[str, Any]:
        """Contiguous id + ``isthing`` -> dataset category id (the flag is removed)."""
        isthing = segment_info.pop("isthing", None)
        if isthing is None:  # the model already produced dataset category ids
            return segment_info
        mapping = (
            self._thing_contiguous_id_to_dataset_id
            if isthing
            else self._stuff_contiguous_id_to_dataset_id
        )
        category_id = segment_info["category_id"]
        if category_id not in mapping:
            kind = "thing" if isthing else "stuff"
            raise KeyError(
                f"Predicted {kind} category {category_id} has no dataset id in "
                f"{kind}_dataset_id_to_contiguous_id of '{self._dataset_name}'"
            )
        segment_info["category_id"] = mapping[category_id]
        return segment_info

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            panoptic_img, segments_info = out["panoptic_seg"]
            panoptic_img = panoptic_img.cpu().numpy()  # (H, W) segment ids, 0 = VOID
            if segments_info is None:
                panoptic_img, segments_info = self._segments_from_label_map(panoptic_img)
            else:
                segments_info = [dict(s) for s in segments_info]  # don't mutate the model output
            file_name = os.path.basename(inp["file_name"])
            file_name_png = os.path.splitext(file_name)[0] + ".png"
            with io.BytesIO() as buf:
                Image.fromarray(id2rgb(panoptic_img)).save(buf, format="PNG")
                png_string = buf.getvalue()
            self._predictions.append(
                {
                    "image_id": inp["image_id"],
                    "file_name": file_name_png,
                    "png_string": png_string,
                    "segments_info": [
                        _to_builtin(self._convert_category_id(s)) for s in segments_info
                    ],
                }
            )

    def _segments_from_label_map(self, panoptic_img: np.ndarray):
        """Segments of a ``category * label_divisor + instance`` map (-1 = VOID), ids shifted by 1."""
        label_divisor = self._metadata.label_divisor
        thing_ids = set(self._metadata.thing_dataset_id_to_contiguous_id.values())
        segments_info = []
        for panoptic_label in np.unique(panoptic_img).tolist():
            if panoptic_label == -1:
                continue
            pred_class = panoptic_label // label_divisor
            segments_info.append(
                {
                    "id": int(panoptic_label) + 1,
                    "category_id": int(pred_class),
                    "isthing": pred_class in thing_ids,
                }
            )
        return panoptic_img + 1, segments_info

    def evaluate(self) -> Optional["OrderedDict[str, Dict[str, float]]"]:
        """``{"panoptic_seg": {PQ, SQ, RQ, PQ_th, SQ_th, RQ_th, PQ_st, SQ_st, RQ_st}}`` (percent)."""
        comm.synchronize()
        predictions = list(itertools.chain(*comm.gather(self._predictions)))
        if not comm.is_main_process():
            return None
        for key in ("panoptic_json", "panoptic_root"):
            if not hasattr(self._metadata, key):
                raise AttributeError(
                    f"COCOPanopticEvaluator needs metadata '{key}' of dataset '{self._dataset_name}'"
                )
        gt_json = g_pathmgr.get_local_path(self._metadata.panoptic_json)
        gt_folder = g_pathmgr.get_local_path(self._metadata.panoptic_root)

        with tempfile.TemporaryDirectory(prefix="panoptic_eval") as pred_dir:
            logger.info("Writing all panoptic predictions to %s ...", pred_dir)
            annotations = []
            for p in predictions:
                with open(os.path.join(pred_dir, p["file_name"]), "wb") as f:
                    f.write(p["png_string"])
                annotations.append({k: v for k, v in p.items() if k != "png_string"})

            with open(gt_json, "r") as f:
                json_data = json.load(f)
            json_data["annotations"] = annotations
            predictions_json = os.path.join(self._output_dir or pred_dir, "predictions.json")
            with g_pathmgr.open(predictions_json, "w") as f:
                f.write(json.dumps(json_data))

            pq_res = pq_compute(
                gt_json,
                predictions_json,
                gt_folder=gt_folder,
                pred_folder=pred_dir,
                num_workers=self._num_workers,
            )
        self.last_pq_result = pq_res

        res: Dict[str, float] = {}
        for name, suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
            for metric in ("pq", "sq", "rq"):
                res[metric.upper() + suffix] = 100 * pq_res[name][metric]
        res = {k: res[k] for k in _RESULT_ORDER}
        logger.info("Panoptic Evaluation Results:\n%s", format_panoptic_results(pq_res))
        return OrderedDict({"panoptic_seg": res})


_RESULT_ORDER = ("PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st")


def format_panoptic_results(pq_res: Dict[str, Any]) -> str:
    """The All / Things / Stuff table detectron2 logs (values in percent)."""
    headers = ["", "PQ", "SQ", "RQ", "#categories"]
    data = [
        [name] + [pq_res[name][k] * 100 for k in ("pq", "sq", "rq")] + [pq_res[name]["n"]]
        for name in ("All", "Things", "Stuff")
    ]
    return tabulate(
        data, headers=headers, tablefmt="pipe", floatfmt=".3f", stralign="center", numalign="center"
    )


def _to_builtin(segment_info: Dict[str, Any]) -> Dict[str, Any]:
    """numpy / torch scalars -> Python numbers, so the dict is JSON-serialisable."""
    out = {}
    for k, v in segment_info.items():
        if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            v = v.item()
        out[k] = v
    return out
