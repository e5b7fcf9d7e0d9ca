"""Instances: fields, length checks, indexing, cat, to."""
import pytest
import torch

from mask2former.structures import BitMasks, Boxes, Instances


def make(n: int = 3) -> Instances:
    inst = Instances((4, 5), scores=torch.arange(n, dtype=torch.float32))
    inst.pred_classes = torch.arange(n) + 10
    inst.pred_boxes = Boxes(torch.arange(4 * n, dtype=torch.float32).view(n, 4))
    inst.pred_masks = BitMasks(torch.zeros(n, 4, 5))
    inst.names = [f"obj{i}" for i in range(n)]
    return inst


def test_fields_and_length():
    inst = make()
    assert len(inst) == 3 and inst.image_size == (4, 5)
    assert inst.has("scores") and not inst.has("gt_masks")
    assert set(inst.get_fields()) == {"scores", "pred_classes", "pred_boxes", "pred_masks", "names"}
    assert torch.equal(inst.get("pred_classes"), torch.tensor([10, 11, 12]))
    with pytest.raises(ValueError, match="length 2"):
        inst.bad = torch.zeros(2)
    with pytest.raises(AttributeError, match="gt_classes"):
        inst.gt_classes
    inst.remove("names")
    assert not inst.has("names")
    with pytest.raises(NotImplementedError):
        len(Instances((1, 1)))


def test_indexing():
    inst = make()
    one = inst[1]
    assert len(one) == 1 and one.pred_classes.tolist() == [11] and one.names == ["obj1"]
    assert inst[-1].scores.tolist() == [2.0]
    picked = inst[torch.tensor([True, False, True])]
    assert picked.pred_classes.tolist() == [10, 12]
    assert picked.pred_boxes.tensor[1].tolist() == [8, 9, 10, 11]
    assert len(picked.pred_masks) == 2
    assert inst[torch.tensor([2, 0])].scores.tolist() == [2.0, 0.0]
    assert inst[1:].pred_classes.tolist() == [11, 12]
    with pytest.raises(IndexError):
        inst[3]


def test_cat_and_to():
    both = Instances.cat([make(2), make(3)])
    assert len(both) == 5
    assert both.pred_classes.tolist() == [10, 11, 10, 11, 12]
    assert both.names[2] == "obj0" and len(both.pred_boxes) == 5 and len(both.pred_masks) == 5
    with pytest.raises(ValueError, match="image sizes differ"):
        Instances.cat([make(), Instances((9, 9), scores=torch.zeros(1))])
    moved = make().to(torch.float64)
    assert moved.scores.dtype == torch.float64 and moved.names == make().names
    assert "num_instances=3" in str(make())
