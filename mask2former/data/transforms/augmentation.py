"""Augmentation API (detectron2 semantics): an ``Augmentation`` samples a ``Transform`` from its input.

``AugInput`` carries the image (and optionally boxes / sem_seg); calling an augmentation on it
returns the sampled transform and applies it in place.
"""
from __future__ import annotations

import inspect
import pprint
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
from fvcore.transforms.transform import NoOpTransform, Transform, TransformList

__all__ = [
    "Augmentation",
    "AugInput",
    "AugmentationList",
    "RandomApply",
    "StandardAugInput",
    "apply_augmentations",
    "apply_transform_gens",
]


def _check_img_dtype(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray):
        raise TypeError(f"[Augmentation] needs a numpy array image, got {type(img)}")
    if not np.issubdtype(img.dtype, np.number):
        raise TypeError(f"[Augmentation] image dtype must be numeric (uint8 or float), got {img.dtype}")
    if img.ndim not in (2, 3):
        raise ValueError(f"[Augmentation] image must be HxW or HxWxC, got shape {img.shape}")


def _get_aug_input_args(aug: "Augmentation", aug_input: Any) -> List[Any]:
    """Attributes of ``aug_input`` named by ``aug.input_args`` (or by ``get_transform``'s signature)."""
    if aug.input_args is None:
        params = list(inspect.signature(aug.get_transform).parameters.items())
        if len(params) == 1:
            names: Tuple[str, ...] = ("image",)  # a single argument is the image, whatever its name
        else:
            names_list = []
            for name, param in params:
                if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                    raise TypeError(
                        f"The default implementation of `{type(aug)}.__call__` does not allow "
                        f"`{type(aug)}.get_transform` to use variable-length arguments (*args, **kwargs)! "
                        "If arguments are unknown, reimplement `__call__` instead."
                    )
                names_list.append(name)
            names = tuple(names_list)
        aug.input_args = names
    args = []
    for name in aug.input_args:
        try:
            args.append(getattr(aug_input, name))
        except AttributeError as err:
            raise AttributeError(
                f"{type(aug)}.get_transform needs input attribute '{name}', "
                f"but it is not an attribute of {type(aug_input)}!"
            ) from err
    return args


class Augmentation:
    """Samples a deterministic ``Transform`` from its inputs (``get_transform``).

    ``input_args`` names the ``AugInput`` attributes passed to ``get_transform``; by default they
    come from ``get_transform``'s signature (a single argument means the image).
    """

    input_args: Optional[Tuple[str, ...]] = None

    def _init(self, params: Optional[dict] = None) -> None:
        if params:
            for k, v in params.items():
                if k != "self" and not k.startswith("_"):
                    setattr(self, k, v)

    def get_transform(self, *args) -> Transform:
        raise NotImplementedError

    def __call__(self, aug_input: "AugInput") -> Transform:
        args = _get_aug_input_args(self, aug_input)
        tfm = self.get_transform(*args)
        if not isinstance(tfm, (Transform, TransformList)):
            raise TypeError(
                f"{type(self)}.get_transform must return an instance of Transform! Got {type(tfm)} instead."
            )
        aug_input.transform(tfm)
        return tfm

    def _rand_range(self, low: float = 1.0, high: Optional[float] = None, size=None):
        """Uniform float in [low, high) (or [0, low) when ``high`` is None) from numpy's RNG."""
        if high is None:
            low, high = 0, low
        if size is None:
            size = []
        return np.random.uniform(low, high, size)

    def __repr__(self) -> str:
        try:
            sig = inspect.signature(self.__init__)
            classname = type(self).__name__
            argstr = []
            for name, param in sig.parameters.items():
                if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                    raise AssertionError("variable arguments are not printable")
                attr = getattr(self, name)
                default = param.default
                if default is attr:
                    continue
                attr_str = pprint.pformat(attr)
                if "\n" in attr_str:
                    attr_str = "..."  # don't show arguments that do not fit on one line
                argstr.append(f"{name}={attr_str}")
            return f"{classname}({', '.join(argstr)})"
        except (AssertionError, AttributeError):
            return super().__repr__()

    __str__ = __repr__


