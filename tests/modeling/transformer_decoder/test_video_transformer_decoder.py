"""Video Mask2Former transformer decoder: shapes, clip-wide attention, the masked-attention rule."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mask2former.config import get_cfg
from mask2former.modeling.build import build_transformer_decoder
from mask2former.modeling.transformer_decoder.mask2former_transformer_decoder import (
    MultiScaleMaskedTransformerDecoder,
)
from mask2former.modeling.transformer_decoder.video_mask2former_transformer_decoder import (
    VideoMultiScaleMaskedTransformerDecoder,
    video_masked_attention_allowed,
)

HIDDEN, QUERIES, CLASSES, FRAMES = 32, 6, 5, 3
CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def _decoder(num_frames: int = FRAMES) -> VideoMultiScaleMaskedTransformerDecoder:
    torch.manual_seed(0)
    return VideoMultiScaleMaskedTransformerDecoder(
        HIDDEN, True, num_classes=CLASSES, hidden_dim=HIDDEN, num_queries=QUERIES, nheads=4,
        dim_feedforward=64, dec_layers=3, pre_norm=False, mask_dim=HIDDEN,
        enforce_input_project=False, num_frames=num_frames,
    )


def _features(num_images: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = [torch.randn(num_images, HIDDEN, s, s + 1, generator=g) for s in (2, 4, 8)]
    mask_features = torch.randn(num_images, HIDDEN, 16, 18, generator=g)
    return x, mask_features


def test_shapes_in_training_and_inference():
    dec = _decoder().train()
    x, mf = _features(2 * FRAMES)  # two videos of 3 frames
    out = dec(x, mf)
    assert out["pred_logits"].shape == (2, QUERIES, CLASSES + 1)
    assert out["pred_masks"].shape == (2, QUERIES, FRAMES, 16, 18)  # (B, Q, T, H/4, W/4)
    assert len(out["aux_outputs"]) == 3  # learnable-query prediction + 2 of the 3 layers
    for aux in out["aux_outputs"]:
        assert aux["pred_logits"].shape == (2, QUERIES, CLASSES + 1)
        assert aux["pred_masks"].shape == (2, QUERIES, FRAMES, 16, 18)
    # inference: all inputs are the frames of one video, of any length
    dec.eval()
    x, mf = _features(5)
    with torch.no_grad():
        out = dec(x, mf)
    assert out["pred_masks"].shape == (1, QUERIES, 5, 16, 18)


def test_queries_attend_to_every_frame_of_their_own_video_only():
    dec = _decoder().train()
    x, mf = _features(2 * FRAMES)
    base = dec(x, mf)
    # change only the attended features of frame 2 of video 0
    x2 = [f.clone() for f in x]
    for f in x2:
        f[2] += 1.0
    out = dec(x2, mf)
    # frame 0's masks and the clip's classes of video 0 change (queries saw frame 2) ...
    assert not torch.allclose(out["pred_masks"][0, :, 0], base["pred_masks"][0, :, 0])
    assert not torch.allclose(out["pred_logits"][0], base["pred_logits"][0])
    # ... and nothing of video 1 does
    torch.testing.assert_close(out["pred_masks"][1], base["pred_masks"][1], atol=0, rtol=0)
    torch.testing.assert_close(out["pred_logits"][1], base["pred_logits"][1], atol=0, rtol=0)


def test_masks_are_query_embedding_dot_per_frame_features():
    dec = _decoder().eval()
    output = torch.randn(1, QUERIES, HIDDEN)
    mf = torch.randn(1, FRAMES, HIDDEN, 4, 5)
    cls, masks, allowed = dec.forward_prediction_heads(output, mf, attn_mask_target_size=(2, 3))
    emb = dec.mask_embed(dec.decoder_norm(output))[0]  # (Q, C)
    for t in range(FRAMES):
        expected = (emb @ mf[0, t].flatten(1)).view(QUERIES, 4, 5)
        torch.testing.assert_close(masks[0, :, t], expected, atol=1e-5, rtol=1e-5)
    assert allowed.shape == (1, QUERIES, FRAMES * 2 * 3)


def test_masked_attention_rule_spans_the_clip():
    logits = torch.full((1, 3, 2, 4, 4), -5.0)  # (B, Q, T, H, W)
    logits[0, 0, 1, :2, :2] = 5.0  # query 0: only the top-left of frame 1
    logits[0, 2] = 5.0  # query 2: everywhere; query 1: nowhere -> attends everywhere
    allowed = video_masked_attention_allowed(logits, (2, 2)).view(3, 2, 2, 2)  # (Q, T, h, w)
    expected_q0 = torch.zeros(2, 2, 2, dtype=torch.bool)
    expected_q0[1, 0, 0] = True  # frame 0 stays masked although the query sees nothing there
    assert torch.equal(allowed[0], expected_q0)
    assert allowed[1].all() and allowed[2].all()


def test_state_dict_equals_the_image_decoder_and_config_build():
    video = _decoder()
    torch.manual_seed(0)
    image = MultiScaleMaskedTransformerDecoder(
        HIDDEN, True, num_classes=CLASSES, hidden_dim=HIDDEN, num_queries=QUERIES, nheads=4,
        dim_feedforward=64, dec_layers=3, pre_norm=False, mask_dim=HIDDEN, enforce_input_project=False,
    )
    assert [(k, v.shape) for k, v in video.state_dict().items()] == [
        (k, v.shape) for k, v in image.state_dict().items()
    ]
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "youtubevis_2019" / "video_maskformer2_R50_bs16_8ep.yaml"))
    cfg.INPUT.SAMPLING_FRAME_NUM = 4
    with torch.device("meta"):
        dec = build_transformer_decoder(cfg, 256, mask_classification=True)
    assert isinstance(dec, VideoMultiScaleMaskedTransformerDecoder)
    assert dec.num_frames == 4 and dec.num_layers == 9


def test_bad_input_is_rejected():
    dec = _decoder().train()
    x, mf = _features(4)  # 4 frames is not a whole number of 3-frame videos
    with pytest.raises(ValueError, match="not a multiple of num_frames = 3"):
        dec(x, mf)
    with pytest.raises(ValueError, match="3 feature levels"):
        dec(x[:2], mf)
    with pytest.raises(ValueError, match="SAMPLING_FRAME_NUM"):
        _decoder(num_frames=0)


def test_one_training_clip_decodes_as_in_inference():
    dec = _decoder()
    x, mf = _features(FRAMES)
    with torch.no_grad():
        train_out = dec.train()(x, mf)  # 3 frames = one training clip
        eval_out = dec.eval()(x, mf)  # all inputs = one video
    torch.testing.assert_close(train_out["pred_masks"], eval_out["pred_masks"], atol=0, rtol=0)
    torch.testing.assert_close(train_out["pred_logits"], eval_out["pred_logits"], atol=0, rtol=0)
