"""Restricted unpickling of official ``.pkl`` checkpoints (detectron2 model-zoo format).

A ``.pkl`` checkpoint is a pickle of plain containers holding numpy arrays. Pickle can
name any importable callable (``os.system``...), so a plain ``pickle.load`` of an untrusted
file runs arbitrary code. :func:`load_pickle` resolves only the globals such files need:

* containers: ``dict``, ``collections.OrderedDict``, ``list``, ``tuple``, ``set``,
  ``frozenset`` (and ``_codecs.encode``, which protocol-2 pickles use to rebuild ``bytes``);
* numpy: ``ndarray`` (via ``multiarray._reconstruct``, or ``numeric._frombuffer`` for
  protocol 5, under both the numpy 1 ``numpy.core`` and numpy 2 ``numpy._core`` module
  names), ``dtype`` and ``multiarray.scalar``.

Any other global raises :class:`UnsafePickleError` before anything is called. Attribute
state restored by BUILD on allowed objects (the ``_metadata`` of a state-dict OrderedDict,
an ndarray's data) is kept.
"""
from __future__ import annotations

import codecs
import collections
import io
import os
import pickle
from typing import IO, Any, Callable, Dict, Tuple, Union

import numpy as np

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "load_pickle", "loads_pickle", "ALLOWED_GLOBALS"]

_multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # numpy 2 / 1


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global (class / function) outside the allow-list."""


def _reconstruct(subtype, *args):
    # numpy's array constructor hook; ``subtype`` comes from the stream, so pin it.
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"numpy _reconstruct called with subtype {subtype!r}; only numpy.ndarray is allowed")
    return _multiarray._reconstruct(subtype, *args)


def _frombuffer(buf, dtype, shape, order):
    # numpy's protocol-5 array hook: an array viewing an in-band bytes buffer.
    if not isinstance(dtype, np.dtype):
        raise UnsafePickleError(f"numpy _frombuffer called with dtype {dtype!r}; expected a numpy.dtype")
    if dtype.hasobject:
        raise UnsafePickleError("numpy _frombuffer called with an object dtype")
    return np.frombuffer(memoryview(buf), dtype=dtype).reshape(shape, order=order)


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
    if not isinstance(obj, str) or not isinstance(encoding, str):
        raise UnsafePickleError("_codecs.encode is only allowed on (str, encoding)")
    return codecs.encode(obj, encoding, errors)


def _allowed_globals() -> Dict[Tuple[str, str], Callable]:
    allowed: Dict[Tuple[str, str], Callable] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("_codecs", "encode"): _codecs_encode,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for builtins_module in ("builtins", "__builtin__"):  # Python 3 / Python 2 pickles
        for name, obj in (("dict", dict), ("list", list), ("tuple", tuple), ("set", set), ("frozenset", frozenset)):
            allowed[(builtins_module, name)] = obj
    for multiarray in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(multiarray, "_reconstruct")] = _reconstruct
        allowed[(multiarray, "scalar")] = _multiarray.scalar
    for numeric in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(numeric, "_frombuffer")] = _frombuffer
    return allowed


ALLOWED_GLOBALS: Dict[Tuple[str, str], Callable] = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file: IO[bytes], *, source: str = "<stream>", encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self._source = source

    def find_class(self, module: str, name: str) -> Callable:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"Refusing to load {self._source}: it references the global '{module}.{name}', "
                "which is not allowed in a checkpoint (only plain containers and numpy arrays are). "
                "If you trust this file, convert it to a state dict of tensors with a trusted tool."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"Refusing to load {self._source}: it uses pickle persistent ids "
            "(a torch.save archive? load it as a .pth file)"
        )


def loads_pickle(data: bytes, *, source: str = "<bytes>", encoding: str = "latin1") -> Any:
    """Restricted ``pickle.loads``; ``source`` names the data in error messages."""
    return RestrictedUnpickler(io.BytesIO(data), source=source, encoding=encoding).load()


def load_pickle(file: Union[str, os.PathLike, IO[bytes]], *, encoding: str = "latin1") -> Any:
    """Restricted ``pickle.load`` of a path or binary file object.

    ``encoding="latin1"`` reads Python-2 pickles (Caffe2 / Detectron1 model zoo) as
    detectron2 does.

    Raises:
        UnsafePickleError: the file references a global outside the allow-list.
    """
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as f:
            return RestrictedUnpickler(f, source=f"checkpoint file '{os.fspath(file)}'", encoding=encoding).load()
    source = f"checkpoint file '{getattr(file, 'name', '<stream>')}'"
    return RestrictedUnpickler(file, source=source, encoding=encoding).load()
