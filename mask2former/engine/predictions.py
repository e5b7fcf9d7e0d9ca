"""Predictions saved in standard formats (``tools/predict.py``).

:class:`PredictionWriter` writes, per image, under ``output_dir``:

* ``panoptic/<stem>.png``: COCO panoptic PNG (``id = R + 256 G + 256^2 B``, 0 = void);
  all images together in ``panoptic_predictions.json`` (COCO panoptic format, dataset category
  ids), which ``pq_compute`` / the COCO panoptic API read with the PNG folder;
* ``instances_predictions.json``: COCO results (``image_id``, dataset ``category_id``, ``score``,
  ``bbox``, ``segmentation`` as compressed RLE), which ``COCO.loadRes`` reads;
* ``semantic/<stem>.png``: one label per pixel, encoded as ``ids`` (contiguous class ids, the
  ``*_sem_seg`` datasets' ground-truth format), ``cityscapes`` (Cityscapes label ids from the 19
  train ids, the benchmark server's format) or ``ade20k`` (class + 1, 0 = other: the
  SceneParsing challenge format);
* ``raw/<stem>.npz`` (``raw=True``): ``class_logits`` (Q, K+1) and ``mask_probs`` (Q, h, w)
  float16 at the model's mask resolution (1/4 of the resized, padded input), with
  ``output_size`` (H, W): the answer to "how do I get the masks out".

Each image's JSON records go to ``records/<stem>.json``, written last and atomically; an image
with a record is done, so ``resume=True`` skips it. :meth:`PredictionWriter.finalize` gathers the
records into the two JSON files. The COCO conversions are the evaluators' own
(:func:`~mask2former.evaluation.coco_evaluation.instances_to_coco_json`,
:func:`~mask2former.utils.panoptic_utils.id2rgb`).
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

import numpy as np
import torch
from PIL import Image

from ..checkpoint.file_io import atomic_write
from ..evaluation.coco_evaluation import instances_to_coco_json
from ..utils.panoptic_utils import id2rgb

__all__ = ["PredictionWriter", "SEMANTIC_ENCODINGS", "encode_semantic", "run_predictions", "RawOutputRecorder"]

SEMANTIC_ENCODINGS = ("ids", "cityscapes", "ade20k")


def encode_semantic(labels: np.ndarray, encoding: str) -> np.ndarray:
    """Contiguous class ids (H, W) -> the label image of ``encoding`` (uint8, or uint16 past 255)."""
    if encoding == "ids":
        out = labels
    elif encoding == "ade20k":
        out = labels + 1  # 0 = "other" in the challenge format
    elif encoding == "cityscapes":
        from cityscapesscripts.helpers.labels import trainId2label

        lut = np.zeros(256, dtype=np.int64)
        for train_id, label in trainId2label.items():
            if 0 <= train_id < 255:
                lut[train_id] = label.id
        if labels.max(initial=0) > 18:
            raise ValueError(f"Cityscapes encoding needs train ids 0..18, got class {int(labels.max())}")
        out = lut[labels]
    else:
        raise ValueError(f"semantic encoding must be one of {SEMANTIC_ENCODINGS}, got {encoding!r}")
    return out.astype(np.uint8 if out.max(initial=0) < 256 else np.uint16)


def _png_bytes(array: np.ndarray) -> Callable:
    def write(f):
        Image.fromarray(array).save(f, format="PNG")
    return write


class RawOutputRecorder:
    """Keeps the last ``sem_seg_head`` output (``pred_logits``, ``pred_masks``) of ``model``."""

    def __init__(self, model: torch.nn.Module):
        self.last: Optional[Dict[str, torch.Tensor]] = None
        self._handle = model.sem_seg_head.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output):
        self.last = {"pred_logits": output["pred_logits"].detach(), "pred_masks": output["pred_masks"].detach()}

    def close(self) -> None:
        self._handle.remove()


class PredictionWriter:
    """Write one image's predictions at a time; ``finalize`` writes the JSON files.

    Args:
        output_dir: destination folder (created).
        metadata: the dataset metadata (``thing_dataset_id_to_contiguous_id`` /
            ``stuff_dataset_id_to_contiguous_id`` map contiguous ids back to dataset ids;
            without them the contiguous ids are written).
        semantic_encoding: one of :data:`SEMANTIC_ENCODINGS`.
        raw: also write ``raw/<stem>.npz``.
    """

    def __init__(self, output_dir: str, metadata: Any = None, *, semantic_encoding: str = "ids", raw: bool = False):
        if semantic_encoding not in SEMANTIC_ENCODINGS:
            raise ValueError(f"semantic_encoding must be one of {SEMANTIC_ENCODINGS}, got {semantic_encoding!r}")
        self.output_dir = output_dir
        self.semantic_encoding = semantic_encoding
        self.raw = raw
        thing = dict(getattr(metadata, "thing_dataset_id_to_contiguous_id", None) or {}) if metadata else {}
        stuff = dict(getattr(metadata, "stuff_dataset_id_to_contiguous_id", None) or {}) if metadata else {}
        self._thing_to_dataset = {v: k for k, v in thing.items()}
        self._stuff_to_dataset = {v: k for k, v in stuff.items()}
        for sub in ("records", "panoptic", "semantic", "raw") if raw else ("records", "panoptic", "semantic"):
            os.makedirs(os.path.join(output_dir, sub), exist_ok=True)

    def _record_path(self, stem: str) -> str:
        return os.path.join(self.output_dir, "records", stem + ".json")

    def is_done(self, stem: str) -> bool:
        return os.path.isfile(self._record_path(stem))

    def _dataset_id(self, contiguous: int, isthing: Optional[bool]) -> int:
        table = self._thing_to_dataset if isthing else self._stuff_to_dataset
        if isthing is None:
            table = self._thing_to_dataset or self._stuff_to_dataset
        return int(table.get(contiguous, contiguous)) if table else int(contiguous)

    def write(self, stem: str, image_id: Any, output: Mapping[str, Any],
              raw: Optional[Mapping[str, torch.Tensor]] = None) -> None:
        """Write the files of one image; ``output`` is the model's output dict for it."""
        record: Dict[str, Any] = {"image_id": image_id, "stem": stem}
        if "panoptic_seg" in output:
            ids, segments = output["panoptic_seg"]
            ids = ids.cpu().numpy().astype(np.int64)  # (H, W), 0 = void
            atomic_write(os.path.join(self.output_dir, "panoptic", stem + ".png"), _png_bytes(id2rgb(ids)))
            record["panoptic"] = {
                "image_id": image_id, "file_name": stem + ".png",
                "segments_info": [{"id": int(s["id"]), "category_id": self._dataset_id(int(s["category_id"]), s.get("isthing")),
                                   "iscrowd": 0, "area": int((ids == s["id"]).sum()),
                                   **({"score": float(s["score"])} if "score" in s else {})} for s in segments]}
        if "instances" in output:
            results = instances_to_coco_json(output["instances"].to("cpu"), image_id)
            for r in results:
                r["category_id"] = self._dataset_id(int(r["category_id"]), True)
            record["instances"] = results
        if "sem_seg" in output:
            labels = output["sem_seg"].argmax(dim=0).cpu().numpy()  # (H, W) contiguous ids
            atomic_write(os.path.join(self.output_dir, "semantic", stem + ".png"),
                         _png_bytes(encode_semantic(labels, self.semantic_encoding)))
        if self.raw:
            if raw is None:
                raise ValueError(f"{stem}: raw=True needs the model's raw outputs (RawOutputRecorder)")
            full = output["sem_seg"] if "sem_seg" in output else output["panoptic_seg"][0]
            arrays = {"class_logits": raw["pred_logits"][0].float().cpu().numpy(),  # (Q, K+1)
                      "mask_probs": raw["pred_masks"][0].sigmoid().cpu().numpy().astype(np.float16),  # (Q, h, w)
                      "output_size": np.asarray(full.shape[-2:], dtype=np.int64)}
            atomic_write(os.path.join(self.output_dir, "raw", stem + ".npz"), lambda f: np.savez_compressed(f, **arrays))
        text = json.dumps(record).encode("utf-8")
        atomic_write(self._record_path(stem), lambda f: f.write(text))

    def finalize(self, images: Optional[List[Dict[str, Any]]] = None,
                 categories: Optional[List[Dict[str, Any]]] = None) -> Dict[str, str]:
        """Gather the records into ``panoptic_predictions.json`` / ``instances_predictions.json``.

        ``images`` / ``categories`` (COCO dicts, e.g. from the dataset's panoptic json) are copied
        into the panoptic file so that it is a complete COCO panoptic json.
        """
        folder = os.path.join(self.output_dir, "records")
        records = []
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    records.append(json.load(f))
        written: Dict[str, str] = {}
        panoptic = [r["panoptic"] for r in records if "panoptic" in r]
        if panoptic:
            data = {"images": images or [{"id": r["image_id"], "file_name": r["stem"]} for r in records],
                    "categories": categories or [], "annotations": panoptic}
            written["panoptic"] = os.path.join(self.output_dir, "panoptic_predictions.json")
            blob = json.dumps(data).encode("utf-8")
            atomic_write(written["panoptic"], lambda f: f.write(blob))
        if any("instances" in r for r in records):
            results = [x for r in records for x in r.get("instances", [])]
            written["instances"] = os.path.join(self.output_dir, "instances_predictions.json")
            blob = json.dumps(results).encode("utf-8")
            atomic_write(written["instances"], lambda f: f.write(blob))
        return written


def run_predictions(predict: Callable[[Dict[str, Any]], Dict[str, Any]], items: Iterable[Dict[str, Any]],
                    writer: PredictionWriter, *, resume: bool = False, recorder: Optional[RawOutputRecorder] = None,
                    progress: bool = True) -> int:
    """Run ``predict`` over ``items`` (dicts with ``file_name`` and optionally ``image_id``) and
    write each result; returns how many images were predicted (skipped ones not counted)."""
    items = list(items)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc="predict", dynamic_ncols=True)
    done = 0
    try:
        for item in items:
            stem = os.path.splitext(os.path.basename(item["file_name"]))[0]
            if not (resume and writer.is_done(stem)):
                output = predict(item)
                raw = recorder.last if recorder is not None else None
                writer.write(stem, item.get("image_id", stem), output, raw=raw)
                done += 1
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return done
