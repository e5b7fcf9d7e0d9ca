"""Logging and checking of evaluation results (``{task: {metric: value}}`` dicts)."""

from __future__ import annotations

import logging
import pprint
import sys
from collections.abc import Mapping
from typing import Any, Dict

import numpy as np
from tabulate import tabulate

__all__ = ["print_csv_format", "verify_results", "flatten_results_dict", "create_small_table"]

logger = logging.getLogger(__name__)


def print_csv_format(results: Mapping) -> None:
    """Log the main metrics of each task as comma-separated lines, easy to paste in a sheet.

    Per-category metrics (names containing ``-``, such as ``IoU-person``) are left out.
    """
    if not isinstance(results, Mapping) or not results:
        logger.info("copypaste: no results to print (got %r)", results)
        return
    for task, res in results.items():
        if not isinstance(res, Mapping):
            logger.info("copypaste: %s=%s", task, res)
            continue
        important = [(k, v) for k, v in res.items() if "-" not in k]
        logger.info("copypaste: Task: %s", task)
        logger.info("copypaste: " + ",".join(k for k, _ in important))
        logger.info("copypaste: " + ",".join(f"{float(v):.4f}" for _, v in important))


def verify_results(cfg, results: Mapping) -> bool:
    """Check ``results`` against ``cfg.TEST.EXPECTED_RESULTS`` (``[[task, metric, value, tol]]``).

    Returns True when all match (or nothing is expected); logs the mismatch and exits the
    process with status 1 otherwise, as detectron2 does.
    """
    expected_results = cfg.TEST.EXPECTED_RESULTS
    if not len(expected_results):
        return True
    ok = True
    for entry in expected_results:
        if len(entry) != 4:
            raise ValueError(
                f"TEST.EXPECTED_RESULTS entries must be [task, metric, value, tolerance], got {entry!r}"
            )
        task, metric, expected, tolerance = entry
        actual = results.get(task, {}).get(metric, None)
        if actual is None or not np.isfinite(actual) or abs(actual - expected) > tolerance:
            ok = False
    if ok:
        logger.info("Results verification passed.")
        return True
    logger.error("Result verification failed!")
    logger.error("Expected Results: %s", expected_results)
    logger.error("Actual Results: %s", pprint.pformat(results))
    sys.exit(1)


def flatten_results_dict(results: Mapping) -> Dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}`` (any depth)."""
    flat: Dict[str, Any] = {}
    for k, v in results.items():
        if isinstance(v, Mapping):
            for kk, vv in flatten_results_dict(v).items():
                flat[f"{k}/{kk}"] = vv
        else:
            flat[k] = v
    return flat


def create_small_table(small_dict: Mapping[str, float]) -> str:
    """A one-row pipe table with the dict's keys as headers (values with 3 decimals)."""
    keys, values = tuple(zip(*small_dict.items())) if small_dict else ((), ())
    return tabulate(
        [values],
        headers=keys,
        tablefmt="pipe",
        floatfmt=".3f",
        stralign="center",
        numalign="center",
    )
