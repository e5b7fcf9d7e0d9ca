"""Hugging Face transformers checkpoints both ways: tiny random-weight Mask2Former / MaskFormer
(Swin; Mask2Former also ResNet) saved with ``save_pretrained``, converted by the tools, run by
this package: same class / mask logits (1e-4) and the same panoptic segmentation as transformers;
the reverse conversion reproduces the files exactly. Nothing is downloaded."""
from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

transformers = pytest.importorskip("transformers")  # test-only dependency

from safetensors.torch import load_file  # noqa: E402

from mask2former.checkpoint import DetectionCheckpointer, load_checkpoint_file  # noqa: E402
from mask2former.checkpoint.hf_checkpoint import resolve_hf_uri  # noqa: E402
from mask2former.checkpoint.hf_config import d2_config_from_hf, hf_config_from_d2  # noqa: E402
from mask2former.checkpoint.hf_conversion import convert_d2_to_hf_state_dict, convert_hf_to_d2_state_dict  # noqa: E402
from mask2former.config import get_cfg  # noqa: E402
from mask2former.modeling import build_model  # noqa: E402
from mask2former.utils.catalog import MetadataCatalog  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NUM_CLASSES, THINGS = 5, (0, 1)  # classes 2..4 are stuff
SIZE = 384  # transformers' Mask2Former post-processing works at 384x384; every Swin stage > window 7
METADATA = "hf_conversion_test_tiny"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _swin(cls_name: str):
    cls = getattr(transformers, cls_name)
    return cls(embed_dim=16, depths=[1, 2, 2, 1], num_heads=[1, 2, 2, 4], window_size=7, drop_path_rate=0.0,
               out_features=["stage1", "stage2", "stage3", "stage4"])


def _mask2former(backbone) -> "transformers.PreTrainedModel":
    config = transformers.Mask2FormerConfig(
        backbone_config=backbone, num_labels=NUM_CLASSES, num_queries=6, hidden_dim=32, mask_feature_size=32,
        feature_size=32, encoder_feedforward_dim=96, dim_feedforward=64, encoder_layers=2, decoder_layers=3,
        num_attention_heads=4, use_pretrained_backbone=False,
        id2label={i: f"class_{i}" for i in range(NUM_CLASSES)})
    return transformers.Mask2FormerForUniversalSegmentation(config)


def _resnet18():
    return transformers.ResNetConfig(depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic",
                                     out_features=["stage1", "stage2", "stage3", "stage4"])


def _maskformer(backbone=None) -> "transformers.PreTrainedModel":
    config = transformers.MaskFormerConfig(
        backbone_config=backbone or _swin("MaskFormerSwinConfig"), num_labels=NUM_CLASSES, mask_feature_size=32,
        fpn_feature_size=32, id2label={i: f"class_{i}" for i in range(NUM_CLASSES)},
        decoder_config=dict(model_type="detr", d_model=32, decoder_layers=2, decoder_attention_heads=4,
                            decoder_ffn_dim=64, encoder_layers=0, num_queries=6))
    return transformers.MaskFormerForInstanceSegmentation(config)


