"""ImageList: padding, divisibility, square padding, indexing."""
import pytest
import torch

from mask2former.structures import ImageList


def test_pads_to_max_size_rounded_up_to_divisibility():
    a, b = torch.rand(3, 37, 53), torch.rand(3, 64, 45)
    images = ImageList.from_tensors([a, b], size_divisibility=32, pad_value=-1.0)
    assert images.tensor.shape == (2, 3, 64, 64)
    assert images.image_sizes == [(37, 53), (64, 45)]
    assert len(images) == 2
    assert torch.equal(images[0], a) and torch.equal(images[1], b)
    assert (images.tensor[0, :, 37:] == -1).all() and (images.tensor[0, :, :, 53:] == -1).all()
    assert (images.tensor[1, :, :, 45:] == -1).all()


def test_single_image_and_no_divisibility():
    a = torch.rand(3, 33, 41)
    assert ImageList.from_tensors([a]).tensor.shape == (1, 3, 33, 41)
    padded = ImageList.from_tensors([a], 32).tensor
    assert padded.shape == (1, 3, 64, 64) and torch.equal(padded[0, :, :33, :41], a)
    assert int(padded[0, :, 33:].abs().sum()) == 0
    exact = torch.rand(3, 64, 32)
    assert ImageList.from_tensors([exact], 32).tensor.data_ptr() == exact.data_ptr()  # no copy


def test_two_dim_tensors_and_padding_constraints():
    masks = [torch.ones(5, 6, dtype=torch.uint8), torch.ones(7, 3, dtype=torch.uint8)]
    padded = ImageList.from_tensors(masks, 4, pad_value=255)
    assert padded.tensor.shape == (2, 8, 8) and padded.tensor.dtype == torch.uint8
    assert padded.tensor[1, 0, 3] == 255
    square = ImageList.from_tensors(masks, padding_constraints={"square_size": 16, "size_divisibility": 0})
    assert square.tensor.shape == (2, 16, 16)
    divisible = ImageList.from_tensors(masks, 0, padding_constraints={"size_divisibility": 5})
    assert divisible.tensor.shape == (2, 10, 10)


def test_to_and_bad_inputs():
    images = ImageList.from_tensors([torch.rand(3, 4, 4)])
    assert images.to(torch.float64).tensor.dtype == torch.float64
    assert images.device.type == "cpu"
    with pytest.raises(ValueError, match="non-empty list"):
        ImageList.from_tensors([])
    with pytest.raises(ValueError, match="item 1"):
        ImageList.from_tensors([torch.rand(3, 4, 4), torch.rand(1, 4, 4)])
    with pytest.raises(ValueError, match="square_size"):
        ImageList.from_tensors([torch.rand(3, 20, 4)], padding_constraints={"square_size": 16})
