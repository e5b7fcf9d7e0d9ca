"""Helpers shared by dataset mappers: image reading, annotation transforms, ``Instances`` building.

Same behaviour as detectron2's ``detectron2.data.detection_utils`` for the functions it keeps.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pycocotools.mask as mask_util
import torch
from PIL import Image, ImageFile

from ..structures import BitMasks, Boxes, BoxMode, Instances, polygons_to_bitmask

from . import transforms as T
from .polygons import PolygonMasks

__all__ = [
    "CorruptImageError",
    "SizeMismatchError",
    "SkipCorruptImages",
    "annotations_to_instances",
    "build_augmentation",
    "check_image_size",
    "convert_PIL_to_numpy",
    "filter_empty_instances",
    "read_image",
    "transform_instance_annotations",
]


class SizeMismatchError(ValueError):
    """The image read from disk does not have the height / width its dataset dict claims."""


class CorruptImageError(ValueError):
    """An image file cannot be decoded completely (truncated, corrupt, not an image); names the file."""


# https://en.wikipedia.org/wiki/YUV#SDTV_with_BT.601
_M_RGB2YUV = [[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]]

_EXIF_ORIENT = 274  # the "Orientation" EXIF tag
_EXIF_TRANSPOSE = {
    2: Image.FLIP_LEFT_RIGHT,
    3: Image.ROTATE_180,
    4: Image.FLIP_TOP_BOTTOM,
    5: Image.TRANSPOSE,
    6: Image.ROTATE_270,
    7: Image.TRANSVERSE,
    8: Image.ROTATE_90,
}


def convert_PIL_to_numpy(image: Image.Image, format: Optional[str]) -> np.ndarray:
    """PIL image -> HxWxC (HxW for single-channel images with ``format=None``) numpy array.

    ``format``: "BGR", "RGB", "L" (returns HxWx1), "YUV-BT.601", any PIL mode, or None to keep
    the file's own mode (e.g. a palette / grayscale label map stays HxW).
    """
    if format is not None:
        conversion_format = "RGB" if format in ("BGR", "YUV-BT.601") else format
        image = image.convert(conversion_format)
    array = np.asarray(image)
    if format == "L":
        array = np.expand_dims(array, -1)
    elif format == "BGR":
        array = array[:, :, ::-1]
    elif format == "YUV-BT.601":
        array = np.dot(array / 255.0, np.array(_M_RGB2YUV).T)
    return array


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Rotate / flip ``image`` as its EXIF orientation tag says (cameras store it unrotated)."""
    try:
        exif = image.getexif()
    except Exception:  # noqa: BLE001 - a broken EXIF block is ignored, as PIL's own readers do
        return image
    method = _EXIF_TRANSPOSE.get(exif.get(_EXIF_ORIENT)) if exif is not None else None
    return image.transpose(method) if method is not None else image


def read_image(file_name: Union[str, os.PathLike], format: Optional[str] = None) -> np.ndarray:
    """Read an image file into a numpy array, applying its EXIF orientation.

    ``format`` as in ``convert_PIL_to_numpy``. The whole file is decoded: a truncated or corrupt
    file is an error (even if some library set ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``), never a
    half-grey image. This is the reader of training, evaluation and ``tools/demo.py``.

    Raises:
        FileNotFoundError: the file does not exist.
        CorruptImageError: (a ``ValueError``) it is not a completely decodable image; names the file.
    """
    file_name = os.fspath(file_name)
    if not os.path.isfile(file_name):
        raise FileNotFoundError(f"Image file not found: '{file_name}'")
    allow_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, not decode half grey
    try:
        with open(file_name, "rb") as f:
            image = Image.open(f)
            image.load()
        image = _apply_exif_orientation(image)
        return convert_PIL_to_numpy(image, format)
    except Exception as err:  # noqa: BLE001 - PIL's decoders raise many types for a corrupt file
        size = os.path.getsize(file_name)
        raise CorruptImageError(f"Cannot read image file '{file_name}' ({size} bytes): it is truncated, corrupt "
                                f"or not an image ({type(err).__name__}: {err})") from err
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = allow_truncated


