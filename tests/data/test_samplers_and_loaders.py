import itertools

import numpy as np
import pytest
import torch

from mask2former.config import get_cfg
from mask2former.data import (
    DatasetCatalog,
    InferenceSampler,
    MaskFormerPanopticDatasetMapper,
    RepeatFactorTrainingSampler,
    TrainingSampler,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from mask2former.data import transforms as T
from mask2former.data.datasets import load_coco_panoptic_json
from mask2former.data.datasets.shapes import get_shapes_metadata


def _take(it, n):
    return list(itertools.islice(it, n))


def test_training_sampler_deterministic_and_epochs():
    a = _take(TrainingSampler(7, seed=3), 21)
    assert a == _take(TrainingSampler(7, seed=3), 21)
    assert a != _take(TrainingSampler(7, seed=4), 21)
    for epoch in range(3):
        assert sorted(a[7 * epoch : 7 * epoch + 7]) == list(range(7))
    assert _take(TrainingSampler(4, shuffle=False, seed=0), 6) == [0, 1, 2, 3, 0, 1]


def test_training_sampler_sharding_and_resume():
    full = _take(TrainingSampler(10, seed=5), 40)
    shards = [_take(TrainingSampler(10, seed=5, rank=r, world_size=3), 10) for r in range(3)]
    for r in range(3):
        assert shards[r] == full[r::3][:10]
    resumed = TrainingSampler(10, seed=5, rank=1, world_size=3, start=4)
    assert _take(resumed, 6) == shards[1][4:10]
    state = resumed.state_dict()
    other = TrainingSampler(10, seed=0, rank=1, world_size=3)
    other.load_state_dict(state)
    assert _take(other, 6) == shards[1][4:10]
    with pytest.raises(ValueError):
        TrainingSampler(10, seed=0, rank=3, world_size=3)


def test_repeat_factor_sampler():
    dicts = [{"annotations": [{"category_id": 0}]}] * 9 + [{"annotations": [{"category_id": 1}]}]
    factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(dicts, 0.4)
    assert factors[0].item() == 1.0 and factors[-1].item() == pytest.approx(2.0)
    stream = _take(RepeatFactorTrainingSampler(factors, seed=0), 110)
    assert stream.count(9) == 20  # exactly 2 per epoch of 11


def test_inference_sampler_shards():
    shards = [list(InferenceSampler(10, rank=r, world_size=3)) for r in range(3)]
    assert shards == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


def _toy_dataset():
    return [{"id": i, "width": 10 if i % 3 else 5, "height": 5 if i % 3 else 10} for i in range(11)]


def _toy_mapper(d):
    d = dict(d)
    d["r"] = float(np.random.rand())
    d["t"] = float(torch.rand(1))
    return d


def _summary(batch):
    return [(d["id"], d["r"], d["t"]) for d in batch]


@pytest.mark.parametrize("grouping", [True, False])
def test_train_loader_workers_equal_and_resume_exact(grouping):
    def make(num_workers):
        return build_detection_train_loader(
            _toy_dataset(), mapper=_toy_mapper, sampler=TrainingSampler(11, seed=9),
            total_batch_size=3, aspect_ratio_grouping=grouping, num_workers=num_workers,
        )

    ref = [_summary(b) for b in _take(iter(make(0)), 8)]
    assert [_summary(b) for b in _take(iter(make(2)), 8)] == ref
    if grouping:
        for batch in ref:
            wide = {i % 3 != 0 for i, _, _ in batch}
            assert len(wide) == 1  # one aspect-ratio group per batch

    loader = make(0)
    it = iter(loader)
    _take(it, 5)
    state = loader.state_dict()
    fresh = make(2)
    fresh.load_state_dict(state)
    assert [_summary(b) for b in _take(iter(fresh), 3)] == ref[5:8]


def test_train_loader_from_cfg_and_test_loader(tiny_shapes):
    meta = get_shapes_metadata()
    dicts = load_coco_panoptic_json(
        str(tiny_shapes / "annotations/panoptic_train.json"), str(tiny_shapes / "train/images"),
        str(tiny_shapes / "train/panoptic"), meta, str(tiny_shapes / "train/semantic"),
    )
    DatasetCatalog.register("_t_loader_pan", lambda: dicts)
    try:
        cfg = get_cfg()
        cfg.DATASETS.TRAIN = ("_t_loader_pan",)
        cfg.SOLVER.IMS_PER_BATCH = 2
        cfg.DATALOADER.NUM_WORKERS = 0
        cfg.SEED = 1
        mapper = MaskFormerPanopticDatasetMapper(
            is_train=True, augmentations=[T.RandomFlip()], image_format="RGB", ignore_label=255, size_divisibility=-1
        )
        batch = next(iter(build_detection_train_loader(cfg, mapper=mapper)))
        assert len(batch) == 2 and all(tuple(d["image"].shape) == (3, 64, 64) for d in batch)
        assert len(get_detection_dataset_dicts("_t_loader_pan")) == 4

        cfg.MODEL.MASK_ON = False
        cfg.INPUT.MIN_SIZE_TEST = 32
        cfg.INPUT.MAX_SIZE_TEST = 100
        batches = list(build_detection_test_loader(cfg, "_t_loader_pan"))
        assert len(batches) == 4 and all(len(b) == 1 for b in batches)
        assert [b[0]["image_id"] for b in batches] == [d["image_id"] for d in dicts]
        assert tuple(batches[0][0]["image"].shape) == (3, 32, 32) and batches[0][0]["height"] == 64
    finally:
        DatasetCatalog.remove("_t_loader_pan")


def test_empty_dataset_is_an_error():
    DatasetCatalog.register("_t_empty", lambda: [])
    try:
        with pytest.raises(ValueError, match="_t_empty"):
            get_detection_dataset_dicts(["_t_empty"])
    finally:
        DatasetCatalog.remove("_t_empty")


@pytest.mark.parametrize("grouping", [True, False])
def test_train_loader_start_iter_matches_continuous_run(grouping, tmp_path):
    from PIL import Image

    # one dataset dict without width/height: its size is read from the image header
    Image.fromarray(np.zeros((10, 5, 3), np.uint8)).save(tmp_path / "tall.png")
    dataset = _toy_dataset()
    dataset[3] = {"id": 3, "file_name": str(tmp_path / "tall.png")}

    def mapper(d):
        d = _toy_mapper(d)
        d.setdefault("height", 10)
        d.setdefault("width", 5)
        return d

    def make(start_iter):
        return build_detection_train_loader(
            dataset, mapper=mapper, sampler=TrainingSampler(11, seed=2), total_batch_size=2,
            aspect_ratio_grouping=grouping, start_iter=start_iter,
        )

    ref = [_summary(b) for b in _take(iter(make(0)), 9)]
    assert [_summary(b) for b in _take(iter(make(6)), 3)] == ref[6:9]