class _TransformToAug(Augmentation):
    """Wraps a fixed ``Transform`` so it can sit in an augmentation list."""

    def __init__(self, tfm: Transform):
        self.tfm = tfm

    def get_transform(self, *args) -> Transform:
        return self.tfm

    def __call__(self, aug_input: "AugInput") -> Transform:
        aug_input.transform(self.tfm)
        return self.tfm

    def __repr__(self) -> str:
        return repr(self.tfm)

    __str__ = __repr__


def _transform_to_aug(tfm_or_aug: Union[Transform, Augmentation]) -> Augmentation:
    if isinstance(tfm_or_aug, Augmentation):
        return tfm_or_aug
    if not isinstance(tfm_or_aug, (Transform, TransformList)):
        raise TypeError(f"Expected an Augmentation or a Transform, got {type(tfm_or_aug)}: {tfm_or_aug!r}")
    return _TransformToAug(tfm_or_aug)


class AugmentationList(Augmentation):
    """Applies a sequence of augmentations (or transforms) in order; returns a ``TransformList``."""

    def __init__(self, augs: Sequence[Union[Augmentation, Transform]]):
        super().__init__()
        self.augs = [_transform_to_aug(x) for x in augs]

    def __call__(self, aug_input: "AugInput") -> TransformList:
        tfms = [aug(aug_input) for aug in self.augs]
        return TransformList(tfms)

    def __repr__(self) -> str:
        return f"AugmentationList[{', '.join(str(x) for x in self.augs)}]"

    __str__ = __repr__


class RandomApply(Augmentation):
    """Apply the wrapped augmentation / transform with probability ``prob``."""

    def __init__(self, tfm_or_aug: Union[Augmentation, Transform], prob: float = 0.5):
        super().__init__()
        self.aug = _transform_to_aug(tfm_or_aug)
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomApply: probability must be in [0, 1], got {prob}")
        self.prob = prob

    def get_transform(self, *args) -> Transform:
        if self._rand_range() < self.prob:
            return self.aug.get_transform(*args)
        return NoOpTransform()

    def __call__(self, aug_input: "AugInput") -> Transform:
        if self._rand_range() < self.prob:
            return self.aug(aug_input)
        return NoOpTransform()


class AugInput:
    """Inputs of an augmentation: ``image`` (HxW[xC], uint8 or float), optional ``boxes`` (Nx4
    XYXY_ABS) and ``sem_seg`` (HxW integer). ``transform(tfm)`` applies a transform in place."""

    def __init__(
        self,
        image: np.ndarray,
        *,
        boxes: Optional[np.ndarray] = None,
        sem_seg: Optional[np.ndarray] = None,
    ):
        _check_img_dtype(image)
        self.image = image
        self.boxes = boxes
        self.sem_seg = sem_seg

    def transform(self, tfm: Transform) -> None:
        self.image = tfm.apply_image(self.image)
        if self.boxes is not None:
            self.boxes = tfm.apply_box(self.boxes)
        if self.sem_seg is not None:
            self.sem_seg = tfm.apply_segmentation(self.sem_seg)

    def apply_augmentations(self, augmentations: Sequence[Union[Augmentation, Transform]]) -> TransformList:
        """Apply ``augmentations`` in place; return the transforms that were applied."""
        return AugmentationList(augmentations)(self)


StandardAugInput = AugInput  # old detectron2 name


def apply_augmentations(
    augmentations: Sequence[Union[Augmentation, Transform]], inputs: Union[np.ndarray, AugInput]
) -> Tuple[Union[np.ndarray, AugInput], TransformList]:
    """Apply augmentations to an image array (returns the new image) or an ``AugInput``."""
    if isinstance(inputs, np.ndarray):
        image_only = True
        inputs = AugInput(inputs)
    else:
        image_only = False
    tfms = inputs.apply_augmentations(augmentations)
    return (inputs.image if image_only else inputs), tfms


apply_transform_gens = apply_augmentations  # old detectron2 name
