"""``InstanceSegEvaluator``: Mask2Former's COCO mask AP for panoptic datasets whose thing classes
are numbered among all classes (ADE20K and Mapillary Vistas panoptic)."""

from __future__ import annotations

from typing import Dict, Optional

from .coco_evaluation import COCOEvaluator

__all__ = ["InstanceSegEvaluator"]


class InstanceSegEvaluator(COCOEvaluator):
    """COCO instance AP, as :class:`COCOEvaluator`, but for any thing-class numbering.

    A Mask2Former trained on ADE20K panoptic predicts its thing classes with their index among
    all 150 classes (``bed`` = 7, ``windowpane`` = 8, ...), and one trained on Mapillary Vistas
    panoptic with their index among all 65; ``thing_dataset_id_to_contiguous_id`` therefore maps
    the dataset ids of the things to a sparse set of contiguous ids. COCOEvaluator (like
    detectron2's) requires those to be 0..K-1; this evaluator, as the official Mask2Former one,
    only requires every predicted class to be a value of the mapping, and reports it under its
    dataset id. Everything else (tasks, JSON conversion for datasets without ``json_file``,
    metrics, per-category AP, the process gathering) is COCOEvaluator's.
    """

    def _contiguous_to_dataset_id(self) -> Optional[Dict[int, int]]:
        id_map = self._metadata.get("thing_dataset_id_to_contiguous_id", None)
        if id_map is None:
            return None
        reverse = {v: k for k, v in id_map.items()}
        if len(reverse) != len(id_map):
            raise ValueError(
                f"InstanceSegEvaluator: thing_dataset_id_to_contiguous_id of '{self._dataset_name}' maps "
                "two dataset ids to the same contiguous id"
            )
        return reverse

    def _map_category_id(self, category_id: int) -> int:
        if self._reverse_id_mapping is not None and category_id not in self._reverse_id_mapping:
            raise KeyError(
                f"Predicted category {category_id} is not a thing class of '{self._dataset_name}': "
                f"the contiguous thing ids are {sorted(self._reverse_id_mapping)}"
            )
        return super()._map_category_id(category_id)
