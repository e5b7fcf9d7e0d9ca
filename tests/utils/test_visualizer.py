"""Visualizer / VideoVisualizer / colormap on generated images (numpy + cv2 only)."""
from __future__ import annotations

import random

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from mask2former.structures import Instances  # noqa: E402
from mask2former.utils.colormap import colormap, random_color, random_colors  # noqa: E402
from mask2former.utils.video_visualizer import VideoVisualizer  # noqa: E402
from mask2former.utils.visualizer import ColorMode, Visualizer  # noqa: E402

H, W = 200, 300
META = type("Meta", (), {
    "thing_classes": ["cat", "dog"], "thing_colors": [[255, 0, 0], [0, 0, 255]],
    "stuff_classes": ["cat", "dog", "sky", "grass"],
    "stuff_colors": [[255, 0, 0], [0, 0, 255], [70, 130, 180], [0, 200, 0]],
    "ignore_label": 255,
})()


def _image() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([xx * 255 / W, yy * 255 / H, (xx + yy) * 127 / (H + W)], axis=2)
    noise = np.random.RandomState(0).randint(0, 30, (H, W, 3))
    return (img * 0.8 + noise).astype(np.uint8)


def _masks() -> np.ndarray:
    """Two well separated regions: a rectangle and a disc."""
    rect = np.zeros((H, W), bool)
    rect[30:150, 20:130] = True
    disc = np.zeros((H, W), np.uint8)
    cv2.circle(disc, (220, 100), 55, 1, -1)
    return np.stack([rect, disc.astype(bool)])


def _far_from(masks: np.ndarray, margin: int = 12) -> np.ndarray:
    covered = masks.any(axis=0).astype(np.uint8)
    return cv2.dilate(covered, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) == 0