def _image() -> torch.Tensor:
    """A 4x4 grid of flat random colours (RGB, 0-255): random masks with some spatial structure."""
    gen = torch.Generator().manual_seed(3)
    colours = torch.rand(3, 4, 4, generator=gen) * 255.0
    return colours.repeat_interleave(SIZE // 4, 1).repeat_interleave(SIZE // 4, 2)


def _normalised(image: torch.Tensor, cfg_or_none=None) -> torch.Tensor:
    mean = torch.tensor([123.675, 116.28, 103.53]) if cfg_or_none is None else torch.tensor(cfg_or_none.MODEL.PIXEL_MEAN)
    std = torch.tensor([58.395, 57.12, 57.375]) if cfg_or_none is None else torch.tensor(cfg_or_none.MODEL.PIXEL_STD)
    return ((image - mean.view(3, 1, 1)) / std.view(3, 1, 1))[None]


def _randomise(model, seed: int):
    """Every weight random: zero biases or unit norms would hide a mapping mistake."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.02 if "embedder.embedder" in name or "stages" in name else 0.2)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                b.normal_(0.0, 0.1)
    return model.eval()


def _solved_class_head(model, normalised: torch.Tensor):
    """A class head (weight, bias) under which the queries predict classes 0, 1, 2, 2, 3 and
    no-object with scores ~1 (least squares on the last decoder layer's query features).

    Random weights alone give every query the same class; and transformers' segment-area rule
    weights the mask probabilities by the class score where the official rule does not, so the
    two agree only for scores ~1."""
    seen = []
    hook = model.class_predictor.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    with torch.no_grad():
        model(pixel_values=normalised)
    hook.remove()
    queries = seen[-1][0].double()  # (Q, C)
    design = torch.cat([queries, torch.ones(len(queries), 1, dtype=torch.float64)], 1)
    target = torch.zeros(len(queries), NUM_CLASSES + 1, dtype=torch.float64)
    target[torch.arange(len(queries)), torch.tensor([0, 1, 2, 2, 3, NUM_CLASSES])] = 15.0
    solution = torch.linalg.lstsq(design, target).solution  # (C + 1, K + 1)
    return solution[:-1].T.float().contiguous(), solution[-1].float().contiguous()


@pytest.fixture(scope="module")
def metadata():
    meta = MetadataCatalog.get(METADATA)
    if not hasattr(meta, "thing_dataset_id_to_contiguous_id"):
        meta.set(thing_dataset_id_to_contiguous_id={i: i for i in THINGS},
                 stuff_classes=[f"class_{i}" for i in range(NUM_CLASSES)])
    return METADATA


def _convert(hf_model, tmp: Path, fmt: str) -> Path:
    hf_dir, out = tmp / "hf", tmp / "d2"
    hf_model.save_pretrained(str(hf_dir))
    assert _tool("convert-hf-to-d2").main(["--input", str(hf_dir), "--output", str(out), "--format", fmt]) == 0
    return out


def _our_model(out: Path, fmt: str, metadata: str, caplog):
    cfg = get_cfg()
    cfg.merge_from_file(str(out / "config.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(out / f"model_final.{fmt}"),
                         "DATASETS.TEST", f"('{metadata}',)", "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "True",
                         "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.5",
                         # transformers' panoptic rule: no mask-prob >= 0.5 requirement per pixel
                         "MODEL.MASK_FORMER.TEST.PANOPTIC_REQUIRE_MASK_PROB", "False"])
    model = build_model(cfg).eval()
    with caplog.at_level(logging.INFO, logger="mask2former.checkpoint"):
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    assert "All model weights were loaded" in caplog.text, caplog.text
    return cfg, model


def _hf_panoptic(hf_model, outputs, stuff, overlap: float):
    """transformers' panoptic post-processing, given logits already upsampled to the image size
    (as the official code and ours do before the sigmoid; MaskFormer v1's processor would
    upsample probabilities instead)."""
    processor = transformers.Mask2FormerImageProcessor()
    up = torch.nn.functional.interpolate(outputs.masks_queries_logits, size=(SIZE, SIZE), mode="bilinear",
                                         align_corners=False)
    result = processor.post_process_panoptic_segmentation(
        SimpleNamespace(class_queries_logits=outputs.class_queries_logits, masks_queries_logits=up),
        threshold=0.5, mask_threshold=0.5, overlap_mask_area_threshold=overlap, label_ids_to_fuse=set(stuff))[0]
    return result


def _near_ties(outputs, gap: float = 1e-4) -> torch.Tensor:
    """(H, W) True where the two best score-weighted mask probabilities of the kept queries
    differ by less than ``gap``: the pixels whose argmax float noise may decide."""
    scores, labels = outputs.class_queries_logits[0].softmax(-1).max(-1)
    keep = (labels != NUM_CLASSES) & (scores > 0.5)
    up = torch.nn.functional.interpolate(outputs.masks_queries_logits, size=(SIZE, SIZE), mode="bilinear",
                                         align_corners=False)[0]
    weighted = up[keep].sigmoid() * scores[keep].view(-1, 1, 1)  # (K, H, W)
    if len(weighted) < 2:
        return torch.zeros(SIZE, SIZE, dtype=torch.bool)
    top2 = weighted.topk(2, dim=0).values
    return (top2[0] - top2[1]) < gap


def _check_against_transformers(hf_model, cfg, model):
    image = _image()
    normalised = _normalised(image, cfg)
    with torch.no_grad():
        ours = model.sem_seg_head(model.backbone(normalised))
        theirs = hf_model(pixel_values=normalised)
    torch.testing.assert_close(ours["pred_logits"], theirs.class_queries_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(ours["pred_masks"], theirs.masks_queries_logits, atol=1e-4, rtol=0)

    # panoptic: the same class head on both sides (the mapping of that head was just checked)
    weight, bias = _solved_class_head(hf_model, normalised)
    with torch.no_grad():
        for head in (hf_model.class_predictor, model.sem_seg_head.predictor.class_embed):
            head.weight.copy_(weight)
            head.bias.copy_(bias)
        theirs = hf_model(pixel_values=normalised)
    stuff = [c for c in range(NUM_CLASSES) if c not in THINGS]
    # overlap 0: every query owning pixels is a segment (things, fused stuff); 0.8: official value
    for overlap, min_segments in ((0.0, 3), (0.8, 1)):
        model.overlap_threshold = overlap
        with torch.no_grad():
            panoptic, segments = model([{"image": image, "height": SIZE, "width": SIZE}])[0]["panoptic_seg"]
        expected = _hf_panoptic(hf_model, theirs, stuff, overlap)
        assert len(expected["segments_info"]) >= min_segments
        differ = panoptic.to(torch.int32) != expected["segmentation"].to(torch.int32)
        # float noise (logits agree to 1e-4) may only flip pixels where two queries tie
        assert not (differ & ~_near_ties(theirs)).any() and differ.sum() <= differ.numel() // 1000
        got = sorted((s["id"], s["category_id"], s["isthing"]) for s in segments)
        want = sorted({(s["id"], s["label_id"], s["label_id"] in THINGS) for s in expected["segments_info"]})
        assert got == want


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pkl", "safetensors"])
def test_mask2former_swin_matches_transformers(tmp_path, metadata, caplog, fmt):
    hf_model = _randomise(_mask2former(_swin("SwinConfig")), seed=4)
    out = _convert(hf_model, tmp_path, fmt)
    cfg, model = _our_model(out, fmt, metadata, caplog)
    assert cfg.MODEL.SWIN.DEPTHS == [1, 2, 2, 1] and cfg.MODEL.MASK_FORMER.DEC_LAYERS == 3
    assert cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS == 2 and cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == NUM_CLASSES
    assert json.loads((out / "id2label.json").read_text())["4"] == "class_4"
    _check_against_transformers(hf_model, cfg, model)


@pytest.mark.slow
def test_maskformer_v1_swin_matches_transformers(tmp_path, metadata, caplog):
    hf_model = _randomise(_maskformer(), seed=0)
    out = _convert(hf_model, tmp_path, "pth")
    cfg, model = _our_model(out, "pth", metadata, caplog)
    assert cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME == "BasePixelDecoder"
    _check_against_transformers(hf_model, cfg, model)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mask2former", "maskformer"])
def test_resnet_backbone_matches_transformers(tmp_path, metadata, caplog, arch):
    hf_model = _randomise(_mask2former(_resnet18()) if arch == "mask2former" else _maskformer(_resnet18()), seed=0)
    out = _convert(hf_model, tmp_path, "pkl")
    cfg, model = _our_model(out, "pkl", metadata, caplog)
    assert cfg.MODEL.RESNETS.DEPTH == 18 and cfg.MODEL.BACKBONE.NAME == "build_resnet_backbone"
    _check_against_transformers(hf_model, cfg, model)


def _tensors_equal(a, b, skip=()):
    assert set(a) - set(skip) == set(b) - set(skip), sorted(set(a) ^ set(b))
    for key in set(a) - set(skip):
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


_BUILDS = {"mask2former": lambda: _mask2former(_swin("SwinConfig")), "maskformer": lambda: _maskformer(),
           "mask2former-resnet": lambda: _mask2former(_resnet18())}


@pytest.mark.parametrize("build", sorted(_BUILDS))
def test_reverse_conversion_round_trips_exactly(tmp_path, build):
    hf_model = _randomise(_BUILDS[build](), seed=4)
    out = _convert(hf_model, tmp_path, "safetensors")
    back = tmp_path / "back"
    assert _tool("convert-d2-to-hf").main(["--config-file", str(out / "config.yaml"), "--weights",
                                           str(out / "model_final.safetensors"), "--output", str(back)]) == 0
    original = load_file(str(tmp_path / "hf" / "model.safetensors"))
    written = load_file(str(back / "model.safetensors"))
    # the Swin classifier's final norm is the one tensor segmentation never uses: not converted
    unused = [k for k in original if k.endswith(("swin.layernorm.weight", "swin.layernorm.bias",
                                                 "model.layernorm.weight", "model.layernorm.bias"))]
    assert len(unused) == (0 if "resnet" in build else 2)
    _tensors_equal(original, written, skip=unused)  # BatchNorm counters: 0 in both (an untrained model)

    # the written folder is a transformers model again, with the same configuration
    cls = type(hf_model)
    reloaded = cls.from_pretrained(str(back)).eval()
    assert reloaded.config.id2label == hf_model.config.id2label
    if build.startswith("mask2former"):
        keys, new, old = ("num_queries", "hidden_dim", "decoder_layers", "encoder_layers", "mask_feature_size",
                          "feature_size", "dim_feedforward", "encoder_feedforward_dim", "num_attention_heads"), \
            reloaded.config, hf_model.config
        assert list(new.feature_strides) == list(old.feature_strides)
    else:
        keys, new, old = ("num_queries", "d_model", "decoder_layers", "decoder_attention_heads", "decoder_ffn_dim"), \
            reloaded.config.decoder_config, hf_model.config.decoder_config
    for key in keys:
        assert getattr(new, key) == getattr(old, key), key
    assert reloaded.config.mask_feature_size == hf_model.config.mask_feature_size
    assert reloaded.config.backbone_config.depths == hf_model.config.backbone_config.depths
    assert reloaded.config.backbone_config.model_type == hf_model.config.backbone_config.model_type
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=x).masks_queries_logits,
                                   hf_model(pixel_values=x).masks_queries_logits, atol=0, rtol=0)

    # and ours -> HF -> ours is the identity on every tensor of ours
    ours = load_checkpoint_file(str(out / "model_final.safetensors"))["model"]
    config = json.loads((back / "config.json").read_text())
    again = convert_hf_to_d2_state_dict(convert_d2_to_hf_state_dict(ours, config), config)
    _tensors_equal(dict(ours), dict(again))


def test_finer_encoder_layout_converts_to_transformers():
    """The shapes recipe's layout (res2-res4 into the encoder, 256-wide encoder FFN, no FPN level)
    is expressible in transformers; an encoder that skips the coarsest input is refused."""
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / "shapes" / "panoptic-segmentation" / "maskformer2_R18_bs8_1k.yaml"))
    config = hf_config_from_d2(cfg)
    assert config["feature_strides"] == [4, 8, 16] and config["encoder_feedforward_dim"] == 256
    assert d2_config_from_hf(config)["MODEL"]["SEM_SEG_HEAD"]["DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD"] == 256
    torch.manual_seed(0)
    ours = build_model(cfg).eval()
    hf_model = transformers.Mask2FormerForUniversalSegmentation(
        transformers.Mask2FormerConfig.from_dict({k: v for k, v in config.items() if k != "architectures"})).eval()
    missing, unexpected = hf_model.load_state_dict(convert_d2_to_hf_state_dict(ours.state_dict(), config),
                                                   strict=False)
    # transformers' ResNet builds all four stages; the fourth (res5) is never read here
    assert not unexpected and missing and all(".stages.3." in k for k in missing)
    x = _normalised(_image()[:, :128, :128], cfg)
    with torch.no_grad():
        mine = ours.sem_seg_head(ours.backbone(x))
        theirs = hf_model(pixel_values=x)
    torch.testing.assert_close(mine["pred_masks"], theirs.masks_queries_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(mine["pred_logits"], theirs.class_queries_logits, atol=1e-4, rtol=0)

    cfg.merge_from_list(["MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
                         "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res2", "res3", "res4", "res5"]])
    with pytest.raises(ValueError, match="DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES"):
        hf_config_from_d2(cfg)
    config["feature_strides"] = [4, 8, 16, 32]
    with pytest.raises(ValueError, match="feature_strides"):
        d2_config_from_hf(config)


def test_unknown_tensor_and_unsupported_config_are_named(tmp_path):
    hf_model = _mask2former(_swin("SwinConfig"))
    hf_model.save_pretrained(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    state = load_file(str(tmp_path / "model.safetensors"))
    assert convert_hf_to_d2_state_dict(state, config)  # the file as written converts
    state["model.extra_head.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="model.extra_head.weight"):
        convert_hf_to_d2_state_dict(state, config)
    del state["model.extra_head.weight"]
    config["backbone_config"]["model_type"] = "convnext"
    with pytest.raises(ValueError, match="backbone model_type 'convnext'"):
        convert_hf_to_d2_state_dict(state, config)


def test_hf_uri_resolves_from_the_local_cache_only(tmp_path, monkeypatch, caplog):
    """``hf://`` looks in huggingface_hub's cache: a missing model names what to fetch and
    where; a cached snapshot (laid out as huggingface_hub does) is converted on the fly."""
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError) as err:
        resolve_hf_uri("hf://tiny-org/tiny-m2f")
    text = str(err.value)
    assert "tiny-org/tiny-m2f" in text and "config.json" in text and "model.safetensors" in text
    assert str(cache) in text and "HF_HUB_OFFLINE" in text

    # a snapshot in the cache layout: models--ORG--NAME/{refs/main, snapshots/<commit>/...}
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--tiny-org--tiny-m2f"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    hf_model = _mask2former(_swin("SwinConfig"))
    hf_model.save_pretrained(str(repo / "snapshots" / commit))
    folder = resolve_hf_uri("hf://tiny-org/tiny-m2f")
    assert Path(folder) == repo / "snapshots" / commit

    cfg = get_cfg()
    _tool("convert-hf-to-d2").main(["--input", "hf://tiny-org/tiny-m2f", "--output", str(tmp_path / "d2")])
    cfg.merge_from_file(str(tmp_path / "d2" / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    with caplog.at_level(logging.INFO, logger="mask2former.checkpoint"):
        DetectionCheckpointer(model).load("hf://tiny-org/tiny-m2f")
    assert "All model weights were loaded" in caplog.text
    expected = convert_hf_to_d2_state_dict(load_file(str(Path(folder) / "model.safetensors")),
                                           hf_model.config.to_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key
