"""Helpers shared by the ``prepare_*.py`` scripts: the dataset root, the command line, file
checks with clear errors, bounding boxes, JSON output and an optional process pool.

The scripts import this module as a sibling (``python datasets/prepare_x.py`` puts ``datasets/``
on ``sys.path``); importing it also puts the repository root on ``sys.path`` so that
``mask2former`` is importable without ``pip install``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
from typing import Any, Callable, Iterable, Iterator, List, Sequence

import numpy as np
from PIL import Image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

__all__ = [
    "REPO_ROOT",
    "bbox_xywh",
    "default_root",
    "default_workers",
    "list_files",
    "make_parser",
    "read_array",
    "require_dir",
    "require_file",
    "resolve_root",
    "run_tasks",
    "save_json",
]


def default_root() -> str:
    """``$DETECTRON2_DATASETS``, else ``datasets`` (relative to the working directory)."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def default_workers() -> int:
    """Half the CPU cores (at least 1)."""
    return max(1, (os.cpu_count() or 1) // 2)


def make_parser(description: str, *, workers: bool = True) -> argparse.ArgumentParser:
    """A parser with ``--root`` (and ``--workers``); ``description`` is shown by ``--help``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root",
        default=None,
        help="datasets root folder (default: $DETECTRON2_DATASETS, else ./datasets)",
    )
    if workers:
        parser.add_argument(
            "--workers",
            type=int,
            default=default_workers(),
            help="worker processes; 1 runs in this process (default: half the CPU cores)",
        )
    return parser


def resolve_root(args: argparse.Namespace) -> str:
    """``--root`` if given, else :func:`default_root` (read when the script runs)."""
    return os.path.expanduser(args.root) if args.root else default_root()


def require_dir(path: str, what: str, hint: str = "") -> str:
    """``path`` if it is a folder, else ``FileNotFoundError`` naming it (and ``hint``)."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} folder not found: '{path}'" + (f". {hint}" if hint else ""))
    return path


def require_file(path: str, what: str, hint: str = "") -> str:
    """``path`` if it is a file, else ``FileNotFoundError`` naming it (and ``hint``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: '{path}'" + (f". {hint}" if hint else ""))
    return path


def list_files(folder: str, ext: str, what: str) -> List[str]:
    """Sorted names of the files in ``folder`` ending with ``ext``; error if there are none."""
    require_dir(folder, what)
    names = sorted(f for f in os.listdir(folder) if f.endswith(ext))
    if not names:
        raise FileNotFoundError(f"No *{ext} files in {what} folder '{folder}'")
    return names


def read_array(path: str, what: str) -> np.ndarray:
    """The pixels of an image file as stored (no mode conversion); errors name the file."""
    require_file(path, what)
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except OSError as err:
        raise ValueError(f"Cannot read {what} '{path}': {err}") from err


def bbox_xywh(mask: np.ndarray) -> List[int]:
    """``[x, y, width, height]`` of the pixels set in a non-empty (H, W) mask (inclusive extents)."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if cols.size == 0:
        raise ValueError("bbox of an empty mask")
    x, y = int(cols[0]), int(rows[0])
    return [x, y, int(cols[-1]) - x + 1, int(rows[-1]) - y + 1]


def save_json(obj: Any, path: str) -> None:
    """Write ``obj`` as JSON (creating the parent folder)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def _progress(items: Iterable[Any], total: int, desc: str) -> Iterator[Any]:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional
        return iter(items)
    return iter(tqdm(items, total=total, desc=desc, disable=not sys.stderr.isatty()))


class _Star:
    """``fn(*args)`` as a picklable one-argument callable (for ``Pool.imap``)."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn

    def __call__(self, args: Sequence[Any]) -> Any:
        return self.fn(*args)


def run_tasks(fn: Callable[..., Any], tasks: Sequence[Sequence[Any]], workers: int = 1, desc: str = "") -> List[Any]:
    """``[fn(*t) for t in tasks]``, in order, on ``workers`` processes when ``workers > 1``."""
    star = _Star(fn)
    if workers <= 1 or len(tasks) <= 1:
        return [star(t) for t in _progress(tasks, len(tasks), desc)]
    with mp.Pool(processes=min(workers, len(tasks))) as pool:
        chunksize = max(1, min(100, len(tasks) // (4 * workers)))
        return list(_progress(pool.imap(star, tasks, chunksize=chunksize), len(tasks), desc))

