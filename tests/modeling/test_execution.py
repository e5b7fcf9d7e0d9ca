"""Execution options of built models (modeling/execution.py): MODEL.PRECISION, MODEL.CHANNELS_LAST,
MODEL.CHANNELS_LAST_TRAINING, MODEL.COMPILE.
Each option runs and agrees with the default float32 path within a stated tolerance."""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch

import mask2former.data  # noqa: F401  (built-in metadata, as the engine does)
from mask2former.checkpoint import DetectionCheckpointer
from mask2former.config import get_cfg
from mask2former.modeling import build_model
from mask2former.structures import BitMasks, Instances

REPO_ROOT = Path(__file__).resolve().parents[2]
SHAPES = REPO_ROOT / "configs" / "shapes" / "panoptic-segmentation" / "maskformer2_R18_bs8_1k.yaml"

# bf16 keeps 8 mantissa bits: on the tiny random-weight reference model (near-uniform class
# scores, so many per-pixel near-ties) we measured 99.56 % identical panoptic pixels and 94.96 %
# identical semantic argmax pixels (docs/performance.md); the bounds leave a little room.
MIN_SAME_PANOPTIC = 0.98
MIN_SAME_ARGMAX = 0.93


def _shapes_cfg(**overrides):
    cfg = get_cfg()
    cfg.merge_from_file(str(SHAPES))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    for key, value in overrides.items():
        node = cfg
        *path, last = key.split(".")
        for name in path:
            node = node[name]
        node[last] = value
    return cfg


def _images(seed: int = 0, size=(64, 96)):
    gen = torch.Generator().manual_seed(seed)
    return [{"image": (torch.rand(3, *size, generator=gen) * 255).round(), "height": size[0], "width": size[1]}]


def _training_inputs():
    """One 64x96 random image with one rectangular segment of class 1."""
    inputs = _images()
    mask = torch.zeros(1, 64, 96, dtype=torch.bool)
    mask[0, 10:40, 20:60] = True
    inst = Instances((64, 96))
    inst.gt_classes = torch.tensor([1])
    inst.gt_masks = BitMasks(mask)
    inputs[0]["instances"] = inst
    return inputs


