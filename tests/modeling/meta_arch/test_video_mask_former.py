"""VideoMaskFormer: the official video inference (top-10 pairs), inputs / targets, training."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mask2former.config import get_cfg
from mask2former.modeling.build import build_model
from mask2former.modeling.meta_arch.video_mask_former import VideoMaskFormer, video_inference
from mask2former.structures import BitMasks, ImageList, Instances

CONFIG = Path(__file__).resolve().parents[3] / "configs/youtubevis_2019/swin/video_maskformer2_swin_tiny_bs16_8ep.yaml"


# ----------------------------------------------------------------------------------------------
# video_inference on constructed predictions
# ----------------------------------------------------------------------------------------------
def test_keeps_the_ten_best_query_class_pairs():
    num_q, k = 6, 4
    logits = torch.full((num_q, k + 1), -10.0)
    # softmax probabilities by construction: query q puts its mass on classes (q % k, (q+1) % k)
    for q in range(num_q):
        logits[q, q % k] = 2.0 + q * 0.1
        logits[q, (q + 1) % k] = 1.0
    masks = torch.randn(num_q, 3, 8, 10)  # (Q, T, Hp, Wp) already at the padded size
    out = video_inference(logits, masks, (8, 10), (8, 10), 8, 10, num_classes=k)

    probs = logits.softmax(-1)[:, :-1]
    expected = sorted(((probs[q, c].item(), q, c) for q in range(num_q) for c in range(k)), reverse=True)[:10]
    got = sorted(zip(out["pred_scores"], out["pred_labels"], range(10)), reverse=True)
    assert out["image_size"] == (8, 10)
    assert len(out["pred_scores"]) == len(out["pred_labels"]) == len(out["pred_masks"]) == 10
    for (score, q, c), (g_score, g_label, i) in zip(expected, got):
        assert g_score == pytest.approx(score, abs=1e-6) and g_label == c
        # its masks are that query's logits thresholded at 0, for every frame
        assert torch.equal(out["pred_masks"][i], masks[q] > 0)
        assert out["pred_masks"][i].dtype == torch.bool and out["pred_masks"][i].shape == (3, 8, 10)


def test_masks_are_cropped_to_the_image_then_resized_to_the_output():
    logits = torch.tensor([[3.0, 0.0, -5.0]])  # one query, two classes
    masks = -torch.ones(1, 2, 4, 6)
    masks[0, :, :2, :3] = 1.0  # the image is the top-left (2, 3) of the padded (4, 6) frame
    out = video_inference(logits, masks, (4, 6), (2, 3), 4, 6, num_classes=2)
    assert len(out["pred_scores"]) == 2  # fewer pairs than 10: all Q * K of them
    for m in out["pred_masks"]:
        assert m.shape == (2, 4, 6) and m.all()  # the whole image is inside the mask
    # with a padded frame twice the mask resolution, only the chosen query is upsampled
    out = video_inference(logits, masks[:, :, :2, :3], (4, 6), (4, 6), 4, 6, num_classes=2)
    assert out["pred_masks"][0].all()


# ----------------------------------------------------------------------------------------------
# The whole model (tiny Swin of the official tiny config)
# ----------------------------------------------------------------------------------------------
def _tiny_cfg(frames=2):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG))
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
        "MODEL.SWIN.EMBED_DIM", "16", "MODEL.SWIN.DEPTHS", "[1, 1, 1, 1]",
        "MODEL.SWIN.NUM_HEADS", "[1, 1, 2, 2]", "MODEL.SWIN.DROP_PATH_RATE", "0.0",
        "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
        "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "1", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "3",
        "MODEL.MASK_FORMER.HIDDEN_DIM", "32", "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "5",
        "MODEL.MASK_FORMER.NHEADS", "2", "MODEL.MASK_FORMER.DIM_FEEDFORWARD", "64",
        "MODEL.MASK_FORMER.DEC_LAYERS", "3", "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256",
        "INPUT.SAMPLING_FRAME_NUM", str(frames),
    ])
    return cfg


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(_tiny_cfg())


def _video(frames=2, size=(64, 96), seed=0, with_targets=False):
    g = torch.Generator().manual_seed(seed)
    video = {"image": [torch.rand(3, *size, generator=g) * 255 for _ in range(frames)],
             "height": size[0] * 2, "width": size[1] * 2, "video_id": seed}
    if with_targets:
        per_frame = []
        for f in range(frames):
            masks = torch.zeros(3, *size, dtype=torch.bool)
            masks[0, 10:40, 10 + 5 * f:50 + 5 * f] = True
            masks[1, 30:60, 60:90] = f > 0  # appears in frame 1
            inst = Instances(size)
            inst.gt_classes = torch.tensor([0, 2, 1])
            inst.gt_ids = torch.tensor([7, 8 if f > 0 else -1, -1])  # track 3 absent throughout
            inst.gt_masks = BitMasks(masks)
            per_frame.append(inst)
        video["instances"] = per_frame
    return video


def test_inference_output_is_the_official_video_dict(model):
    model.eval()
    with torch.no_grad():
        out = model([_video(frames=3)])  # any number of frames at inference
    assert set(out) == {"image_size", "pred_scores", "pred_labels", "pred_masks"}
    assert out["image_size"] == (128, 192)
    assert len(out["pred_scores"]) == 10 and all(isinstance(s, float) for s in out["pred_scores"])
    assert all(isinstance(c, int) and 0 <= c < 3 for c in out["pred_labels"])
    assert all(m.shape == (3, 128, 192) and m.dtype == torch.bool for m in out["pred_masks"])
    with pytest.raises(ValueError, match="one video per call"):
        model([_video(), _video(seed=1)])
    with pytest.raises(ValueError, match="list of"):
        model([{"image": torch.zeros(3, 32, 32)}])


def test_prepare_targets_keeps_tracks_present_in_some_frame(model):
    model.train()
    video = _video(with_targets=True)
    images = ImageList.from_tensors([torch.zeros(3, 64, 96)] * 2, 32)
    images.tensor = torch.zeros(2, 3, 96, 128)  # padded beyond the frames
    [target] = model.prepare_targets([video], images)
    assert target["labels"].tolist() == [0, 2]  # the never-present track is dropped
    assert target["ids"].tolist() == [[7, 7], [-1, 8]]
    assert target["masks"].shape == (2, 2, 96, 128) and target["masks"].dtype == torch.float32
    assert torch.equal(target["masks"][:, :, :64, :96].bool(),
                       torch.stack([inst.gt_masks.tensor[:2] for inst in video["instances"]], dim=1))
    assert target["masks"][:, :, 64:].sum() == 0 and target["masks"][:, :, :, 96:].sum() == 0


def test_training_step_gives_finite_weighted_losses_and_gradients(model):
    model.train()
    model.zero_grad()
    losses = model([_video(with_targets=True), _video(seed=1, with_targets=True)])
    # 3 decoder predictions: final + 2 aux, each ce / mask / dice
    assert len(losses) == 9 and all(torch.isfinite(v) for v in losses.values())
    assert set(losses) == set(model.criterion.weight_dict)
    sum(losses.values()).backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_bad_training_inputs_name_the_video(model):
    model.train()
    with pytest.raises(ValueError, match=r"video 0 \(video_id=0\) has 3 frames; INPUT.SAMPLING_FRAME_NUM is 2"):
        model([_video(frames=3, with_targets=True)])
    video = _video(with_targets=True)
    video["instances"] = video["instances"][:1]
    with pytest.raises(ValueError, match=r"video_id=0\) has 2 frames but 1 Instances"):
        model([video])
    with pytest.raises(ValueError, match="need 'instances'"):
        model([_video()])


def test_built_from_config(model):
    assert isinstance(model, VideoMaskFormer)
    assert model.num_frames == 2 and model.size_divisibility == 32
    assert model.sem_seg_head.predictor.num_frames == 2
