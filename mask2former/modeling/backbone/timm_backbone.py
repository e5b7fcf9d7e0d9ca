"""Any timm model with ``features_only=True`` as a detectron2-style backbone.

``timm`` is optional: it is imported when a timm backbone is built (``pip install timm``).
Weights are never downloaded: the model is created with ``pretrained=False`` and
``MODEL.TIMM.PRETRAINED`` (a local ``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors`` file in timm's
own key layout, i.e. ``timm.create_model(NAME).state_dict()``) is loaded here, strictly for
every tensor the feature extractor uses.

The i-th entry of ``MODEL.TIMM.OUT_INDICES`` (timm feature indices) is named ``res{i + 2}``;
strides and channels come from timm's ``feature_info``, so every pixel decoder can read them
from :meth:`Backbone.output_shape`.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ...config.configurable import configurable
from ...layers import ShapeSpec
from ..build import BACKBONE_REGISTRY
from .backbone import Backbone

__all__ = ["TimmBackbone", "build_timm_backbone", "load_timm_weights_file"]

logger = logging.getLogger(__name__)


def _import_timm():
    try:
        import timm
    except ImportError as err:
        raise ImportError(
            "MODEL.BACKBONE.NAME='build_timm_backbone' needs the optional package timm: "
            "pip install timm"
        ) from err
    return timm


def load_timm_weights_file(path: str) -> Dict[str, Tensor]:
    """Read a local weights file (``.safetensors`` or a torch pickle read with
    ``weights_only=True``) into a flat {name: tensor} dict.

    A ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is unwrapped and a DataParallel
    ``module.`` prefix removed.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MODEL.TIMM.PRETRAINED={path!r} is not a file (timm weights are "
                                "never downloaded; give a local path or '')")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path, device="cpu")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle.UnpicklingError and friends
            raise ValueError(f"MODEL.TIMM.PRETRAINED={path!r} could not be read as a weights-only "
                             f"torch file: {err}") from err
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"MODEL.TIMM.PRETRAINED={path!r} does not hold a {{name: tensor}} state dict")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _source_key_candidates(key: str) -> List[str]:
    """Names a feature-extractor key may have in the full timm model's state dict.

    timm's feature wrappers keep the model's modules but rename them: ``FeatureListNet``
    flattens one Sequential level (``stages.0`` -> ``stages_0``), ``FeatureGetterNet`` nests the
    model under ``model.``.
    """
    candidates = [key]
    if key.startswith("model."):
        candidates.append(key[len("model."):])
    head, _, rest = key.partition(".")
    for i, char in enumerate(head):
        if char == "_":
            candidates.append(f"{head[:i]}.{head[i + 1:]}.{rest}" if rest else f"{head[:i]}.{head[i + 1:]}")
    return candidates


