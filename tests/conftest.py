"""Shared pytest fixtures: where the official reference data lives."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(
    os.environ.get("MASK2FORMER_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference")
)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference`` (official outputs and key lists); skips the test if absent."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"official reference data not found at {REFERENCE_DIR}")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def coco_encoder_layout() -> List[str]:
    """KEY VALUE overrides giving a shapes config the COCO configs' pixel-decoder layout: the
    deformable encoder on res3-res5 and an FPN level at 1/4 (the shapes panoptic recipe feeds
    res2-res4 and stops the backbone at res4)."""
    return [
        "MODEL.RESNETS.OUT_FEATURES", '["res2", "res3", "res4", "res5"]',
        "MODEL.SEM_SEG_HEAD.IN_FEATURES", '["res2", "res3", "res4", "res5"]',
        "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES", '["res3", "res4", "res5"]',
    ]


@pytest.fixture(autouse=True)
def _library_logs_reach_caplog():
    """``setup_logger`` (run by trainer tests) stops propagation to the root logger, which is
    where pytest's ``caplog`` listens; let every test start with propagation on."""
    for name in ("mask2former", "fvcore"):
        logging.getLogger(name).propagate = True
    yield
