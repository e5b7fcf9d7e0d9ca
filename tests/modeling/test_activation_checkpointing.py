"""MODEL.SEM_SEG_HEAD.CHECKPOINT / MODEL.MASK_FORMER.CHECKPOINT / MODEL.RESNETS.CHECKPOINT: the
layers are recomputed in backward and the training step gives the same losses and gradients as
without checkpointing."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mask2former.data  # noqa: F401  (built-in metadata, as the engine does)
from mask2former.config import get_cfg
from mask2former.modeling import build_model
from mask2former.structures import BitMasks, Instances

SHAPES = Path(__file__).resolve().parents[2] / "configs" / "shapes" / "panoptic-segmentation" / "maskformer2_R18_bs8_1k.yaml"


def _model(pixel_decoder: bool, decoder: bool, backbone: bool = False, backbone_norm: str = "BN"):
    cfg = get_cfg()
    cfg.merge_from_file(str(SHAPES))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.MASK_FORMER.DROPOUT = 0.1  # the encoder's dropout masks must be replayed exactly
    cfg.MODEL.MASK_FORMER.TRAIN_NUM_POINTS = 256
    cfg.MODEL.SEM_SEG_HEAD.CHECKPOINT = pixel_decoder
    cfg.MODEL.MASK_FORMER.CHECKPOINT = decoder
    cfg.MODEL.RESNETS.CHECKPOINT = backbone
    cfg.MODEL.RESNETS.NORM = backbone_norm
    torch.manual_seed(0)
    return build_model(cfg).train()


def _batch():
    gen = torch.Generator().manual_seed(0)
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, 5:30, 10:50] = True
    masks[1, 35:60, 0:20] = True
    inst = Instances((64, 64))
    inst.gt_classes = torch.tensor([1, 4])
    inst.gt_masks = BitMasks(masks)
    return [{"image": (torch.rand(3, 64, 64, generator=gen) * 255).round(), "instances": inst}]


def _step(model):
    calls = {"encoder": 0, "decoder": 0, "backbone": 0}
    hooks = [
        model.backbone.res3[0].register_forward_pre_hook(
            lambda *a: calls.__setitem__("backbone", calls["backbone"] + 1)),
        model.sem_seg_head.pixel_decoder.transformer.encoder.layers[0].register_forward_pre_hook(
            lambda *a: calls.__setitem__("encoder", calls["encoder"] + 1)),
        model.sem_seg_head.predictor.transformer_ffn_layers[0].register_forward_pre_hook(
            lambda *a: calls.__setitem__("decoder", calls["decoder"] + 1)),
    ]
    torch.manual_seed(1)  # dropout and point sampling
    losses = model(_batch())
    total = sum(losses.values())
    total.backward()
    for h in hooks:
        h.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads, calls


@pytest.mark.parametrize("pixel_decoder,decoder,backbone,norm", [
    (True, False, False, "BN"), (False, True, False, "BN"), (True, True, False, "BN"),
    (False, False, True, "FrozenBN"), (True, True, True, "GN"),
])
def test_checkpointing_recomputes_and_gives_the_same_step(pixel_decoder, decoder, backbone, norm):
    ref_losses, ref_grads, ref_calls = _step(_model(False, False, backbone_norm=norm))
    losses, grads, calls = _step(_model(pixel_decoder, decoder, backbone, norm))
    assert ref_calls == {"encoder": 1, "decoder": 1, "backbone": 1}
    assert calls == {"encoder": 2 if pixel_decoder else 1, "decoder": 2 if decoder else 1,
                     "backbone": 2 if backbone else 1}
    assert losses.keys() == ref_losses.keys()
    for k in ref_losses:
        torch.testing.assert_close(losses[k], ref_losses[k], atol=1e-5, rtol=1e-5, msg=k)
    assert grads.keys() == ref_grads.keys() and len(grads) > 100
    for k in ref_grads:  # recomputation repeats the same float operations
        # (pre-hooks count calls: non-reentrant recomputation stops early, before forward hooks)
        torch.testing.assert_close(grads[k], ref_grads[k], atol=1e-5, rtol=1e-4, msg=k)


def test_resnet_checkpointing_refuses_batchnorm_statistics_updates():
    model = _model(False, False, backbone=True, backbone_norm="BN")
    with pytest.raises(ValueError, match=r"MODEL.RESNETS.CHECKPOINT.*stem.*BatchNorm2d.*twice"):
        model(_batch())
    model.backbone.freeze(2)  # frozen stem and res2 (FrozenBN) are fine; res3 still trains with BN
    with pytest.raises(ValueError, match=r"res3 block with a training BatchNorm2d"):
        model(_batch())


def test_checkpointing_is_off_in_eval_and_the_keys_reach_the_modules():
    model = _model(True, True, True, "FrozenBN")
    assert model.sem_seg_head.pixel_decoder.transformer.encoder.checkpoint
    assert model.sem_seg_head.predictor.checkpoint
    assert model.backbone.checkpoint
    model.eval()
    calls = []
    model.sem_seg_head.predictor.transformer_ffn_layers[0].register_forward_pre_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        model([{"image": torch.rand(3, 64, 64) * 255}])
    assert calls == [1]
