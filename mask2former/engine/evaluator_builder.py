"""The evaluators of a test set: exactly the choice of the official Mask2Former ``train_net.py``.

The dataset's metadata ``evaluator_type`` and ``MODEL.MASK_FORMER.TEST.{SEMANTIC,INSTANCE,
PANOPTIC}_ON`` decide, as in ``Trainer.build_evaluator`` of the official script:

==============================  =========================================================
evaluator_type                  evaluators (flag that enables each; "always" = no flag)
==============================  =========================================================
sem_seg                         SemSegEvaluator (always)
coco                            COCOEvaluator (always)
coco_panoptic_seg               COCOPanopticEvaluator (PANOPTIC_ON), COCOEvaluator
                                (INSTANCE_ON), SemSegEvaluator (SEMANTIC_ON)
ade20k_panoptic_seg             SemSegEvaluator (always), COCOPanopticEvaluator (PANOPTIC_ON),
                                InstanceSegEvaluator (INSTANCE_ON)
mapillary_vistas_panoptic_seg   COCOPanopticEvaluator (PANOPTIC_ON), InstanceSegEvaluator
                                (INSTANCE_ON), SemSegEvaluator (SEMANTIC_ON)
cityscapes_instance             CityscapesInstanceEvaluator only (always)
cityscapes_sem_seg              CityscapesSemSegEvaluator only (always)
cityscapes_panoptic_seg         COCOPanopticEvaluator (PANOPTIC_ON), CityscapesSemSegEvaluator
                                (SEMANTIC_ON), CityscapesInstanceEvaluator (INSTANCE_ON)
==============================  =========================================================

Two deliberate departures, both where the official script would fail rather than choose:

* the Cityscapes evaluators run on CPU-only machines and in several processes (the official
  script asserts one GPU per rank);
* a ``coco_panoptic_seg`` dataset without semantic labels (metadata ``sem_seg_root`` unset: the
  "standard" ``coco_2017_val_panoptic`` of MaskFormer v1's configs, or a custom dataset from
  ``register_coco_panoptic``) gets no SemSegEvaluator, with a warning, instead of failing on the
  first image; MaskFormer v1's own ``train_net.py`` built none there either.
"""
from __future__ import annotations

import logging
import os
from typing import List, Optional

from ..config import CfgNode
from ..evaluation import (
    COCOEvaluator,
    COCOPanopticEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    InstanceSegEvaluator,
    SemSegEvaluator,
)
from ..evaluation.cityscapes_evaluation import CityscapesInstanceEvaluator, CityscapesSemSegEvaluator
from ..utils.catalog import MetadataCatalog

__all__ = ["SEMANTIC_EVALUATOR_TYPES", "build_evaluator"]

logger = logging.getLogger(__name__)

_PANOPTIC_TYPES = (
    "coco_panoptic_seg",
    "ade20k_panoptic_seg",
    "cityscapes_panoptic_seg",
    "mapillary_vistas_panoptic_seg",
)

# the types whose evaluators include a semantic one when SEMANTIC_ON is the only task enabled
SEMANTIC_EVALUATOR_TYPES = (
    "sem_seg",
    "cityscapes_sem_seg",
    "ade20k_panoptic_seg",
    "coco_panoptic_seg",
    "mapillary_vistas_panoptic_seg",
    "cityscapes_panoptic_seg",
)


def build_evaluator(
    cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None
) -> DatasetEvaluator:
    """Evaluator(s) of ``dataset_name`` for ``cfg`` (a :class:`DatasetEvaluators` when several).

    ``output_folder`` defaults to ``OUTPUT_DIR/inference``. Raises ``NotImplementedError``
    when the dataset's ``evaluator_type`` and the enabled tasks select no evaluator.
    """
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
    metadata = MetadataCatalog.get(dataset_name)
    evaluator_type = metadata.get("evaluator_type", None)
    test = cfg.MODEL.MASK_FORMER.TEST

    def sem_seg() -> SemSegEvaluator:
        return SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)

    # the single-evaluator types return at once, as the official script does
    if evaluator_type == "cityscapes_instance":
        return CityscapesInstanceEvaluator(dataset_name)
    if evaluator_type == "cityscapes_sem_seg":
        return CityscapesSemSegEvaluator(dataset_name)

    evaluators: List[DatasetEvaluator] = []
    # (the order is the official one: it decides the order of the printed tables)
    if evaluator_type in ("sem_seg", "ade20k_panoptic_seg"):
        evaluators.append(sem_seg())
    if evaluator_type == "coco":
        evaluators.append(COCOEvaluator(dataset_name, output_dir=output_folder))
    if evaluator_type in _PANOPTIC_TYPES and test.PANOPTIC_ON:
        evaluators.append(COCOPanopticEvaluator(dataset_name, output_folder))
    if evaluator_type == "coco_panoptic_seg":
        if test.INSTANCE_ON:
            evaluators.append(COCOEvaluator(dataset_name, output_dir=output_folder))
        if test.SEMANTIC_ON:
            if metadata.get("sem_seg_root", None) is not None:
                evaluators.append(sem_seg())
            else:
                logger.warning(
                    "Dataset '%s' has no semantic labels (metadata 'sem_seg_root' is unset): no "
                    "SemSegEvaluator despite MODEL.MASK_FORMER.TEST.SEMANTIC_ON. Register it with "
                    "register_coco_panoptic_annos_sem_seg to get mIoU.", dataset_name,
                )
    if evaluator_type == "mapillary_vistas_panoptic_seg":
        if test.INSTANCE_ON:
            evaluators.append(InstanceSegEvaluator(dataset_name, output_dir=output_folder))
        if test.SEMANTIC_ON:
            evaluators.append(sem_seg())
    if evaluator_type == "cityscapes_panoptic_seg":
        if test.SEMANTIC_ON:
            evaluators.append(CityscapesSemSegEvaluator(dataset_name))
        if test.INSTANCE_ON:
            evaluators.append(CityscapesInstanceEvaluator(dataset_name))
    if evaluator_type == "ade20k_panoptic_seg" and test.INSTANCE_ON:
        evaluators.append(InstanceSegEvaluator(dataset_name, output_dir=output_folder))

    if not evaluators:
        raise NotImplementedError(
            f"No evaluator for dataset {dataset_name!r} with evaluator_type={evaluator_type!r} and "
            f"MODEL.MASK_FORMER.TEST SEMANTIC_ON={test.SEMANTIC_ON}, INSTANCE_ON={test.INSTANCE_ON}, "
            f"PANOPTIC_ON={test.PANOPTIC_ON}; pass evaluators to DefaultTrainer.test(evaluators=...)"
        )
    return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)