class TimmBackbone(Backbone):
    """A timm feature extractor returning ``{"res2": ..., ...}`` in (B, C, H, W) layout."""

    @configurable
    def __init__(self, *, model_name: str, out_indices: Sequence[int] = (1, 2, 3, 4),
                 out_features: Optional[Sequence[str]] = None, pretrained: str = "",
                 drop_path_rate: float = 0.0, freeze_at: int = 0, in_channels: int = 3):
        """
        Args:
            model_name: any timm model name that supports ``features_only=True``.
            out_indices: timm feature indices; the i-th is named ``res{i + 2}``.
            out_features: names to return (default: all of them).
            pretrained: local weights file in timm's key layout, or "" (random init).
            drop_path_rate: stochastic depth (passed to timm only when > 0).
            freeze_at: 0 trains everything; 1 freezes everything before ``res2``'s stage;
                k >= 2 freezes up to and including ``res{k}``'s stage (detectron2's meaning).
                Frozen parts get ``requires_grad=False`` and stay in eval mode.
            in_channels: image channels.
        """
        super().__init__()
        if not model_name:
            raise ValueError("MODEL.TIMM.NAME is empty; set it to a timm model name, e.g. 'convnext_tiny'")
        timm = _import_timm()
        out_indices = tuple(int(i) for i in out_indices)
        kwargs = dict(features_only=True, out_indices=out_indices, in_chans=in_channels)
        if drop_path_rate > 0:
            kwargs["drop_path_rate"] = drop_path_rate
        try:
            self.body = timm.create_model(model_name, pretrained=False, **kwargs)
        except RuntimeError as err:
            if "Unknown model" in str(err):
                raise ValueError(f"MODEL.TIMM.NAME={model_name!r} is not a timm model") from err
            raise
        except TypeError as err:
            raise ValueError(f"timm model {model_name!r} rejected the arguments {kwargs} "
                             f"(MODEL.TIMM.DROP_PATH_RATE unsupported?): {err}") from err
        except (IndexError, AssertionError) as err:
            raise ValueError(f"MODEL.TIMM.OUT_INDICES={list(out_indices)} do not fit {model_name!r}; "
                             f"its features are {self._describe_features(timm, model_name)}") from err

        info = self.body.feature_info
        names = [f"res{i + 2}" for i in range(len(out_indices))]
        self._names = names
        self._out_feature_strides = dict(zip(names, (int(s) for s in info.reduction())))
        self._out_feature_channels = dict(zip(names, (int(c) for c in info.channels())))
        self._out_features = list(out_features) if out_features else list(names)
        unknown = [f for f in self._out_features if f not in names]
        if unknown:
            raise ValueError(f"MODEL.TIMM.OUT_FEATURES {unknown} are not among {names} "
                             f"(one name per MODEL.TIMM.OUT_INDICES entry {list(out_indices)})")
        fmt = getattr(self.body, "output_fmt", "NCHW")
        self._channels_last = str(getattr(fmt, "value", fmt)) == "NHWC"
        self.model_name = model_name

        if pretrained:
            self.load_pretrained(pretrained)
        self._frozen_modules: List[nn.Module] = []
        if freeze_at > 0:
            self.freeze(freeze_at)

    @staticmethod
    def _describe_features(timm, model_name: str) -> str:
        with torch.device("meta"):
            probe = timm.create_model(model_name, pretrained=False, features_only=True)
        return ", ".join(f"{d.get('index', i)}: stride {d['reduction']} / {d['num_chs']} ch"
                         for i, d in enumerate(probe.feature_info.info))

    @classmethod
    def from_config(cls, cfg, input_shape: Optional[ShapeSpec] = None) -> dict:
        t = cfg.MODEL.TIMM
        return dict(
            model_name=t.NAME, out_indices=list(t.OUT_INDICES), out_features=list(t.OUT_FEATURES),
            pretrained=t.PRETRAINED, drop_path_rate=t.DROP_PATH_RATE,
            freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
            in_channels=input_shape.channels if input_shape is not None and input_shape.channels else 3,
        )

    def load_pretrained(self, path: str) -> None:
        """Load a local timm-layout weights file into the feature extractor (all its tensors)."""
        source = load_timm_weights_file(path)
        target = self.body.state_dict()
        loaded, missing = {}, []
        for key, value in target.items():
            match = next((c for c in _source_key_candidates(key) if c in source), None)
            if match is None:
                missing.append(key)
                continue
            if source[match].shape != value.shape:
                raise ValueError(f"MODEL.TIMM.PRETRAINED={path!r}: {match!r} has shape "
                                 f"{tuple(source[match].shape)}, {self.model_name} expects "
                                 f"{tuple(value.shape)}")
            loaded[key] = source[match]
        if missing:
            raise ValueError(f"MODEL.TIMM.PRETRAINED={path!r} lacks {len(missing)} of the "
                             f"{len(target)} tensors of {self.model_name!r}'s feature extractor, e.g. "
                             f"{missing[:5]} (expected timm's key layout)")
        self.body.load_state_dict(loaded, strict=True)
        logger.info("Loaded %d tensors for timm %s from %s", len(loaded), self.model_name, path)

    def _stage_module_name(self, feature_name: str) -> str:
        """Name, inside ``self.body``, of the module producing ``feature_name``."""
        index = self._names.index(feature_name)
        timm_name = self.body.feature_info.module_name()[index]
        modules = dict(self.body.named_modules())
        for candidate in (timm_name, timm_name.replace(".", "_"), f"model.{timm_name}"):
            if candidate in modules:
                return candidate
        raise ValueError(f"cannot locate timm module {timm_name!r} of {self.model_name!r} to freeze; "
                         "set MODEL.BACKBONE.FREEZE_AT 0")

    def freeze(self, freeze_at: int) -> "TimmBackbone":
        """Freeze the stem (``freeze_at >= 1``) and the stages up to ``res{freeze_at}``.

        Relies on timm's convention that modules are registered in execution order (the
        feature wrappers are built on it): everything registered before ``res2``'s stage is
        the stem. Modules whose whole subtree is frozen are also kept in eval mode.
        """
        if freeze_at > len(self._names) + 1:
            raise ValueError(f"MODEL.BACKBONE.FREEZE_AT={freeze_at} exceeds the {len(self._names)} "
                             f"stages of timm {self.model_name!r}")
        last_stage = self._stage_module_name(self._names[max(freeze_at, 2) - 2])
        frozen: List[nn.Module] = []
        seen_stage = False
        for name, module in self.body.named_modules():  # pre-order: a subtree is contiguous
            if not name:
                continue
            in_stage = name == last_stage or name.startswith(last_stage + ".")
            if in_stage and freeze_at < 2:
                break  # stem only
            if not in_stage and seen_stage:
                break  # past the last frozen stage
            seen_stage = seen_stage or in_stage
            frozen.append(module)
        frozen_ids = {id(m) for m in frozen}
        for module in frozen:
            for p in module.parameters(recurse=False):
                p.requires_grad = False
        self._frozen_modules = [m for m in frozen if all(id(s) in frozen_ids for s in m.modules())]
        self.train(self.training)
        return self

    def train(self, mode: bool = True) -> "TimmBackbone":
        super().train(mode)
        for module in getattr(self, "_frozen_modules", []):
            module.train(False)
        return self

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """(B, C, H, W) -> {"res{i + 2}": (B, C_i, H / s_i, W / s_i)} for the requested names."""
        if x.dim() != 4:
            raise ValueError(f"timm backbone takes (N, C, H, W) images; got {tuple(x.shape)}")
        features = self.body(x)
        if isinstance(features, dict):
            features = list(features.values())
        out = {}
        for name, feature in zip(self._names, features):
            if name in self._out_features:
                if self._channels_last:
                    feature = feature.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
                out[name] = feature.contiguous()
        return out

    @property
    def size_divisibility(self) -> int:
        return max(32, max(self._out_feature_strides.values()))


@BACKBONE_REGISTRY.register()
def build_timm_backbone(cfg, input_shape: ShapeSpec) -> TimmBackbone:
    """``MODEL.TIMM.*`` -> :class:`TimmBackbone`."""
    return TimmBackbone(cfg, input_shape)
