"""An op without ONNX translation fails by name and module; the torch.export format; the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import Tensor, nn

from deploy_helpers import tiny_model
from mask2former.deploy.export import ExportableMaskFormer, UnsupportedOpError, export_model


@torch.library.custom_op("m2f_deploy_test::scramble", mutates_args=())
def scramble(x: Tensor) -> Tensor:
    """An op with a kernel and a fake (so torch.export traces it) but no ONNX translation."""
    return x.flip(-1)


@scramble.register_fake
def _(x: Tensor) -> Tensor:
    return torch.empty_like(x)


class Scrambled(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return scramble(self.inner(x))


@pytest.mark.slow
def test_unexportable_op_names_op_and_module(tmp_path):
    cfg, model = tiny_model("resnet_fpn_standard")
    decoder = model.sem_seg_head.pixel_decoder
    decoder.mask_features = Scrambled(decoder.mask_features)
    with pytest.raises(UnsupportedOpError) as info:
        export_model(cfg, model, str(tmp_path / "out"), fmt="onnx", input_size=(64, 64))
    message = str(info.value)
    assert "m2f_deploy_test::scramble" in message
    assert "sem_seg_head.pixel_decoder.mask_features (Scrambled)" in message
    assert not (tmp_path / "out" / "model.onnx").exists()  # no partial graph written
    assert not (tmp_path / "out" / "deploy.json").exists()


@pytest.mark.slow
def test_fapn_needs_opset_19_and_then_matches_eager(tmp_path):
    """FaPN's modulated deformable conv becomes ONNX DeformConv (opset 19): at the default
    opset 18 the export stops naming the op and the modules; at 19 it runs and matches."""
    pytest.importorskip("onnxruntime")
    from mask2former.deploy import ONNXPredictor

    cfg, model = tiny_model("resnet_fapn_m2f")
    with pytest.raises(UnsupportedOpError) as info:
        export_model(cfg, model, str(tmp_path / "opset18"), fmt="onnx", input_size=(64, 64))
    message = str(info.value)
    assert "DeformConv does not exist at opset 18" in message
    assert "sem_seg_head.pixel_decoder.align_1.dcpack_L2 (ModulatedDeformConvPack) [torchvision::deform_conv2d]" in message
    assert not (tmp_path / "opset18" / "model.onnx").exists()

    meta = export_model(cfg, model, str(tmp_path / "opset19"), fmt="onnx", input_size=(64, 64), opset=19)
    assert meta["opset"] == 19
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    logits, masks = ONNXPredictor(str(tmp_path / "opset19")).session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref_logits, ref_masks = ExportableMaskFormer(model)(x)
    assert abs(logits - ref_logits.numpy()).max() <= 1e-4 * abs(ref_logits.numpy()).max()
    assert abs(masks - ref_masks.numpy()).max() <= 1e-4 * abs(ref_masks.numpy()).max()


@pytest.mark.slow
def test_torch_export_format_round_trip(tmp_path):
    cfg, model = tiny_model("resnet_msdeform_m2f")
    meta = export_model(cfg, model, str(tmp_path), fmt="torch_export", input_size=(64, 64))
    assert (meta["format"], meta["model_file"]) == ("torch_export", "model.pt2")
    program = torch.export.load(str(tmp_path / "model.pt2"))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, masks = program.module()(x)
        ref_logits, ref_masks = ExportableMaskFormer(model)(x)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(masks, ref_masks, atol=1e-5, rtol=1e-4)
    assert json.loads((tmp_path / "deploy.json").read_text())["input_size"] == [64, 64]


def test_only_mask_classification_models_export():
    with pytest.raises(TypeError, match="MODEL.META_ARCHITECTURE must be MaskFormer"):
        ExportableMaskFormer(nn.Conv2d(3, 3, 1))


def test_cli_rejects_bad_arguments(repo_root):
    tool = str(repo_root / "tools" / "export_model.py")
    proc = subprocess.run([sys.executable, tool, "--config-file", "missing.yaml", "--output", "x"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--config-file 'missing.yaml' does not exist" in proc.stderr
    proc = subprocess.run([sys.executable, tool, "--config-file", "x.yaml", "--output", "x", "--dynamic",
                           "--input-size", "64x64"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


@pytest.mark.slow
def test_cli_exports_with_sample_image(repo_root, tmp_path):
    import cv2

    from deploy_helpers import random_image, tiny_cfg

    cfg = tiny_cfg("resnet_fpn_standard")
    cfg.DATASETS.TEST = ("coco_2017_val_panoptic_with_sem_seg",)  # metadata with thing classes
    (tmp_path / "tiny.yaml").write_text(cfg.dump())
    cv2.imwrite(str(tmp_path / "sample.png"), random_image(4, 48, 80))  # -> 58x96 at test time
    proc = subprocess.run(
        [sys.executable, "tools/export_model.py", "--config-file", str(tmp_path / "tiny.yaml"),
         "--format", "onnx", "--output", str(tmp_path / "out"), "--input-size", "64x96",
         "--sample-image", str(tmp_path / "sample.png")],
        cwd=str(repo_root), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "input 64x96" in proc.stdout
    meta = json.loads((tmp_path / "out" / "deploy.json").read_text())
    assert (meta["input_size"], meta["num_classes"], meta["dataset"]) == ([64, 96], 5, "coco_2017_val_panoptic_with_sem_seg")
    assert len(meta["thing_ids"]) == 80 and meta["label_divisor"] == 1000
    assert (tmp_path / "out" / "model.onnx").stat().st_size > 1_000_000
