"""Fixtures for the deploy tests: exports shared by every test of the session."""
from __future__ import annotations

import os
from typing import Dict

import pytest
from deploy_helpers import INPUT_SIZE, tiny_model


@pytest.fixture(scope="session")
def export_root(tmp_path_factory):
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="session")
def static_export(export_root):
    """``static_export(variant)`` -> dict(cfg, model, dir, meta): one ONNX export per variant
    and session (exports take tens of seconds on 2 cores)."""
    from mask2former.deploy.export import export_model

    cache: Dict[str, dict] = {}

    def get(variant: str) -> dict:
        if variant not in cache:
            cfg, model = tiny_model(variant)
            out = os.path.join(str(export_root), variant)
            meta = export_model(cfg, model, out, fmt="onnx", input_size=INPUT_SIZE)
            cache[variant] = {"name": variant, "cfg": cfg, "model": model, "dir": out, "meta": meta}
        return cache[variant]

    return get
