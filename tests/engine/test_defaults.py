"""DefaultPredictor: weights loading, resizing, channel order, grayscale input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mask2former.config import get_cfg
from mask2former.engine import DefaultPredictor
from mask2former.modeling.build import build_model

NUM_CLASSES = 4


def tiny_cfg(weights: str = "", input_format: str = "RGB"):
    """A tiny Swin + per-pixel baseline semantic segmentor."""
    cfg = get_cfg()
    cfg.merge_from_list([
        "MODEL.META_ARCHITECTURE", "SemanticSegmentor",
        "MODEL.BACKBONE.NAME", "D2SwinTransformer",
        "MODEL.SWIN.EMBED_DIM", 16, "MODEL.SWIN.DEPTHS", [1, 1, 1, 1],
        "MODEL.SWIN.NUM_HEADS", [1, 1, 2, 2], "MODEL.SWIN.WINDOW_SIZE", 4,
        "MODEL.SWIN.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
        "MODEL.SEM_SEG_HEAD.NAME", "PerPixelBaselineHead",
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "BasePixelDecoder",
        "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res2", "res3", "res4", "res5"],
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", NUM_CLASSES,
        "MODEL.SEM_SEG_HEAD.CONVS_DIM", 32, "MODEL.SEM_SEG_HEAD.MASK_DIM", 32,
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", weights,
        "INPUT.FORMAT", input_format, "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 1000,
    ])
    return cfg


def record_inputs(predictor: DefaultPredictor) -> dict:
    seen: dict = {}
    predictor.model.register_forward_pre_hook(lambda m, args: seen.update(inputs=args[0][0]))
    return seen


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    path = tmp_path_factory.mktemp("weights") / "model.pth"
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def test_loads_weights_and_predicts_at_the_original_size(weights):
    predictor = DefaultPredictor(tiny_cfg(weights))
    saved = torch.load(weights, weights_only=True)["model"]
    for name, value in predictor.model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert not predictor.model.training
    seen = record_inputs(predictor)
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    prediction = predictor(image)
    assert prediction["sem_seg"].shape == (NUM_CLASSES, 30, 40)
    assert not prediction["sem_seg"].requires_grad
    inputs = seen["inputs"]
    assert inputs["image"].shape == (3, 64, 85)  # shortest edge 30 -> 64
    assert inputs["image"].dtype == torch.float32
    assert (inputs["height"], inputs["width"]) == (30, 40)


@pytest.mark.parametrize("input_format, first_channel", [("RGB", 30.0), ("BGR", 10.0)])
def test_bgr_input_is_converted_to_the_model_format(weights, input_format, first_channel):
    predictor = DefaultPredictor(tiny_cfg(weights, input_format))
    seen = record_inputs(predictor)
    image = np.empty((64, 48, 3), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # B, G, R
    predictor(image)
    channels = seen["inputs"]["image"]
    assert channels.shape == (3, 85, 64)
    assert (channels[0] == first_channel).all() and (channels[1] == 20).all()


@pytest.mark.parametrize("shape", [(40, 36), (40, 36, 1)])
def test_grayscale_input_becomes_three_channels(weights, shape):
    predictor = DefaultPredictor(tiny_cfg(weights))
    seen = record_inputs(predictor)
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    prediction = predictor(image)
    channels = seen["inputs"]["image"]
    assert channels.shape[0] == 3
    assert torch.equal(channels[0], channels[1]) and torch.equal(channels[1], channels[2])
    assert prediction["sem_seg"].shape == (NUM_CLASSES, 40, 36)


def test_bad_image_and_bad_format(weights):
    predictor = DefaultPredictor(tiny_cfg(weights))
    with pytest.raises(ValueError, match="got shape"):
        predictor(np.zeros((10, 10, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="INPUT.FORMAT"):
        DefaultPredictor(tiny_cfg(weights, input_format="L"))


# ---- input validation (issue: None, [0, 1] floats, uint16, 0x0 and 4000x2 failed obscurely or silently)
@pytest.mark.parametrize("image, message", [
    (None, "got None instead of an image: cv2.imread returns None"),
    (np.full((32, 32, 3), 0.5, dtype=np.float32), r"looks scaled to \[0, 1\].*\(image \* 255\)"),
    (np.full((32, 32, 3), 1000, dtype=np.uint16), "16-bit image.*values up to 1000"),
    (np.zeros((0, 0, 3), dtype=np.uint8), r"empty image of shape \(0, 0, 3\)"),
    (np.zeros((4000, 1, 3), dtype=np.uint8), r"\(h, w\) = \(4000, 1\) is too elongated.*would be \(1000, 0\)"),
    (np.zeros((1, 5000, 3), dtype=np.uint8), "too elongated"),
    (np.full((8, 8, 3), np.nan, dtype=np.float32), "NaN or infinite"),
    (np.full((8, 8, 3), 300, dtype=np.int32), r"values in \[0, 255\], got \[300, 300\]"),
    (np.zeros((8, 8, 3), dtype=bool), "numeric image"),
])
def test_bad_inputs_are_clear_value_errors(weights, image, message):
    predictor = DefaultPredictor(tiny_cfg(weights))
    with pytest.raises(ValueError, match=message):
        predictor(image)


def test_float_and_wide_integer_images_in_0_255_are_used_as_they_are(weights):
    predictor = DefaultPredictor(tiny_cfg(weights))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(64, 72, 3), dtype=np.uint8)  # short side = MIN_SIZE_TEST: no resampling
    expected = predictor(image)["sem_seg"]
    for converted in (image.astype(np.float32), image.astype(np.int64)):
        torch.testing.assert_close(predictor(converted)["sem_seg"], expected)


def test_elongated_image_whose_resized_short_side_survives_is_predicted(weights):
    prediction = DefaultPredictor(tiny_cfg(weights))(np.zeros((4000, 2, 3), dtype=np.uint8))
    assert prediction["sem_seg"].shape == (NUM_CLASSES, 4000, 2)
