"""tools/demo.py and VisualizationDemo with a randomly initialised small config (shapes R18)."""
from __future__ import annotations

import importlib.util
import os
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
    err = capsys.readouterr().err
    assert "1 input image(s) failed" in err and "broken.jpg' (12 bytes): it is truncated, corrupt or not an image" in err
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


# ---- reliability: never write over an input, unique names, one bad image does not stop the rest
def _checksums(folder: Path) -> dict:
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_plan_outputs_mirrors_sub_folders_and_refuses_inputs(tmp_path):
    demo = _demo_main()
    inputs = [str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b" / "x.jpg"), str(tmp_path / "b" / "c" / "y.jpg")]
    out = str(tmp_path / "out")
    assert demo.plan_outputs(out, inputs) == [
        os.path.join(out, "a", "x.jpg"), os.path.join(out, "b", "x.jpg"), os.path.join(out, "b", "c", "y.jpg")]
    for p in inputs:
        Path(p).parent.mkdir(parents=True, exist_ok=True)
        Path(p).write_bytes(b"x")
    with pytest.raises(ValueError, match=r"a/x.jpg' to .*: that is the input file"):
        demo.plan_outputs(str(tmp_path / "a"), inputs[:1])  # --output = the input's own folder
    with pytest.raises(ValueError, match="that is the input file"):
        demo.plan_outputs(inputs[0], inputs[:1])  # --output = the input file
    with pytest.raises(ValueError, match="that is the input file"):
        demo.plan_outputs(str(tmp_path), inputs)  # the common root itself


def test_demo_refuses_to_draw_over_its_inputs(tmp_path, capsys):
    # before: `--input "dir/*.png" --output dir/` replaced the photos with their drawings
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        cv2.imwrite(str(photos / f"p{i}.png"), _scene(48, 64, seed=i))
    before = _checksums(photos)
    with pytest.raises(SystemExit) as exc:
        _demo_main().main(["--config-file", str(CONFIG), "--input", str(photos / "*.png"),
                           "--output", str(photos) + "/", "--opts", *OPTS])
    assert exc.value.code == 1 and "that is the input file" in capsys.readouterr().err
    assert _checksums(photos) == before


def test_same_file_names_in_two_folders_give_two_drawings_and_bad_images_are_skipped(tmp_path, capsys):
    for folder, seed in (("day", 0), ("night", 1)):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "street.png"), _scene(48, 64, seed=seed))
    good = cv2.imencode(".jpg", _scene(48, 64, seed=2))[1].tobytes()
    (tmp_path / "night" / "cut.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    inputs = [str(tmp_path / "day" / "street.png"), str(tmp_path / "night" / "cut.jpg"),
              str(tmp_path / "missing.png"), str(tmp_path / "night" / "street.png")]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        _demo_main().main(["--config-file", str(CONFIG), "--input", *inputs, "--output", str(out),
                           "--task", "semantic", "--opts", *OPTS])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and "2 input image(s) failed" in err
    assert "cut.jpg" in err and "truncated" in err and "missing.png' does not exist" in err
    assert sorted(_checksums(out)) == ["day/street.png", "night/street.png"]  # both drawn, none lost
    day, night = (cv2.imread(str(out / f / "street.png")) for f in ("day", "night"))
    assert day.shape == night.shape == (48, 64, 3) and not np.array_equal(day, night)
