"""The YouTube-VIS clip mapper (frame sampling, clip-level augmentation, tracks by id, errors)
and the video train / test loaders (exact resume)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from PIL import Image

from mask2former.config import get_cfg
from mask2former.data import DatasetCatalog, MetadataCatalog
from mask2former.data.dataset_mappers import YTVISDatasetMapper
from mask2former.data.video_build import build_video_test_loader, build_video_train_loader, get_video_dataset_dicts
from mask2former.structures import BitMasks, BoxMode

H, W, LENGTH = 12, 16, 8


def _square(t: int, x0: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[3:7, x0 + t // 2: x0 + t // 2 + 4] = True
    return m


@pytest.fixture()
def video(tmp_path: Path) -> dict:
    """One 8-frame video dict: frame t has red = 20 t and a white column at x = 0; track 3
    (category 1) in every frame, track 8 (category 0) in frames 0-3 only, track 5 a crowd."""
    file_names, annotations = [], []
    for t in range(LENGTH):
        img = np.zeros((H, W, 3), np.uint8)
        img[..., 0] = 20 * t
        img[:, 0] = 255
        path = tmp_path / f"{t:05d}.png"
        Image.fromarray(img).save(path)
        file_names.append(str(path))
        frame = [{"id": 3, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 1, 1], "bbox_mode": BoxMode.XYWH_ABS,
                  "segmentation": mask_util.encode(np.asfortranarray(_square(t, 2).astype(np.uint8)))},
                 {"id": 5, "category_id": 0, "iscrowd": 1, "bbox": [0, 0, 1, 1], "bbox_mode": BoxMode.XYWH_ABS,
                  "segmentation": [[0.0, 0.0, 2.0, 0.0, 2.0, 2.0]]}]
        if t < 4:
            frame.append({"id": 8, "category_id": 0, "iscrowd": 0, "bbox": [0, 0, 1, 1],
                          "bbox_mode": BoxMode.XYWH_ABS, "segmentation": [[10.0, 1.0, 14.0, 1.0, 14.0, 5.0, 10.0, 5.0]]})
        annotations.append(frame)
    return {"file_names": file_names, "height": H, "width": W, "length": LENGTH, "video_id": 7,
            "annotations": annotations}


def _cfg(*opts):
    cfg = get_cfg()
    cfg.merge_from_list(["INPUT.FORMAT", "RGB", "INPUT.MIN_SIZE_TRAIN", f"({H},)", "INPUT.MAX_SIZE_TRAIN", "1000",
                         "INPUT.MIN_SIZE_TRAIN_SAMPLING", "choice_by_clip", "INPUT.RANDOM_FLIP", "flip_by_clip",
                         "INPUT.SAMPLING_FRAME_NUM", "3", "INPUT.SAMPLING_FRAME_RANGE", "2",
                         "INPUT.MIN_SIZE_TEST", f"{2 * H}", "INPUT.MAX_SIZE_TEST", "1000", *[str(o) for o in opts]])
    return cfg


def _seed(s: int) -> None:
    random.seed(s)
    np.random.seed(s)


def _frame_index(image: torch.Tensor) -> int:
    return int(round(image[0].float().median().item() / 20))


def _flipped(image: torch.Tensor) -> bool:
    return bool(image[1, :, -1].float().mean() > 200)  # the white column moved to the right edge


def test_training_clip_sampling_is_the_official_one(video):
    mapper = YTVISDatasetMapper(_cfg(), True)
    for s in range(40):
        _seed(s)
        out = mapper(video)
        frames = [int(Path(f).stem) for f in out["file_names"]]
        # the official rule with the same RNG calls: a reference frame, then 2 frames with replacement
        _seed(s)
        ref = random.randrange(LENGTH)
        others = np.random.choice([i for i in range(max(0, ref - 2), min(LENGTH, ref + 3)) if i != ref], 2)
        assert frames == sorted(others.tolist() + [ref])
        assert [_frame_index(img) for img in out["image"]] == frames  # the images are those frames
        assert max(frames) - min(frames) <= 4


def test_augmentation_is_shared_by_the_frames_of_a_clip(video):
    mapper = YTVISDatasetMapper(_cfg("INPUT.MIN_SIZE_TRAIN", f"({H}, {2 * H}, {3 * H})",
                                     "INPUT.AUGMENTATIONS", "['brightness']"), True)
    flips, sizes = set(), set()
    for s in range(30):
        _seed(s)
        out = mapper(video)
        clip_flips = {_flipped(img) for img in out["image"]}
        clip_sizes = {tuple(img.shape[-2:]) for img in out["image"]}
        assert len(clip_flips) == 1 and len(clip_sizes) == 1, (s, clip_flips, clip_sizes)
        # the same brightness factor: the white column has the same value in every frame
        column = [img[1].float().max().item() for img in out["image"]]
        assert max(column) - min(column) <= 1
        flips |= clip_flips
        sizes |= clip_sizes
    assert flips == {True, False} and len(sizes) == 3  # the draws do vary from clip to clip


def test_per_frame_flip_as_the_official_horizontal_mode(video):
    mapper = YTVISDatasetMapper(_cfg("INPUT.RANDOM_FLIP", "horizontal"), True)
    mixed = 0
    for s in range(30):
        _seed(s)
        mixed += len({_flipped(img) for img in mapper(video)["image"]}) == 2
    assert mixed > 0


def test_instances_are_tracked_by_id(video):
    mapper = YTVISDatasetMapper(_cfg("INPUT.SAMPLING_FRAME_NUM", "4", "INPUT.SAMPLING_FRAME_RANGE", "8",
                                     "INPUT.MIN_SIZE_TRAIN", f"({2 * H},)"), True)
    for s in range(20):
        _seed(s)
        out = mapper(video)
        frames = [int(Path(f).stem) for f in out["file_names"]]
        ids = sorted({3} | ({8} if min(frames) < 4 else set()))
        for t, img, inst in zip(frames, out["image"], out["instances"]):
            assert inst.image_size == tuple(img.shape[-2:]) == (2 * H, 2 * W)
            assert isinstance(inst.gt_masks, BitMasks) and len(inst) == len(ids)
            assert inst.gt_classes.tolist() == [{3: 1, 8: 0}[i] for i in ids]  # the same in every frame
            expected_ids = [i if (i == 3 or t < 4) else -1 for i in ids]
            assert inst.gt_ids.tolist() == expected_ids
            square = np.kron(_square(t, 2), np.ones((2, 2), bool))  # upscaled x2 (nearest)
            if _flipped(img):
                square = square[:, ::-1]
            mask = inst.gt_masks.tensor[ids.index(3)].numpy()
            assert (mask != square).sum() <= 2 * 4 * 2, t  # resize interpolation at the border only
            if 8 in ids and t >= 4:
                assert not inst.gt_masks.tensor[ids.index(8)].any()
            boxes = inst.gt_boxes.tensor[ids.index(3)]
            ys, xs = np.nonzero(mask)
            assert boxes.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_test_mapper_returns_the_whole_video(video):
    out = YTVISDatasetMapper(_cfg(), False)(video)
    assert [_frame_index(img) for img in out["image"]] == list(range(LENGTH))
    assert all(tuple(img.shape) == (3, 2 * H, 2 * W) and img.dtype == torch.uint8 for img in out["image"])
    assert out["instances"] == [] and out["file_names"] == video["file_names"]
    assert (out["video_id"], out["length"], out["height"], out["width"]) == (7, LENGTH, H, W)
    assert "annotations" not in out


def test_bad_videos_are_named(video):
    mapper = YTVISDatasetMapper(_cfg("INPUT.SAMPLING_FRAME_NUM", "3"), True)
    short = dict(video, length=2, file_names=video["file_names"][:2], annotations=video["annotations"][:2])
    with pytest.raises(ValueError, match=r"Video 7 has 2 frames, fewer than INPUT.SAMPLING_FRAME_NUM=3"):
        mapper(short)
    missing = dict(video, file_names=video["file_names"][:3] + ["/nowhere/00003.jpg"] + video["file_names"][4:])
    test_mapper = YTVISDatasetMapper(_cfg(), False)
    with pytest.raises(FileNotFoundError, match=r"video 7, frame 3 \(/nowhere/00003.jpg\)"):
        test_mapper(missing)
    wrong_size = dict(video, height=H + 1)
    with pytest.raises(ValueError, match=r"video 7, frame 0 .*Mismatched image shape"):
        test_mapper(wrong_size)
    with pytest.raises(ValueError, match="SAMPLING_FRAME_RANGE"):
        YTVISDatasetMapper(_cfg("INPUT.SAMPLING_FRAME_RANGE", "0"), True)
    with pytest.raises(ValueError, match="'rotation' is not supported"):
        YTVISDatasetMapper(_cfg("INPUT.AUGMENTATIONS", "['rotation']"), True)


@pytest.fixture()
def registered(video, tmp_path) -> str:
    name = f"test_video_loader_{tmp_path.name}"
    videos = []
    for k in range(5):
        v = dict(video, video_id=k + 1)
        if k == 4:
            v["annotations"] = [[] for _ in range(LENGTH)]  # no object: filtered from training
        videos.append(v)
    DatasetCatalog.register(name, lambda: videos)
    MetadataCatalog.get(name).set(thing_classes=["a", "b"], evaluator_type="ytvis")
    return name


def test_video_loaders_and_exact_resume(registered):
    assert [v["video_id"] for v in get_video_dataset_dicts(registered)] == [1, 2, 3, 4]
    cfg = _cfg("DATASETS.TRAIN", f"('{registered}',)", "SOLVER.IMS_PER_BATCH", "2", "SEED", "3",
               "INPUT.MIN_SIZE_TRAIN", f"({H}, {2 * H})", "DATALOADER.NUM_WORKERS", "0")

    def describe(batch):
        return [(d["video_id"], d["file_names"], [tuple(i.shape) for i in d["image"]],
                 [inst.gt_ids.tolist() for inst in d["instances"]], [img.sum().item() for img in d["image"]])
                for d in batch]

    it = iter(build_video_train_loader(cfg))
    batches = [describe(next(it)) for _ in range(4)]
    assert all(len(b) == 2 for b in batches)
    assert {d[0] for b in batches for d in b} <= {1, 2, 3, 4}
    resumed = iter(build_video_train_loader(cfg, start_iter=2))
    assert [describe(next(resumed)) for _ in range(2)] == batches[2:]

    test_loader = build_video_test_loader(cfg, registered)
    seen = [batch[0]["video_id"] for batch in test_loader]
    assert seen == [1, 2, 3, 4, 5]


def test_image_datasets_are_rejected_by_the_video_loader(tmp_path):
    name = f"test_not_video_{tmp_path.name}"
    DatasetCatalog.register(name, lambda: [{"file_name": "x.jpg", "annotations": []}])
    with pytest.raises(ValueError, match="not a video dataset"):
        get_video_dataset_dicts(name)
