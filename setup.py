"""Installs the mask2former package (``pip install -e .``).

With a CUDA toolkit matching the installed torch and a GPU (or ``FORCE_CUDA=1``), this also
compiles the multi-scale deformable attention op (``mask2former.layers._msda_C``); install with
``--no-build-isolation`` so that torch is importable here. Without it, the op is compiled on
first use on a GPU, or the pure-PyTorch path is used (see docs/ms_deform_attn.md).
"""
import os

from setuptools import find_packages, setup


def _cuda_extensions():
    """The deformable-attention CUDA op, built only with a CUDA toolkit and a GPU (or FORCE_CUDA=1)."""
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension
    except ImportError:  # build isolation without torch: the JIT / pytorch paths remain
        return [], {}
    if CUDA_HOME is None or not (torch.cuda.is_available() or os.environ.get("FORCE_CUDA") == "1"):
        return [], {}
    src = "mask2former/layers/csrc/ms_deform_attn"
    ext = CUDAExtension(
        "mask2former.layers._msda_C",
        sources=[f"{src}/ms_deform_attn.cpp", f"{src}/ms_deform_attn_forward.cu",
                 f"{src}/ms_deform_attn_backward.cu"],
        extra_compile_args={"cxx": ["-O3"],
                            "nvcc": ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]},
    )
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = _cuda_extensions()

setup(
    name="mask2former",
    version="0.1.0",
    description="Mask2Former / MaskFormer universal image segmentation with a Detectron2-style engine",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["mask2former", "mask2former.*"]),
    package_data={"mask2former": ["layers/csrc/ms_deform_attn/*", "data/datasets/meta/*.json"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "numpy",
        "scipy",
        "fvcore>=0.1.5",
        "iopath>=0.1.9",
        "opencv-python-headless",
        "Pillow",
        "matplotlib",
        "PyYAML",
        "pycocotools>=2.0.7",
        "tabulate",
        "termcolor",
        "tqdm",
        "safetensors",   # the recommended, code-free checkpoint format
    ],
    extras_require={
        # everything the test suite exercises (CI installs this)
        "dev": ["pytest", "hypothesis", "tensorboard", "timm", "transformers", "cityscapesscripts",
                "onnx", "onnxruntime", "onnxscript"],
        "timm": ["timm"],
        "cityscapes": ["cityscapesscripts"],        # Cityscapes evaluators and label generation
        "export": ["onnx", "onnxruntime", "onnxscript"],   # tools/export_model.py, deploy/
        "hf": ["transformers", "huggingface_hub"],  # Hugging Face checkpoint conversion, hf://
    },
)
