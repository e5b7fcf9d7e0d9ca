"""``DefaultTrainer``: the complete trainer of the official ``train_net.py``, as a library class."""
from __future__ import annotations

import copy
import logging
import os
import random
import weakref
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import DetectionCheckpointer
from ..checkpoint.file_io import atomic_write, remove_partial_files
from ..config import CfgNode
from ..data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from ..data.dataset_mappers import MAPPER_BY_NAME
from ..data.detection_utils import SkipCorruptImages
from ..data.dataset_mappers.dataset_mapper_tta import DatasetMapperTTA
from ..evaluation import DatasetEvaluator, inference_on_dataset, print_csv_format, verify_results
from ..modeling.build import build_model
from ..modeling.test_time_augmentation import SemanticSegmentorWithTTA
from ..solver import build_lr_scheduler, build_optimizer
from ..utils import comm
from ..utils.env import CPU_BF16_ENV, cpu_has_fast_bfloat16, module_device_type
from ..utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter
from ..utils.logger import setup_logger
from ..utils.memory import configure_cpu_memory
from . import hooks
from .output_dir import check_free_space, eval_results_target, expected_checkpoint_bytes
from .evaluator_builder import SEMANTIC_EVALUATOR_TYPES, build_evaluator
from .train_loop import AMPTrainer, SimpleTrainer, TrainerBase

__all__ = ["DefaultTrainer", "create_ddp_model", "default_writers", "build_evaluator"]

logger = logging.getLogger(__name__)


def create_ddp_model(model: torch.nn.Module, **kwargs) -> torch.nn.Module:
    """Wrap ``model`` in DistributedDataParallel when more than one process runs."""
    if comm.get_world_size() == 1:
        return model
    if "device_ids" not in kwargs and next(model.parameters()).is_cuda:
        kwargs["device_ids"] = [comm.get_local_rank()]
    return DistributedDataParallel(model, **kwargs)


def default_writers(output_dir: str, max_iter: Optional[int] = None) -> list:
    """Console printer, ``metrics.json`` and TensorBoard event files in ``output_dir``."""
    os.makedirs(output_dir, exist_ok=True)
    writers = [CommonMetricPrinter(max_iter), JSONWriter(os.path.join(output_dir, "metrics.json"))]
    try:
        writers.append(TensorboardXWriter(output_dir))
    except ImportError as err:
        logger.warning("%s; TensorBoard event files are not written.", err)
    return writers


