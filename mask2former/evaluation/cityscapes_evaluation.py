"""Cityscapes instance AP and semantic IoU, computed by cityscapesscripts' own evaluation code.

As in detectron2, predictions are written in the Cityscapes result format and read back by
``cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling`` (instances: one
``<image>_pred.txt`` per image listing ``<mask png> <labelId> <score>`` lines, one binary mask
PNG per instance) and ``evalPixelLevelSemanticLabeling`` (semantic: one PNG of Cityscapes
``labelIds`` per image). Unlike detectron2, these evaluators run on CPU-only machines and across
several processes or machines: every process writes and scores (with the scripts' per-image
functions) the images it saw, and the main process gathers the per-image results and computes
the averages with the scripts' functions. The per-image results are merged in file-name order,
so any number of processes gives the same numbers as one.

Only the images that were processed are scored (detectron2 scores every ground-truth file of
``gt_dir`` and fails when one has no prediction), so a subset of the split can be evaluated.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import shutil
import tempfile
import types
from collections import OrderedDict
from contextlib import contextmanager, redirect_stdout
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch
from PIL import Image

from ..utils import comm
from ..utils.catalog import MetadataCatalog
from .evaluator import DatasetEvaluator

__all__ = ["CityscapesInstanceEvaluator", "CityscapesSemSegEvaluator"]

logger = logging.getLogger(__name__)

_IMAGE_SUFFIX = "leftImg8bit.png"


class _NumpyWithIn1d(types.ModuleType):
    """numpy plus ``in1d``, which numpy 2.4 removed and cityscapesscripts (2.3.0) still calls."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def in1d(ar1, ar2, assume_unique: bool = False, invert: bool = False) -> np.ndarray:
        return np.isin(np.asarray(ar1).ravel(), ar2, assume_unique=assume_unique, invert=invert)


_NUMPY_WITH_IN1D = _NumpyWithIn1d("numpy")


def cityscapes_eval_module(name: str) -> types.ModuleType:
    """``cityscapesscripts.evaluation.<name>``, its ``np`` given ``in1d`` on numpy >= 2.4."""
    try:
        module = importlib.import_module(f"cityscapesscripts.evaluation.{name}")
    except ImportError as err:
        raise ImportError(
            "The Cityscapes evaluators need the cityscapesscripts package: "
            "pip install cityscapesscripts"
        ) from err
    if not hasattr(module.np, "in1d"):
        module.np = _NUMPY_WITH_IN1D
    return module


@contextmanager
def _script_errors(what: str) -> Iterator[None]:
    """cityscapesscripts reports errors by printing and calling ``sys.exit``: raise instead."""
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            yield
    except SystemExit:
        raise RuntimeError(f"cityscapesscripts failed on {what}: {out.getvalue().strip()}") from None


def _script_args(module: types.ModuleType, result_dir: str) -> Any:
    """A private copy of the module's global ``args``, quiet, writing no files."""
    args = module.CArgs()
    args.__dict__.update(vars(module.args))
    args.predictionPath = os.path.abspath(result_dir)
    args.predictionWalk = None
    args.JSONOutput = False
    args.quiet = True
    args.colorized = False
    return args


class _CityscapesEvaluator(DatasetEvaluator):
    """Shared part: ground-truth lookup, the result folder and the gathering of per-image results."""

    _gt_suffix = ""  # "gtFine_instanceIds.png" / "gtFine_labelIds.png"
    _result_subdir = ""

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None, *, distributed: bool = True):
        """
        Args:
            dataset_name: a dataset whose metadata has ``gt_dir`` (the ``gtFine/<split>`` folder
                holding ``<city>/*_gtFine_*.png``) and, for instances, ``thing_classes``.
            output_dir: when given, the prediction files are kept in
                ``output_dir/<cityscapes_instances | cityscapes_sem_seg>/`` (the format of the
                Cityscapes benchmark server; existing files of the same images are overwritten);
                otherwise they go to a temporary folder that is removed after scoring.
            distributed: gather the per-image results of all processes on the main process.
        """
        self._dataset_name = dataset_name
        self._metadata = MetadataCatalog.get(dataset_name)
        gt_dir = self._metadata.get("gt_dir", None)
        if gt_dir is None:
            raise AttributeError(
                f"{type(self).__name__} needs metadata 'gt_dir' of dataset '{dataset_name}' "
                "(the cityscapes/gtFine/<split> folder)"
            )
        self._gt_dir = gt_dir
        self._output_dir = output_dir
        self._distributed = distributed
        self._cpu_device = torch.device("cpu")
        self._temp_dir: Optional[str] = None
        self.reset()

    def reset(self) -> None:
        self._remove_temp_dir()
        if self._output_dir:
            self._result_dir = os.path.join(self._output_dir, self._result_subdir)
            os.makedirs(self._result_dir, exist_ok=True)
        else:
            self._temp_dir = tempfile.mkdtemp(prefix="cityscapes_eval_")
            self._result_dir = self._temp_dir
        self._per_image: Dict[str, Any] = {}  # ground-truth file -> the script's per-image result

    def _remove_temp_dir(self) -> None:
        if getattr(self, "_temp_dir", None) is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __del__(self) -> None:
        self._remove_temp_dir()

    def _names(self, file_name: str) -> tuple:
        """(ground-truth file, result-file stem) of an input image ``<city>_<seq>_<frame>_leftImg8bit.png``."""
        basename = os.path.basename(file_name)
        if not basename.endswith(_IMAGE_SUFFIX):
            raise ValueError(
                f"{type(self).__name__}: input '{file_name}' is not a Cityscapes image "
                f"(expected <city>_<seq>_<frame>_{_IMAGE_SUFFIX})"
            )
        stem = basename[: -len(_IMAGE_SUFFIX)]
        gt_file = os.path.join(self._gt_dir, stem.split("_")[0], stem + self._gt_suffix)
        if not os.path.isfile(gt_file):
            raise FileNotFoundError(
                f"Cityscapes ground truth '{gt_file}' not found for input '{file_name}' "
                f"(metadata gt_dir of dataset '{self._dataset_name}')"
            )
        return os.path.abspath(gt_file), os.path.join(self._result_dir, basename[:-4])

    def _gathered(self) -> Optional[Dict[str, Any]]:
        """Per-image results of all processes, keyed and ordered by ground-truth file (None off
        the main process)."""
        parts = [self._per_image]
        if self._distributed and comm.get_world_size() > 1:
            comm.synchronize()
            parts = comm.gather(self._per_image, dst=0)
            if not comm.is_main_process():
                self._remove_temp_dir()
                return None
        merged: Dict[str, Any] = {}
        for part in parts:
            merged.update(part)
        self._remove_temp_dir()
        if not merged:
            raise RuntimeError(f"{type(self).__name__}: no image of '{self._dataset_name}' was processed")
        return {k: merged[k] for k in sorted(merged)}


