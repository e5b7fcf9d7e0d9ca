"""ResNet backbones as detectron2 builds them (including the DeepLab variant).

State-dict names follow detectron2 exactly (``stem.conv1.weight``, ``stem.conv1.norm.*``,
``res2.0.conv1.weight``, ``res2.0.shortcut.norm.*``, ...), so official checkpoints and
torchvision weights converted by ``tools/convert-torchvision-to-d2.py`` load unchanged.

Two registered builders read the config:

* ``build_resnet_backbone``: detectron2's ``MODEL.RESNETS.*`` rules (basic stem, R18..R152,
  optional dilated res5);
* ``build_resnet_deeplab_backbone``: detectron2 ``projects/DeepLab`` rules (``STEM_TYPE``,
  ``RES4_DILATION``, ``RES5_DILATION`` up to 4, ``RES5_MULTI_GRID``).

Both go through :func:`build_resnet`, which takes plain keyword arguments.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint as recompute_in_backward

from ...config import configurable
from ...layers import Conv2d, FrozenBatchNorm2d, ShapeSpec, c2_msra_fill, get_norm
from ...layers.deform_conv import DeformConv
from ..build import BACKBONE_REGISTRY
from .backbone import Backbone

__all__ = [
    "CNNBlockBase", "BasicBlock", "BottleneckBlock", "DeformBottleneckBlock", "DeformConv",
    "BasicStem", "DeepLabStem", "ResNet", "build_resnet",
    "build_resnet_backbone", "build_resnet_deeplab_backbone",
]

_BLOCKS_PER_STAGE = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}
_STAGE_INDEX = {"res2": 2, "res3": 3, "res4": 4, "res5": 5}


class CNNBlockBase(nn.Module):
    """A CNN block with ``in_channels``, ``out_channels`` and a total ``stride``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def freeze(self) -> "CNNBlockBase":
        """Stop gradients of every parameter and turn every BatchNorm into FrozenBatchNorm2d."""
        for p in self.parameters():
            p.requires_grad = False
        FrozenBatchNorm2d.convert_frozen_batchnorm(self)
        return self


class BasicBlock(CNNBlockBase):
    """Two 3x3 convs plus a (projection) shortcut: the block of ResNet-18/34."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, norm="BN"):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)
        self.conv1 = Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1,
                            bias=False, norm=get_norm(norm, out_channels))
        self.conv2 = Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1,
                            bias=False, norm=get_norm(norm, out_channels))
        for layer in (self.conv1, self.conv2, self.shortcut):
            if layer is not None:
                c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = self.conv2(out)
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


class BottleneckBlock(CNNBlockBase):
    """1x1 -> 3x3 (grouped, dilated) -> 1x1 convs plus a (projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, *, bottleneck_channels: int,
                 stride: int = 1, num_groups: int = 1, norm="BN", stride_in_1x1: bool = False,
                 dilation: int = 1):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)
        # MSRA's original ResNets stride in the first 1x1 conv; torchvision / fb.torch in the 3x3.
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(in_channels, bottleneck_channels, kernel_size=1, stride=stride_1x1,
                            bias=False, norm=get_norm(norm, bottleneck_channels))
        self.conv2 = Conv2d(bottleneck_channels, bottleneck_channels, kernel_size=3,
                            stride=stride_3x3, padding=dilation, bias=False, groups=num_groups,
                            dilation=dilation, norm=get_norm(norm, bottleneck_channels))
        self.conv3 = Conv2d(bottleneck_channels, out_channels, kernel_size=1, bias=False,
                            norm=get_norm(norm, out_channels))
        for layer in (self.conv1, self.conv2, self.conv3, self.shortcut):
            if layer is not None:
                c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