@pytest.fixture(autouse=True)
def _fixed_random_colours():
    """Colours without metadata are drawn from numpy's / python's global RNGs (as detectron2
    does): fix them so that a colour close to the image cannot make a test depend on the tests
    before it."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(0)
    random.seed(0)
    yield
    np.random.set_state(np_state)
    random.setstate(py_state)


def _check_changed_only_on_masks(img: np.ndarray, out: np.ndarray, masks: np.ndarray) -> None:
    assert out.shape == img.shape and out.dtype == np.uint8
    far = _far_from(masks)
    assert far.sum() > 10000
    np.testing.assert_array_equal(out[far], img[far])
    for m in masks:
        inner = cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert np.abs(out[inner].astype(int) - img[inner]).mean() > 20


def _instances(masks: np.ndarray, classes=(0, 1), scores=(0.9, 0.75)) -> Instances:
    inst = Instances((H, W))
    inst.pred_masks = torch.as_tensor(masks, dtype=torch.float32)  # official dtype: float 0/1
    inst.pred_boxes = torch.zeros(len(masks), 4)  # Mask2Former leaves boxes at zero
    inst.scores = torch.tensor(scores[:len(masks)])
    inst.pred_classes = torch.tensor(classes[:len(masks)])
    return inst


def _texts(vis_image) -> list:
    return sorted(t.get_text() for t in vis_image.ax.texts)


def test_colormap_and_random_colors():
    rgb, bgr = colormap(rgb=True, maximum=1), colormap()
    assert rgb.shape == (74, 3) and rgb.max() <= 1.0
    np.testing.assert_allclose(bgr, rgb[:, ::-1] * 255, rtol=1e-6)
    assert random_color(rgb=True, maximum=1).shape == (3,)
    picks = random_colors(74, rgb=True, maximum=1)
    assert {tuple(c) for c in picks} == {tuple(c) for c in rgb}  # every palette entry once
    assert len(random_colors(100)) == 100
    with pytest.raises(ValueError, match="maximum"):
        colormap(maximum=10)


def test_sem_seg_changes_only_labelled_pixels_and_names_classes():
    img, masks = _image(), _masks()
    sem = np.full((H, W), 255, np.int64)  # ignore everywhere but the two regions
    sem[masks[0]], sem[masks[1]] = 2, 3
    out = Visualizer(img, META).draw_sem_seg(torch.as_tensor(sem))
    _check_changed_only_on_masks(img, out.get_image(), masks)
    assert _texts(out) == ["grass", "sky"]
    # pixels deep inside a region are blended towards the class colour: 0.2 * img + 0.8 * colour
    inner = cv2.erode(masks[1].astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    expected = 0.2 * img[inner] + 0.8 * np.array([0, 200, 0])
    got = out.get_image()[inner].astype(float)
    assert np.median(np.abs(got - expected)) <= 1.0


def test_sem_seg_accepts_scores_and_rejects_wrong_size():
    img, masks = _image(), _masks()
    scores = torch.zeros(4, H, W)
    scores[0] = 1.0
    scores[1][torch.as_tensor(masks[1])] = 2.0
    out = Visualizer(img, META).draw_sem_seg(scores)
    assert _texts(out) == ["cat", "dog"]
    with pytest.raises(ValueError, match=r"sem_seg has shape \(10, 10\)"):
        Visualizer(img, META).draw_sem_seg(np.zeros((10, 10), np.int64))


def test_panoptic_leaves_void_alone():
    img, masks = _image(), _masks()
    pan = np.zeros((H, W), np.int32)  # id 0: void (not in segments_info)
    pan[masks[0]], pan[masks[1]] = 1, 2
    info = [{"id": 1, "isthing": True, "category_id": 1},
            {"id": 2, "isthing": False, "category_id": 2}]
    out = Visualizer(img, META).draw_panoptic_seg(torch.as_tensor(pan), info)
    _check_changed_only_on_masks(img, out.get_image(), masks)
    assert _texts(out) == ["dog", "sky"]


def test_panoptic_without_segments_info_uses_label_divisor():
    img, masks = _image(), _masks()
    meta = type("M", (), {"label_divisor": 1000, "thing_dataset_id_to_contiguous_id": {7: 1},
                          "thing_classes": ["cat", "dog"], "stuff_classes": META.stuff_classes})()
    pan = np.full((H, W), -1, np.int64)
    pan[masks[0]], pan[masks[1]] = 1 * 1000 + 3, 2 * 1000
    out = Visualizer(img, meta).draw_panoptic_seg(pan, None)
    _check_changed_only_on_masks(img, out.get_image(), masks)
    assert _texts(out) == ["dog", "sky"]
    with pytest.raises(ValueError, match="label_divisor"):
        Visualizer(img).draw_panoptic_seg(pan, None)


@pytest.mark.parametrize("mode", [ColorMode.IMAGE, ColorMode.SEGMENTATION])
def test_instances_change_only_masked_pixels(mode):
    img, masks = _image(), _masks()
    np.random.seed(0)
    out = Visualizer(img, META, instance_mode=mode).draw_instance_predictions(_instances(masks))
    _check_changed_only_on_masks(img, out.get_image(), masks)
    assert _texts(out) == ["cat 90%", "dog 75%"]


def test_segmentation_mode_colours_follow_the_class():
    img, masks = _image(), _masks()
    np.random.seed(1)
    out = Visualizer(img, META, instance_mode=ColorMode.SEGMENTATION).draw_instance_predictions(
        _instances(masks, classes=(1, 1)))
    got = out.get_image().astype(float)
    for m in masks:  # alpha 0.8 blend of a colour within 0.5 (x255) of blue, the "dog" colour
        inner = cv2.erode(m.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        colour = np.median((got[inner] - 0.2 * img[inner]) / 0.8, axis=0)
        assert np.linalg.norm(colour - [0, 0, 255]) <= 0.5 * 255 + 3


def test_image_bw_greys_everything_outside_the_masks():
    img, masks = _image(), _masks()
    out = Visualizer(img, META, instance_mode=ColorMode.IMAGE_BW).draw_instance_predictions(
        _instances(masks)).get_image()
    far = _far_from(masks)
    grey = img.astype(float).mean(axis=2)
    assert np.abs(out[far].astype(float) - grey[far][:, None]).max() <= 1.0
    inner = cv2.erode(masks[0].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.abs(out[inner].astype(int) - img[inner]).mean() > 5  # tinted (alpha 0.3) ...
    assert np.ptp(out[inner].astype(int), axis=1).mean() > 10  # ... and still in colour


def test_boxes_are_drawn_when_present_and_labels_stay_inside():
    img, masks = _image(), _masks()
    inst = _instances(masks)
    inst.remove("pred_masks")
    inst.pred_boxes = torch.tensor([[20.0, 30.0, 130.0, 150.0], [165.0, 45.0, 275.0, 155.0]])
    out = Visualizer(img, META).draw_instance_predictions(inst)
    assert len(out.ax.patches) == 2
    got = out.get_image()
    assert np.abs(got[30, 20:130].astype(int) - img[30, 20:130]).mean() > 10  # top edge drawn
    renderer = out.canvas.get_renderer()
    for text in out.ax.texts:
        ext = text.get_window_extent(renderer)
        assert ext.x0 >= -1 and ext.y0 >= -1 and ext.x1 <= W + 1 and ext.y1 <= H + 1


def test_labels_of_overlapping_instances_do_not_overlap():
    img = _image()
    masks = np.zeros((3, H, W), bool)
    masks[:, 60:140, 100:200] = True  # three identical masks: same anchor
    out = Visualizer(img, META).draw_instance_predictions(
        _instances(masks, classes=(0, 1, 0), scores=(0.9, 0.8, 0.7)))
    renderer = out.canvas.get_renderer()
    extents = [t.get_window_extent(renderer) for t in out.ax.texts]
    assert len(extents) == 3
    for i in range(3):
        for j in range(i + 1, 3):
            assert not extents[i].overlaps(extents[j])


def test_dataset_dict_polygons_boxes_and_sem_seg_file(tmp_path):
    img, masks = _image(), _masks()
    sem = np.full((H, W), 255, np.uint8)
    sem[masks[1]] = 2
    sem_path = tmp_path / "sem.png"
    cv2.imwrite(str(sem_path), sem)
    dic = {
        "annotations": [{"segmentation": [[20, 30, 130, 30, 130, 150, 20, 150]],
                         "bbox": [20, 30, 110, 120], "bbox_mode": 1, "category_id": 0,
                         "iscrowd": 0}],
        "sem_seg_file_name": str(sem_path),
    }
    out = Visualizer(img, META).draw_dataset_dict(dic)
    _check_changed_only_on_masks(img, out.get_image(), masks)
    assert _texts(out) == ["cat", "sky"]
    with pytest.raises(FileNotFoundError, match="missing.png"):
        Visualizer(img, META).draw_dataset_dict({"sem_seg_file_name": str(tmp_path / "missing.png")})


def test_save_and_scale(tmp_path):
    img, masks = _image(), _masks()
    vis = Visualizer(img, META, scale=0.5)
    out = vis.draw_instance_predictions(_instances(masks))
    assert out.get_image().shape == (H // 2, W // 2, 3)
    out.save(str(tmp_path / "vis.png"))
    assert cv2.imread(str(tmp_path / "vis.png")).shape == (H // 2, W // 2, 3)
    with pytest.raises(OSError, match="vis.unknownext"):
        out.save(str(tmp_path / "vis.unknownext"))


def test_video_visualizer_keeps_colours_of_moving_instances():
    img = _image()
    np.random.seed(3)
    video = VideoVisualizer(META, instance_mode=ColorMode.IMAGE)
    masks = _masks()
    first = video._assign_colors([0, 1], masks)
    moved = np.roll(masks, 5, axis=2)  # both shift 5 px right: IoU > 0.5
    second = video._assign_colors([1, 0], moved[::-1])  # order swapped in the new frame
    assert second == first[::-1]
    far = np.zeros((1, H, W), bool)
    far[0, 160:200, 0:40] = True  # overlaps nothing: a new track
    third = video._assign_colors([0], far)
    assert len(third) == 1 and len(video._tracks) == 3
    for _ in range(8):  # tracks not matched for ttl frames are forgotten
        video._assign_colors([0], far)
    assert len(video._tracks) == 1
    out = video.draw_instance_predictions(img, _instances(masks)).get_image()
    _check_changed_only_on_masks(img, out, masks)


def test_video_visualizer_panoptic_and_sem_seg():
    img, masks = _image(), _masks()
    video = VideoVisualizer(META)
    pan = np.zeros((H, W), np.int32)
    pan[masks[0]], pan[masks[1]] = 1, 2
    info = [{"id": 1, "isthing": True, "category_id": 0},
            {"id": 2, "isthing": False, "category_id": 3}]
    out1 = video.draw_panoptic_seg(img, pan, info).get_image()
    out2 = video.draw_panoptic_seg(img, pan, info).get_image()
    _check_changed_only_on_masks(img, out1, masks)
    np.testing.assert_array_equal(out1, out2)  # same scene, same colours
    sem = np.full((H, W), 255, np.int64)
    sem[masks[0]], sem[masks[1]] = 2, 3
    _check_changed_only_on_masks(img, video.draw_sem_seg(img, sem).get_image(), masks)


def test_dataset_dict_panoptic_png(tmp_path):
    from mask2former.utils.panoptic_utils import id2rgb

    img, masks = _image(), _masks()
    pan = np.zeros((H, W), np.int64)
    pan[masks[0]], pan[masks[1]] = 300, 70000  # ids use all three PNG channels
    cv2.imwrite(str(tmp_path / "pan.png"), id2rgb(pan).astype(np.uint8)[:, :, ::-1])
    dic = {"pan_seg_file_name": str(tmp_path / "pan.png"),
           "segments_info": [{"id": 300, "category_id": 1, "isthing": True},
                             {"id": 70000, "category_id": 3, "isthing": False}]}
    out = Visualizer(img, META).draw_dataset_dict(dic)
    _check_changed_only_on_masks(img, out.get_image(), masks)
    assert _texts(out) == ["dog", "grass"]
