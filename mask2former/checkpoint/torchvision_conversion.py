"""Rename torchvision ResNet weights to detectron2's ResNet names.

``conv1`` / ``bn1`` become ``stem.conv1`` / ``stem.conv1.norm``, ``layer{1..4}`` become
``res{2..5}``, ``bn{i}`` becomes ``conv{i}.norm`` and ``downsample.{0,1}`` becomes
``shortcut`` / ``shortcut.norm`` -- exactly detectron2's ``convert-torchvision-to-d2.py``,
including its quirks: names carry no ``backbone.`` prefix (the checkpointer's matching
heuristics add it) and keys outside the residual stages, such as the classifier ``fc.*``,
get a ``stem.`` prefix and are later reported as unused.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

__all__ = ["convert_torchvision_resnet_state_dict", "torchvision_resnet_key_to_d2"]


def torchvision_resnet_key_to_d2(key: str) -> str:
    """One torchvision name -> detectron2 name.

    ``layer1.0.bn1.weight`` -> ``res2.0.conv1.norm.weight``; ``conv1.weight`` -> ``stem.conv1.weight``.
    """
    if "layer" not in key:
        key = "stem." + key
    for t in (1, 2, 3, 4):
        key = key.replace(f"layer{t}", f"res{t + 1}")
    for t in (1, 2, 3):
        key = key.replace(f"bn{t}", f"conv{t}.norm")
    key = key.replace("downsample.0", "shortcut")
    return key.replace("downsample.1", "shortcut.norm")


def convert_torchvision_resnet_state_dict(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """Return a new dict with every key renamed by :func:`torchvision_resnet_key_to_d2`.

    Values (tensors or arrays) are kept as they are; the order of the keys is preserved.

    Raises:
        ValueError: ``state_dict`` is not a mapping of names, does not look like a torchvision
            ResNet (no ``conv1.weight``), or two keys map to the same new name.
    """
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"Expected a torchvision ResNet state_dict (a mapping of name -> tensor), "
                         f"got {type(state_dict).__name__}")
    if "conv1.weight" not in state_dict:
        sample = list(state_dict)[:5]
        raise ValueError("Not a torchvision ResNet state_dict: key 'conv1.weight' is missing "
                         f"(first keys: {sample})")
    converted: Dict[str, Any] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise ValueError(f"state_dict key {key!r} is not a string")
        new_key = torchvision_resnet_key_to_d2(key)
        if new_key in converted:
            raise ValueError(f"Two state_dict keys map to {new_key!r} (the second is {key!r})")
        converted[new_key] = value
    return converted
