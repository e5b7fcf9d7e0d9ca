"""SemanticSegmentorWithTTA: the semantic output is the mean of the model's outputs on the rescaled
and flipped inputs (computed here by hand), for Mask2Former, MaskFormer and the per-pixel baselines."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mask2former.config import get_cfg
from mask2former.data.dataset_mappers.dataset_mapper_tta import DatasetMapperTTA
from mask2former.modeling import build_model
from mask2former.modeling.test_time_augmentation import SemanticSegmentorWithTTA

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = [
    "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu",
    "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "MODEL.RESNETS.NORM", "BN",
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "5", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
    "MODEL.SEM_SEG_HEAD.NORM", "GN", "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "1",
    "MODEL.MASK_FORMER.HIDDEN_DIM", "32", "MODEL.MASK_FORMER.DIM_FEEDFORWARD", "64",
    "MODEL.MASK_FORMER.DEC_LAYERS", "2",
]
MODELS = {
    "mask2former": ("shapes/semantic-segmentation/maskformer2_R18_bs8_1k.yaml", ["MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8"]),
    "maskformer": ("maskformer/ade20k-150/maskformer_R50_bs16_160k.yaml", ["MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8"]),
    "per_pixel_baseline": ("maskformer/ade20k-150/per_pixel_baseline_R50_bs16_160k.yaml", []),
    # the "plus" baseline's transformer has one query per class
    "per_pixel_baseline_plus": ("maskformer/ade20k-150/per_pixel_baseline_plus_R50_bs16_160k.yaml",
                                ["MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "5"]),
}
H, W = 40, 60  # the test mapper's image; the output size is twice that
# TEST.AUG.MIN_SIZES (32, 48) with MAX_SIZE 64: 32x48, and 48x72 capped to 42.67x64 -> 43x64
SIZES = [(32, 48), (43, 64)]


def _tiny_model(name):
    config, extra = MODELS[name]
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / config))
    cfg.merge_from_list(TINY + extra)
    torch.manual_seed(0)
    return build_model(cfg).eval()


def _input():
    rng = np.random.default_rng(1)
    image = torch.from_numpy(rng.integers(0, 256, size=(3, H, W), dtype=np.uint8))
    return {"image": image, "height": 2 * H, "width": 2 * W}


def _expected(model, inp):
    """The mean of the model's sem_seg over each size, plain and flipped (and flipped back)."""
    hwc = inp["image"].permute(1, 2, 0).numpy()
    outputs = []
    with torch.no_grad():
        for h, w in SIZES:
            resized = torch.from_numpy(np.asarray(Image.fromarray(hwc).resize((w, h), Image.BILINEAR)).transpose(2, 0, 1).copy())
            for flip in (False, True):
                image = resized.flip(dims=[2]) if flip else resized
                out = model([{"image": image, "height": inp["height"], "width": inp["width"]}])[0]["sem_seg"]
                outputs.append(out.flip(dims=[2]) if flip else out)  # (K, 2H, 2W)
    return torch.stack(outputs).mean(0), outputs


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tta_output_is_the_mean_over_augmentations(name):
    model = _tiny_model(name)
    tta = SemanticSegmentorWithTTA(model, tta_mapper=DatasetMapperTTA(min_sizes=(32, 48), max_size=64, flip=True))
    inp = _input()
    (result,) = tta([inp])
    expected, outputs = _expected(model, inp)
    assert set(result) == {"sem_seg"} and result["sem_seg"].shape == expected.shape
    assert expected.shape[1:] == (2 * H, 2 * W)
    torch.testing.assert_close(result["sem_seg"], expected, rtol=1e-5, atol=1e-5)
    # the augmentations matter: the copies' outputs differ from each other
    assert max((o - outputs[0]).abs().max().item() for o in outputs[1:]) > 1e-4


def test_bad_inputs_and_outputs_are_named():
    class NoSemSeg(torch.nn.Module):
        def forward(self, inputs):
            return [{"panoptic_seg": None} for _ in inputs]

    tta = SemanticSegmentorWithTTA(NoSemSeg(), tta_mapper=DatasetMapperTTA(min_sizes=(32,), max_size=64, flip=False))
    with pytest.raises(KeyError, match="SEMANTIC_ON"):
        tta([_input()])
    with pytest.raises(KeyError, match="image"):
        tta([{"file_name": "x.jpg"}])
