"""Export tiny models to ONNX, run them in onnxruntime and compare with PyTorch eager.

Three static exports cover Swin and ResNet backbones, the MSDeformAttn, FPN and
transformer-encoder pixel decoders and both transformer decoders; each runs semantic,
panoptic and instance inference through ``ONNXPredictor`` and must give the eager model's
results. Exports are shared per module (they take tens of seconds on 2 cores).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from deploy_helpers import INPUT_SIZE, NUM_CLASSES, THING_IDS, random_image
from mask2former.deploy import ONNXPredictor
from mask2former.deploy.export import ExportableMaskFormer

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

EXPORTED = {
    "swin_msdeform_m2f": "Swin + MSDeformAttn pixel decoder + masked-attention decoder",
    "resnet_fpn_standard": "ResNet + FPN (BasePixelDecoder) + StandardTransformerDecoder",
    "resnet_transformer_encoder_m2f": "ResNet + TransformerEncoderPixelDecoder + masked-attention decoder",
}


@pytest.fixture(scope="module", params=sorted(EXPORTED))
def exported(request, static_export):
    return dict(static_export(request.param), predictor=ONNXPredictor(static_export(request.param)["dir"]))


def _eager_results(model, cfg, image_bgr, height=None, width=None):
    image = image_bgr[:, :, ::-1] if cfg.INPUT.FORMAT == "RGB" else image_bgr
    tensor = torch.as_tensor(np.ascontiguousarray(image.astype("float32").transpose(2, 0, 1)))
    h, w = image.shape[:2]
    with torch.no_grad():
        return model([{"image": tensor, "height": height or h, "width": width or w}])[0]


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12))


@pytest.mark.slow
def test_raw_outputs_match_eager(exported):
    x = torch.randn(1, 3, *INPUT_SIZE, generator=torch.Generator().manual_seed(3))
    logits, masks = exported["predictor"].session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref_logits, ref_masks = ExportableMaskFormer(exported["model"])(x)
    q = exported["meta"]["num_queries"]
    assert logits.shape == (1, q, NUM_CLASSES + 1)
    assert masks.shape == (1, q, INPUT_SIZE[0] // 4, INPUT_SIZE[1] // 4)
    assert _relative_error(logits, ref_logits.numpy()) < 1e-4
    assert _relative_error(masks, ref_masks.numpy()) < 1e-4
    np.testing.assert_array_equal(logits.argmax(-1), ref_logits.argmax(-1).numpy())


@pytest.mark.slow
@pytest.mark.parametrize("size", [(64, 96), (50, 83)])  # (50, 83) is padded to (64, 96) by both
def test_predictor_matches_eager_model(exported, size):
    """Same panoptic segments, instances and semantic argmax as ``MaskFormer.forward``."""
    image = random_image(7, *size)
    rgb_or_bgr = image[:, :, ::-1] if exported["cfg"].INPUT.FORMAT == "RGB" else image
    chw = rgb_or_bgr.astype(np.float32).transpose(2, 0, 1)
    result = exported["predictor"].predict_inputs([{"image": chw, "height": 71, "width": 90}])[0]
    ref = _eager_results(exported["model"], exported["cfg"], image, 71, 90)
    assert set(result) == {"sem_seg", "panoptic_seg", "instances"}

    np.testing.assert_allclose(result["sem_seg"], ref["sem_seg"].numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(result["sem_seg"].argmax(0), ref["sem_seg"].argmax(0).numpy())

    seg, info = result["panoptic_seg"]
    ref_seg, ref_info = ref["panoptic_seg"]
    assert info == ref_info
    np.testing.assert_array_equal(seg, ref_seg.numpy())

    inst, ref_inst = result["instances"], ref["instances"]
    order = ref_inst.scores.argsort(descending=True).numpy()
    assert inst["image_size"] == tuple(ref_inst.image_size)
    np.testing.assert_array_equal(inst["pred_classes"], ref_inst.pred_classes.numpy()[order])
    np.testing.assert_allclose(inst["scores"], ref_inst.scores.numpy()[order], atol=1e-5)
    np.testing.assert_array_equal(inst["pred_masks"], ref_inst.pred_masks.numpy()[order])
    np.testing.assert_array_equal(inst["pred_boxes"], ref_inst.pred_boxes.tensor.numpy()[order])
    assert set(inst["pred_classes"].tolist()) <= set(THING_IDS)


@pytest.mark.slow
def test_predictor_resizes_like_default_predictor(exported):
    """A larger image is resized by ResizeShortestEdge(64, 96) and results come back at its size."""
    image = random_image(11, 100, 150)  # -> 64 x 96 inside
    result = exported["predictor"](image)
    ref = _eager_results(exported["model"], exported["cfg"], _pil_resize(image, 64, 96), 100, 150)
    assert result["sem_seg"].shape == (NUM_CLASSES, 100, 150)
    np.testing.assert_allclose(result["sem_seg"], ref["sem_seg"].numpy(), atol=1e-4, rtol=1e-4)
    assert result["panoptic_seg"][1] == ref["panoptic_seg"][1]
    np.testing.assert_array_equal(result["panoptic_seg"][0], ref["panoptic_seg"][0].numpy())


def _pil_resize(image, h, w):
    from mask2former.data.transforms import ResizeTransform

    return ResizeTransform(image.shape[0], image.shape[1], h, w).apply_image(image)


@pytest.mark.slow
def test_deploy_json(exported):
    with open(os.path.join(exported["dir"], "deploy.json")) as f:
        meta = json.load(f)
    cfg = exported["cfg"]
    assert meta["pixel_mean"] == pytest.approx(list(cfg.MODEL.PIXEL_MEAN))
    assert meta["pixel_std"] == pytest.approx(list(cfg.MODEL.PIXEL_STD))
    assert meta["size_divisibility"] == 32 and meta["input_size"] == list(INPUT_SIZE)
    assert meta["thing_ids"] == list(THING_IDS) and meta["label_divisor"] == 1000
    assert meta["stuff_classes"] == [f"class{i}" for i in range(NUM_CLASSES)]
    assert meta["num_classes"] == NUM_CLASSES and meta["num_queries"] == cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES
    assert (meta["semantic_on"], meta["panoptic_on"], meta["instance_on"]) == (True, True, True)
    assert meta["object_mask_threshold"] == pytest.approx(0.2)
    assert meta["test_topk_per_image"] == 6 and meta["input_format"] == cfg.INPUT.FORMAT
    assert (meta["format"], meta["model_file"], meta["dynamic"]) == ("onnx", "model.onnx", False)


@pytest.mark.slow
def test_static_export_rejects_larger_images(exported):
    predictor = exported["predictor"]
    with pytest.raises(ValueError, match="does not fit the static export input 64x96"):
        predictor.predict_inputs([{"image": np.zeros((3, 70, 96), np.float32)}])
