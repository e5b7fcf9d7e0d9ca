"""Point sampling (PointRend's helpers used by the matcher and the criterion)."""
from __future__ import annotations

import pytest
import torch

from mask2former.modeling.point_sampling import (
    calculate_uncertainty,
    get_uncertain_point_coords_with_randomness,
    point_sample,
    point_sample_binary,
)


def test_point_sample_is_bilinear_with_align_corners_false():
    a, b, c, d = 1.0, 2.0, 4.0, 8.0
    grid = torch.tensor([[[[a, b], [c, d]]]])  # (1, 1, 2, 2)
    coords = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5], [0.375, 0.25], [0.0, 0.0]]])
    values = point_sample(grid, coords, align_corners=False)  # (1, 1, 6)
    assert values.shape == (1, 1, 6)
    expected = [
        a,  # pixel centres sit at 0.25 / 0.75
        b,
        c,
        (a + b + c + d) / 4,
        0.75 * a + 0.25 * b,
        0.25 * a,  # corner: 3 of the 4 neighbours are zero padding
    ]
    torch.testing.assert_close(values[0, 0], torch.tensor(expected))


def test_point_sample_grid_shape():
    x = torch.randn(2, 3, 5, 7)
    coords = torch.rand(2, 4, 6, 2)
    assert point_sample(x, coords, align_corners=False).shape == (2, 3, 4, 6)


def test_calculate_uncertainty():
    logits = torch.tensor([[[-3.0, 0.0, 2.0]]])
    torch.testing.assert_close(calculate_uncertainty(logits), torch.tensor([[[-3.0, 0.0, -2.0]]]))
    with pytest.raises(ValueError, match=r"\(R, 1"):
        calculate_uncertainty(torch.zeros(1, 2, 3))


def _ramp_logits(num: int = 3, width: int = 64) -> torch.Tensor:
    # logit = x-position - right edge: uncertainty -|logit| grows monotonically to the right.
    ramp = torch.linspace(-20.0, 0.0, width)
    return ramp.view(1, 1, 1, width).expand(num, 1, 8, width).contiguous()


def test_importance_sampling_picks_most_uncertain_points():
    logits = _ramp_logits()
    num_points, oversample = 10, 3
    torch.manual_seed(0)
    coords = get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, num_points, oversample, 1.0)
    torch.manual_seed(0)
    candidates = torch.rand(3, num_points * oversample, 2)  # the function's first draw
    assert coords.shape == (3, num_points, 2)
    for box in range(3):
        chosen_x = coords[box, :, 0]
        # chosen points are the num_points candidates closest to the right edge (most uncertain)
        expected_x = candidates[box, :, 0].sort(descending=True).values[:num_points]
        torch.testing.assert_close(chosen_x.sort(descending=True).values, expected_x)


def test_importance_sampling_mixes_in_fresh_random_points():
    logits = _ramp_logits(num=2)
    torch.manual_seed(1)
    coords = get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 8, 3, 0.75)
    torch.manual_seed(1)
    candidates = torch.rand(2, 24, 2)
    fresh = torch.rand(2, 2, 2)  # 8 - int(0.75 * 8) random points, drawn after the candidates
    assert coords.shape == (2, 8, 2)
    torch.testing.assert_close(coords[:, 6:], fresh)
    for box in range(2):
        top6 = candidates[box, :, 0].sort(descending=True).values[:6]
        torch.testing.assert_close(coords[box, :6, 0].sort(descending=True).values, top6)


def test_importance_sampling_rejects_bad_ratios():
    logits = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="oversample_ratio"):
        get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 4, 0.5, 0.5)
    with pytest.raises(ValueError, match="importance_sample_ratio"):
        get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 4, 2, 1.5)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.float32])
def test_point_sample_binary_equals_grid_sample_of_the_float_masks(dtype):
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(4, 23, 31, generator=gen) > 0.5
    coords = torch.rand(4, 500, 2, generator=gen)
    coords[:, :4] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5 / 31, 0.5 / 23]])  # borders, a centre
    expected = point_sample(masks.float()[:, None], coords, align_corners=False)[:, 0]
    actual = point_sample_binary(masks.to(dtype), coords)
    assert actual.dtype == torch.float32 and actual.shape == (4, 500)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    assert actual[:, 3].tolist() == masks[:, 0, 0].float().tolist()  # a pixel centre reads that pixel
    # a zero-padded frame: the masks in its top-left corner
    padded = torch.zeros(4, 30, 40)
    padded[:, :23, :31] = masks.float()
    expected = point_sample(padded[:, None], coords, align_corners=False)[:, 0]
    torch.testing.assert_close(point_sample_binary(masks, coords, size=(30, 40)), expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="smaller than the masks"):
        point_sample_binary(masks, coords, size=(20, 40))
