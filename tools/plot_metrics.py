#!/usr/bin/env python
"""Plot loss / learning-rate / evaluation curves from the metrics.json of one or more runs.

Usage:
  python tools/plot_metrics.py output/run_a output/run_b --output curves.png
  python tools/plot_metrics.py output/run_a/metrics.json --keys total_loss lr panoptic_seg/PQ

Each run is an OUTPUT_DIR holding metrics.json (one JSON object per line, as the trainer's
JSONWriter writes it) or the file itself. Lines of the same iteration are merged (training
scalars and evaluation results are written separately); a later line wins, so resumed runs
plot their last values. Default panels: total_loss, the final losses (loss_ce, loss_mask,
loss_dice, ...: keys "loss_*" without a "_<layer>" suffix), lr, and every evaluation headline
found (*/PQ, */SQ, */RQ, */mIoU, */AP, */AP50). One panel per key, one line per run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

_HEADLINE_METRICS = ("PQ", "SQ", "RQ", "mIoU", "AP", "AP50")
Series = Dict[str, List[Tuple[int, float]]]  # key -> [(iteration, value)], sorted


def load_metrics(path: str) -> Series:
    """Read a metrics.json (or the one in a folder) into per-key (iteration, value) series."""
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (expected a run folder with metrics.json "
                                "or the metrics.json itself)")
    by_iter: Dict[int, Dict[str, float]] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict) or "iteration" not in record:
                raise ValueError(f"{path}:{lineno}: expected a JSON object with an 'iteration' key")
            merged = by_iter.setdefault(int(record["iteration"]), {})
            merged.update({k: float(v) for k, v in record.items()
                           if k != "iteration" and isinstance(v, (int, float))
                           and not isinstance(v, bool)})
    series: Series = {}
    for itr in sorted(by_iter):
        for key, value in by_iter[itr].items():
            series.setdefault(key, []).append((itr, value))
    return series


def default_keys(runs: Sequence[Series]) -> List[str]:
    """total_loss, final losses, lr, then evaluation headlines present in any run."""
    present = set().union(*[set(r) for r in runs])
    losses = sorted(k for k in present if k.startswith("loss_") and not re.search(r"_\d+$", k))
    evals = sorted(k for k in present if "/" in k and k.rsplit("/", 1)[1] in _HEADLINE_METRICS)
    return [k for k in ["total_loss", *losses, "lr", *evals] if k in present]


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (1 = no smoothing)."""
    if window <= 1 or len(values) < 2:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (cumsum[idx] - cumsum[start]) / (idx - start)


def plot(runs: Dict[str, Series], keys: Sequence[str], output: str, window: int = 1,
         columns: int = 3):
    """Draw one panel per key into a PNG at ``output``; returns the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = max(1, min(columns, len(keys)))
    rows = math.ceil(len(keys) / columns)
    fig = Figure(figsize=(5.0 * columns, 3.6 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, columns, i + 1)
        for label, series in runs.items():
            if key not in series:
                continue
            its, vals = (np.asarray(v) for v in zip(*series[key]))
            is_eval = "/" in key
            ax.plot(its, vals if is_eval else smooth(vals, window), label=label,
                    marker="o" if is_eval or len(its) < 3 else None, markersize=4)
        ax.set_title(key)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if key == "lr" or key.endswith("_lr"):
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        elif key.startswith("loss") or key == "total_loss":
            values = [v for s in runs.values() for _, v in s.get(key, [])]
            if values and min(values) > 0 and max(values) / min(values) > 50:
                ax.set_yscale("log")
        if ax.lines:
            ax.legend(fontsize="small")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output)
    return fig


def _run_labels(paths: Sequence[str]) -> List[str]:
    """Short legend names: the run folder's name, the full path where names clash."""
    folders = [os.path.normpath(p[:-len("metrics.json")] if p.endswith("metrics.json") else p)
               for p in paths]
    names = [os.path.basename(f) or f for f in folders]
    return [f if names.count(n) > 1 else n for n, f in zip(names, folders)]


def _summary(label: str, series: Series) -> str:
    parts = []
    if "total_loss" in series:
        itr, value = series["total_loss"][-1]
        parts.append(f"last iter {itr}: total_loss {value:.4g}")
    for key in sorted(k for k in series if "/" in k and k.rsplit("/", 1)[1] in _HEADLINE_METRICS):
        itr, value = max(series[key], key=lambda p: p[1])
        parts.append(f"best {key} {value:.3f} @ {itr}")
    return f"{label}: " + ("; ".join(parts) if parts else f"{len(series)} keys")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (with metrics.json) or metrics.json files")
    parser.add_argument("--output", "-o", default="metrics.png", help="PNG to write")
    parser.add_argument("--keys", nargs="+", default=None,
                        help="metrics to plot, one panel each (default: losses, lr, eval headlines)")
    parser.add_argument("--smooth", type=int, default=1,
                        help="moving-average window over training points (default 1: raw)")
    parser.add_argument("--columns", type=int, default=3, help="panels per row")
    args = parser.parse_args(argv)

    runs: Dict[str, Series] = {}
    for label, path in zip(_run_labels(args.runs), args.runs):
        try:
            runs[label] = load_metrics(path)
        except (OSError, ValueError) as err:
            parser.error(str(err))
    keys = args.keys or default_keys(list(runs.values()))
    if not keys:
        parser.error("no metric to plot: the metrics.json files hold no known key "
                     "(pass --keys)")
    available = set().union(*[set(r) for r in runs.values()])
    missing = [k for k in keys if k not in available]
    if missing:
        parser.error(f"--keys {missing} not found in any run; available: {sorted(available)}")
    plot(runs, keys, args.output, window=args.smooth, columns=args.columns)
    for label, series in runs.items():
        print(_summary(label, series))
    print(f"Wrote {args.output} ({len(keys)} panels: {', '.join(keys)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
