import random

import numpy as np
import pytest
from PIL import Image

from mask2former.data import transforms as T


@pytest.mark.parametrize(
    "oldh,oldw,short,max_size,expected",
    [
        (480, 640, 800, 1333, (800, 1067)),
        (640, 480, 800, 1333, (1067, 800)),
        (100, 1000, 800, 1333, (133, 1333)),  # capped by max_size
        (500, 500, 512, 2048, (512, 512)),
        (375, 500, 640, 2560, (640, 853)),
    ],
)
def test_resize_shortest_edge_output_shape(oldh, oldw, short, max_size, expected):
    assert T.ResizeShortestEdge.get_output_shape(oldh, oldw, short, max_size) == expected


def test_resize_shortest_edge_sampling():
    img = np.zeros((60, 80, 3), np.uint8)
    np.random.seed(0)
    aug = T.ResizeShortestEdge([32, 48, 64], 1000, sample_style="choice")
    shorts = {aug.get_transform(img).new_h for _ in range(60)}
    assert shorts == {32, 48, 64}
    aug = T.ResizeShortestEdge((30, 33), 1000, sample_style="range")
    shorts = {aug.get_transform(img).new_h for _ in range(80)}
    assert shorts == {30, 31, 32, 33}
    with pytest.raises(ValueError):
        T.ResizeShortestEdge((1, 2, 3), sample_style="range")


def test_resize_transform_image_and_segmentation():
    img = np.random.RandomState(0).randint(0, 255, (10, 20, 3)).astype(np.uint8)
    seg = np.zeros((10, 20), np.float64)
    seg[:, 10:] = 7
    t = T.ResizeTransform(10, 20, 5, 40)
    out = t.apply_image(img)
    assert out.shape == (5, 40, 3) and out.dtype == np.uint8
    out_seg = t.apply_segmentation(seg)
    assert out_seg.shape == (5, 40) and set(np.unique(out_seg)) == {0.0, 7.0}  # nearest: no new labels
    coords = t.apply_coords(np.array([[10.0, 4.0]]))
    np.testing.assert_allclose(coords, [[20.0, 2.0]])
    assert t.inverse().apply_image(out).shape == (10, 20, 3)
    with pytest.raises(ValueError, match="expects an image of size"):
        t.apply_image(np.zeros((3, 3, 3), np.uint8))


def test_random_crop_sizes():
    img = np.zeros((100, 200, 3), np.uint8)
    np.random.seed(1)
    assert T.RandomCrop("absolute", (30, 40)).get_transform(img).apply_image(img).shape == (30, 40, 3)
    assert T.RandomCrop("absolute", (300, 40)).get_crop_size((100, 200)) == (100, 40)
    assert T.RandomCrop("relative", (0.5, 0.25)).get_crop_size((100, 200)) == (50, 50)
    for _ in range(20):
        ch, cw = T.RandomCrop("relative_range", (0.5, 0.8)).get_crop_size((100, 200))
        assert 50 <= ch <= 100 and 160 <= cw <= 200
        ch, cw = T.RandomCrop("absolute_range", (20, 150)).get_crop_size((100, 200))
        assert 20 <= ch <= 100 and 20 <= cw <= 150
    with pytest.raises(ValueError):
        T.RandomCrop("bogus", (1, 1))


def test_crop_category_area_constraint_rejects_single_category_crops():
    # left half is category 1 except a 10x10 patch of category 2 at the bottom-right corner;
    # crops of 20x20 containing only category 1 must be rejected
    sem = np.ones((40, 40), np.float64)
    sem[30:, 30:] = 2
    sem[:, :20] = 255  # ignored
    img = np.zeros((40, 40, 3), np.uint8)
    aug = T.RandomCrop_CategoryAreaConstraint("absolute", (20, 20), 0.9, ignored_category=255)
    np.random.seed(0)
    hits = 0
    for _ in range(30):
        t = aug.get_transform(img, sem)
        crop = t.apply_segmentation(sem)
        labels, counts = np.unique(crop[crop != 255], return_counts=True)
        if len(labels) > 1 and counts.max() < 0.9 * counts.sum():
            hits += 1
    # unconstrained crops satisfy it ~2% of the time; ten retries make it frequent
    assert hits >= 10
    # max_area 1.0 falls back to a plain random crop
    t = T.RandomCrop_CategoryAreaConstraint("absolute", (20, 20), 1.0).get_transform(img, sem)
    assert t.apply_image(img).shape == (20, 20, 3)


def test_lsj_resize_scale_and_fixed_size_crop():
    img = np.full((60, 90, 3), 7, np.uint8)
    seg = np.ones((60, 90), np.float64)
    np.random.seed(3)
    for _ in range(10):
        aug_input = T.AugInput(img, sem_seg=seg)
        tfms = aug_input.apply_augmentations(
            [T.ResizeScale(0.1, 2.0, 64, 64), T.FixedSizeCrop((64, 64))]
        )
        assert aug_input.image.shape == (64, 64, 3)
        assert aug_input.sem_seg.shape == (64, 64)
        resized = tfms[0]
        if resized.new_h < 64:  # padded area: image 128, segmentation 255
            assert (aug_input.image[resized.new_h :] == 128).all()
            assert (aug_input.sem_seg[resized.new_h :] == 255).all()
    # ResizeScale keeps the aspect ratio and fits into scale * target
    t = T.ResizeScale(1.0, 1.0, 64, 64).get_transform(img)
    assert (t.new_h, t.new_w) == (43, 64)


