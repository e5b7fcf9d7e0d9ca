"""``ONNXPredictor`` without torch: imports, deploy.json checks, resize rule, a full run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from deploy_helpers import random_image
from mask2former.deploy.onnx_predictor import load_deploy_json, shortest_edge_size

pytest.importorskip("onnxruntime")

_BLOCK_TORCH = "import sys; sys.modules['torch'] = None  # any 'import torch' now fails\n"


def _run_without_torch(code: str, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCK_TORCH + textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_modules_import_without_torch(repo_root):
    proc = _run_without_torch("""
        import mask2former.deploy
        from mask2former.deploy import ONNXPredictor, postprocess, onnx_predictor
        loaded = sorted(m for m in sys.modules if m.startswith(("torch", "mask2former")) and sys.modules[m])
        print(loaded)
        try:
            mask2former.deploy.export_model
        except ImportError:
            print("export needs torch")
    """, str(repo_root))
    assert proc.returncode == 0, proc.stderr
    assert "'torch" not in proc.stdout
    assert "mask2former.deploy.onnx_predictor" in proc.stdout
    assert "export needs torch" in proc.stdout  # the torch-only part really is blocked


@pytest.mark.slow
def test_predictor_runs_without_torch(repo_root, static_export, tmp_path):
    """A full prediction in a torch-free interpreter equals the eager model's."""
    exported = static_export("swin_msdeform_m2f")
    image = random_image(5, 60, 90)
    np.save(tmp_path / "image.npy", image)
    proc = _run_without_torch(f"""
        import numpy as np
        from mask2former.deploy import ONNXPredictor
        out = ONNXPredictor({exported['dir']!r}, num_threads=1)(np.load({str(tmp_path / 'image.npy')!r}))
        seg, info = out["panoptic_seg"]
        np.savez({str(tmp_path / 'out.npz')!r}, sem_seg=out["sem_seg"], panoptic=seg,
                 masks=out["instances"]["pred_masks"], scores=out["instances"]["scores"])
        print(info)
    """, str(repo_root))
    assert proc.returncode == 0, proc.stderr
    cfg, model = exported["cfg"], exported["model"]
    image_in = image[:, :, ::-1] if cfg.INPUT.FORMAT == "RGB" else image
    from mask2former.data.transforms import ResizeShortestEdge

    with torch.no_grad():  # as DefaultPredictor: 60x90 -> 64x96
        resized = ResizeShortestEdge([64, 64], 96).get_transform(image_in).apply_image(image_in)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.astype("float32").transpose(2, 0, 1)))
        ref = model([{"image": tensor, "height": 60, "width": 90}])[0]
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(out["sem_seg"], ref["sem_seg"].numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(out["panoptic"], ref["panoptic_seg"][0].numpy())
    assert proc.stdout.strip() == str(ref["panoptic_seg"][1])
    assert out["masks"].shape[0] == len(ref["instances"])


@pytest.mark.parametrize("h,w", [(480, 640), (640, 480), (37, 1000), (1000, 37), (800, 800), (333, 501)])
def test_shortest_edge_size_matches_resize_shortest_edge(h, w):
    from mask2former.data.transforms import ResizeShortestEdge

    assert shortest_edge_size(h, w, 800, 1333) == ResizeShortestEdge.get_output_shape(h, w, 800, 1333)


def test_deploy_json_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="deploy.json does not exist"):
        load_deploy_json(str(tmp_path))
    (tmp_path / "deploy.json").write_text("{not json")
    with pytest.raises(ValueError, match="deploy.json is not valid JSON"):
        load_deploy_json(str(tmp_path))
    (tmp_path / "deploy.json").write_text(json.dumps({"format": "onnx"}))
    with pytest.raises(ValueError, match=r"lacks the keys \['model_file'"):
        load_deploy_json(str(tmp_path))


@pytest.mark.slow
def test_predictor_rejects_torch_export_folder(tmp_path, static_export):
    from mask2former.deploy import ONNXPredictor

    meta = dict(static_export("swin_msdeform_m2f")["meta"], format="torch_export", model_file="model.pt2")
    (tmp_path / "deploy.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="needs one exported with --format onnx"):
        ONNXPredictor(str(tmp_path))
    meta["format"] = "onnx"
    (tmp_path / "deploy.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match="model.pt2"):
        ONNXPredictor(str(tmp_path))
    assert not os.path.exists(tmp_path / "model.pt2")