class CityscapesInstanceEvaluator(_CityscapesEvaluator):
    """Cityscapes instance-level AP and AP50 (``{"segm": {"AP", "AP50"}}``, percent).

    ``output["instances"]`` holds ``pred_masks`` (N, H, W), ``pred_classes`` (indices into the
    dataset's ``thing_classes``, which must be Cityscapes label names) and ``scores``. Each image
    is matched to its ``*_gtFine_instanceIds.png`` by the script's ``instances2dict`` and
    ``matchGtWithPreds``; ``evaluateMatches`` and ``computeAverages`` give the AP. Empty masks
    are not written (the script skips them).
    """

    _gt_suffix = "gtFine_instanceIds.png"
    _result_subdir = "cityscapes_instances"

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None, *, distributed: bool = True):
        super().__init__(dataset_name, output_dir, distributed=distributed)
        try:
            self._thing_classes: List[str] = list(self._metadata.thing_classes)
        except AttributeError as err:
            raise AttributeError(
                f"CityscapesInstanceEvaluator needs metadata 'thing_classes' of dataset '{dataset_name}'"
            ) from err
        from cityscapesscripts.helpers.labels import name2label

        unknown = [c for c in self._thing_classes if c not in name2label]
        if unknown:
            raise KeyError(f"thing_classes {unknown} of '{dataset_name}' are not Cityscapes label names")
        self._label_ids = [name2label[c].id for c in self._thing_classes]

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        script = cityscapes_eval_module("evalInstanceLevelSemanticLabeling")
        instances2dict = cityscapes_eval_module("instances2dict").instances2dict
        args = _script_args(script, self._result_dir)
        script.setInstanceLabels(args)
        for inp, out in zip(inputs, outputs):
            gt_file, stem = self._names(inp["file_name"])
            pred_txt = stem + "_pred.txt"
            lines = []
            if "instances" in out:
                instances = out["instances"].to(self._cpu_device)
                masks = getattr(instances.pred_masks, "tensor", instances.pred_masks)  # BitMasks or tensor
                masks = masks.numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)  # (N, H, W)
                for i, (cls, score) in enumerate(zip(instances.pred_classes.tolist(), instances.scores.tolist())):
                    mask = masks[i] != 0
                    if not mask.any():
                        continue
                    label_id = self._label_ids[cls]
                    png = f"{stem}_{i}_{label_id}.png"
                    # 1-bit PNG: half the encoding time of an 8-bit one; the script reads any non-zero
                    Image.fromarray(mask).save(png, compress_level=1)
                    lines.append(f"{os.path.basename(png)} {label_id} {score!r}\n")
            with open(pred_txt, "w") as f:
                f.writelines(lines)
            with _script_errors(pred_txt):
                gt_instances = instances2dict([gt_file])
                matches = script.matchGtWithPreds([pred_txt], [gt_file], gt_instances, args)
            self._per_image[gt_file] = matches[gt_file]

    def evaluate(self) -> Optional["OrderedDict[str, Dict[str, float]]"]:
        """``{"segm": {"AP", "AP50"}}`` (percent) on the main process, None elsewhere."""
        per_image = self._gathered()
        if per_image is None:
            return None
        script = cityscapes_eval_module("evalInstanceLevelSemanticLabeling")
        args = _script_args(script, self._result_dir)
        script.setInstanceLabels(args)
        with _script_errors("the gathered matches"):
            aps = script.evaluateMatches(per_image, args)
            averages = script.computeAverages(aps, args)
        results = OrderedDict(
            {"segm": {"AP": 100.0 * float(averages["allAp"]), "AP50": 100.0 * float(averages["allAp50%"])}}
        )
        logger.info("Cityscapes instance results over %d images: %s", len(per_image), results)
        return results


