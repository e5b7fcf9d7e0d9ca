"""Official config files, unmodified, build the official models.

``../shared/reference/official_configs/`` holds the ``config.yaml`` that the official Mask2Former
and MaskFormer training writes for every official config: complete dumps, and for MaskFormer (v1)
without any of the keys that only Mask2Former has (``TRANSFORMER_DECODER_NAME``, ...). Each must
build a model with exactly the official state_dict here, with v1's components recognised from
what the file says (mask2former/config/maskformer_v1.py).
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

import mask2former.data  # noqa: F401  (built-in datasets' metadata, as the engine has it)
from mask2former.config import get_cfg
from mask2former.modeling import META_ARCH_REGISTRY, build_model

REPO_ROOT = Path(__file__).resolve().parents[2]


def _index_rows(reference_dir: Path):
    with open(reference_dir / "official_keys" / "index.tsv", newline="") as f:
        return [r for r in csv.DictReader(f, delimiter="\t") if not r["file"].startswith("video/")]


def _official_keys(path: Path):
    entries = []
    for line in path.read_text().splitlines():
        key, shape, dtype = line.split("\t")
        entries.append((key, tuple(int(s) for s in shape.split(",") if s), dtype))
    return entries


def _build_on_meta(cfg):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)


def test_every_official_dump_builds_the_official_state_dict(reference_dir):
    mismatches = []
    for row in _index_rows(reference_dir):
        dump = reference_dir / "official_configs" / row["file"].replace(".txt", ".yaml")
        cfg = get_cfg()
        cfg.merge_from_file(str(dump))
        model = _build_on_meta(cfg)
        ours = [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()]
        if ours != _official_keys(reference_dir / "official_keys" / row["file"]):
            mismatches.append(row["file"])
    assert not mismatches, f"official dumps building other state_dicts: {mismatches}"


def test_v1_dumps_name_no_v2_key_and_get_v1_components(reference_dir):
    v1_dumps = sorted((reference_dir / "official_configs" / "maskformer").glob("*.yaml"))
    assert len(v1_dumps) == 30
    for dump in v1_dumps:
        raw = yaml.safe_load(dump.read_text())
        assert "TRANSFORMER_DECODER_NAME" not in raw["MODEL"]["MASK_FORMER"], dump.name
        cfg = get_cfg()
        cfg.merge_from_file(str(dump))
        mf = cfg.MODEL.MASK_FORMER
        assert mf.TRANSFORMER_DECODER_NAME == "StandardTransformerDecoder", dump.name
        assert mf.CRITERION == "maskformer", dump.name
        assert mf.TEST.PANOPTIC_REQUIRE_MASK_PROB is False, dump.name


def test_v2_dumps_keep_mask2former_components(reference_dir):
    for dump in sorted((reference_dir / "official_configs").glob("*.yaml")):
        cfg = get_cfg()
        cfg.merge_from_file(str(dump))
        mf = cfg.MODEL.MASK_FORMER
        assert mf.TRANSFORMER_DECODER_NAME == "MultiScaleMaskedTransformerDecoder", dump.name
        assert mf.CRITERION == "mask2former", dump.name
        assert mf.TEST.PANOPTIC_REQUIRE_MASK_PROB is True, dump.name


def test_our_v1_config_copies_resolve_like_the_official_dumps(reference_dir):
    """configs/maskformer/ holds the official v1 files: no project key is needed in them."""
    for row in _index_rows(reference_dir):
        if not row["config_path"].startswith("MaskFormer/"):
            continue
        ours = REPO_ROOT / "configs" / "maskformer" / row["config_path"].split("/configs/", 1)[1]
        assert "[project]" not in ours.read_text(), ours
        dump = reference_dir / "official_configs" / row["file"].replace(".txt", ".yaml")
        a, b = get_cfg(), get_cfg()
        a.merge_from_file(str(ours))
        b.merge_from_file(str(dump))
        for key in ("TRANSFORMER_DECODER_NAME", "CRITERION", "TRANSFORMER_IN_FEATURE"):
            assert a.MODEL.MASK_FORMER[key] == b.MODEL.MASK_FORMER[key], (ours, key)


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_a_file_that_names_its_decoder_or_criterion_keeps_them(tmp_path):
    """Only what the file leaves unsaid is derived."""
    cfg = get_cfg()
    cfg.merge_from_file(_write(tmp_path / "v1_but_m2f_loss.yaml", (
        "MODEL:\n  MASK_FORMER:\n    TRANSFORMER_IN_FEATURE: res5\n    CRITERION: mask2former\n")))
    assert cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME == "StandardTransformerDecoder"
    assert cfg.MODEL.MASK_FORMER.CRITERION == "mask2former"

    cfg = get_cfg()
    cfg.merge_from_file(_write(tmp_path / "explicit.yaml", (
        "MODEL:\n  MASK_FORMER:\n    TRANSFORMER_IN_FEATURE: res5\n"
        "    TRANSFORMER_DECODER_NAME: MultiScaleMaskedTransformerDecoder\n")))
    assert cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME == "MultiScaleMaskedTransformerDecoder"
    assert cfg.MODEL.MASK_FORMER.CRITERION == "mask2former"


def test_a_file_without_model_keys_changes_no_component(tmp_path):
    """An override file merged on top of a Mask2Former config leaves it a Mask2Former config."""
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO_ROOT / "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml"))
    cfg.merge_from_file(_write(tmp_path / "solver.yaml", "SOLVER:\n  MAX_ITER: 10\n"))
    assert cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME == "MultiScaleMaskedTransformerDecoder"
    assert cfg.MODEL.MASK_FORMER.CRITERION == "mask2former"


@pytest.mark.parametrize("rel", [
    "ade20k-150/maskformer_R50_bs16_160k.yaml",
    "coco-panoptic/maskformer_panoptic_R50_bs64_554k.yaml",
])
def test_v1_file_built_by_hand_and_by_dump_give_the_same_model(reference_dir, rel):
    """The same weights give the same outputs from our copy and from the official dump."""
    dump = reference_dir / "official_configs" / "maskformer" / rel.replace("/", "__")
    models = []
    for path in (REPO_ROOT / "configs" / "maskformer" / rel, dump):
        cfg = get_cfg()
        cfg.merge_from_file(str(path))
        cfg.MODEL.DEVICE = "cpu"
        cfg.MODEL.WEIGHTS = ""
        cfg.MODEL.MASK_FORMER.DEC_LAYERS = 2            # small enough for a CPU test,
        cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 1  # the same on both sides
        torch.manual_seed(0)
        models.append(build_model(cfg).eval())
    models[1].load_state_dict(models[0].state_dict())
    image = torch.randint(0, 255, (3, 64, 96), generator=torch.Generator().manual_seed(1)).float()
    with torch.no_grad():
        outs = [m([{"image": image, "height": 64, "width": 96}])[0] for m in models]
    assert outs[0].keys() == outs[1].keys()
    assert torch.equal(outs[0]["sem_seg"], outs[1]["sem_seg"])
    if "panoptic_seg" in outs[0]:
        assert torch.equal(outs[0]["panoptic_seg"][0], outs[1]["panoptic_seg"][0])
        assert outs[0]["panoptic_seg"][1] == outs[1]["panoptic_seg"][1]
