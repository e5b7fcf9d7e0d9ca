"""BitMasks and polygon rasterisation."""
import numpy as np
import pytest
import torch

from mask2former.structures import BitMasks, polygons_to_bitmask


def test_bitmasks_boxes_nonempty_indexing():
    tensor = torch.zeros(3, 6, 8)
    tensor[0, 1:4, 2:7] = 1
    tensor[2, 5, 0] = 1
    masks = BitMasks(tensor)
    assert masks.tensor.dtype == torch.bool and masks.image_size == (6, 8) and len(masks) == 3
    assert masks.nonempty().tolist() == [True, False, True]
    assert masks.get_bounding_boxes().tensor.tolist() == [[2, 1, 7, 4], [0, 0, 0, 0], [0, 5, 1, 6]]
    assert len(masks[1]) == 1 and len(masks[torch.tensor([0, 2])]) == 2
    assert len(BitMasks.cat([masks, masks[0]])) == 4
    assert BitMasks(np.zeros((2, 3, 3), dtype=np.uint8)).tensor.shape == (2, 3, 3)
    with pytest.raises(ValueError, match="N, H, W"):
        BitMasks(torch.zeros(3, 3))


def test_polygons_to_bitmask_rasterises_union():
    square = [np.array([1, 1, 5, 1, 5, 4, 1, 4], dtype=np.float64)]
    mask = polygons_to_bitmask(square, 6, 8)
    assert mask.dtype == bool and mask.shape == (6, 8)
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (1, 4, 1, 3)
    two = polygons_to_bitmask(square + [np.array([6, 4, 8, 4, 8, 6, 6, 6])], 6, 8)
    assert two.sum() == mask.sum() + 4
    assert not polygons_to_bitmask([], 6, 8).any()
    with pytest.raises(ValueError, match="Polygon 0"):
        polygons_to_bitmask([np.array([1, 1, 2, 2])], 6, 8)


def test_from_polygon_masks():
    per_instance = [[np.array([0, 0, 4, 0, 4, 4, 0, 4])], []]
    masks = BitMasks.from_polygon_masks(per_instance, 5, 5)
    assert masks.tensor.shape == (2, 5, 5)
    assert masks.nonempty().tolist() == [True, False]
    assert masks.get_bounding_boxes().tensor[0].tolist() == [0, 0, 4, 4]
    assert BitMasks.from_polygon_masks([], 5, 5).tensor.shape == (0, 5, 5)
