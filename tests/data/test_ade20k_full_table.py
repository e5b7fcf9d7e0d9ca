"""The ADE20K-full 847-class table, read from its package data file."""
from __future__ import annotations

from importlib import resources

from mask2former.data.datasets.meta import ade20k_full_meta


def test_table_is_package_data_with_847_unique_classes():
    assert resources.files("mask2former.data.datasets.meta").joinpath("ade20k_full.json").is_file()
    meta = ade20k_full_meta()
    ids = meta["stuff_dataset_id_to_contiguous_id"]
    assert len(meta["stuff_classes"]) == len(ids) == 847
    assert sorted(ids.values()) == list(range(847))  # contiguous ids follow the file order
    # first and last rows of Mask2Former's register_ade20k_full.py
    assert (meta["stuff_classes"][0], ids[2978]) == ("wall", 0)
    assert (meta["stuff_classes"][846], ids[3148]) == ("adding machine, totalizer, totaliser", 846)
    assert meta["stuff_classes"][ids[1831]] == "person, individual, someone, somebody, mortal, soul"
