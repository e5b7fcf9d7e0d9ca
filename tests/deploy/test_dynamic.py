"""``--dynamic`` export: one graph for every input size, checked at two sizes against eager."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from deploy_helpers import random_image, tiny_model
from mask2former.deploy import ONNXPredictor
from mask2former.deploy.export import ExportableMaskFormer, export_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def dynamic_export(export_root):
    cfg, model = tiny_model("resnet_msdeform_m2f")
    out = os.path.join(str(export_root), "dynamic_resnet_msdeform_m2f")
    meta = export_model(cfg, model, out, fmt="onnx", input_size=(64, 64), dynamic=True)
    return cfg, model, meta, ONNXPredictor(out)


@pytest.mark.slow
@pytest.mark.parametrize("padded", [(96, 160), (128, 64)])
def test_graph_takes_other_sizes(dynamic_export, padded):
    cfg, model, meta, predictor = dynamic_export
    assert meta["dynamic"] and meta["input_size"] is None
    x = torch.randn(1, 3, *padded, generator=torch.Generator().manual_seed(0))
    logits, masks = predictor.session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref_logits, ref_masks = ExportableMaskFormer(model)(x)
    assert masks.shape == (1, meta["num_queries"], padded[0] // 4, padded[1] // 4)
    assert np.abs(logits - ref_logits.numpy()).max() <= 1e-4 * np.abs(ref_logits.numpy()).max()
    assert np.abs(masks - ref_masks.numpy()).max() <= 1e-4 * np.abs(ref_masks.numpy()).max()


@pytest.mark.slow
@pytest.mark.parametrize("size", [(64, 96), (70, 101)])  # (70, 101) is padded to (96, 128)
def test_results_match_eager_at_two_sizes(dynamic_export, size):
    cfg, model, _, predictor = dynamic_export
    image = random_image(3, *size)
    chw = (image[:, :, ::-1] if cfg.INPUT.FORMAT == "RGB" else image).astype(np.float32).transpose(2, 0, 1)
    result = predictor.predict_inputs([{"image": chw}])[0]
    with torch.no_grad():
        ref = model([{"image": torch.from_numpy(np.ascontiguousarray(chw))}])[0]
    np.testing.assert_allclose(result["sem_seg"], ref["sem_seg"].numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(result["sem_seg"].argmax(0), ref["sem_seg"].argmax(0).numpy())
    assert result["panoptic_seg"][1] == ref["panoptic_seg"][1]
    np.testing.assert_array_equal(result["panoptic_seg"][0], ref["panoptic_seg"][0].numpy())
    order = ref["instances"].scores.argsort(descending=True).numpy()
    np.testing.assert_array_equal(result["instances"]["pred_classes"], ref["instances"].pred_classes.numpy()[order])
    np.testing.assert_array_equal(result["instances"]["pred_masks"], ref["instances"].pred_masks.numpy()[order])


def test_dynamic_swin_is_refused_clearly(tmp_path):
    cfg, model = tiny_model("swin_msdeform_m2f")
    with pytest.raises(ValueError, match="--dynamic is not supported for the Swin backbone"):
        export_model(cfg, model, str(tmp_path), fmt="onnx", dynamic=True)
    assert not (tmp_path / "model.onnx").exists()
