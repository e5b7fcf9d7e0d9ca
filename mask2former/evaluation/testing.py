"""Logging and checking of evaluation results (``{task: {metric: value}}`` dicts)."""

from __future__ import annotations

import logging
import pprint
import sys
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from tabulate import tabulate

from .model_zoo import published_results

__all__ = [
    "apply_published_results",
    "compare_with_expected",
    "create_small_table",
    "flatten_results_dict",
    "format_comparison",
    "print_csv_format",
    "verify_results",
]

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


def compare_with_expected(expected_results, results: Mapping) -> Tuple[List[Tuple], bool]:
    """Rows ``(task, metric, expected, actual or None, difference or None, ok)`` for
    ``[[task, metric, value, tolerance], ...]`` against ``{task: {metric: value}}``; and whether
    all are within tolerance."""
    rows, ok = [], True
    for entry in expected_results:
        if len(entry) != 4:
            raise ValueError(
                f"TEST.EXPECTED_RESULTS entries must be [task, metric, value, tolerance], got {entry!r}"
            )
        task, metric, expected, tolerance = entry
        task_results = results.get(task, {})
        actual = task_results.get(metric, None) if isinstance(task_results, Mapping) else None
        good = actual is not None and bool(np.isfinite(actual)) and abs(actual - expected) <= tolerance
        ok = ok and good
        diff = None if actual is None else float(actual) - float(expected)
        rows.append((task, metric, float(expected), None if actual is None else float(actual), diff, good))
    return rows, ok


def format_comparison(rows: List[Tuple]) -> str:
    """The expected-vs-actual table of :func:`compare_with_expected` (pipe format)."""
    table = [(t, m, f"{e:.2f}", "-" if a is None else f"{a:.2f}", "-" if d is None else f"{d:+.2f}",
              "ok" if good else ("not evaluated" if a is None else "MISMATCH")) for t, m, e, a, d, good in rows]
    return tabulate(table, headers=["task", "metric", "expected", "actual", "difference", ""], tablefmt="pipe",
                    disable_numparse=True)


def verify_results(cfg, results: Mapping, *, config_file: Optional[str] = None) -> bool:
    """Check ``results`` against ``cfg.TEST.EXPECTED_RESULTS`` (``[[task, metric, value, tol]]``).

    Logs the expected-vs-actual table. Returns True when all match (or nothing is expected). A
    mismatch with expectations the user set logs an error and exits the process with status 1,
    as detectron2 does; when the expectations are the published numbers of ``config_file``
    (:func:`apply_published_results`), the table is the report and False is returned.
    """
    expected_results = cfg.TEST.EXPECTED_RESULTS
    if not len(expected_results):
        return True
    rows, ok = compare_with_expected(expected_results, results)
    published = config_file is not None and [list(e) for e in expected_results] == published_results(config_file)
    if published:  # e.g. the multi-scale numbers when TEST.AUG is off: reported, not a mismatch
        ok = all(good for *_, actual, _, good in rows if actual is not None)
    title = "Results vs the published numbers of the official checkpoint" if published else "Expected results"
    logger.info("%s:\n%s", title, format_comparison(rows))
    if ok:
        logger.info("Results verification passed.")
        return True
    if published:
        logger.warning("Results differ from the published numbers by more than their tolerance (see above).")
        return False
    logger.error("Result verification failed!")
    logger.error("Expected Results: %s", expected_results)
    logger.error("Actual Results: %s", pprint.pformat(results))
    sys.exit(1)


def apply_published_results(cfg, config_file: Optional[str]) -> bool:
    """Fill ``cfg.TEST.EXPECTED_RESULTS`` with the published numbers of ``config_file`` (a config
    of this repo, see :mod:`.model_zoo`) when the config sets none. The official YAML files are
    left as released; this is how ``--eval-only`` prints the difference to the paper.

    Returns True when it filled them in.
    """
    if not config_file or len(cfg.TEST.EXPECTED_RESULTS):
        return False
    entries = published_results(config_file)
    if not entries:
        return False
    frozen = cfg.is_frozen()
    cfg.defrost()
    cfg.TEST.EXPECTED_RESULTS = entries
    if frozen:
        cfg.freeze()
    return True


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
