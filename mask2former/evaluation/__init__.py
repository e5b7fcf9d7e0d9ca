"""Evaluation: the evaluator interface, ``inference_on_dataset`` and the COCO / panoptic /
semantic segmentation evaluators, and Mask2Former's InstanceSegEvaluator."""

from .cityscapes_evaluation import CityscapesInstanceEvaluator, CityscapesSemSegEvaluator
from .coco_evaluation import COCOEvaluator
from .coco_json import convert_to_coco_dict, convert_to_coco_json
from .evaluator import DatasetEvaluator, DatasetEvaluators, inference_context, inference_on_dataset
from .instance_evaluation import InstanceSegEvaluator
from .panoptic_evaluation import COCOPanopticEvaluator
from .panoptic_quality import pq_compute
from .sem_seg_evaluation import SemSegEvaluator
from .testing import flatten_results_dict, print_csv_format, verify_results
from .ytvis_evaluation import YTVISEvaluator

__all__ = [
    "CityscapesInstanceEvaluator",
    "CityscapesSemSegEvaluator",
    "COCOEvaluator",
    "COCOPanopticEvaluator",
    "DatasetEvaluator",
    "DatasetEvaluators",
    "InstanceSegEvaluator",
    "SemSegEvaluator",
    "YTVISEvaluator",
    "convert_to_coco_dict",
    "convert_to_coco_json",
    "flatten_results_dict",
    "inference_context",
    "inference_on_dataset",
    "pq_compute",
    "print_csv_format",
    "verify_results",
]
