import pytest

from mask2former.data import DatasetCatalog, Metadata, MetadataCatalog


def test_dataset_catalog_register_get_remove():
    DatasetCatalog.register("_t_catalog_ds", lambda: [{"file_name": "a"}])
    try:
        assert "_t_catalog_ds" in DatasetCatalog.list()
        assert DatasetCatalog.get("_t_catalog_ds") == [{"file_name": "a"}]
        with pytest.raises(AssertionError, match="already registered"):
            DatasetCatalog.register("_t_catalog_ds", lambda: [])
    finally:
        DatasetCatalog.remove("_t_catalog_ds")
    assert "_t_catalog_ds" not in DatasetCatalog.list()


def test_dataset_catalog_unknown_name_lists_registered():
    with pytest.raises(KeyError) as err:
        DatasetCatalog.get("_no_such_dataset")
    msg = str(err.value)
    assert "_no_such_dataset" in msg and "coco_2017_train" in msg


def test_dataset_catalog_rejects_non_callable():
    with pytest.raises(TypeError):
        DatasetCatalog.register("_t_bad", [1, 2])


def test_metadata_set_get_and_conflict():
    m = MetadataCatalog.get("_t_meta")
    try:
        m.set(thing_classes=["a", "b"], ignore_label=255)
        assert MetadataCatalog.get("_t_meta") is m
        assert m.thing_classes == ["a", "b"]
        m.ignore_label = 255  # same value: allowed
        with pytest.raises(AssertionError, match="ignore_label"):
            m.ignore_label = 0
        assert m.as_dict()["ignore_label"] == 255
        assert m.get("missing", 7) == 7
        with pytest.raises(AttributeError, match="missing"):
            _ = m.missing
    finally:
        MetadataCatalog.remove("_t_meta")


def test_metadata_is_plain_object():
    m = Metadata(name="x")
    m.set(a=1)
    assert m.a == 1 and m.name == "x"