class CityscapesSemSegEvaluator(_CityscapesEvaluator):
    """Cityscapes pixel-level IoU (``{"sem_seg": {"IoU", "iIoU", "IoU_sup", "iIoU_sup"}}``, percent).

    The argmax of ``output["sem_seg"]`` (19, H, W) over the Cityscapes trainIds is written as a
    ``labelIds`` PNG and scored against ``*_gtFine_labelIds.png`` (and ``*_gtFine_instanceIds.png``
    for the instance-weighted iIoU) by the script's ``evaluatePair``; ``IoU`` is the mean class
    IoU (the mIoU of the papers), ``_sup`` the mean over the 7 categories.
    """

    _gt_suffix = "gtFine_labelIds.png"
    _result_subdir = "cityscapes_sem_seg"

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None, *, distributed: bool = True):
        super().__init__(dataset_name, output_dir, distributed=distributed)
        from cityscapesscripts.helpers.labels import trainId2label

        train_ids = sorted(t for t, label in trainId2label.items() if 0 <= t < 255 and not label.ignoreInEval)
        self._train_id_to_label_id = np.array([trainId2label[t].id for t in train_ids], dtype=np.uint8)

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        script = cityscapes_eval_module("evalPixelLevelSemanticLabeling")
        args = _script_args(script, self._result_dir)
        num_classes = len(self._train_id_to_label_id)
        for inp, out in zip(inputs, outputs):
            gt_file, stem = self._names(inp["file_name"])
            scores = out["sem_seg"]  # (K, H, W)
            if scores.shape[0] != num_classes:
                raise ValueError(
                    f"CityscapesSemSegEvaluator expects {num_classes} class scores (the Cityscapes "
                    f"trainIds), got sem_seg of shape {tuple(scores.shape)} for '{inp['file_name']}'"
                )
            train_ids = scores.argmax(dim=0).to(self._cpu_device).numpy()  # (H, W)
            pred_png = stem + "_pred.png"
            Image.fromarray(self._train_id_to_label_id[train_ids]).save(pred_png, compress_level=1)
            conf_matrix = script.generateMatrix(args)
            inst_stats = script.generateInstanceStats(args)
            with _script_errors(pred_png):
                script.evaluatePair(pred_png, gt_file, conf_matrix, inst_stats, {}, args)
            self._per_image[gt_file] = (conf_matrix, inst_stats)

    def evaluate(self) -> Optional["OrderedDict[str, Dict[str, float]]"]:
        """``{"sem_seg": {"IoU", "iIoU", "IoU_sup", "iIoU_sup"}}`` (percent) on the main process."""
        per_image = self._gathered()
        if per_image is None:
            return None
        script = cityscapes_eval_module("evalPixelLevelSemanticLabeling")
        args = _script_args(script, self._result_dir)
        conf_matrix = script.generateMatrix(args)
        inst_stats = script.generateInstanceStats(args)
        for image_conf, image_stats in per_image.values():
            conf_matrix += image_conf
            for group in ("classes", "categories"):
                for name, stats in image_stats[group].items():
                    for key in ("tp", "tpWeighted", "fn", "fnWeighted"):
                        inst_stats[group][name][key] += stats[key]
        id2label = script.id2label
        with _script_errors("the gathered confusion matrix"):
            class_scores = {id2label[l].name: script.getIouScoreForLabel(l, conf_matrix, args) for l in args.evalLabels}
            class_inst_scores = {
                id2label[l].name: script.getInstanceIouScoreForLabel(l, conf_matrix, inst_stats, args)
                for l in args.evalLabels
            }
            category_scores = {c: script.getIouScoreForCategory(c, conf_matrix, args) for c in script.category2labels}
            category_inst_scores = {
                c: script.getInstanceIouScoreForCategory(c, conf_matrix, inst_stats, args)
                for c in script.category2labels
            }
            res = script.createResultDict(
                conf_matrix, class_scores, class_inst_scores, category_scores, category_inst_scores, {}, args
            )
        results = OrderedDict(
            {
                "sem_seg": {
                    "IoU": 100.0 * float(res["averageScoreClasses"]),
                    "iIoU": 100.0 * float(res["averageScoreInstClasses"]),
                    "IoU_sup": 100.0 * float(res["averageScoreCategories"]),
                    "iIoU_sup": 100.0 * float(res["averageScoreInstCategories"]),
                }
            }
        )
        logger.info("Cityscapes semantic results over %d images: %s", len(per_image), results)
        return results
