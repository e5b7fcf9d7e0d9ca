"""Training hooks: timing, LR scheduling, checkpointing, evaluation and metric writing."""
from __future__ import annotations

import datetime
import itertools
import logging
import time
from collections import Counter
from typing import Callable, Iterable, List, Optional

from torch import nn

from ..utils import comm
from ..utils.events import EventWriter
from .train_loop import HookBase, _preserved_rng_state

__all__ = [
    "CallbackHook", "IterationTimer", "PeriodicWriter", "PeriodicCheckpointer", "LRScheduler",
    "EvalHook", "PreciseBN",
]

logger = logging.getLogger(__name__)


class CallbackHook(HookBase):
    """A hook built from plain functions, each taking the trainer."""

    def __init__(self, *, before_train=None, after_train=None, before_step=None, after_step=None):
        self._before_train, self._after_train = before_train, after_train
        self._before_step, self._after_step = before_step, after_step

    def before_train(self):
        if self._before_train:
            self._before_train(self.trainer)

    def after_train(self):
        if self._after_train:
            self._after_train(self.trainer)

    def before_step(self):
        if self._before_step:
            self._before_step(self.trainer)

    def after_step(self):
        if self._after_step:
            self._after_step(self.trainer)


class IterationTimer(HookBase):
    """Stores the time of each iteration (``time``) and logs the total at the end."""

    def __init__(self, warmup_iter: int = 3):
        self._warmup_iter = warmup_iter
        self._step_start = 0.0
        self._start_time = 0.0
        self._total_step_time = 0.0

    def before_train(self):
        self._start_time = time.perf_counter()
        self._total_step_time = 0.0

    def after_train(self):
        total_time = time.perf_counter() - self._start_time
        num_iter = self.trainer.storage.iter + 1 - self.trainer.start_iter - self._warmup_iter
        if num_iter > 0 and self._total_step_time > 0:
            logger.info("Overall training speed: %d iterations in %s (%.4f s / it)", num_iter,
                        str(datetime.timedelta(seconds=int(self._total_step_time))),
                        self._total_step_time / num_iter)
        logger.info("Total training time: %s", str(datetime.timedelta(seconds=int(total_time))))

    def before_step(self):
        self._step_start = time.perf_counter()

    def after_step(self):
        iter_done = self.trainer.storage.iter - self.trainer.start_iter + 1
        elapsed = time.perf_counter() - self._step_start
        if iter_done >= self._warmup_iter:
            self._total_step_time += elapsed
            self.trainer.storage.put_scalars(time=elapsed)


class PeriodicWriter(HookBase):
    """Calls every writer each ``period`` iterations and at the end of training."""

    def __init__(self, writers: List[EventWriter], period: int = 20):
        self._writers = writers
        self._period = period

    def after_step(self):
        if (self.trainer.iter + 1) % self._period == 0 or self.trainer.iter == self.trainer.max_iter - 1:
            for writer in self._writers:
                writer.write()

    def after_train(self):
        for writer in self._writers:
            writer.write()
            writer.close()


class PeriodicCheckpointer(HookBase):
    """Saves ``model_{iter:07d}.pth`` every ``period`` iterations and ``model_final.pth`` at the end.

    ``extra_state()`` supplies what else must go into each checkpoint (RNG and data state) so that
    ``--resume`` continues exactly.
    """

    def __init__(self, checkpointer, period: int, max_iter: int, *, max_to_keep: Optional[int] = None,
                 file_prefix: str = "model", extra_state: Optional[Callable[[], dict]] = None):
        self.checkpointer = checkpointer
        self.period = int(period)
        self.max_iter = max_iter
        self.max_to_keep = max_to_keep
        self.file_prefix = file_prefix
        self.extra_state = extra_state
        self._recent: List[str] = []

    def _save(self, name: str) -> None:
        extra = {"iteration": self.trainer.iter}
        if self.extra_state is not None:
            extra.update(self.extra_state())
        self.checkpointer.save(name, **extra)

    def after_step(self):
        iteration = self.trainer.iter
        if (iteration + 1) % self.period == 0:
            name = f"{self.file_prefix}_{iteration:07d}"
            self._save(name)
            if self.max_to_keep is not None:
                self._recent.append(name)
                while len(self._recent) > self.max_to_keep:
                    self.checkpointer.delete(self._recent.pop(0))
        if iteration >= self.max_iter - 1:
            self._save(f"{self.file_prefix}_final")


