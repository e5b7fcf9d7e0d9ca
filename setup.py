"""Installs the mask2former package (``pip install -e .``)."""
from setuptools import find_packages, setup

setup(
    name="mask2former",
    version="0.1.0",
    description="Mask2Former / MaskFormer universal image segmentation with a Detectron2-style engine",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["mask2former", "mask2former.*"]),
    package_data={"mask2former": ["layers/csrc/*", "layers/csrc/**/*"]},
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "numpy",
        "scipy",
        "fvcore>=0.1.5",
        "iopath>=0.1.9",
        "opencv-python-headless",
        "Pillow",
        "PyYAML",
        "pycocotools>=2.0.7",
        "tabulate",
        "termcolor",
        "tqdm",
    ],
    extras_require={"dev": ["pytest", "tensorboard", "timm"], "timm": ["timm"]},
)
