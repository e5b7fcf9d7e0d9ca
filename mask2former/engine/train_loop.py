"""The iteration-based training loop: hooks, ``SimpleTrainer`` and ``AMPTrainer``."""
from __future__ import annotations

import contextlib
import logging
import math
import random
import time
import weakref
from typing import Dict, Iterable, List, Mapping, Optional

import numpy as np
import torch
from torch.nn.parallel import DataParallel, DistributedDataParallel

from ..utils import comm
from ..utils.env import module_device_type
from ..utils.events import EventStorage, get_event_storage

__all__ = ["HookBase", "TrainerBase", "SimpleTrainer", "AMPTrainer", "NonFiniteLossError"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Raised when a training loss becomes NaN or infinite."""


class HookBase:
    """Called by the trainer around training and around each step; ``self.trainer`` is set."""

    trainer: "TrainerBase" = None

    def before_train(self) -> None: ...

    def after_train(self) -> None: ...

    def before_step(self) -> None: ...

    def after_backward(self) -> None: ...

    def after_step(self) -> None: ...

    def state_dict(self) -> dict:
        return {}


class TrainerBase:
    """Runs hooks and ``run_step`` from ``start_iter`` to ``max_iter`` inside an EventStorage."""

    def __init__(self) -> None:
        self._hooks: List[HookBase] = []
        self.iter: int = 0
        self.start_iter: int = 0
        self.max_iter: int = 0
        self.storage: EventStorage

    def register_hooks(self, hooks: Iterable[Optional[HookBase]]) -> None:
        """Append hooks (None entries are skipped); they run in registration order."""
        for hook in hooks:
            if hook is None:
                continue
            assert isinstance(hook, HookBase), f"{hook} is not a HookBase"
            hook.trainer = weakref.proxy(self)  # no reference cycle trainer <-> hook
            self._hooks.append(hook)

    def train(self, start_iter: int, max_iter: int) -> None:
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                self.iter += 1  # after a normal finish, iter == max_iter
            except Exception:
                logger.exception("Exception during training:")
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        for hook in self._hooks:
            hook.before_train()

    def after_train(self) -> None:
        self.storage.iter = self.iter
        for hook in self._hooks:
            hook.after_train()

    def before_step(self) -> None:
        self.storage.iter = self.iter
        for hook in self._hooks:
            hook.before_step()

    def after_backward(self) -> None:
        for hook in self._hooks:
            hook.after_backward()

    def after_step(self) -> None:
        for hook in self._hooks:
            hook.after_step()

    def run_step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        state = {"iteration": self.iter}
        hook_states = {}
        for hook in self._hooks:
            hook_state = hook.state_dict()
            if hook_state:
                name = type(hook).__qualname__
                if name in hook_states:
                    continue  # only the first hook of a type is saved, as in detectron2
                hook_states[name] = hook_state
        if hook_states:
            state["hooks"] = hook_states
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.iter = state_dict["iteration"]
        for name, value in state_dict.get("hooks", {}).items():
            for hook in self._hooks:
                if type(hook).__qualname__ == name and hasattr(hook, "load_state_dict"):
                    hook.load_state_dict(value)
                    break
            else:
                logger.warning("Cannot find a hook for state_dict key %s; its state is not loaded", name)


class SimpleTrainer(TrainerBase):
    """One optimizer step per iteration: next batch, forward (loss dict), backward, step."""

    def __init__(self, model: torch.nn.Module, data_loader: Iterable, optimizer: torch.optim.Optimizer,
                 gather_metric_period: int = 1):
        super().__init__()
        model.train()
        self.model = model
        self.data_loader = data_loader
        self._data_loader_iter_obj = None
        self.optimizer = optimizer
        self.gather_metric_period = gather_metric_period

    @property
    def _data_loader_iter(self):
        if self._data_loader_iter_obj is None:
            self._data_loader_iter_obj = iter(self.data_loader)
        return self._data_loader_iter_obj

    def reset_data_loader(self, data_loader_builder) -> None:
        """Drop the current loader and its workers; ``data_loader_builder()`` makes the next one."""
        iter_obj = self._data_loader_iter_obj
        self._data_loader_iter_obj = None
        self.data_loader = None
        del iter_obj
        self.data_loader = data_loader_builder()

    def _next_batch(self):
        """The next batch and the seconds spent waiting for it. Loading leaves this process's
        RNGs as they were: mapping samples in-process (which seeds them per sample) or starting
        loader workers (which draws their base seed) must not shift the model's random stream,
        or a resumed run and a run with another NUM_WORKERS would train differently."""
        start = time.perf_counter()
        with _preserved_rng_state():
            data = next(self._data_loader_iter)
        return data, time.perf_counter() - start

    def run_step(self) -> None:
        assert self.model.training, "[SimpleTrainer] model was changed to eval mode!"
        data, data_time = self._next_batch()

        with _name_iteration_on_divergence(self.iter):
            loss_dict = self.model(data)
        losses = _sum_losses(loss_dict)
        self.optimizer.zero_grad(set_to_none=True)
        losses.backward()
        self.after_backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()

    def _write_metrics(self, loss_dict: Mapping[str, torch.Tensor], data_time: float) -> None:
        if (self.iter + 1) % self.gather_metric_period == 0:
            write_metrics(loss_dict, data_time, self.iter)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.optimizer.load_state_dict(state_dict["optimizer"])


class AMPTrainer(SimpleTrainer):
    """``SimpleTrainer`` under autocast; fp16 uses a GradScaler, bf16 needs none."""

    def __init__(self, model, data_loader, optimizer, gather_metric_period: int = 1,
                 grad_scaler: Optional[torch.amp.GradScaler] = None, precision: torch.dtype = torch.float16):
        if isinstance(model, DistributedDataParallel) and len(model.device_ids or ()) > 1:  # None on CPU
            raise ValueError("AMPTrainer does not support single-process multi-device training")
        if isinstance(model, DataParallel):
            raise ValueError("AMPTrainer does not support DataParallel")
        super().__init__(model, data_loader, optimizer, gather_metric_period)
        self.precision = precision
        self.device_type = module_device_type(model)
        if grad_scaler is None:
            enabled = precision == torch.float16 and self.device_type == "cuda"
            grad_scaler = torch.amp.GradScaler(self.device_type, enabled=enabled)
        self.grad_scaler = grad_scaler

    def run_step(self) -> None:
        assert self.model.training, "[AMPTrainer] model was changed to eval mode!"
        data, data_time = self._next_batch()

        with torch.autocast(self.device_type, dtype=self.precision), _name_iteration_on_divergence(self.iter):
            loss_dict = self.model(data)
            losses = _sum_losses(loss_dict)
        self.optimizer.zero_grad(set_to_none=True)
        self.grad_scaler.scale(losses).backward()
        self.after_backward()
        self._write_metrics(loss_dict, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["grad_scaler"] = self.grad_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])


@contextlib.contextmanager
def _preserved_rng_state():
    """Restore the python, numpy and torch (CPU and current CUDA device) RNG states on exit."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


@contextlib.contextmanager
def _name_iteration_on_divergence(iteration: int):
    """Turn a FloatingPointError raised inside the model (e.g. NaN matching costs of a diverged
    model, before any loss exists) into a NonFiniteLossError that names the iteration."""
    try:
        yield
    except NonFiniteLossError:
        raise
    except FloatingPointError as err:
        raise NonFiniteLossError(f"Training diverged at iteration={iteration}: {err}") from err


def _sum_losses(loss_dict) -> torch.Tensor:
    if isinstance(loss_dict, torch.Tensor):
        return loss_dict
    return sum(loss_dict.values())


def write_metrics(loss_dict: Mapping[str, torch.Tensor], data_time: float, iteration: int,
                  prefix: str = "") -> None:
    """Gather losses from all processes to rank 0, check they are finite, and store them.

    Raises:
        NonFiniteLossError: naming the iteration and every loss value, if the total is not finite.
    """
    metrics = {name: value.detach().float().cpu().item() for name, value in loss_dict.items()}
    metrics["data_time"] = data_time
    all_metrics: List[Dict[str, float]] = comm.gather(metrics)
    if not comm.is_main_process():
        # Every rank checks its own losses so that no process trains on with NaNs.
        _check_finite(metrics, iteration)
        return
    storage = get_event_storage()
    data_time = float(np.max([m.pop("data_time") for m in all_metrics]))
    storage.put_scalar("data_time", data_time)
    averaged = {name: float(np.mean([m[name] for m in all_metrics])) for name in all_metrics[0]}
    _check_finite(averaged, iteration)
    storage.put_scalar(f"{prefix}total_loss", sum(averaged.values()))
    if len(averaged) > 1:
        storage.put_scalars(**averaged)


def _check_finite(losses: Dict[str, float], iteration: int) -> None:
    total = sum(value for name, value in losses.items() if name != "data_time")
    if not math.isfinite(total):
        values = ", ".join(f"{name}={value:.6g}" for name, value in losses.items() if name != "data_time")
        raise NonFiniteLossError(
            f"Loss became infinite or NaN at iteration={iteration}! loss_dict = {{{values}}}"
        )
