"""Every official config builds a model with exactly the official state_dict and parameter count."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch

from mask2former.config import get_cfg
from mask2former.modeling.build import META_ARCH_REGISTRY
import mask2former.modeling  # noqa: F401  (registers every part)

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = Path(os.environ.get("MASK2FORMER_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference"))
INDEX = REFERENCE_DIR / "official_keys" / "index.tsv"


def _our_config_path(official_path: str):
    for prefix, ours in (("Mask2Former/configs/", "configs/"), ("MaskFormer/configs/", "configs/maskformer/")):
        if official_path.startswith(prefix):
            return REPO_ROOT / ours / official_path[len(prefix):]
    raise ValueError(official_path)


def _rows():
    if not INDEX.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason="no reference data"))]
    with open(INDEX) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [pytest.param(r, id=r["file"][:-4]) for r in rows]


def _official_entries(key_file):
    entries = []
    for line in key_file.read_text().splitlines():
        key, shape, dtype = line.split("\t")
        entries.append((key, tuple(int(s) for s in shape.split(",") if s), dtype))
    return entries


@pytest.mark.parametrize("row", _rows())
def test_state_dict_and_parameter_count_match_official(reference_dir, row):
    cfg = get_cfg()
    cfg.merge_from_file(str(_our_config_path(row["config_path"])))
    assert cfg.MODEL.META_ARCHITECTURE == row["meta_architecture"]
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == int(row["num_classes"])
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    ours = [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()]
    official = _official_entries(reference_dir / "official_keys" / row["file"])
    assert len(ours) == int(row["num_state_dict_entries"])
    assert ours == official
    assert sum(p.numel() for p in model.parameters()) == int(row["num_parameters"])
