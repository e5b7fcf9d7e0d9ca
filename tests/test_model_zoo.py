"""MODEL_ZOO.md and the published results the engine compares against agree, entry by entry;
official configs get their published numbers as TEST.EXPECTED_RESULTS; verify_results prints the
difference to the paper."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from mask2former.config import get_cfg
from mask2former.evaluation.model_zoo import MODEL_ZOO, TOLERANCE, published_results, zoo_entry
from mask2former.evaluation.testing import apply_published_results, verify_results

REPO = Path(__file__).resolve().parents[1]


def _zoo_md_rows():
    """{config path: {"task/metric": value, "_url": ..., "_model_id": ...}} from MODEL_ZOO.md's tables."""
    rows, header = {}, None
    for line in (REPO / "MODEL_ZOO.md").read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "config":
            header = cells
            continue
        if header is None or set(line) <= set("|-"):
            continue
        config = re.search(r"\]\((configs/[^)]+)\)", cells[0]).group(1)
        assert config not in rows, f"{config} listed twice"
        row = {}
        for name, cell in zip(header, cells):
            key = re.fullmatch(r"`([\w]+/[\w]+)`", name)
            if key and cell != "-":
                row[key.group(1)] = float(cell)
        row["_url"] = re.search(r"\]\((https://[^)]+)\)", cells[header.index("checkpoint")]).group(1)
        row["_model_id"] = cells[header.index("model id")]
        rows[config] = row
    return rows


def test_every_expected_result_matches_model_zoo_md():
    rows = _zoo_md_rows()
    assert len(MODEL_ZOO) == len(rows) == 89  # 63 Mask2Former (incl. 12 video) + 26 MaskFormer
    for entry in MODEL_ZOO:
        assert (REPO / entry.config).is_file(), entry.config
        row = rows[entry.config]
        expected = published_results(entry.config)
        assert {f"{t}/{m}" for t, m, _, _ in expected} == {k for k in row if not k.startswith("_")}, entry.config
        for task, metric, value, tolerance in expected:
            assert row[f"{task}/{metric}"] == value and tolerance == TOLERANCE, (entry.config, task, metric)
        assert row["_url"] == entry.url and row["_model_id"] == entry.model_id
        assert entry.url.endswith(".pkl") and "model_final_" in entry.url


def test_official_yaml_expected_results_match_model_zoo_md():
    """Any TEST.EXPECTED_RESULTS an official YAML sets itself must agree with MODEL_ZOO.md too."""
    rows = _zoo_md_rows()
    for entry in MODEL_ZOO:
        cfg = get_cfg()
        cfg.merge_from_file(str(REPO / entry.config))
        for task, metric, value, _ in cfg.TEST.EXPECTED_RESULTS:
            assert rows[entry.config][f"{task}/{metric}"] == pytest.approx(value), entry.config


def test_published_results_are_applied_to_official_configs_only(tmp_path):
    path = REPO / "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml"
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    cfg.freeze()
    assert apply_published_results(cfg, str(path)) and cfg.is_frozen()
    assert cfg.TEST.EXPECTED_RESULTS == [["panoptic_seg", "PQ", 51.9, TOLERANCE], ["segm", "AP", 41.7, TOLERANCE],
                                         ["sem_seg", "mIoU", 61.7, TOLERANCE]]
    assert zoo_entry("/elsewhere/configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml").model_id == "47430278_4"
    assert not apply_published_results(get_cfg(), str(tmp_path / "my_config.yaml"))  # not an official config
    own = get_cfg()
    own.TEST.EXPECTED_RESULTS = [["sem_seg", "mIoU", 1.0, 0.1]]
    assert not apply_published_results(own, str(path)) and own.TEST.EXPECTED_RESULTS == [["sem_seg", "mIoU", 1.0, 0.1]]


def test_verify_results_prints_the_difference_to_the_paper(caplog):
    path = "configs/cityscapes/semantic-segmentation/maskformer2_R50_bs16_90k.yaml"
    cfg = get_cfg()
    apply_published_results(cfg, path)
    results = {"sem_seg": {"IoU": 78.4, "iIoU": 60.0}}  # 1.0 below 79.4; no TTA run
    with caplog.at_level(logging.INFO, logger="mask2former.evaluation.testing"):
        assert verify_results(cfg, results, config_file=path) is False  # a report, not an exit
    text = caplog.text
    assert "published numbers" in text and "79.40" in text and "78.40" in text and "-1.00" in text
    assert "sem_seg_TTA" in text and "not evaluated" in text and "MISMATCH" in text

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mask2former.evaluation.testing"):
        assert verify_results(cfg, {"sem_seg": {"IoU": 79.6}, "sem_seg_TTA": {"IoU": 82.0}}, config_file=path)
    assert "+0.20" in caplog.text and "-0.20" in caplog.text and "MISMATCH" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mask2former.evaluation.testing"):  # TTA not run: not a mismatch
        assert verify_results(cfg, {"sem_seg": {"IoU": 79.6}}, config_file=path)
    assert "not evaluated" in caplog.text

    cfg.TEST.EXPECTED_RESULTS = [["sem_seg", "IoU", 90.0, 0.1]]  # set by the user: detectron2 semantics
    with pytest.raises(SystemExit):
        verify_results(cfg, results, config_file=path)
