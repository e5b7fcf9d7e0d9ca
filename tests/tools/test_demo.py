"""tools/demo.py and VisualizationDemo with a randomly initialised small config (shapes R18)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from mask2former.config import get_cfg  # noqa: E402
from mask2former.engine.visualization_demo import VisualizationDemo, choose_task  # noqa: E402
from mask2former.structures import Instances  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = REPO_ROOT / "configs" / "shapes" / "panoptic-segmentation" / "maskformer2_R18_bs8_1k.yaml"
# random weights: keep every segment so that something is drawn
OPTS = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
        "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.0",
        "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", "0.0"]


def _scene(height: int, width: int, seed: int) -> np.ndarray:
    """A BGR picture: gradient background with a few filled shapes."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([xx * 200 // width, yy * 200 // height, np.full_like(xx, 90)], axis=2).astype(np.uint8)
    for _ in range(3):
        center = (int(rng.randint(10, width - 10)), int(rng.randint(10, height - 10)))
        cv2.circle(img, center, int(rng.randint(6, 20)), tuple(int(c) for c in rng.randint(0, 255, 3)), -1)
    return img


def _demo_main():
    spec = importlib.util.spec_from_file_location("demo_tool", REPO_ROOT / "tools" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "demo.py"),
                           "--config-file", str(CONFIG), *args, "--opts", *OPTS],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)


def test_choose_task_prefers_panoptic_then_instances_then_semantic():
    assert choose_task({"sem_seg": 0, "instances": 0, "panoptic_seg": 0}) == "panoptic"
    assert choose_task({"sem_seg": 0, "instances": 0}) == "instance"
    assert choose_task({"sem_seg": 0}) == "semantic"
    assert choose_task({"sem_seg": 0, "panoptic_seg": 0}, "semantic") == "semantic"
    with pytest.raises(ValueError, match="INSTANCE_ON"):
        choose_task({"sem_seg": 0}, "instance")
    with pytest.raises(ValueError, match="Nothing to draw"):
        choose_task({})


def test_visualization_demo_draws_each_task_at_the_input_size():
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG))
    cfg.merge_from_list(OPTS)
    torch.manual_seed(0)
    image = _scene(90, 120, seed=0)
    for task in ("panoptic", "instance", "semantic"):
        demo = VisualizationDemo(cfg, task=task)
        predictions, drawing = demo.run_on_image(image)
        assert set(predictions) == {"sem_seg", "panoptic_seg", "instances"}
        out = drawing.get_image()
        assert out.shape == (90, 120, 3)
        if task == "semantic":  # every pixel has a class: the whole picture is tinted
            assert np.abs(out.astype(int) - image[:, :, ::-1]).mean() > 10


def test_confidence_threshold_filters_instances():
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG))
    cfg.merge_from_list(OPTS)
    demo = VisualizationDemo(cfg, task="instance", confidence_threshold=0.5)
    inst = Instances((40, 50))
    inst.pred_masks = torch.zeros(3, 40, 50, dtype=torch.bool)
    inst.pred_masks[:, 5:30, 5:30] = True
    inst.scores = torch.tensor([0.9, 0.2, 0.6])
    inst.pred_classes = torch.tensor([0, 1, 2])
    demo.predictor = lambda image: {"instances": inst}
    _, drawing = demo.run_on_image(np.zeros((40, 50, 3), np.uint8))
    assert sorted(t.get_text() for t in drawing.ax.texts) == ["circle 90%", "triangle 60%"]


@pytest.mark.slow
def test_demo_cli_on_images_and_video(tmp_path):
    sizes = [(96, 128), (80, 100)]
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), _scene(h, w, seed=i))
    out_dir = tmp_path / "out"
    proc = _run_demo("--input", str(tmp_path / "img*.png"), "--output", str(out_dir), "--task", "semantic")
    assert proc.returncode == 0, proc.stderr
    for i, (h, w) in enumerate(sizes):
        drawn = cv2.imread(str(out_dir / f"img{i}.png"))
        assert drawn.shape == (h, w, 3)
        assert np.abs(drawn.astype(int) - _scene(h, w, seed=i)).mean() > 10  # results drawn

    video_in = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video_in), cv2.VideoWriter_fourcc(*"mp4v"), 5, (80, 64))
    for i in range(4):
        writer.write(np.roll(_scene(64, 80, seed=3), 4 * i, axis=1))
    writer.release()
    video_out = tmp_path / "vis" / "clip_vis.mp4"
    proc = _run_demo("--video-input", str(video_in), "--output", str(video_out))
    assert proc.returncode == 0, proc.stderr
    video = cv2.VideoCapture(str(video_out))
    frames = []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        frames.append(frame)
    video.release()
    assert len(frames) == 4 and frames[0].shape == (64, 80, 3)


def test_demo_errors_name_the_bad_input(tmp_path, capsys):
    demo = _demo_main()
    (tmp_path / "broken.jpg").write_text("not an image")
    with pytest.raises(SystemExit) as exc:
        demo.main(["--config-file", str(CONFIG), "--input", str(tmp_path / "broken.jpg"),
                   "--output", str(tmp_path / "out.png"), "--opts", *OPTS])
    assert exc.value.code == 1
    assert "broken.jpg' cannot be read as an image" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        demo.main(["--config-file", str(CONFIG), "--input", str(tmp_path / "*.png"),
                   "--output", str(tmp_path), "--opts", *OPTS])
    assert "matches no file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        demo.main(["--config-file", str(CONFIG), "--video-input", str(tmp_path / "none.mp4"),
                   "--output", str(tmp_path), "--opts", *OPTS])
    assert "none.mp4' does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        demo.main(["--config-file", str(CONFIG), "--input", "a.png", "--webcam"])
    assert exc.value.code == 2 and "exactly one of" in capsys.readouterr().err


def test_demo_webcam_without_camera_says_so():
    if cv2.VideoCapture(0).isOpened():
        pytest.skip("this machine has a camera")
    demo = _demo_main()
    with pytest.raises(SystemExit, match="no camera could be opened"):
        demo.main(["--config-file", str(CONFIG), "--webcam", "--opts", *OPTS])
