"""Boxes and BoxMode."""
import numpy as np
import pytest
import torch

from mask2former.structures import BoxMode, Boxes


def test_area_clip_nonempty():
    boxes = Boxes(torch.tensor([[0, 0, 10, 5], [-3, 2, 4, 20], [5, 5, 5, 9]], dtype=torch.float32))
    assert boxes.area().tolist() == [50, 126, 0]
    boxes.clip((10, 8))  # (height, width)
    assert boxes.tensor.tolist() == [[0, 0, 8, 5], [0, 2, 4, 10], [5, 5, 5, 9]]
    assert boxes.nonempty().tolist() == [True, True, False]
    assert boxes.get_centers()[0].tolist() == [4, 2.5]
    boxes.scale(2.0, 0.5)
    assert boxes.tensor[0].tolist() == [0, 0, 16, 2.5]


def test_construction_indexing_cat():
    empty = Boxes([])
    assert empty.tensor.shape == (0, 4) and len(empty) == 0
    ints = Boxes(torch.tensor([[1, 2, 3, 4]]))
    assert ints.tensor.dtype == torch.float32
    boxes = Boxes(np.arange(12).reshape(3, 4))
    assert boxes[1].tensor.tolist() == [[4, 5, 6, 7]]
    assert len(boxes[torch.tensor([True, False, True])]) == 2
    assert len(Boxes.cat([boxes, ints])) == 4 and Boxes.cat([]).tensor.shape == (0, 4)
    assert boxes.clone().tensor.data_ptr() != boxes.tensor.data_ptr()
    with pytest.raises(ValueError, match="N, 4"):
        Boxes(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="infinite"):
        Boxes(torch.tensor([[0, 0, float("inf"), 1.0]])).clip((2, 2))


def test_box_mode_convert_keeps_the_container_type():
    assert BoxMode.convert([1, 2, 3, 4], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) == [1, 2, 4, 6]
    assert BoxMode.convert((1, 2, 4, 6), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS) == (1, 2, 3, 4)
    arr = np.array([[1.0, 2.0, 3.0, 4.0]])
    out = BoxMode.convert(arr, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
    assert isinstance(out, np.ndarray) and out.tolist() == [[1, 2, 4, 6]] and arr[0, 2] == 3.0
    t = torch.tensor([[1.0, 2.0, 4.0, 6.0]])
    assert BoxMode.convert(t, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS).tolist() == [[1, 2, 3, 4]]
    assert BoxMode.convert(t, 0, 0) is t  # ints name modes, as in dataset dicts
    with pytest.raises(NotImplementedError, match="XYXY_REL"):
        BoxMode.convert([0, 0, 1, 1], BoxMode.XYXY_REL, BoxMode.XYXY_ABS)
    with pytest.raises(ValueError, match="4 numbers"):
        BoxMode.convert([0, 0, 1], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