class SkipCorruptImages:
    """Wrap a training mapper so that a dataset dict whose image or label file cannot be decoded
    (:class:`CorruptImageError`) is skipped (the mapper returns None; the train loader then takes
    the next sample) with a WARNING naming the file and the number skipped so far in this process.
    ``DATALOADER.SKIP_CORRUPT_IMAGES`` turns it on; missing files stay errors."""

    def __init__(self, mapper):
        self.mapper = mapper
        self.num_skipped = 0

    def __call__(self, dataset_dict: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        try:
            return self.mapper(dataset_dict)
        except CorruptImageError as err:
            self.num_skipped += 1
            logging.getLogger(__name__).warning(
                "DATALOADER.SKIP_CORRUPT_IMAGES: skipped %s (%d corrupt image(s) skipped so far in this "
                "process): %s", dataset_dict.get("file_name"), self.num_skipped, err)
            return None

    def __repr__(self) -> str:
        return f"SkipCorruptImages({self.mapper!r})"


def check_image_size(dataset_dict: Dict[str, Any], image: np.ndarray) -> None:
    """Raise ``SizeMismatchError`` if ``image`` disagrees with the dict's width / height; fill
    them in when missing."""
    if "width" in dataset_dict or "height" in dataset_dict:
        image_wh = (image.shape[1], image.shape[0])
        expected_wh = (dataset_dict.get("width"), dataset_dict.get("height"))
        if image_wh != expected_wh:
            where = f" for image {dataset_dict['file_name']}" if "file_name" in dataset_dict else ""
            raise SizeMismatchError(
                f"Mismatched image shape{where}, got (w, h) = {image_wh}, expected {expected_wh}. "
                "Please check the width/height in your annotation."
            )
    dataset_dict.setdefault("width", image.shape[1])
    dataset_dict.setdefault("height", image.shape[0])


def transform_instance_annotations(
    annotation: Dict[str, Any],
    transforms: Union[T.Transform, T.TransformList, Sequence[T.Transform]],
    image_size: Tuple[int, int],
    *,
    keypoint_hflip_indices: Optional[np.ndarray] = None,
) -> Dict[str, Any]:
    """Apply ``transforms`` to one instance annotation (in place; also returned).

    The box becomes XYXY_ABS clipped to ``image_size`` (h, w); polygons are transformed (and
    cropped), an RLE is decoded and transformed into an HxW uint8 mask.
    """
    if isinstance(transforms, (tuple, list)):
        transforms = T.TransformList(transforms)
    bbox = BoxMode.convert(annotation["bbox"], annotation["bbox_mode"], BoxMode.XYXY_ABS)
    bbox = transforms.apply_box(np.array([bbox]))[0].clip(min=0)
    annotation["bbox"] = np.minimum(bbox, list(image_size + image_size)[::-1])
    annotation["bbox_mode"] = BoxMode.XYXY_ABS

    if "segmentation" in annotation:
        segm = annotation["segmentation"]
        if isinstance(segm, list):
            polygons = [np.asarray(p).reshape(-1, 2) for p in segm]
            annotation["segmentation"] = [p.reshape(-1) for p in transforms.apply_polygons(polygons)]
        elif isinstance(segm, dict):
            mask = transforms.apply_segmentation(_decode_rle(segm))
            if tuple(mask.shape[:2]) != tuple(image_size):
                raise ValueError(f"Transformed RLE mask has shape {mask.shape[:2]}, expected {image_size}")
            annotation["segmentation"] = mask
        else:
            raise ValueError(
                f"Cannot transform segmentation of type '{type(segm)}'! Supported types are: "
                "polygons as list[list[float] or ndarray], COCO-style RLE as a dict."
            )

    if "keypoints" in annotation:
        raise NotImplementedError("Keypoint annotations are not supported by mask2former")
    return annotation


def segmentation_to_mask(segm: Any, height: int, width: int) -> np.ndarray:
    """Polygons (list), COCO RLE (dict) or an HxW array -> HxW uint8 binary mask."""
    if isinstance(segm, list):
        return polygons_to_bitmask(segm, height, width)
    if isinstance(segm, dict):
        return _decode_rle(segm)
    if isinstance(segm, np.ndarray):
        if segm.ndim != 2:
            raise ValueError(f"Expect a segmentation of 2 dimensions, got {segm.ndim}.")
        return segm
    raise ValueError(
        f"Cannot convert segmentation of type '{type(segm)}' to a mask! Supported types are: "
        "polygons as list[list[float] or ndarray], COCO-style RLE as a dict, or a binary "
        "segmentation mask in a 2D numpy array of shape HxW."
    )


def _decode_rle(segm: Dict[str, Any]) -> np.ndarray:
    if isinstance(segm.get("counts"), list):  # uncompressed RLE
        h, w = segm["size"]
        segm = mask_util.frPyObjects(segm, h, w)
    return mask_util.decode(segm)


def annotations_to_instances(
    annos: List[Dict[str, Any]], image_size: Tuple[int, int], mask_format: str = "polygon"
) -> Instances:
    """Build ``Instances`` with ``gt_boxes``, ``gt_classes`` and (if annotated) ``gt_masks``.

    ``mask_format``: "polygon" gives ``PolygonMasks`` (needs polygon segmentations), "bitmask"
    gives ``BitMasks`` (accepts polygons, RLE dicts or HxW arrays).
    """
    boxes = (
        np.stack([BoxMode.convert(obj["bbox"], obj["bbox_mode"], BoxMode.XYXY_ABS) for obj in annos])
        if len(annos)
        else np.zeros((0, 4))
    )
    target = Instances(image_size)
    target.gt_boxes = Boxes(boxes)
    target.gt_classes = torch.tensor([int(obj["category_id"]) for obj in annos], dtype=torch.int64)

    if len(annos) and "segmentation" in annos[0]:
        segms = [obj["segmentation"] for obj in annos]
        if mask_format == "polygon":
            try:
                masks: Union[PolygonMasks, BitMasks] = PolygonMasks(segms)
            except ValueError as err:
                raise ValueError("Failed to use mask_format=='polygon' from the given annotations!") from err
        elif mask_format == "bitmask":
            arrays = [segmentation_to_mask(segm, *image_size) for segm in segms]
            masks = BitMasks(torch.stack([torch.from_numpy(np.ascontiguousarray(x)) for x in arrays]))
        else:
            raise ValueError(f"mask_format must be 'polygon' or 'bitmask', got {mask_format!r}")
        target.gt_masks = masks
    return target


def filter_empty_instances(
    instances: Instances,
    by_box: bool = True,
    by_mask: bool = True,
    box_threshold: float = 1e-5,
    return_mask: bool = False,
) -> Union[Instances, Tuple[Instances, torch.Tensor]]:
    """Drop instances whose box is (nearly) empty or whose mask is empty."""
    if not (by_box or by_mask):
        raise ValueError("filter_empty_instances needs by_box or by_mask")
    keep = []
    if by_box:
        keep.append(instances.gt_boxes.nonempty(threshold=box_threshold))
    if instances.has("gt_masks") and by_mask:
        keep.append(instances.gt_masks.nonempty())
    if not keep:
        return instances
    m = keep[0]
    for x in keep[1:]:
        m = m & x
    if return_mask:
        return instances[m], m
    return instances[m]


def build_augmentation(cfg, is_train: bool) -> List[T.Augmentation]:
    """Default resize (+ flip when training) augmentations from ``cfg.INPUT``."""
    if is_train:
        min_size = cfg.INPUT.MIN_SIZE_TRAIN
        max_size = cfg.INPUT.MAX_SIZE_TRAIN
        sample_style = cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
    else:
        min_size = cfg.INPUT.MIN_SIZE_TEST
        max_size = cfg.INPUT.MAX_SIZE_TEST
        sample_style = "choice"
    augmentation: List[T.Augmentation] = [T.ResizeShortestEdge(min_size, max_size, sample_style)]
    if is_train and cfg.INPUT.RANDOM_FLIP != "none":
        augmentation.append(
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        )
    return augmentation


build_transform_gen = build_augmentation  # old detectron2 name
