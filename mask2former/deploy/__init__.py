"""Deployment: export to ONNX / ``torch.export`` and a torch-free onnxruntime predictor.

``ONNXPredictor`` and :mod:`.postprocess` need only numpy, OpenCV, Pillow and onnxruntime;
the exporter (:mod:`.export`) needs torch and is imported on first use of its names.
"""
from .onnx_predictor import ONNXPredictor, load_deploy_json

__all__ = ["ONNXPredictor", "load_deploy_json", "ExportableMaskFormer", "UnsupportedOpError",
           "deploy_metadata", "export_model", "export_onnx", "export_torch"]

_EXPORT_NAMES = {"ExportableMaskFormer", "UnsupportedOpError", "deploy_metadata", "export_model",
                 "export_onnx", "export_torch"}


def __getattr__(name: str):
    if name in _EXPORT_NAMES:  # torch only when asked for
        from . import export

        return getattr(export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