def test_flip_masks_polygons_and_boxes():
    img = np.zeros((4, 6, 3), np.uint8)
    seg = np.zeros((4, 6), np.uint8)
    seg[:, :2] = 1
    aug = T.RandomFlip(prob=1.0)
    t = aug.get_transform(img)
    assert isinstance(t, T.HFlipTransform)
    flipped = t.apply_segmentation(seg)
    assert (flipped[:, 4:] == 1).all() and (flipped[:, :4] == 0).all()
    np.testing.assert_allclose(t.apply_box(np.array([[0.0, 0.0, 2.0, 4.0]])), [[4.0, 0.0, 6.0, 4.0]])
    poly = t.apply_polygons([np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 4.0]])])[0]
    np.testing.assert_allclose(poly[:, 0], [6.0, 4.0, 4.0])
    assert isinstance(T.RandomFlip(prob=0.0).get_transform(img), T.NoOpTransform)
    assert isinstance(T.RandomFlip(prob=1.0, horizontal=False, vertical=True).get_transform(img), T.VFlipTransform)
    with pytest.raises(ValueError):
        T.RandomFlip(horizontal=True, vertical=True)


def test_crop_polygons_without_shapely():
    t = T.CropTransform(5, 5, 10, 10)
    out = t.apply_polygons(
        [np.array([[0.0, 0.0], [20.0, 0.0], [20.0, 20.0], [0.0, 20.0]]), np.array([[30.0, 30.0], [40.0, 30.0], [40.0, 40.0]])]
    )
    assert len(out) == 1  # the second polygon is outside
    assert sorted(map(tuple, out[0].tolist())) == [(0.0, 0.0), (0.0, 10.0), (10.0, 0.0), (10.0, 10.0)]
    clipped = T.clip_polygon(np.array([[0, 0], [4, 0], [4, 4]]), 1, 1, 3, 3)
    assert sorted(map(tuple, clipped.tolist())) == [(1.0, 1.0), (3.0, 1.0), (3.0, 3.0)]


def test_color_aug_ssd_changes_image_only():
    img = np.random.RandomState(0).randint(0, 255, (16, 16, 3)).astype(np.uint8)
    t = T.ColorAugSSDTransform(img_format="RGB")
    random.seed(0)
    outs = [t.apply_image(img.copy()) for _ in range(5)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert any(not np.array_equal(o, img) for o in outs)
    seg = np.arange(16).reshape(4, 4)
    assert t.apply_segmentation(seg) is seg
    with pytest.raises(ValueError):
        T.ColorAugSSDTransform(img_format="YUV")


def test_random_apply_and_augmentation_list():
    img = np.zeros((8, 8, 3), np.uint8)
    inp = T.AugInput(img)
    tfm = T.RandomApply(T.Resize((4, 4)), prob=1.0)(inp)
    assert inp.image.shape == (4, 4, 3) and isinstance(tfm, T.ResizeTransform)
    inp = T.AugInput(img)
    assert isinstance(T.RandomApply(T.Resize((4, 4)), prob=0.0)(inp), T.NoOpTransform)
    assert inp.image.shape == (8, 8, 3)
    out, tfms = T.apply_augmentations([T.Resize((2, 3)), T.HFlipTransform(3)], img)
    assert out.shape == (2, 3, 3) and len(tfms) == 2
    with pytest.raises(ValueError):
        T.RandomApply(T.Resize(2), prob=1.5)


def test_aug_input_missing_attribute_is_named():
    class NeedsSemSeg(T.Augmentation):
        def get_transform(self, image, sem_seg):
            return T.NoOpTransform()

    class ImageOnly:
        image = np.zeros((2, 2, 3), np.uint8)

    with pytest.raises(AttributeError, match="'sem_seg'"):
        NeedsSemSeg()(ImageOnly())


def test_pil_interp_default_is_bilinear():
    assert T.ResizeTransform(2, 2, 4, 4).interp == Image.BILINEAR


def test_recolor_segments_moves_each_segment_to_a_random_mean_and_keeps_texture():
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, size=(20, 24, 3)).astype(np.uint8)
    a = np.zeros((20, 24), bool)
    a[2:8, 3:10] = True
    b = np.zeros((20, 24), bool)
    b[10:18, 12:20] = True
    np.random.seed(3)
    out = T.recolor_segments(image, [a, b], prob=1.0)
    np.random.seed(3)  # the colours drawn: one per segment, in order
    colours = [np.random.randint(0, 256, size=3) for _ in range(2)]
    assert np.array_equal(out[~(a | b)], image[~(a | b)])
    for mask, colour in zip((a, b), colours):
        px = image[mask].astype(np.float64)
        expected = np.clip(np.rint(px - px.mean(0) + colour), 0, 255)
        assert np.array_equal(out[mask], expected.astype(np.uint8))
    assert not np.array_equal(out[a], image[a])
    # prob 0 leaves the image as it is; an out-of-range prob is an error naming it
    assert np.array_equal(T.recolor_segments(image, [a, b], prob=0.0), image)
    with pytest.raises(ValueError, match="prob"):
        T.recolor_segments(image, [a], prob=1.5)
