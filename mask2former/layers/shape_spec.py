"""``ShapeSpec``: the channels / stride of a feature map, as detectron2 describes them."""
from dataclasses import dataclass
from typing import Optional


@dataclass
class ShapeSpec:
    """Shape of a tensor flowing between model parts; every field is optional."""

    channels: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    stride: Optional[int] = None
