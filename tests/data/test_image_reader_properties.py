"""Property-based tests: the image reader of training, evaluation and the demo, given random bytes
or a valid PNG / JPEG with random damage (cut, overwritten bytes), returns a full image or raises
CorruptImageError naming the file -- quickly, and never another exception type."""
from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mask2former.data.detection_utils import CorruptImageError, read_image

TIME_BOUND_S = 5.0
SETTINGS = settings(max_examples=50, deadline=None, database=None)


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


VALID = {".png": _encoded("PNG"), ".jpg": _encoded("JPEG")}


def _read(suffix: str, data: bytes, fmt) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"image{suffix}"
        path.write_bytes(data)
        start = time.perf_counter()
        try:
            image = read_image(path, format=fmt)
            assert isinstance(image, np.ndarray) and image.size > 0
            if fmt == "BGR":
                assert image.ndim == 3 and image.shape[2] == 3
        except CorruptImageError as err:
            assert str(path) in str(err)
        assert time.perf_counter() - start < TIME_BOUND_S


@SETTINGS
@given(st.sampled_from([".png", ".jpg", ".bmp"]), st.binary(max_size=500), st.sampled_from([None, "BGR", "RGB", "L"]))
def test_random_bytes(suffix, data, fmt):
    _read(suffix, data, fmt)


@SETTINGS
@given(st.sampled_from(sorted(VALID)), st.data(), st.sampled_from([None, "BGR"]))
def test_valid_images_with_random_damage(suffix, data, fmt):
    blob = bytearray(VALID[suffix])
    cut = data.draw(st.integers(0, len(blob)), label="cut")
    for position, value in data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 255)),
                                              max_size=3), label="flips"):
        blob[position] = value
    _read(suffix, bytes(blob[:cut]), fmt)
