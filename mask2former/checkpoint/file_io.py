"""Low-level checkpoint file I/O shared by every reader and writer of this package.

* :func:`atomic_write`: write a file through a temp file and ``os.replace``, so that a crash
  leaves the previous file intact; a full disk becomes :class:`NoSpaceLeftError` naming the path.
* :func:`remove_partial_files`: the temp files an interrupted write left behind.
* :func:`torch_load_weights_only`: ``torch.load(weights_only=True)`` that also accepts numpy data.

Nothing here imports another module of :mod:`mask2former.checkpoint` but :mod:`.checks`, so the
readers (``loading``, ``safetensors_io``, ``hf_checkpoint``) and ``detection_checkpoint`` all
build on it without an import cycle.
"""
from __future__ import annotations

import errno
import inspect
import logging
import os
import shutil
import tempfile
from typing import IO, Any, Callable, List, Optional

import numpy as np
import torch

from .checks import reading_errors

__all__ = ["NoSpaceLeftError", "atomic_write", "remove_partial_files", "torch_load_weights_only"]

_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class NoSpaceLeftError(OSError):
    """The disk (or quota) of a checkpoint / output folder is full; the message names the path."""


def _is_disk_full(err: BaseException) -> bool:
    """True for ENOSPC / EDQUOT, also when torch's writer hides it behind a RuntimeError
    (``[enforce fail at inline_container.cc] . unexpected pos``, whose context is the OSError)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _NO_SPACE_ERRNOS:
            return True
        err = err.__cause__ or err.__context__
    return False


def _free_bytes(directory: str) -> Optional[int]:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` via a temp file in the same directory and ``os.replace``.

    Either the complete new content or the previous file is visible afterwards; on any error
    the temp file is removed and the error re-raised -- a full disk as :class:`NoSpaceLeftError`
    ("no space left on device" with the path and the free space).
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=_TMP_SUFFIX)
    except OSError as err:
        if err.errno in _NO_SPACE_ERRNOS:
            raise NoSpaceLeftError(err.errno, f"No space left on device: cannot create a file in {directory}") from err
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        if not isinstance(err, NoSpaceLeftError) and _is_disk_full(err):
            free = _free_bytes(directory)
            raise NoSpaceLeftError(
                errno.ENOSPC, f"No space left on device while writing {path} "
                f"({'unknown' if free is None else f'{free / 2**20:.1f} MiB'} free in {directory}); "
                "the previous file, if any, is intact. Free some space (or point OUTPUT_DIR elsewhere) "
                "and resume with --resume.") from err
        raise


_TMP_SUFFIX = ".tmp"


def remove_partial_files(directory: str) -> List[str]:
    """Delete the temp files an interrupted :func:`atomic_write` left in ``directory``
    (``.<name>.<random>.tmp``); returns their paths. Call it before a run starts writing there."""
    if not os.path.isdir(directory):
        return []
    removed = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.startswith(".") and name.endswith(_TMP_SUFFIX) and os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    if removed:
        logging.getLogger(__name__).warning(
            "Removed %d partial file(s) of an interrupted checkpoint write: %s", len(removed), removed)
    return removed



def _numpy_safe_globals() -> List[Any]:
    """What ``torch.load(weights_only=True)`` must additionally allow for numpy arrays."""
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: List[Any] = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: one class per dtype
    if dtypes is not None:
        allowed += [c for c in vars(dtypes).values() if inspect.isclass(c) and issubclass(c, np.dtype)]
    return allowed


def torch_load_weights_only(path: str) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` that also accepts numpy data.

    Raises:
        UnsafePickleError: the file references code; CheckpointError: any other failure (empty,
            text, truncated ...), naming ``path`` and the reason (see :mod:`.checks`).
    """
    with reading_errors(path):
        if hasattr(torch.serialization, "safe_globals"):  # torch >= 2.5
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
        torch.serialization.add_safe_globals(_numpy_safe_globals())
        return torch.load(path, map_location="cpu", weights_only=True)
