"""DatasetEvaluator(s), inference_on_dataset, and the result-printing helpers."""

import logging
from collections import OrderedDict

import pytest
import torch
from torch import nn

from mask2former.config import get_cfg
from mask2former.evaluation import (
    DatasetEvaluator,
    DatasetEvaluators,
    flatten_results_dict,
    inference_context,
    inference_on_dataset,
    print_csv_format,
    verify_results,
)


class _Doubler(nn.Module):
    """Returns 2 * x for each input; records its mode and grad state at every call."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.calls = []

    def forward(self, batch):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return [{"value": self.scale * d["x"]} for d in batch]


class _SumEvaluator(DatasetEvaluator):
    def __init__(self, task="sum"):
        self.task = task
        self.resets = 0

    def reset(self):
        self.resets += 1
        self.total = 0.0
        self.count = 0

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            assert not out["value"].requires_grad
            self.total += float(out["value"])
            self.count += 1

    def evaluate(self):
        return {self.task: {"total": self.total, "count": self.count}}


@pytest.mark.parametrize("progress", [True, False])
def test_inference_on_dataset_runs_eval_mode_without_grad(progress):
    model = _Doubler()
    model.train()
    loader = [[{"x": torch.tensor(1.0)}, {"x": torch.tensor(2.0)}], [{"x": torch.tensor(3.5)}]]
    evaluator = _SumEvaluator()
    results = inference_on_dataset(model, loader, evaluator, progress=progress)
    assert results == {"sum": {"total": 13.0, "count": 3}}
    assert model.calls == [(False, False), (False, False)]
    assert model.training  # restored
    assert evaluator.resets == 1


def test_inference_on_dataset_with_list_of_evaluators_and_none():
    model = _Doubler()
    loader = [[{"x": torch.tensor(1.0)}]]
    res = inference_on_dataset(
        model, loader, [_SumEvaluator("a"), _SumEvaluator("b")], progress=False
    )
    assert list(res) == ["a", "b"] and res["b"]["total"] == 2.0
    assert inference_on_dataset(model, loader, None, progress=False) == {}


def test_dataset_evaluators_merge_and_reject_duplicate_keys():
    evals = DatasetEvaluators([_SumEvaluator("a"), _SumEvaluator("b")])
    evals.reset()
    evals.process([{}], [{"value": torch.tensor(4.0)}])
    res = evals.evaluate()
    assert isinstance(res, OrderedDict)
    assert res == {"a": {"total": 4.0, "count": 1}, "b": {"total": 4.0, "count": 1}}

    dup = DatasetEvaluators([_SumEvaluator("a"), _SumEvaluator("a")])
    dup.reset()
    with pytest.raises(KeyError, match="'a'"):
        dup.evaluate()


def test_inference_context_restores_mode_on_error():
    model = _Doubler()
    model.train()
    with pytest.raises(RuntimeError):
        with inference_context(model):
            assert not model.training
            raise RuntimeError("boom")
    assert model.training


def test_print_csv_format_skips_per_class_metrics(caplog):
    results = OrderedDict(sem_seg={"mIoU": 50.123456, "IoU-road": 1.0, "pACC": 90.0})
    with caplog.at_level(logging.INFO, logger="mask2former.evaluation.testing"):
        print_csv_format(results)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "copypaste: Task: sem_seg",
        "copypaste: mIoU,pACC",
        "copypaste: 50.1235,90.0000",
    ]


def test_verify_results():
    cfg = get_cfg()
    results = {"sem_seg": {"mIoU": 50.0}}
    assert verify_results(cfg, results)  # nothing expected
    cfg.TEST.EXPECTED_RESULTS = [["sem_seg", "mIoU", 50.05, 0.1]]
    assert verify_results(cfg, results)
    cfg.TEST.EXPECTED_RESULTS = [["sem_seg", "mIoU", 51.0, 0.1]]
    with pytest.raises(SystemExit):
        verify_results(cfg, results)


def test_flatten_results_dict():
    assert flatten_results_dict({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {
        "a/b": 1,
        "a/c/d": 2,
        "e": 3,
    }
