"""``Instances``: per-instance fields (masks, classes, scores, ...) of one image."""
from __future__ import annotations

import itertools
from typing import Any, Dict, List, Tuple, Union

import torch

__all__ = ["Instances"]


class Instances:
    """Fields of equal length N describing the instances of one image of size ``image_size``.

    Fields are set and read as attributes (``inst.pred_masks = m``) or with
    ``set`` / ``get`` / ``has`` / ``remove``. Any field type works as long as it
    supports ``len()`` and indexing; ``Instances.cat`` and ``.to()`` additionally use
    the field's own ``cat`` / ``to`` when it has them (``Boxes``, ``BitMasks``).
    """

    def __init__(self, image_size: Tuple[int, int], **kwargs: Any):
        self._image_size = image_size
        self._fields: Dict[str, Any] = {}
        for name, value in kwargs.items():
            self.set(name, value)

    @property
    def image_size(self) -> Tuple[int, int]:
        """(height, width) of the image the instances belong to."""
        return self._image_size

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, value)
        else:
            self.set(name, value)

    def __getattr__(self, name: str) -> Any:
        if name == "_fields" or name not in self._fields:
            raise AttributeError(f"Cannot find field '{name}' in the given Instances!")
        return self._fields[name]

    def set(self, name: str, value: Any) -> None:
        """Set field ``name``; its length must match the fields already present."""
        data_len = len(value)
        if self._fields and len(self) != data_len:
            raise ValueError(
                f"Adding a field '{name}' of length {data_len} to an Instances of length {len(self)}"
            )
        self._fields[name] = value

    def has(self, name: str) -> bool:
        return name in self._fields

    def remove(self, name: str) -> None:
        del self._fields[name]

    def get(self, name: str) -> Any:
        return self._fields[name]

    def get_fields(self) -> Dict[str, Any]:
        """The name -> value dict of all fields (the live dict, not a copy)."""
        return self._fields

    def to(self, *args: Any, **kwargs: Any) -> "Instances":
        """A new Instances with every field that has ``.to`` moved / cast."""
        ret = Instances(self._image_size)
        for name, value in self._fields.items():
            if hasattr(value, "to"):
                value = value.to(*args, **kwargs)
            ret.set(name, value)
        return ret

    def __getitem__(self, item: Union[int, slice, torch.Tensor, List[int]]) -> "Instances":
        """Select instances by int, slice, bool mask or index tensor / list."""
        if type(item) == int:  # noqa: E721  (bool is excluded on purpose)
            if item >= len(self) or item < -len(self):
                raise IndexError(f"Instances index {item} out of range for length {len(self)}")
            item = slice(item, None, len(self))  # exactly one element, fields stay sequences
        ret = Instances(self._image_size)
        for name, value in self._fields.items():
            ret.set(name, _index_list(value, item) if isinstance(value, list) else value[item])
        return ret

    def __len__(self) -> int:
        for value in self._fields.values():
            return value.__len__()
        raise NotImplementedError("Empty Instances does not support __len__!")

    def __iter__(self):
        raise NotImplementedError("`Instances` object is not iterable!")

    @staticmethod
    def cat(instance_lists: List["Instances"]) -> "Instances":
        """Concatenate Instances of the same image size field by field."""
        if not all(isinstance(i, Instances) for i in instance_lists):
            raise TypeError("Instances.cat expects a list of Instances")
        if len(instance_lists) == 0:
            raise ValueError("Instances.cat got an empty list")
        if len(instance_lists) == 1:
            return instance_lists[0]

        image_size = instance_lists[0].image_size
        for inst in instance_lists[1:]:
            if tuple(inst.image_size) != tuple(image_size):
                raise ValueError(
                    f"Instances.cat: image sizes differ ({tuple(inst.image_size)} vs {tuple(image_size)})"
                )
        ret = Instances(image_size)
        for name in instance_lists[0]._fields.keys():
            values = [inst.get(name) for inst in instance_lists]
            first = values[0]
            if isinstance(first, torch.Tensor):
                merged = torch.cat(values, dim=0)
            elif isinstance(first, list):
                merged = list(itertools.chain(*values))
            elif hasattr(type(first), "cat"):
                merged = type(first).cat(values)
            else:
                raise ValueError(f"Unsupported type {type(first)} of field '{name}' for concatenation")
            ret.set(name, merged)
        return ret

    def __str__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self._fields.items())
        return (
            f"{type(self).__name__}(num_instances={len(self) if self._fields else 0}, "
            f"image_height={self._image_size[0]}, image_width={self._image_size[1]}, "
            f"fields=[{fields}])"
        )

    __repr__ = __str__


def _index_list(values: list, item: Any) -> list:
    """Index a plain-list field like a tensor (slice, bool mask or integer indices)."""
    if isinstance(item, slice):
        return values[item]
    index = torch.as_tensor(item)
    if index.dtype == torch.bool:
        index = index.nonzero().flatten()
    return [values[i] for i in index.tolist()]