def _reference_case(reference_dir: Path, precision: str):
    case = reference_dir / "official_outputs" / "m2f_swin_panoptic"
    cfg = get_cfg()
    cfg.merge_from_file(str(case / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.PRECISION = precision
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(case / "model_final.pkl"))
    return model.eval(), torch.load(case / "inputs.pt", weights_only=True)


def test_bfloat16_inference_agrees_with_float32_on_the_reference_case(reference_dir):
    fp32, inputs = _reference_case(reference_dir, "float32")
    bf16, _ = _reference_case(reference_dir, "bfloat16")
    seen = {}
    # the deformable encoder (its regions re-enter autocast inside the pixel decoder) and the decoder run in bf16
    encoder_linear = bf16.sem_seg_head.pixel_decoder.transformer.encoder.layers[0].linear1
    encoder_linear.register_forward_hook(lambda m, a, out: seen.update(encoder=out.dtype))
    bf16.sem_seg_head.predictor.class_embed.register_forward_hook(lambda m, a, out: seen.update(decoder=out.dtype))
    bf16.sem_seg_head.register_forward_hook(lambda m, a, out: seen.update(head=out["pred_masks"].dtype))
    bf16.backbone.register_forward_hook(lambda m, a, out: seen.update(backbone=next(iter(out.values())).dtype))
    with torch.no_grad():
        [a], [b] = fp32(inputs), bf16(inputs)
    assert seen == {"encoder": torch.bfloat16, "decoder": torch.bfloat16, "head": torch.float32,
                    "backbone": torch.float32}
    assert b["sem_seg"].dtype == torch.float32 and b["sem_seg"].shape == a["sem_seg"].shape
    same_argmax = (a["sem_seg"].argmax(0) == b["sem_seg"].argmax(0)).float().mean().item()
    (pan_a, info_a), (pan_b, info_b) = a["panoptic_seg"], b["panoptic_seg"]
    same_panoptic = (pan_a == pan_b).float().mean().item()
    assert same_argmax >= MIN_SAME_ARGMAX, same_argmax
    assert same_panoptic >= MIN_SAME_PANOPTIC, same_panoptic
    assert info_a == info_b
    assert not torch.equal(a["sem_seg"], b["sem_seg"])  # it did compute in another precision


def test_precision_leaves_training_in_float32_and_rejects_unknown_values():
    torch.manual_seed(0)
    model = build_model(_shapes_cfg(**{"MODEL.PRECISION": "bfloat16"}))
    seen = []
    model.sem_seg_head.predictor.class_embed.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    model.train()
    model.sem_seg_head(model.backbone(torch.randn(1, 3, 64, 64)))
    model.eval()
    with torch.no_grad():
        model(_images())
    assert seen[0] == torch.float32 and seen[-1] == torch.bfloat16
    copied = copy.deepcopy(model)  # e.g. for an EMA copy: the hooks come along and still work
    copied.sem_seg_head.predictor.class_embed.register_forward_hook(lambda m, a, out: seen.append(("copy", out.dtype)))
    with torch.no_grad():
        copied(_images())
    assert seen[-1] == ("copy", torch.bfloat16)
    with pytest.raises(ValueError, match="MODEL.PRECISION = 'int8'"):
        build_model(_shapes_cfg(**{"MODEL.PRECISION": "int8"}))


def test_bfloat16_inference_warns_where_bfloat16_is_slow_and_still_runs_in_bfloat16(monkeypatch):
    from mask2former.modeling import execution

    messages = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    execution.logger.addHandler(handler)
    try:
        for fast in (True, False):
            monkeypatch.setattr(execution, "cpu_has_fast_bfloat16", lambda: fast)
            model = build_model(_shapes_cfg(**{"MODEL.PRECISION": "bfloat16"}))
            assert model.inference_precision == torch.bfloat16  # an explicit choice: kept
            assert len(messages) == (0 if fast else 1)
    finally:
        execution.logger.removeHandler(handler)
    assert "MODEL.PRECISION bfloat16" in messages[0] and "cpu_has_fast_bfloat16" in messages[0]


def test_channels_last_network_gives_the_same_results(coco_encoder_layout):
    # the COCO layout: an FPN level at 1/4 whose convolutions must compute in the backbone's layout
    # (the shapes recipe has no FPN level)
    results, layouts = {}, {}
    for flag in (False, True):
        torch.manual_seed(0)
        cfg = _shapes_cfg(**{"MODEL.CHANNELS_LAST": flag, "MODEL.CHANNELS_LAST_TRAINING": False})
        cfg.merge_from_list(coco_encoder_layout)
        model = build_model(cfg).eval()
        model.backbone.stem.conv1.register_forward_hook(
            lambda m, a, out, flag=flag: layouts.update({flag: out.is_contiguous(memory_format=torch.channels_last)}))
        feats = {}
        model.backbone.register_forward_hook(lambda m, a, out: feats.update(out))
        mask_features = []
        model.sem_seg_head.pixel_decoder.mask_features.register_forward_hook(
            lambda m, a, out: mask_features.append(out))
        with torch.no_grad():
            results[flag] = model(_images())[0]
        # handed on in that layout: the pixel decoder's convolutions compute in it as well
        assert all(f.is_contiguous(memory_format=torch.channels_last) == flag for f in feats.values())
        assert mask_features[0].is_contiguous(memory_format=torch.channels_last) == flag
    assert layouts == {False: False, True: True}
    model.train()  # training keeps the default layout unless MODEL.CHANNELS_LAST_TRAINING
    model.backbone(torch.rand(1, 3, 64, 64))
    assert layouts[True] is False
    torch.testing.assert_close(results[True]["sem_seg"], results[False]["sem_seg"], atol=1e-4, rtol=1e-4)
    assert torch.equal(results[True]["panoptic_seg"][0], results[False]["panoptic_seg"][0])


def test_channels_last_training_gives_the_same_losses_and_gradients():
    losses, grads, layouts = {}, {}, {}
    for flag in (False, True):
        torch.manual_seed(0)
        model = build_model(_shapes_cfg(**{"MODEL.CHANNELS_LAST": False,
                                           "MODEL.CHANNELS_LAST_TRAINING": flag})).train()
        model.backbone.stem.conv1.register_forward_hook(
            lambda m, a, out, flag=flag: layouts.setdefault(flag, []).append(
                (m.training, out.is_contiguous(memory_format=torch.channels_last))))
        torch.manual_seed(1)  # the same point sampling
        loss = sum(model(_training_inputs()).values())
        loss.backward()
        losses[flag] = loss.detach()
        grads[flag] = model.backbone.stem.conv1.weight.grad
        with torch.no_grad():  # inference follows MODEL.CHANNELS_LAST (False here)
            model.eval()(_images())
    assert layouts == {False: [(True, False), (False, False)], True: [(True, True), (False, False)]}
    torch.testing.assert_close(losses[True], losses[False], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(grads[True], grads[False], atol=1e-5, rtol=1e-3)


@pytest.mark.slow
def test_compiled_model_agrees_with_eager_and_keeps_its_state_dict():
    # "aot_eager": dynamo's graph capture and AOT autograd (where compiled semantics could
    # differ) without inductor's C++ code generation, which took over 20 minutes for this model
    # on the loaded 2-core development machine (docs/performance.md)
    torch.manual_seed(0)
    eager = build_model(_shapes_cfg()).eval()
    torch.manual_seed(0)
    compiled = build_model(_shapes_cfg(**{"MODEL.COMPILE": True, "MODEL.COMPILE_BACKEND": "aot_eager"})).eval()
    assert list(compiled.state_dict()) == list(eager.state_dict())
    compiled.load_state_dict(eager.state_dict())
    images = _images()
    with torch.no_grad():
        expected = eager(images)[0]
        actual = compiled(images)[0]
    assert compiled.backbone._compiled_call_impl is not None  # compiled in place
    torch.testing.assert_close(actual["sem_seg"], expected["sem_seg"], atol=1e-4, rtol=1e-4)
    # training through the compiled parts: the same losses
    model_inputs = _training_inputs()
    losses = {}
    for name, model in (("eager", eager), ("compiled", compiled)):
        model.train()
        torch.manual_seed(1)  # the same point sampling
        out = model(model_inputs)
        losses[name] = sum(out.values())
        losses[name].backward()
    torch.testing.assert_close(losses["compiled"], losses["eager"], atol=1e-4, rtol=1e-4)
    grad_e = eager.sem_seg_head.predictor.class_embed.weight.grad
    grad_c = compiled.sem_seg_head.predictor.class_embed.weight.grad
    torch.testing.assert_close(grad_c, grad_e, atol=1e-4, rtol=1e-3)
