"""Lazy loading of the project's compiled extensions: prebuilt module, else a cached JIT build.

:class:`LazyExtension` is what the compiled deformable-attention backends (``ms_deform_attn_cuda``,
``ms_deform_attn_cpu``) share: the extension is found, on first use and once per process, as

1. the prebuilt module (``prebuilt``, compiled by ``pip install -e .`` where it can be), else
2. a ``torch.utils.cpp_extension.load`` build cached under
   ``$MASK2FORMER_EXTENSIONS_DIR`` (default ``~/.cache/mask2former/torch_extensions``) in a
   sub-directory keyed by everything the binary depends on; ``MASK2FORMER_MSDA_JIT=0`` turns
   the JIT build off. torch's build lock makes concurrent first uses wait for one build.

Anything that goes wrong only makes :meth:`LazyExtension.load` return None, with the reason kept
(:attr:`LazyExtension.reason`) and logged once; constructing one never builds anything.
"""
from __future__ import annotations

import importlib
import logging
import os
import re
import threading
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional, Sequence, Tuple, Union

__all__ = ["CACHE_ENV", "JIT_ENV", "LazyExtension", "cache_dir_for", "extensions_root"]

logger = logging.getLogger(__name__)

JIT_ENV = "MASK2FORMER_MSDA_JIT"
CACHE_ENV = "MASK2FORMER_EXTENSIONS_DIR"


def extensions_root() -> Path:
    """Where JIT builds are cached: ``$MASK2FORMER_EXTENSIONS_DIR`` or ``~/.cache/mask2former/torch_extensions``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mask2former" / "torch_extensions")


def cache_dir_for(key: str) -> Path:
    """The build directory of the cache key ``key`` (characters outside ``[A-Za-z0-9_.-]`` become ``_``)."""
    return extensions_root() / re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def jit_enabled() -> bool:
    return os.environ.get(JIT_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class LazyExtension:
    """One compiled extension, loaded on the first :meth:`load` (thread-safe, tried once).

    Args:
        label: for messages ("CUDA", "CPU").
        jit_name: the module name of the JIT build.
        sources: source files of the JIT build.
        prebuilt: importable name of the module ``setup.py`` may have built, or None.
        cache_key: returns the name of the build sub-directory (everything the binary depends on).
        build: ``build(build_directory, verbose) -> module`` (calls ``cpp_extension.load``).
        precondition: raises (e.g. "no CUDA device") when the extension cannot serve here;
            checked before anything is imported or built.
    """

    def __init__(self, *, label: str, jit_name: str, sources: Sequence[Path], prebuilt: Optional[str],
                 cache_key: Callable[[], str], build: Callable[[Path, bool], ModuleType],
                 precondition: Callable[[], None] = lambda: None):
        self.label = label
        self.jit_name = jit_name
        self.sources = tuple(sources)
        self.prebuilt = prebuilt
        self.cache_key = cache_key
        self._build = build
        self._precondition = precondition
        self._lock = threading.Lock()
        self._module: Optional[ModuleType] = None
        self.reason: Optional[str] = None  # why unavailable; None while untried or loaded
        self.tried = False

    def cache_dir(self) -> Path:
        return cache_dir_for(self.cache_key())

    def build(self, build_directory: Optional[Union[str, Path]] = None, verbose: bool = False) -> ModuleType:
        """JIT-compile and import the extension now (raises on failure)."""
        build_dir = Path(build_directory) if build_directory is not None else self.cache_dir()
        build_dir.mkdir(parents=True, exist_ok=True)
        logger.info("Building the %s extension %s in %s (first use only)", self.label, self.jit_name, build_dir)
        return self._build(build_dir, verbose)

    def load(self) -> Optional[ModuleType]:
        """The extension module, or None (reason in :attr:`reason`)."""
        if self.tried:
            return self._module
        with self._lock:
            if not self.tried:
                try:
                    self._module, where = self._find()
                    logger.info("%s extension %s loaded from %s", self.label, self.jit_name, where)
                except Exception as e:  # noqa: BLE001 -- any failure only disables this extension
                    message = " ".join(str(e).split())  # compiler output can be long: keep its end
                    self._module = None
                    self.reason = f"{type(e).__name__}: {message if len(message) < 800 else '...' + message[-800:]}"
                    logger.info("%s extension %s unavailable (%s)", self.label, self.jit_name, self.reason)
                self.tried = True
        return self._module

    def _find(self) -> Tuple[ModuleType, str]:
        self._precondition()
        if self.prebuilt is not None:
            try:
                module = importlib.import_module(self.prebuilt)
                return module, getattr(module, "__file__", self.prebuilt)
            except ImportError as e:
                logger.debug("no prebuilt %s (%s); trying a JIT build", self.prebuilt, e)
        if not jit_enabled():
            prefix = f"no prebuilt {self.prebuilt} and " if self.prebuilt else ""
            raise RuntimeError(f"{prefix}the JIT build is off ({JIT_ENV}=0)")
        build_dir = self.cache_dir()
        return self.build(build_dir), str(build_dir)
