"""3-D sine position encoding (Video Mask2Former), against a scalar re-computation."""
from __future__ import annotations

import math

import pytest
import torch

from mask2former.layers import PositionEmbeddingSine, PositionEmbeddingSine3D


def _by_hand(t, y, x, sizes, num_pos_feats, temperature, scale):
    """Encoding of one (t, y, x) position (0-based) of a clip of size (T, H, W), normalised."""
    frames, height, width = sizes
    eps = 1e-6
    z = (t + 1) / (frames + eps) * scale
    yy = (y + 1) / (height + eps) * scale
    xx = (x + 1) / (width + eps) * scale

    def enc(v, c, n):
        freq = temperature ** (2 * (c // 2) / n)
        return math.sin(v / freq) if c % 2 == 0 else math.cos(v / freq)

    out = []
    for c in range(2 * num_pos_feats):
        spatial = enc(yy, c, num_pos_feats) if c < num_pos_feats else enc(xx, c - num_pos_feats, num_pos_feats)
        out.append(spatial + enc(z, c, 2 * num_pos_feats))
    return torch.tensor(out)


def test_matches_the_formula_at_every_position():
    num_pos_feats, sizes = 6, (3, 4, 5)
    pe = PositionEmbeddingSine3D(num_pos_feats, temperature=100, normalize=True)
    out = pe(torch.zeros(2, sizes[0], 7, sizes[1], sizes[2]))  # (B, T, C, H, W), C unused
    assert out.shape == (2, 3, 2 * num_pos_feats, 4, 5)
    for t in range(3):
        for y in range(4):
            for x in range(5):
                expected = _by_hand(t, y, x, sizes, num_pos_feats, 100, 2 * math.pi)
                torch.testing.assert_close(out[1, t, :, y, x], expected, atol=1e-5, rtol=0)


def test_spatial_part_is_the_2d_encoding_and_time_changes_it():
    pe3 = PositionEmbeddingSine3D(8, normalize=True)
    pe2 = PositionEmbeddingSine(8, normalize=True)
    out = pe3(torch.zeros(1, 2, 3, 6, 4))
    spatial = pe2(torch.zeros(1, 3, 6, 4))  # (1, 16, 6, 4)
    # frame t differs from the 2-D encoding by a per-channel constant (its time code)
    for t in range(2):
        diff = out[0, t] - spatial[0]
        torch.testing.assert_close(diff, diff[:, :1, :1].expand_as(diff), atol=1e-6, rtol=0)
    assert not torch.allclose(out[0, 0], out[0, 1])


def test_padding_mask_restarts_positions_and_bad_input_is_rejected():
    pe = PositionEmbeddingSine3D(4)  # not normalised: positions are 1-based counts
    mask = torch.zeros(1, 2, 3, 3, dtype=torch.bool)
    mask[:, :, :, 2] = True  # last column padded
    out = pe(torch.zeros(1, 2, 1, 3, 3), mask)
    # channel 4 = first x channel, sin(x / 1), plus time channel 4, sin(t / 10000 ** (4 / 8));
    # x counts 1, 2 and then stays 2 in the padded column, whose time count stays 0
    for t in range(2):
        expected = torch.tensor([1.0, 2.0, 2.0]).sin() + torch.tensor([1.0, 1.0, 0.0]) * math.sin((t + 1) / 100.0)
        for y in range(3):
            torch.testing.assert_close(out[0, t, 4, y], expected, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        pe(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="normalize"):
        PositionEmbeddingSine3D(4, scale=1.0)


def test_2d_encoding_is_cached_per_size_and_equals_the_all_valid_mask():
    pe = PositionEmbeddingSine(8, normalize=True)
    x = torch.zeros(2, 3, 4, 5)
    first, again = pe(x), pe(torch.ones(2, 7, 4, 5))  # only the size matters
    assert again is first
    explicit = pe(x, torch.zeros(2, 4, 5, dtype=torch.bool))  # a mask is never cached
    assert explicit is not first
    torch.testing.assert_close(first, explicit, atol=0, rtol=0)
    assert pe(torch.zeros(1, 3, 4, 5)).shape == (1, 16, 4, 5)
    # x position of column 4 (last), channel 0 of the x half: sin((4 + 1) / (5 + 1e-6) * 2 pi)
    torch.testing.assert_close(first[0, 8, 0, 4], torch.tensor(math.sin(5 / (5 + 1e-6) * 2 * math.pi)))
