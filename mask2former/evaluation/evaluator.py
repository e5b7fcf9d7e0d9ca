"""The evaluator interface and ``inference_on_dataset`` (run a model over a loader, then score)."""

from __future__ import annotations

import datetime
import logging
import time
from collections import OrderedDict, abc
from contextlib import ExitStack, contextmanager
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import torch
from torch import nn

from ..utils import comm

__all__ = ["DatasetEvaluator", "DatasetEvaluators", "inference_on_dataset", "inference_context"]

logger = logging.getLogger(__name__)


class DatasetEvaluator:
    """Accumulates (input, output) pairs with :meth:`process`, then scores them in :meth:`evaluate`.

    ``evaluate`` returns ``{task_name: {metric_name: value}}`` on the main process (it may
    return None on the other processes of a distributed run).
    """

    def reset(self) -> None:
        """Forget everything processed so far; called before each round of evaluation."""

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Record one batch: ``inputs`` as given to the model, ``outputs`` as it returned."""

    def evaluate(self) -> Optional[Dict[str, Dict[str, float]]]:
        """Summarise everything processed since the last :meth:`reset`."""
        return None


class DatasetEvaluators(DatasetEvaluator):
    """Runs several evaluators side by side and merges their result dicts."""

    def __init__(self, evaluators: Sequence[DatasetEvaluator]):
        super().__init__()
        self._evaluators = list(evaluators)

    def reset(self) -> None:
        for evaluator in self._evaluators:
            evaluator.reset()

    def process(self, inputs, outputs) -> None:
        for evaluator in self._evaluators:
            evaluator.process(inputs, outputs)

    def evaluate(self) -> "OrderedDict[str, Dict[str, float]]":
        results: "OrderedDict[str, Dict[str, float]]" = OrderedDict()
        for evaluator in self._evaluators:
            result = evaluator.evaluate()
            if not comm.is_main_process() or result is None:
                continue
            for task, metrics in result.items():
                if task in results:
                    raise KeyError(
                        f"Two evaluators produce results under the same key {task!r} "
                        f"(the second is {type(evaluator).__name__})"
                    )
                results[task] = metrics
        return results


@contextmanager
def inference_context(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the duration of the block, then restore its mode."""
    training_mode = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training_mode)


def inference_on_dataset(
    model: Any,
    data_loader: Iterable,
    evaluator: Union[DatasetEvaluator, Sequence[DatasetEvaluator], None],
    *,
    progress: bool = True,
) -> Dict[str, Dict[str, float]]:
    """Run ``model`` on every batch of ``data_loader`` (eval mode, no grad) and score it.

    Args:
        model: called as ``model(inputs)`` for each batch; an ``nn.Module`` is put in eval mode
            for the run and restored afterwards.
        data_loader: an iterable with a ``len()``; each element is a model input (a list of
            dicts in detectron2's format).
        evaluator: a :class:`DatasetEvaluator`, a list of them, or None (only time the model).
        progress: show a tqdm progress bar on the main process.

    Returns:
        ``evaluator.evaluate()``, or ``{}`` where that is None (non-main processes).
    """
    num_devices = comm.get_world_size()
    total = len(data_loader)  # type: ignore[arg-type]  # a test loader has a fixed length
    logger.info("Start inference on %d batches", total)

    if evaluator is None:
        evaluator = DatasetEvaluators([])
    elif isinstance(evaluator, abc.MutableSequence):
        evaluator = DatasetEvaluators(evaluator)
    evaluator.reset()

    num_warmup = min(5, total - 1)
    start_time = time.perf_counter()
    total_compute_time = 0.0
    bar = _progress_bar(total) if progress and comm.is_main_process() else None
    last_log = time.perf_counter()
    with ExitStack() as stack:
        if bar is not None:
            stack.callback(bar.close)
        if isinstance(model, nn.Module):
            stack.enter_context(inference_context(model))
        stack.enter_context(torch.no_grad())
        for idx, inputs in enumerate(data_loader):
            if idx == num_warmup:  # the first batches are slow (allocation, cudnn autotune)
                start_time = time.perf_counter()
                total_compute_time = 0.0

            start_compute_time = time.perf_counter()
            outputs = model(inputs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            total_compute_time += time.perf_counter() - start_compute_time
            evaluator.process(inputs, outputs)

            iters_after_start = idx + 1 - num_warmup * int(idx >= num_warmup)
            seconds_per_batch = total_compute_time / iters_after_start
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{seconds_per_batch:.4f} s/batch", refresh=False)
            elif (
                idx >= num_warmup * 2 or seconds_per_batch > 5
            ) and time.perf_counter() - last_log > 5:
                last_log = time.perf_counter()
                elapsed_per_batch = (time.perf_counter() - start_time) / iters_after_start
                eta = datetime.timedelta(seconds=int(elapsed_per_batch * (total - idx - 1)))
                logger.info(
                    "Inference done %d/%d. %.4f s / batch. ETA=%s",
                    idx + 1,
                    total,
                    seconds_per_batch,
                    eta,
                )

    # Time of this worker only (before any synchronisation inside evaluate()).
    total_time = time.perf_counter() - start_time
    timed = max(total - num_warmup, 1)
    logger.info(
        "Total inference time: %s (%.6f s / batch per device, on %d devices)",
        datetime.timedelta(seconds=total_time),
        total_time / timed,
        num_devices,
    )
    logger.info(
        "Total inference pure compute time: %s (%.6f s / batch per device, on %d devices)",
        datetime.timedelta(seconds=int(total_compute_time)),
        total_compute_time / timed,
        num_devices,
    )

    results = evaluator.evaluate()
    return {} if results is None else results


def _progress_bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc="inference", dynamic_ncols=True, leave=False)
