"""Global registries of datasets (``DatasetCatalog``) and their metadata (``MetadataCatalog``).

Same semantics as detectron2: a dataset is registered as a zero-argument function returning a
``list[dict]`` in detectron2's standard dataset-dict format, and is only loaded when requested.
"""
from __future__ import annotations

import logging
import types
from collections import UserDict
from typing import Any, Callable, Dict, List

__all__ = ["DatasetCatalog", "MetadataCatalog", "Metadata"]


class _DatasetCatalog(UserDict):
    """Maps a dataset name to a function that returns its list of dataset dicts."""

    def register(self, name: str, func: Callable[[], List[dict]]) -> None:
        """Register ``func`` (no arguments, returns ``list[dict]``) under ``name``."""
        if not callable(func):
            raise TypeError(f"DatasetCatalog.register('{name}', func): func must be callable, got {type(func)}")
        if name in self:
            raise AssertionError(f"Dataset '{name}' is already registered!")
        self[name] = func

    def get(self, name: str) -> List[dict]:  # type: ignore[override]
        """Call the registered function and return its dataset dicts."""
        try:
            func = self[name]
        except KeyError as err:
            raise KeyError(
                f"Dataset '{name}' is not registered! Available datasets are: {', '.join(self.keys())}"
            ) from err
        return func()

    def list(self) -> List[str]:
        """Names of all registered datasets."""
        return list(self.keys())

    def remove(self, name: str) -> None:
        """Unregister ``name`` (KeyError if it is not registered)."""
        self.pop(name)

    def __str__(self) -> str:
        return f"DatasetCatalog(registered datasets: {', '.join(self.keys())})"

    __repr__ = __str__


DatasetCatalog = _DatasetCatalog()
DatasetCatalog.__doc__ = _DatasetCatalog.__doc__


class Metadata(types.SimpleNamespace):
    """Attribute bag for one dataset; a value, once set, cannot be changed to a different one."""

    name: str = "N/A"

    _RENAMED = {
        "class_names": "thing_classes",
        "dataset_id_to_contiguous_id": "thing_dataset_id_to_contiguous_id",
        "stuff_class_names": "stuff_classes",
    }

    def __getattr__(self, key: str) -> Any:
        if key in self._RENAMED:
            logging.getLogger(__name__).warning(
                "Metadata '%s' was renamed to '%s'!", key, self._RENAMED[key]
            )
            return getattr(self, self._RENAMED[key])
        if len(self.__dict__) > 1:
            raise AttributeError(
                f"Attribute '{key}' does not exist in the metadata of dataset '{self.name}'. "
                f"Available keys are {sorted(self.__dict__.keys())}."
            )
        raise AttributeError(
            f"Attribute '{key}' does not exist in the metadata of dataset '{self.name}': metadata is empty."
        )

    def __setattr__(self, key: str, val: Any) -> None:
        if key in self._RENAMED:
            logging.getLogger(__name__).warning(
                "Metadata '%s' was renamed to '%s'!", key, self._RENAMED[key]
            )
            key = self._RENAMED[key]
        try:
            oldval = self.__dict__[key]
        except KeyError:
            super().__setattr__(key, val)
            return
        if not _same_value(oldval, val):
            raise AssertionError(
                f"Attribute '{key}' in the metadata of '{self.name}' cannot be set to a different "
                f"value!\n{oldval} != {val}"
            )

    def as_dict(self) -> Dict[str, Any]:
        """A shallow copy of all attributes."""
        return dict(self.__dict__)

    def set(self, **kwargs: Any) -> "Metadata":
        """Set several attributes at once; returns self."""
        for k, v in kwargs.items():
            setattr(self, k, v)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        """Like ``getattr(self, key)``, returning ``default`` when missing."""
        try:
            return getattr(self, key)
        except AttributeError:
            return default


def _same_value(a: Any, b: Any) -> bool:
    try:
        result = a == b
        if isinstance(result, bool):
            return result
        return bool(getattr(result, "all", lambda: result)())
    except Exception:  # noqa: BLE001 - incomparable values count as different
        return a is b


class _MetadataCatalog(UserDict):
    """Maps a dataset name to its ``Metadata``; ``get`` creates an empty one on first use."""

    def get(self, name: str) -> Metadata:  # type: ignore[override]
        """The metadata of ``name`` (created empty if it does not exist yet)."""
        assert len(name)
        r = super().get(name, None)
        if r is None:
            r = self[name] = Metadata(name=name)
        return r

    def list(self) -> List[str]:
        """Names of all datasets that have metadata."""
        return list(self.keys())

    def remove(self, name: str) -> None:
        """Drop the metadata of ``name``."""
        self.pop(name)

    def __str__(self) -> str:
        return f"MetadataCatalog(registered metadata: {', '.join(self.keys())})"

    __repr__ = __str__


MetadataCatalog = _MetadataCatalog()
MetadataCatalog.__doc__ = _MetadataCatalog.__doc__