class DefaultTrainer(TrainerBase):
    """Model, optimizer, LR schedule, data, AMP, checkpoints, evaluation and writers from a cfg.

    A user registers a dataset and calls ``DefaultTrainer(cfg).train()``; ``resume_or_load``
    restores everything (weights, optimizer, scheduler, scaler, iteration, RNG and data position)
    so an interrupted run continues exactly as the uninterrupted one would.
    """

    def __init__(self, cfg: CfgNode):
        super().__init__()
        mask2former_logger = logging.getLogger("mask2former")
        if not mask2former_logger.isEnabledFor(logging.INFO):
            setup_logger()
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())
        self.cfg = cfg
        configure_cpu_memory()  # default: no page faults from re-allocated temporaries on every step

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        self._data_start_iter = 0
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False,
                                 find_unused_parameters=cfg.MODEL.get("FIND_UNUSED_PARAMETERS", False))
        self._trainer = self._build_step_runner(cfg, model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DetectionCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self),
                                                  save_format=cfg.SOLVER.CHECKPOINT_FORMAT)
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        if comm.is_main_process() and cfg.OUTPUT_DIR:
            remove_partial_files(cfg.OUTPUT_DIR)  # of a write interrupted in an earlier run
            check_free_space(cfg.OUTPUT_DIR, expected_checkpoint_bytes(model, optimizer),
                             self.max_iter // max(cfg.SOLVER.CHECKPOINT_PERIOD, 1) + 1)
        self.register_hooks(self.build_hooks())

    @staticmethod
    def _build_step_runner(cfg: CfgNode, model, data_loader, optimizer) -> SimpleTrainer:
        if not cfg.SOLVER.AMP.ENABLED:
            return SimpleTrainer(model, data_loader, optimizer)
        precision = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(cfg.SOLVER.AMP.PRECISION)
        if precision is None:
            raise ValueError(f"SOLVER.AMP.PRECISION must be 'float16' or 'bfloat16', "
                             f"got {cfg.SOLVER.AMP.PRECISION!r}")
        device_type = module_device_type(model)
        if device_type != "cuda" and precision == torch.float16:
            logger.warning("SOLVER.AMP with float16 needs CUDA; training on %s in float32 instead "
                           "(set SOLVER.AMP.PRECISION bfloat16 for CPU autocast).", device_type)
            return SimpleTrainer(model, data_loader, optimizer)
        if device_type == "cpu" and not cpu_has_fast_bfloat16():
            logger.warning("SOLVER.AMP with bfloat16: bfloat16 matmuls are not faster than float32 on "
                           "this CPU (mask2former.utils.env.cpu_has_fast_bfloat16; %s=fast overrides); "
                           "training in float32 instead.", CPU_BF16_ENV)
            return SimpleTrainer(model, data_loader, optimizer)
        return AMPTrainer(model, data_loader, optimizer, precision=precision)

    # ---- the pieces, overridable as in detectron2 ------------------------------------------
    @classmethod
    def build_model(cls, cfg: CfgNode) -> torch.nn.Module:
        model = build_model(cfg)
        logger.info("Model:\n%s", model)
        return model

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg: CfgNode, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode, start_iter: int = 0):
        """Loader whose mapper is chosen by INPUT.DATASET_MAPPER_NAME; starts at batch ``start_iter``."""
        name = cfg.INPUT.DATASET_MAPPER_NAME
        if name not in MAPPER_BY_NAME:
            raise KeyError(f"INPUT.DATASET_MAPPER_NAME={name!r} is unknown; known: {sorted(MAPPER_BY_NAME)}")
        mapper = MAPPER_BY_NAME[name](cfg, True)
        if cfg.DATALOADER.SKIP_CORRUPT_IMAGES:
            mapper = SkipCorruptImages(mapper)
        return build_detection_train_loader(cfg, mapper=mapper, start_iter=start_iter)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None):
        return build_evaluator(cfg, dataset_name, output_folder)

    def build_hooks(self) -> List[hooks.HookBase]:
        cfg = self.cfg
        hook_list: List[Optional[hooks.HookBase]] = [
            hooks.IterationTimer(),
            hooks.LRScheduler(),
            hooks.PreciseBN(cfg.TEST.EVAL_PERIOD, self.model, lambda: self.build_train_loader(cfg),
                            cfg.TEST.PRECISE_BN.NUM_ITER) if cfg.TEST.PRECISE_BN.ENABLED else None,
            hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, self.max_iter)
            if comm.is_main_process() else None,
            hooks.EvalHook(cfg.TEST.EVAL_PERIOD, self._test_and_remember),
        ]
        if comm.is_main_process():
            hook_list.append(hooks.PeriodicWriter(self.build_writers(), period=20))
        return hook_list

    def _test_and_remember(self) -> dict:
        self._last_eval_results = self.test(self.cfg, self.model)
        return self._last_eval_results

    def build_writers(self) -> list:
        return default_writers(self.cfg.OUTPUT_DIR, self.max_iter)

    # ---- run ----------------------------------------------------------------------------------
    @property
    def model(self) -> torch.nn.Module:
        return self._trainer.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._trainer.optimizer

    @property
    def data_loader(self):
        return self._trainer.data_loader

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume from OUTPUT_DIR/last_checkpoint when ``resume`` and it exists, else load MODEL.WEIGHTS."""
        self._resumed_data_seed = None
        self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = self.iter + 1
            cfg = self.cfg
            if cfg.SEED < 0 and self._resumed_data_seed is not None:
                # SEED < 0 drew a random data seed: continue the interrupted run's stream, not a new one
                cfg = cfg.clone()
                cfg.defrost()
                cfg.SEED = self._resumed_data_seed
                cfg.freeze()
            if self.start_iter != self._data_start_iter or cfg is not self.cfg:
                self._trainer.reset_data_loader(lambda: self.build_train_loader(cfg, start_iter=self.start_iter))
                self._data_start_iter = self.start_iter

    def train(self) -> Optional[Dict]:
        """Train from ``start_iter`` to SOLVER.MAX_ITER; returns the last evaluation results."""
        super().train(self.start_iter, self.max_iter)
        results = getattr(self, "_last_eval_results", None)
        if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
            verify_results(self.cfg, results or {})
        return results

    def run_step(self) -> None:
        self._trainer.iter = self.iter
        self._trainer.run_step()

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["_trainer"] = self._trainer.state_dict()
        state["rng"] = _capture_rng_state()
        data_seed = getattr(self.data_loader, "seed", None)  # the seed of the default TrainDataLoader
        if data_seed is not None:
            state["data_seed"] = int(data_seed)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._trainer.load_state_dict(state_dict["_trainer"])
        if "rng" in state_dict:
            _restore_rng_state(state_dict["rng"])
        self._resumed_data_seed = state_dict.get("data_seed")

    @classmethod
    def test(cls, cfg: CfgNode, model: torch.nn.Module, evaluators=None) -> "OrderedDict[str, dict]":
        """Evaluate ``model`` on every dataset of DATASETS.TEST; returns {dataset: results}."""
        if isinstance(evaluators, DatasetEvaluator):
            evaluators = [evaluators]
        if evaluators is not None and len(cfg.DATASETS.TEST) != len(evaluators):
            raise ValueError(f"{len(cfg.DATASETS.TEST)} test datasets but {len(evaluators)} evaluators")
        results = OrderedDict()
        for idx, dataset_name in enumerate(cfg.DATASETS.TEST):
            data_loader = cls.build_test_loader(cfg, dataset_name)
            evaluator = evaluators[idx] if evaluators is not None else cls.build_evaluator(cfg, dataset_name)
            results_i = inference_on_dataset(model, data_loader, evaluator)
            results[dataset_name] = results_i
            if comm.is_main_process():
                logger.info("Evaluation results for %s in csv format:", dataset_name)
                print_csv_format(results_i)
        return results[list(results.keys())[0]] if len(results) == 1 else results

    @classmethod
    def test_with_TTA(cls, cfg: CfgNode, model: torch.nn.Module) -> "OrderedDict[str, dict]":
        """Evaluate ``model`` with semantic test-time augmentation (TEST.AUG.*), as the official
        ``train_net.py``: results of :meth:`test` with ``_TTA`` appended to each top-level key
        (``sem_seg_TTA`` for one test set; ``<dataset>_TTA`` for several), files in
        ``OUTPUT_DIR/inference_TTA``.

        The TTA model returns ``sem_seg`` only, so only the semantic evaluators of each test set
        run (those chosen with SEMANTIC_ON alone); a test set without one is skipped with a warning.
        """
        logger.info("Running inference with test-time augmentation ...")
        tta_model = SemanticSegmentorWithTTA(model, tta_mapper=DatasetMapperTTA(cfg))
        semantic_cfg = cfg.clone()
        semantic_cfg.defrost()
        semantic_cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = True
        semantic_cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = False
        semantic_cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = False
        semantic_cfg.freeze()
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference_TTA")
        names, evaluators = [], []
        for name in cfg.DATASETS.TEST:
            evaluator_type = MetadataCatalog.get(name).get("evaluator_type", None)
            if evaluator_type not in SEMANTIC_EVALUATOR_TYPES:
                logger.warning("TEST.AUG: dataset '%s' (evaluator_type %r) has no semantic evaluator; "
                               "no TTA evaluation for it.", name, evaluator_type)
                continue
            try:
                evaluators.append(cls.build_evaluator(semantic_cfg, name, output_folder=output_folder))
            except NotImplementedError as err:  # e.g. a panoptic dataset without semantic labels
                logger.warning("TEST.AUG: no TTA evaluation for dataset '%s': %s", name, err)
                continue
            names.append(name)
        if not names:
            return OrderedDict()
        tta_cfg = semantic_cfg.clone()
        tta_cfg.defrost()
        tta_cfg.DATASETS.TEST = tuple(names)
        tta_cfg.freeze()
        res = cls.test(tta_cfg, tta_model, evaluators)  # one test set: its {task: metrics}
        if len(names) == 1 and len(cfg.DATASETS.TEST) > 1:
            res = {names[0]: res}  # keyed by dataset, as the results without TTA
        return OrderedDict((k + "_TTA", v) for k, v in res.items())

    @staticmethod
    def save_results(cfg: CfgNode, results: dict, *, random_init: bool = False) -> str:
        """Write evaluation ``results`` to OUTPUT_DIR/eval_results.json (atomically); returns the path.

        ``random_init`` (no weights were loaded): the results are marked ``random_initialization``
        and never replace an eval_results.json of trained weights (see :func:`eval_results_target`).
        """
        import json

        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        path, results = eval_results_target(cfg.OUTPUT_DIR, results, random_init=random_init)
        text = json.dumps(results, indent=2, default=float)
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))
        return path

    @staticmethod
    def auto_scale_workers(cfg: CfgNode, num_workers: int) -> CfgNode:
        """Scale batch size, LR, iterations and periods when REFERENCE_WORLD_SIZE is set (linear rule)."""
        old_world_size = cfg.SOLVER.REFERENCE_WORLD_SIZE
        if old_world_size == 0 or old_world_size == num_workers:
            return cfg
        cfg = copy.deepcopy(cfg)
        frozen = cfg.is_frozen()
        cfg.defrost()
        if cfg.SOLVER.IMS_PER_BATCH % old_world_size != 0:
            raise ValueError("SOLVER.IMS_PER_BATCH must be divisible by SOLVER.REFERENCE_WORLD_SIZE")
        scale = num_workers / old_world_size
        bs = cfg.SOLVER.IMS_PER_BATCH = int(round(cfg.SOLVER.IMS_PER_BATCH * scale))
        lr = cfg.SOLVER.BASE_LR = cfg.SOLVER.BASE_LR * scale
        max_iter = cfg.SOLVER.MAX_ITER = int(round(cfg.SOLVER.MAX_ITER / scale))
        cfg.SOLVER.WARMUP_ITERS = int(round(cfg.SOLVER.WARMUP_ITERS / scale))
        cfg.SOLVER.STEPS = tuple(int(round(s / scale)) for s in cfg.SOLVER.STEPS)
        cfg.TEST.EVAL_PERIOD = int(round(cfg.TEST.EVAL_PERIOD / scale))
        cfg.SOLVER.CHECKPOINT_PERIOD = int(round(cfg.SOLVER.CHECKPOINT_PERIOD / scale))
        cfg.SOLVER.REFERENCE_WORLD_SIZE = num_workers
        logger.info("Auto-scaling the config to batch_size=%d, learning_rate=%g, max_iter=%d, warmup=%d.",
                    bs, lr, max_iter, cfg.SOLVER.WARMUP_ITERS)
        if frozen:
            cfg.freeze()
        return cfg


def _capture_rng_state() -> dict:
    """Python, numpy and torch RNG states as tensors / plain values (loadable with weights_only)."""
    np_state = np.random.get_state()
    state = {
        "python": _python_state_to_tensor(random.getstate()),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_cached_gaussian": float(np_state[4]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng_state(state: dict) -> None:
    random.setstate(_tensor_to_python_state(state["python"]))
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_tensor(py_state: tuple) -> dict:
    version, internal, gauss_next = py_state
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next}


def _tensor_to_python_state(saved: dict) -> tuple:
    return saved["version"], tuple(int(v) for v in saved["internal"].tolist()), saved["gauss_next"]
