"""Axis-aligned boxes: ``Boxes`` (N, 4) XYXY tensor and ``BoxMode`` conversions."""
from __future__ import annotations

from enum import IntEnum, unique
from typing import Any, Iterator, List, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ["Boxes", "BoxMode"]

_RawBoxType = Union[List[float], Tuple[float, ...], torch.Tensor, np.ndarray]


@unique
class BoxMode(IntEnum):
    """How 4 numbers describe a box (same values as detectron2, so dataset dicts interoperate)."""

    XYXY_ABS = 0  #: (x0, y0, x1, y1) in absolute pixels
    XYWH_ABS = 1  #: (x0, y0, width, height) in absolute pixels
    XYXY_REL = 2  #: relative to the image size (not supported by ``convert``)
    XYWH_REL = 3  #: relative to the image size (not supported by ``convert``)
    XYWHA_ABS = 4  #: rotated boxes (not supported by ``convert``)

    @staticmethod
    def convert(box: _RawBoxType, from_mode: "BoxMode", to_mode: "BoxMode") -> _RawBoxType:
        """Convert one box (list / tuple of 4) or many (Nx4 array / tensor) between modes.

        Returns the same container type it was given.
        """
        from_mode, to_mode = BoxMode(from_mode), BoxMode(to_mode)
        if from_mode == to_mode:
            return box
        supported = (BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
        if from_mode not in supported or to_mode not in supported:
            raise NotImplementedError(
                f"BoxMode.convert supports only XYXY_ABS <-> XYWH_ABS, got {from_mode.name} -> {to_mode.name}"
            )

        original_type = type(box)
        is_numpy = isinstance(box, np.ndarray)
        single_box = isinstance(box, (list, tuple))
        if single_box:
            if len(box) != 4:
                raise ValueError(f"BoxMode.convert: a single box must have 4 numbers, got {box!r}")
            arr = torch.tensor(box, dtype=torch.float64)[None]
        elif is_numpy:
            arr = torch.from_numpy(np.asarray(box)).clone()
        else:
            arr = box.clone()
        if arr.shape[-1] != 4:
            raise ValueError(f"BoxMode.convert expects boxes with 4 numbers, got shape {tuple(arr.shape)}")

        if to_mode == BoxMode.XYWH_ABS:  # XYXY -> XYWH
            arr[..., 2] -= arr[..., 0]
            arr[..., 3] -= arr[..., 1]
        else:  # XYWH -> XYXY
            arr[..., 2] += arr[..., 0]
            arr[..., 3] += arr[..., 1]

        if single_box:
            return original_type(arr.flatten().tolist())
        if is_numpy:
            return arr.numpy()
        return arr


class Boxes:
    """N boxes as a float (N, 4) tensor of (x0, y0, x1, y1) absolute coordinates."""

    def __init__(self, tensor: Union[torch.Tensor, np.ndarray, Sequence[Sequence[float]]]):
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.as_tensor(np.asarray(tensor, dtype=np.float32))
        else:
            tensor = tensor.to(torch.float32)
        if tensor.numel() == 0:
            tensor = tensor.reshape((-1, 4))  # keeps dtype and device
        if tensor.dim() != 2 or tensor.size(-1) != 4:
            raise ValueError(f"Boxes expects an (N, 4) tensor, got shape {tuple(tensor.shape)}")
        self.tensor = tensor

    def clone(self) -> "Boxes":
        return Boxes(self.tensor.clone())

    def to(self, *args: Any, **kwargs: Any) -> "Boxes":
        return Boxes(self.tensor.to(*args, **kwargs))

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    def area(self) -> torch.Tensor:
        """(N,) box areas."""
        box = self.tensor
        return (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])

    def clip(self, box_size: Tuple[int, int]) -> None:
        """Clip in place to x in [0, width], y in [0, height]; ``box_size`` is (height, width)."""
        if not torch.isfinite(self.tensor).all():
            raise ValueError("Box tensor contains infinite or NaN!")
        h, w = box_size
        self.tensor[:, 0].clamp_(min=0, max=w)
        self.tensor[:, 1].clamp_(min=0, max=h)
        self.tensor[:, 2].clamp_(min=0, max=w)
        self.tensor[:, 3].clamp_(min=0, max=h)

    def nonempty(self, threshold: float = 0.0) -> torch.Tensor:
        """(N,) bool: width and height both larger than ``threshold``."""
        box = self.tensor
        widths = box[:, 2] - box[:, 0]
        heights = box[:, 3] - box[:, 1]
        return (widths > threshold) & (heights > threshold)

    def get_centers(self) -> torch.Tensor:
        """(N, 2) box centres (x, y)."""
        return (self.tensor[:, :2] + self.tensor[:, 2:]) / 2

    def scale(self, scale_x: float, scale_y: float) -> None:
        """Scale x coordinates by ``scale_x`` and y by ``scale_y`` in place."""
        self.tensor[:, 0::2] *= scale_x
        self.tensor[:, 1::2] *= scale_y

    def __getitem__(self, item: Union[int, slice, torch.Tensor]) -> "Boxes":
        """Select boxes; an int gives a Boxes of length 1."""
        if isinstance(item, int):
            return Boxes(self.tensor[item].view(1, -1))
        selected = self.tensor[item]
        if selected.dim() != 2:
            raise IndexError(f"Indexing Boxes with {item!r} did not give an (N, 4) tensor")
        return Boxes(selected)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield from self.tensor

    def __repr__(self) -> str:
        return f"Boxes({self.tensor})"

    @classmethod
    def cat(cls, boxes_list: List["Boxes"]) -> "Boxes":
        if not isinstance(boxes_list, (list, tuple)) or not all(isinstance(b, Boxes) for b in boxes_list):
            raise TypeError("Boxes.cat expects a list of Boxes")
        if len(boxes_list) == 0:
            return cls(torch.empty(0, 4))
        return cls(torch.cat([b.tensor for b in boxes_list], dim=0))
