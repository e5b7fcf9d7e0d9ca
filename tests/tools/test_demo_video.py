"""tools/demo_video.py and draw_video_predictions: one colour per track over the frames; the
tool end to end on a generated tiny clip with a randomly initialised small video model."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from mask2former.engine.video_predictor import draw_video_predictions  # noqa: E402
from mask2former.utils.catalog import MetadataCatalog  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = sorted((REPO_ROOT / "configs" / "shapes" / "video-instance-segmentation").glob("*.yaml"))[0]
TINY = ["MODEL.WEIGHTS", "", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
        "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "1", "MODEL.MASK_FORMER.HIDDEN_DIM", "32",
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8", "MODEL.MASK_FORMER.DIM_FEEDFORWARD", "64",
        "MODEL.MASK_FORMER.DEC_LAYERS", "3", "INPUT.MIN_SIZE_TEST", "48", "INPUT.MAX_SIZE_TEST", "96"]
H, W, T = 40, 48, 3  # the generated clip
DH, DW = 160, 200  # the drawing test (large enough for the labels to cover little of a track)


def _square(y, x, size=36):
    m = np.zeros((DH, DW), bool)
    m[y:y + size, x:x + size] = True
    return m


def _track_color(drawn: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The most frequent colour of the drawing inside ``mask``'s interior (not the outline or
    the label text)."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    colors, counts = np.unique(drawn[inner].reshape(-1, 3), axis=0, return_counts=True)
    return colors[counts.argmax()].astype(np.float64)


def test_each_track_keeps_one_colour():
    frames = [np.full((DH, DW, 3), 128, np.uint8) for _ in range(T)]
    # track 0 jumps across the frame (no overlap between frames); track 1 is absent in frame 1;
    # track 2 scores below the threshold
    t0 = [_square(10, 10), _square(110, 150), _square(10, 150)]
    t1 = [_square(60, 60), np.zeros((DH, DW), bool), _square(70, 80)]
    t2 = [_square(110, 4)] * T
    predictions = {"image_size": (DH, DW), "pred_scores": [0.9, 0.8, 0.2], "pred_labels": [0, 1, 2],
                   "pred_masks": [torch.from_numpy(np.stack(t)) for t in (t0, t1, t2)]}
    drawn = draw_video_predictions(frames, predictions, MetadataCatalog.get("shapes_video_val"), 0.5)
    assert len(drawn) == T and all(d.shape == (DH, DW, 3) for d in drawn)
    c0 = [_track_color(drawn[t], t0[t]) for t in range(T)]
    c1 = [_track_color(drawn[t], t1[t]) for t in (0, 2)]
    for colors in (c0, c1):
        assert all(np.abs(c - colors[0]).max() <= 3 for c in colors), colors
        assert np.abs(colors[0] - 128).max() > 20  # the track is drawn
    assert np.abs(c0[0] - c1[0]).max() > 10  # two tracks, two colours
    assert np.abs(_track_color(drawn[1], t1[0]) - 128).max() <= 3  # absent in frame 1
    assert np.abs(_track_color(drawn[0], t2[0]) - 128).max() <= 3  # below the threshold


@pytest.fixture()
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _demo_video():
    spec = importlib.util.spec_from_file_location("demo_video", REPO_ROOT / "tools" / "demo_video.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    """4 frames of a disc moving over a gradient, as JPEG files."""
    folder = tmp_path / "frames"
    folder.mkdir()
    yy, xx = np.mgrid[0:H, 0:W]
    for t in range(4):
        img = np.stack([xx * 4, yy * 5, np.full_like(xx, 90)], axis=2).astype(np.uint8)
        cv2.circle(img, (10 + 8 * t, 20), 7, (20, 200, 240), -1)
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), img)
    return folder


def test_demo_video_on_a_folder_of_frames(clip: Path, tmp_path: Path, one_thread):
    out = tmp_path / "out"
    code = _demo_video().main(["--config-file", str(CONFIG), "--input", str(clip), "--output", str(out),
                               "--save-frames", "--confidence-threshold", "0", "--opts", *TINY])
    assert code == 0
    assert sorted(p.name for p in out.glob("*.png")) == [f"{t:05d}.png" for t in range(4)]
    drawn = cv2.imread(str(out / "00000.png"))
    original = cv2.imread(str(clip / "00000.jpg"))
    assert drawn.shape == original.shape and np.abs(drawn.astype(int) - original).max() > 30  # tracks drawn
    video = cv2.VideoCapture(str(out / "visualization.mp4"))
    count = 0
    while True:
        ok, frame = video.read()
        if not ok:
            break
        assert frame.shape == (H, W, 3)
        count += 1
    video.release()
    assert count == 4


def test_demo_video_on_a_video_file(clip: Path, tmp_path: Path, one_thread):
    mp4 = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (W, H), True)
    for path in sorted(clip.glob("*.jpg")):
        writer.write(cv2.imread(str(path)))
    writer.release()
    out = tmp_path / "drawn.mp4"
    assert _demo_video().main(["--config-file", str(CONFIG), "--video-input", str(mp4), "--output", str(out),
                               "--opts", *TINY]) == 0
    video = cv2.VideoCapture(str(out))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    video.release()


def test_demo_video_names_bad_input(tmp_path: Path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as info:
        _demo_video().main(["--config-file", str(CONFIG), "--input", str(empty), "--output", str(tmp_path / "o")])
    assert info.value.code == 1
    assert "holds no image file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _demo_video().main(["--config-file", str(CONFIG), "--output", str(tmp_path / "o")])  # no input
    with pytest.raises(SystemExit) as info:
        _demo_video().main(["--config-file", str(CONFIG), "--input", str(tmp_path / "nope.jpg"),
                            "--output", str(tmp_path / "o"), "--opts", *TINY])
    assert "Frame 0" in capsys.readouterr().err
