"""Ground-floor data structures: padded image batches, instances, boxes and binary masks."""
from .boxes import Boxes, BoxMode
from .image_list import ImageList
from .instances import Instances
from .masks import BitMasks, masks_to_boxes, polygons_to_bitmask

__all__ = [
    "BitMasks", "BoxMode", "Boxes", "ImageList", "Instances", "masks_to_boxes", "polygons_to_bitmask",
]
