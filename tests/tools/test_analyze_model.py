"""tools/analyze_model.py: parameter counts against the official models, FLOPs against fvcore."""
from __future__ import annotations

import csv
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fvcore.nn import FlopCountAnalysis

from mask2former.config import get_cfg
from mask2former.modeling import build_model

REPO_ROOT = Path(__file__).resolve().parents[2]
SHAPES = "configs/shapes/panoptic-segmentation/maskformer2_R18_bs8_1k.yaml"
R50_PANOPTIC = "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml"

_spec = importlib.util.spec_from_file_location("analyze_model", REPO_ROOT / "tools" / "analyze_model.py")
analyze_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(analyze_model)


def _official_num_parameters(reference_dir: Path, config_path: str) -> int:
    with open(reference_dir / "official_keys" / "index.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["config_path"] == config_path:
                return int(row["num_parameters"])
    raise KeyError(config_path)


def _run(capsys, *args: str) -> str:
    assert analyze_model.main(list(args)) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("config,official", [
    (R50_PANOPTIC, "Mask2Former/configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml"),
    ("configs/coco/panoptic-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml",
     "Mask2Former/configs/coco/panoptic-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml"),
    ("configs/maskformer/ade20k-150/maskformer_R50_bs16_160k.yaml",
     "MaskFormer/configs/ade20k-150/maskformer_R50_bs16_160k.yaml"),
])
def test_parameter_count_matches_the_official_model(reference_dir, capsys, config, official):
    out = _run(capsys, "--config-file", str(REPO_ROOT / config), "--tasks", "parameter",
               "--opts", "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "")
    total = int(re.search(r"Total parameters: (\d+)", out).group(1))
    assert total == _official_num_parameters(reference_dir, official)
    assert "| backbone " in out and "| sem_seg_head " in out


def _fvcore_network_flops(cfg, height: int, width: int) -> float:
    """Plain fvcore FlopCountAnalysis of backbone + head on the padded, normalised image,
    plus the semantic inference product (Q x K x H x W): the dominant post-processing op."""
    model = build_model(cfg).eval()
    div = model.size_divisibility
    padded = torch.rand(1, 3, -(-height // div) * div, -(-width // div) * div)
    with torch.no_grad():
        backbone = FlopCountAnalysis(model.backbone, (padded,)).unsupported_ops_warnings(False)
        features = model.backbone(padded)
        head = FlopCountAnalysis(model.sem_seg_head, (features,)).unsupported_ops_warnings(False)
        total = backbone.total() + head.total()
    queries = cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES
    return total + queries * cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES * height * width


def _check_flops(capsys, config: str, height: int, width: int) -> float:
    opts = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""]
    out = _run(capsys, "--config-file", str(REPO_ROOT / config), "--tasks", "flop",
               "--input-size", f"{height}x{width}", "--opts", *opts)
    total = float(re.search(r"Total GFlops: ([\d.]+)±", out).group(1)) * 1e9
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO_ROOT / config))
    cfg.merge_from_list(opts)
    reference = _fvcore_network_flops(cfg, height, width)
    # The tool also counts attention (fvcore has no formula for scaled_dot_product_attention)
    # and the mask up-sampling of post-processing: a little more, never less.
    assert reference <= total <= reference * 1.03, (total, reference)
    assert "| model " in out and "backbone.res4" in out
    return total


def test_flops_of_a_small_model_match_fvcore(capsys):
    _check_flops(capsys, SHAPES, 128, 160)


@pytest.mark.slow
def test_flops_of_r50_coco_panoptic_at_800x1200_match_fvcore(capsys):
    total = _check_flops(capsys, R50_PANOPTIC, 800, 1200)
    assert 230e9 < total < 290e9  # the paper: 226G averaged over COCO val image sizes


def test_activation_and_structure_from_the_command_line():
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "analyze_model.py"),
                           "--config-file", str(REPO_ROOT / SHAPES), "--tasks", "activation",
                           "structure", "--input-size", "64x96", "--opts", "MODEL.DEVICE", "cpu"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"Total \(Million\) Activations: [\d.]+±0.000", proc.stdout)
    assert "Model Structure:" in proc.stdout and "MultiScaleMaskedTransformerDecoder" in proc.stdout
    assert "Unsupported operator" not in proc.stderr  # fvcore's op warnings are silenced ...
    assert "Warning" not in proc.stderr  # ... and so are tracer / deprecation warnings


def test_bad_arguments_are_named(capsys):
    with pytest.raises(SystemExit):
        analyze_model.main(["--config-file", "nope.yaml", "--tasks", "parameter"])
    assert "nope.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        analyze_model.main(["--config-file", str(REPO_ROOT / SHAPES), "--tasks", "flop",
                            "--input-size", "12by34"])
    assert "12by34" in capsys.readouterr().err
