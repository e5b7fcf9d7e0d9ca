"""tools/plot_metrics.py on generated metrics.json files."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("matplotlib")

REPO_ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("plot_metrics", REPO_ROOT / "tools" / "plot_metrics.py")
plot_metrics = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plot_metrics)


def _write_run(folder: Path, scale: float, resumed: bool = False) -> Path:
    folder.mkdir(parents=True)
    lines = []
    for it in range(19, 200, 20):
        lines.append({"iteration": it, "total_loss": scale * 50 / (it + 1), "loss_ce": 1.0 / (it + 1),
                      "loss_ce_0": 2.0, "loss_mask": 0.5, "loss_dice": 0.7, "lr": 1e-4 * (1 - it / 200),
                      "time": 0.3, "data_time": 0.01})
        if it % 100 == 99:
            lines.append({"iteration": it, "panoptic_seg/PQ": scale * it / 10,
                          "panoptic_seg/PQ_th": 1.0, "sem_seg/mIoU": it / 5})
    if resumed:  # the run restarted at 99: later lines win
        lines.append({"iteration": 99, "total_loss": 123.0})
    with open(folder / "metrics.json", "w") as f:
        f.write("\n".join(json.dumps(x) for x in lines) + "\n\n")
    return folder


def test_load_metrics_merges_iterations_and_later_lines_win(tmp_path):
    series = plot_metrics.load_metrics(str(_write_run(tmp_path / "a", 1.0, resumed=True)))
    assert [it for it, _ in series["total_loss"]] == list(range(19, 200, 20))
    assert dict(series["total_loss"])[99] == 123.0
    assert series["panoptic_seg/PQ"] == [(99, 9.9), (199, 19.9)]
    assert plot_metrics.default_keys([series]) == [
        "total_loss", "loss_ce", "loss_dice", "loss_mask", "lr", "panoptic_seg/PQ", "sem_seg/mIoU"]


def test_smooth_is_a_trailing_mean():
    np.testing.assert_allclose(plot_metrics.smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1, 2, 4, 6])
    np.testing.assert_allclose(plot_metrics.smooth(np.array([1.0, 3.0]), 1), [1, 3])


def test_cli_draws_one_panel_per_key_and_a_legend_per_run(tmp_path):
    run_a = _write_run(tmp_path / "run_a", 1.0)
    run_b = _write_run(tmp_path / "run_b", 2.0)
    out = tmp_path / "plots" / "curves.png"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "plot_metrics.py"), str(run_a),
                           str(run_b / "metrics.json"), "--output", str(out), "--smooth", "3"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "run_a: last iter 199" in proc.stdout and "best panoptic_seg/PQ 39.800 @ 199" in proc.stdout
    img = cv2.imread(str(out))
    assert img.shape == (3 * 360, 3 * 500, 3)  # 7 panels -> 3 rows x 3 columns
    assert img.std() > 10  # not blank

    fig = plot_metrics.plot({"run_a": plot_metrics.load_metrics(str(run_a)),
                             "run_b": plot_metrics.load_metrics(str(run_b))},
                            ["total_loss", "panoptic_seg/PQ"], str(tmp_path / "two.png"))
    assert [ax.get_title() for ax in fig.axes] == ["total_loss", "panoptic_seg/PQ"]
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["run_a", "run_b"]
    np.testing.assert_allclose(fig.axes[1].lines[1].get_ydata(), [19.8, 39.8])


def test_cli_errors_name_the_file_line_or_key(tmp_path, capsys):
    run = _write_run(tmp_path / "run", 1.0)
    with pytest.raises(SystemExit):
        plot_metrics.main([str(run), "--keys", "segm/AP", "-o", str(tmp_path / "x.png")])
    assert "['segm/AP'] not found" in capsys.readouterr().err
    with open(run / "metrics.json", "a") as f:
        f.write("{broken\n")
    with pytest.raises(SystemExit):
        plot_metrics.main([str(run), "-o", str(tmp_path / "x.png")])
    assert "metrics.json:14: not valid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        plot_metrics.main([str(tmp_path / "missing_run")])
    assert "missing_run: no such file" in capsys.readouterr().err
