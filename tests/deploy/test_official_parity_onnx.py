"""The official reference cases through ONNX export + ``ONNXPredictor`` (no torch at run time).

Each case's model is built from its ``config.yaml``, loaded from ``model_final.pkl``,
exported statically at the case's padded batch size, and its stored ``inputs.pt`` go
through ``ONNXPredictor.predict_inputs``; results are compared with the official outputs
at the tolerances of ``tests/test_official_parity.py`` (from the reference README).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import mask2former.data  # noqa: F401  (the built-in datasets' metadata, which panoptic inference reads)
from mask2former.checkpoint import DetectionCheckpointer
from mask2former.config import get_cfg
from mask2former.modeling.build import build_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

MAX_DIFFERING_PIXEL_FRACTION = 1e-3  # as tests/test_official_parity.py
CASES = ["m2f_swin_panoptic", "m2f_swin_semantic_batch2"]


@pytest.fixture(scope="module", params=CASES)
def case(request, reference_dir, export_root):
    from mask2former.deploy import ONNXPredictor
    from mask2former.deploy.export import export_model

    case_dir = reference_dir / "official_outputs" / request.param
    if not case_dir.is_dir():
        pytest.skip(f"reference case {case_dir} not found")
    cfg = get_cfg()
    cfg.merge_from_file(str(case_dir / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(case_dir / "model_final.pkl"))
    reference = torch.load(case_dir / "outputs.pt", weights_only=True)
    inputs = torch.load(case_dir / "inputs.pt", weights_only=True)
    padded = tuple(reference["images_tensor"].shape[-2:])
    out = os.path.join(str(export_root), "official_" + request.param)
    export_model(cfg, model.eval(), out, fmt="onnx", input_size=padded)
    predictor = ONNXPredictor(out)
    batch = [{"image": x["image"].numpy(), "height": x["height"], "width": x["width"]} for x in inputs]
    return predictor.predict_inputs(batch), reference["processed_results"]


def _few_differ(actual: np.ndarray, expected: torch.Tensor, name: str) -> None:
    expected = expected.numpy()
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    differing = int((actual != expected).sum())
    assert differing <= MAX_DIFFERING_PIXEL_FRACTION * actual.size, f"{name}: {differing} pixels differ"


@pytest.mark.slow
def test_semantic(case):
    results, expected = case
    assert len(results) == len(expected)
    for i, (result, ref) in enumerate(zip(results, expected)):
        assert ("sem_seg" in result) == ("sem_seg_summary" in ref)
        if "sem_seg" not in result:
            continue
        summary, sem_seg = ref["sem_seg_summary"], result["sem_seg"]
        assert list(sem_seg.shape) == list(summary["shape"])
        s = int(summary["stride"])
        np.testing.assert_allclose(sem_seg[:, ::s, ::s], summary["strided"].numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(sem_seg.max(0), summary["max"].numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(sem_seg.sum(0), summary["sum"].numpy(), atol=1e-4, rtol=0)
        _few_differ(sem_seg.argmax(0), summary["argmax"], f"[{i}] sem_seg argmax")


@pytest.mark.slow
def test_panoptic_and_instances(case):
    results, expected = case
    for i, (result, ref) in enumerate(zip(results, expected)):
        assert ("panoptic_seg" in result) == ("panoptic_seg" in ref)
        assert ("instances" in result) == ("instances" in ref)
        if "panoptic_seg" in result:
            seg, info = result["panoptic_seg"]
            ref_seg, ref_info = ref["panoptic_seg"]
            assert seg.dtype == np.int32 and info == ref_info
            _few_differ(seg, ref_seg, f"[{i}] panoptic_seg")
        if "instances" in result:
            inst, ref_inst = result["instances"], ref["instances"]
            assert list(inst["image_size"]) == list(ref_inst["image_size"])
            assert len(inst["scores"]) == len(ref_inst["scores"])
            ref_order = ref_inst["scores"].argsort(descending=True)  # ours are sorted already
            np.testing.assert_array_equal(inst["pred_classes"], ref_inst["pred_classes"][ref_order].numpy())
            np.testing.assert_allclose(inst["scores"], ref_inst["scores"][ref_order].numpy(), atol=1e-5, rtol=0)
            _few_differ(inst["pred_masks"], ref_inst["pred_masks"][ref_order], f"[{i}] pred_masks")