class LRScheduler(HookBase):
    """Steps the LR scheduler after every iteration and stores the current ``lr``."""

    def __init__(self, optimizer=None, scheduler=None):
        self._optimizer = optimizer
        self._scheduler = scheduler
        self._best_param_group_id: Optional[int] = None

    def before_train(self):
        self._optimizer = self._optimizer or self.trainer.optimizer
        self._scheduler = self._scheduler or self.trainer.scheduler
        self._best_param_group_id = self._pick_param_group(self._optimizer)

    @staticmethod
    def _pick_param_group(optimizer) -> int:
        """The group with the most parameters among those with the most common LR."""
        largest = max(len(group["params"]) for group in optimizer.param_groups)
        if largest == 1:
            lr_count = Counter(group["lr"] for group in optimizer.param_groups)
            lr = lr_count.most_common()[0][0]
            return next(i for i, group in enumerate(optimizer.param_groups) if group["lr"] == lr)
        return next(i for i, group in enumerate(optimizer.param_groups) if len(group["params"]) == largest)

    def after_step(self):
        lr = self._optimizer.param_groups[self._best_param_group_id]["lr"]
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self._scheduler.step()

    @property
    def scheduler(self):
        return self._scheduler or self.trainer.scheduler

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        logger.info("Loading scheduler from state_dict ...")
        self.scheduler.load_state_dict(state_dict)


class EvalHook(HookBase):
    """Runs ``eval_function()`` every ``eval_period`` iterations and after the last one."""

    def __init__(self, eval_period: int, eval_function: Callable[[], dict], eval_after_train: bool = True):
        self._period = eval_period
        self._func = eval_function
        self._eval_after_train = eval_after_train

    def _do_eval(self) -> None:
        # Evaluation (e.g. starting test-loader workers) must not shift the training RNGs: a run
        # resumed from a checkpoint written just before this evaluation does not repeat it.
        with _preserved_rng_state():
            results = self._func()
        if results:
            flattened = _flatten_results(results)
            for key, value in flattened.items():
                try:
                    value = float(value)
                except (TypeError, ValueError) as err:
                    raise ValueError(
                        f"[EvalHook] eval_function should return a nested dict of floats; "
                        f"got {key}: {value!r}"
                    ) from err
            self.trainer.storage.put_scalars(**flattened, smoothing_hint=False)
        comm.synchronize()  # evaluation may take different time on each process

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if self._period > 0 and next_iter % self._period == 0 and next_iter != self.trainer.max_iter:
            self._do_eval()

    def after_train(self):
        if self._eval_after_train and self.trainer.iter + 1 >= self.trainer.max_iter:
            self._do_eval()
        del self._func  # the closure may hold the model and data loaders


class PreciseBN(HookBase):
    """Recompute the running statistics of the model's training-mode BatchNorm layers as exact
    averages over ``num_iter`` training batches (``TEST.PRECISE_BN``), every ``period``
    iterations and after the last one -- before evaluation, as detectron2's hook.

    Uses fvcore's ``update_bn_stats``; batches come from ``data_loader_factory()`` (a fresh
    training loader, built on first use). A model without training-mode BatchNorm (FrozenBN /
    GroupNorm / SyncBN-free Swin ...) leaves the hook idle, with a log line saying so.
    """

    def __init__(self, period: int, model: nn.Module, data_loader_factory: Callable[[], Iterable],
                 num_iter: int):
        from fvcore.nn.precise_bn import get_bn_modules

        if num_iter <= 0:
            raise ValueError(f"TEST.PRECISE_BN.NUM_ITER must be positive, got {num_iter}")
        self._period = period
        self._model = model
        self._data_loader_factory = data_loader_factory
        self._num_iter = num_iter
        self._data_iter = None
        self._disabled = not get_bn_modules(model)
        if self._disabled:
            logger.info("PreciseBN is disabled: the model has no BatchNorm layer in training mode.")

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if next_iter == self.trainer.max_iter or (self._period > 0 and next_iter % self._period == 0):
            self.update_stats()

    def update_stats(self) -> None:
        """Run ``num_iter`` batches through the model in training mode, no gradients kept."""
        from fvcore.nn.precise_bn import update_bn_stats

        if self._disabled:
            return
        if self._data_iter is None:
            self._data_iter = iter(self._data_loader_factory())
        batches = (next(self._data_iter) for _ in itertools.count())
        logger.info("Running precise-BN for %d iterations ...", self._num_iter)
        with _preserved_rng_state():
            update_bn_stats(self._model, batches, self._num_iter)


def _flatten_results(results: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in results.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten_results(value, name))
        else:
            flat[name] = value
    return flat