class DeformBottleneckBlock(CNNBlockBase):
    """:class:`BottleneckBlock` whose 3x3 conv is deformable (offsets from ``conv2_offset``)."""

    def __init__(self, in_channels: int, out_channels: int, *, bottleneck_channels: int,
                 stride: int = 1, num_groups: int = 1, norm="BN", stride_in_1x1: bool = False,
                 dilation: int = 1, deform_modulated: bool = False, deform_num_groups: int = 1):
        super().__init__(in_channels, out_channels, stride)
        self.deform_modulated = deform_modulated
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(in_channels, bottleneck_channels, kernel_size=1, stride=stride_1x1,
                            bias=False, norm=get_norm(norm, bottleneck_channels))
        offset_channels = 27 if deform_modulated else 18  # (2 or 3) * 3 * 3
        self.conv2_offset = Conv2d(bottleneck_channels, offset_channels * deform_num_groups,
                                   kernel_size=3, stride=stride_3x3, padding=dilation,
                                   dilation=dilation)
        self.conv2 = DeformConv(bottleneck_channels, bottleneck_channels, kernel_size=3,
                                stride=stride_3x3, padding=dilation, dilation=dilation,
                                groups=num_groups, deformable_groups=deform_num_groups,
                                bias=False, norm=get_norm(norm, bottleneck_channels))
        self.conv3 = Conv2d(bottleneck_channels, out_channels, kernel_size=1, bias=False,
                            norm=get_norm(norm, out_channels))
        for layer in (self.conv1, self.conv2, self.conv3, self.shortcut):
            if layer is not None:
                c2_msra_fill(layer)
        nn.init.constant_(self.conv2_offset.weight, 0)
        nn.init.constant_(self.conv2_offset.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        if self.deform_modulated:
            offset_x, offset_y, mask = torch.chunk(self.conv2_offset(out), 3, dim=1)
            out = self.conv2(out, torch.cat((offset_x, offset_y), dim=1), mask.sigmoid())
        else:
            out = self.conv2(out, self.conv2_offset(out))
        out = F.relu_(out)
        out = self.conv3(out)
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


class BasicStem(CNNBlockBase):
    """7x7/2 conv + ReLU + 3x3/2 max-pool (total stride 4)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm="BN"):
        super().__init__(in_channels, out_channels, 4)
        self.conv1 = Conv2d(in_channels, out_channels, kernel_size=7, stride=2, padding=3,
                            bias=False, norm=get_norm(norm, out_channels))
        c2_msra_fill(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))  # (B, C, H/2, W/2)
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)  # (B, C, H/4, W/4)


class DeepLabStem(CNNBlockBase):
    """Three 3x3 convs (the first with stride 2, widths C/2, C/2, C) + 3x3/2 max-pool."""

    def __init__(self, in_channels: int = 3, out_channels: int = 128, norm="BN"):
        super().__init__(in_channels, out_channels, 4)
        half = out_channels // 2
        self.conv1 = Conv2d(in_channels, half, kernel_size=3, stride=2, padding=1, bias=False,
                            norm=get_norm(norm, half))
        self.conv2 = Conv2d(half, half, kernel_size=3, stride=1, padding=1, bias=False,
                            norm=get_norm(norm, half))
        self.conv3 = Conv2d(half, out_channels, kernel_size=3, stride=1, padding=1, bias=False,
                            norm=get_norm(norm, out_channels))
        for conv in (self.conv1, self.conv2, self.conv3):
            c2_msra_fill(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))  # (B, C/2, H/2, W/2)
        x = F.relu_(self.conv2(x))
        x = F.relu_(self.conv3(x))  # (B, C, H/2, W/2)
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)  # (B, C, H/4, W/4)


def _shortcut(in_channels: int, out_channels: int, stride: int, norm) -> Optional[Conv2d]:
    if in_channels == out_channels:
        return None
    return Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False,
                  norm=get_norm(norm, out_channels))


class ResNet(Backbone):
    """A stem followed by stages ``res2``, ``res3``, ... of residual blocks."""

    def __init__(self, stem: CNNBlockBase, stages: Sequence[Sequence[CNNBlockBase]],
                 out_features: Optional[Sequence[str]] = None, freeze_at: int = 0,
                 checkpoint: bool = False):
        """
        Args:
            stem: the stem module (its ``stride`` / ``out_channels`` are read).
            stages: one list of blocks per stage, named ``res2``, ``res3``, ...
            out_features: names returned by ``forward`` ("stem", "res2", ...); default: last stage.
            freeze_at: see :meth:`freeze`.
            checkpoint: training with gradients: keep only each trainable block's input and
                recompute the block in backward (activation checkpointing; less memory, about
                one more backbone forward of time). Not with BatchNorms that update running
                statistics (they would update twice): use FrozenBN or GN.
        """
        super().__init__()
        self.checkpoint = checkpoint
        self.stem = stem
        current_stride = stem.stride
        self._out_feature_strides = {"stem": current_stride}
        self._out_feature_channels = {"stem": stem.out_channels}
        self.stages_and_names = []
        name = "stem"
        for i, blocks in enumerate(stages):
            if len(blocks) == 0:
                raise ValueError(f"ResNet stage res{i + 2} has no blocks")
            name = f"res{i + 2}"
            stage = nn.Sequential(*blocks)
            self.add_module(name, stage)
            self.stages_and_names.append((stage, name))
            current_stride = int(current_stride * np.prod([block.stride for block in blocks]))
            self._out_feature_strides[name] = current_stride
            self._out_feature_channels[name] = blocks[-1].out_channels
        self._out_features = list(out_features) if out_features is not None else [name]
        available = ["stem"] + [n for _, n in self.stages_and_names]
        for feature in self._out_features:
            if feature not in available:
                raise ValueError(f"ResNet out feature {feature!r} is not one of {available}")
        self.freeze(freeze_at)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(B, C, H, W) -> {"res2": (B, C2, H/4, W/4), ..., "res5": (B, C5, H/32, W/32)}."""
        if x.dim() != 4:
            raise ValueError(f"ResNet takes an input of shape (N, C, H, W); got {tuple(x.shape)}")
        outputs = {}
        recompute = self.checkpoint and self.training and torch.is_grad_enabled()
        x = self._checkpointed(self.stem, x, "stem") if recompute else self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for stage, name in self.stages_and_names:
            if recompute:
                for block in stage:
                    x = self._checkpointed(block, x, name)
            else:
                x = stage(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    @staticmethod
    def _checkpointed(block: nn.Module, x: torch.Tensor, stage_name: str) -> torch.Tensor:
        """``block(x)``, recomputed in backward if gradients flow through it."""
        if not x.requires_grad and not any(p.requires_grad for p in block.parameters()):
            return block(x)  # frozen, nothing trainable before it: no activations are kept anyway
        for m in block.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
                raise ValueError(f"ResNet activation checkpointing (MODEL.RESNETS.CHECKPOINT) of a "
                                 f"{stage_name} block with a training {type(m).__name__}: recomputing it "
                                 "would update its running statistics twice; use MODEL.RESNETS.NORM "
                                 "'FrozenBN' or 'GN', or freeze the stage (MODEL.BACKBONE.FREEZE_AT)")
        return recompute_in_backward(block, x, use_reentrant=False)

    def freeze(self, freeze_at: int = 0) -> "ResNet":
        """Freeze the stem (``freeze_at >= 1``) and stages res2 .. res{freeze_at}.

        Frozen parts stop gradients and their BatchNorms become ``FrozenBatchNorm2d``.
        """
        if freeze_at >= 1:
            self.stem.freeze()
        for idx, (stage, _) in enumerate(self.stages_and_names, start=2):
            if freeze_at >= idx:
                for block in stage.children():
                    block.freeze()
        return self

    @staticmethod
    def make_stage(block_class, num_blocks: int, *, in_channels: int, out_channels: int,
                   **kwargs) -> List[CNNBlockBase]:
        """``num_blocks`` blocks; a kwarg ``<name>_per_block`` gives one value per block."""
        blocks = []
        for i in range(num_blocks):
            block_kwargs = {}
            for key, value in kwargs.items():
                if key.endswith("_per_block"):
                    if len(value) != num_blocks:
                        raise ValueError(f"make_stage: {key} has {len(value)} values for "
                                         f"{num_blocks} blocks")
                    block_kwargs[key[: -len("_per_block")]] = value[i]
                else:
                    block_kwargs[key] = value
            blocks.append(block_class(in_channels=in_channels, out_channels=out_channels,
                                      **block_kwargs))
            in_channels = out_channels
        return blocks


def _common_args_from_config(cfg, input_shape: ShapeSpec) -> dict:
    res = cfg.MODEL.RESNETS
    return dict(
        in_channels=input_shape.channels, depth=res.DEPTH, stem_type="basic",
        stem_out_channels=res.STEM_OUT_CHANNELS, norm=res.NORM,
        out_features=list(res.OUT_FEATURES), num_groups=res.NUM_GROUPS,
        width_per_group=res.WIDTH_PER_GROUP, res2_out_channels=res.RES2_OUT_CHANNELS,
        stride_in_1x1=res.STRIDE_IN_1X1, res5_dilation=res.RES5_DILATION,
        deform_on_per_stage=list(res.DEFORM_ON_PER_STAGE), deform_modulated=res.DEFORM_MODULATED,
        deform_num_groups=res.DEFORM_NUM_GROUPS, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        checkpoint=res.CHECKPOINT,
    )


def _resnet_args_from_config(cfg, input_shape: ShapeSpec) -> dict:
    """detectron2 ``build_resnet_backbone`` keys (no stem type, res4 dilation or multi-grid)."""
    dilation = cfg.MODEL.RESNETS.RES5_DILATION
    if dilation not in (1, 2):
        raise ValueError(f"MODEL.RESNETS.RES5_DILATION={dilation} is not supported by "
                         "build_resnet_backbone (1 or 2; use build_resnet_deeplab_backbone for 4)")
    return _common_args_from_config(cfg, input_shape)


def _deeplab_args_from_config(cfg, input_shape: ShapeSpec) -> dict:
    """detectron2 ``projects/DeepLab`` keys: adds stem type, res4 dilation and multi-grid."""
    res = cfg.MODEL.RESNETS
    if res.DEPTH not in (50, 101, 152):
        raise ValueError(f"MODEL.RESNETS.DEPTH={res.DEPTH} is not supported by "
                         "build_resnet_deeplab_backbone (50, 101 or 152)")
    args = _common_args_from_config(cfg, input_shape)
    args.update(stem_type=res.STEM_TYPE, res4_dilation=res.RES4_DILATION,
                res5_multi_grid=list(res.RES5_MULTI_GRID))
    return args


@configurable(from_config=_resnet_args_from_config)
def build_resnet(*, in_channels: int = 3, depth: int = 50, stem_type: str = "basic",
                 stem_out_channels: int = 64, norm="FrozenBN",
                 out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
                 num_groups: int = 1, width_per_group: int = 64,
                 res2_out_channels: Optional[int] = None,
                 stride_in_1x1: bool = True, res4_dilation: int = 1, res5_dilation: int = 1,
                 res5_multi_grid: Optional[Sequence[int]] = None,
                 deform_on_per_stage: Sequence[bool] = (False, False, False, False),
                 deform_modulated: bool = False, deform_num_groups: int = 1,
                 freeze_at: int = 0, checkpoint: bool = False) -> ResNet:
    """Build a ResNet from plain arguments (or ``build_resnet(cfg, input_shape)``).

    A dilated stage keeps the resolution of the previous one (its first block has stride 1);
    ``res5_multi_grid`` multiplies the res5 dilation per block (DeepLab's multi-grid; default:
    all 1). ``res2_out_channels`` defaults to 64 for R18/R34 and 256 otherwise.
    ``stride_in_1x1=True`` suits MSRA weights, ``False`` torchvision weights.
    ``checkpoint``: activation checkpointing of the trainable blocks (see :class:`ResNet`).
    """
    if depth not in _BLOCKS_PER_STAGE:
        raise ValueError(f"ResNet depth={depth} (MODEL.RESNETS.DEPTH) is not supported; "
                         f"expected one of {sorted(_BLOCKS_PER_STAGE)}")
    if res4_dilation not in (1, 2):
        raise ValueError(f"res4_dilation={res4_dilation} (MODEL.RESNETS.RES4_DILATION) "
                         "must be 1 or 2")
    if res5_dilation not in (1, 2, 4):
        raise ValueError(f"res5_dilation={res5_dilation} (MODEL.RESNETS.RES5_DILATION) "
                         "must be 1, 2 or 4")
    if res4_dilation == 2 and res5_dilation != 4:
        raise ValueError("res4_dilation=2 requires res5_dilation=4 (MODEL.RESNETS.RES5_DILATION)")
    unknown = [f for f in out_features if f != "stem" and f not in _STAGE_INDEX]
    stage_features = [f for f in out_features if f in _STAGE_INDEX]
    if unknown or not stage_features:
        raise ValueError(f"out_features={list(out_features)} (MODEL.RESNETS.OUT_FEATURES) "
                         f"must name at least one of {list(_STAGE_INDEX)} (and optionally 'stem')")
    if len(deform_on_per_stage) != 4:
        raise ValueError(f"deform_on_per_stage={list(deform_on_per_stage)} "
                         "(MODEL.RESNETS.DEFORM_ON_PER_STAGE) needs 4 values (res2..res5)")
    num_blocks_per_stage = _BLOCKS_PER_STAGE[depth]
    if res5_multi_grid is None:
        res5_multi_grid = [1] * num_blocks_per_stage[3]
    if len(res5_multi_grid) != num_blocks_per_stage[3]:
        raise ValueError(f"res5_multi_grid={list(res5_multi_grid)} "
                         f"(MODEL.RESNETS.RES5_MULTI_GRID) needs one value per res5 block "
                         f"({num_blocks_per_stage[3]})")
    basic_blocks = depth in (18, 34)
    if res2_out_channels is None:
        res2_out_channels = 64 if basic_blocks else 256
    if basic_blocks:
        bad = {"res2_out_channels": (res2_out_channels, 64), "num_groups": (num_groups, 1),
               "res4_dilation": (res4_dilation, 1), "res5_dilation": (res5_dilation, 1)}
        for key, (value, required) in bad.items():
            if value != required:
                raise ValueError(f"ResNet-{depth} requires {key}={required}, got {value}")
        if any(deform_on_per_stage) or any(mg != 1 for mg in res5_multi_grid):
            raise ValueError(f"ResNet-{depth} supports neither deformable convs nor multi-grid")

    if stem_type == "basic":
        stem = BasicStem(in_channels, stem_out_channels, norm=norm)
    elif stem_type == "deeplab":
        stem = DeepLabStem(in_channels, stem_out_channels, norm=norm)
    else:
        raise ValueError(f"Unknown stem_type={stem_type!r} (MODEL.RESNETS.STEM_TYPE); "
                         "expected 'basic' or 'deeplab'")

    bottleneck_channels = num_groups * width_per_group
    stage_in, stage_out = stem_out_channels, res2_out_channels
    stages = []
    max_stage = max(_STAGE_INDEX[f] for f in stage_features)
    for idx, stage_idx in enumerate(range(2, max_stage + 1)):
        dilation = {4: res4_dilation, 5: res5_dilation}.get(stage_idx, 1)
        first_stride = 1 if idx == 0 or dilation > 1 else 2
        n = num_blocks_per_stage[idx]
        kwargs = dict(num_blocks=n, stride_per_block=[first_stride] + [1] * (n - 1),
                      in_channels=stage_in, out_channels=stage_out, norm=norm)
        if basic_blocks:
            kwargs["block_class"] = BasicBlock
        else:
            kwargs.update(bottleneck_channels=bottleneck_channels, stride_in_1x1=stride_in_1x1,
                          num_groups=num_groups)
            if stage_idx == 5:
                kwargs["dilation_per_block"] = [dilation * mg for mg in res5_multi_grid]
            else:
                kwargs["dilation"] = dilation
            if deform_on_per_stage[idx]:
                kwargs.update(block_class=DeformBottleneckBlock, deform_modulated=deform_modulated,
                              deform_num_groups=deform_num_groups)
            else:
                kwargs["block_class"] = BottleneckBlock
        stages.append(ResNet.make_stage(**kwargs))
        stage_in, stage_out = stage_out, stage_out * 2
        bottleneck_channels *= 2
    return ResNet(stem, stages, out_features=out_features, freeze_at=freeze_at,
                  checkpoint=checkpoint)


@BACKBONE_REGISTRY.register()
def build_resnet_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """detectron2's ResNet from ``MODEL.RESNETS.*`` and ``MODEL.BACKBONE.FREEZE_AT``."""
    return build_resnet(cfg, input_shape)


@BACKBONE_REGISTRY.register()
def build_resnet_deeplab_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """DeepLab ResNet: also reads ``STEM_TYPE``, ``RES4_DILATION`` and ``RES5_MULTI_GRID``."""
    return build_resnet(**_deeplab_args_from_config(cfg, input_shape))
