"""Fixtures for the ``datasets/prepare_*.py`` tests: script loading and a catalog holding the
built-in dataset names registered under a temporary ``$DETECTRON2_DATASETS``."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from mask2former.data import DatasetCatalog, MetadataCatalog
from mask2former.data.datasets import register_all_builtin


@pytest.fixture()
def builtin_catalog() -> Iterator[Callable[[Path], None]]:
    """``register(root)``: registers every built-in dataset name under ``root`` in emptied
    catalogs; the previous catalogs come back after the test."""
    saved = dict(DatasetCatalog.data), dict(MetadataCatalog.data)

    def register(root: Path) -> None:
        DatasetCatalog.data.clear()
        MetadataCatalog.data.clear()
        register_all_builtin(str(root))

    yield register
    DatasetCatalog.data.clear()
    MetadataCatalog.data.clear()
    DatasetCatalog.data.update(saved[0])
    MetadataCatalog.data.update(saved[1])
