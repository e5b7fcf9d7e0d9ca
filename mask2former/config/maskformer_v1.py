"""Recognise MaskFormer (v1) config files and give them v1's components.

The official MaskFormer code has no ``TRANSFORMER_DECODER_NAME``, ``CRITERION`` or
``PANOPTIC_REQUIRE_MASK_PROB`` keys: v1 always builds the single-scale transformer decoder, the
full-resolution focal + dice criterion and the argmax-only panoptic rule. This project holds both
model families under one ``get_cfg()``, whose defaults are Mask2Former's (as the official
``add_maskformer2_config`` sets them). A v1 file, or the ``config.yaml`` that a v1 training run
writes, is therefore recognised by what it does say:

* it never sets ``MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME`` (every Mask2Former config and dump
  does), and
* its ``MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE`` is not ``"multi_scale_pixel_decoder"``, the only
  input the masked-attention decoder can read (v1 reads ``res5``, ``transformer_encoder`` or
  ``pixel_embedding``).

Such a file gets the three v1 values below, except for any of the three keys that the file sets
itself. A Mask2Former config is never changed: with its decoder name absent and a single-scale
input it could not run in the official Mask2Former code either.
"""
from __future__ import annotations

import logging
from typing import Any, Dict

__all__ = ["MULTI_SCALE_IN_FEATURE", "V1_VALUES", "apply_maskformer_v1_values", "is_maskformer_v1_file"]

MULTI_SCALE_IN_FEATURE = "multi_scale_pixel_decoder"

# (path under MODEL.MASK_FORMER, v1 value)
V1_VALUES = (
    (("TRANSFORMER_DECODER_NAME",), "StandardTransformerDecoder"),
    (("CRITERION",), "maskformer"),
    (("TEST", "PANOPTIC_REQUIRE_MASK_PROB"), False),
)

_logger = logging.getLogger(__name__)


def _lookup(tree: Dict[str, Any], path) -> tuple:
    """(found, value) of a nested key in a plain dict loaded from YAML."""
    node: Any = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def is_maskformer_v1_file(loaded: Dict[str, Any], merged_cfg) -> bool:
    """Whether a loaded config file (its ``_BASE_`` chain merged) is a MaskFormer v1 config.

    ``loaded`` is the file's own dict; ``merged_cfg`` the ``CfgNode`` after merging it, so that a
    ``TRANSFORMER_IN_FEATURE`` inherited from defaults or an earlier file counts too.
    """
    names_decoder, _ = _lookup(loaded, ("MODEL", "MASK_FORMER", "TRANSFORMER_DECODER_NAME"))
    in_feature = merged_cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE
    return not names_decoder and in_feature != MULTI_SCALE_IN_FEATURE


def apply_maskformer_v1_values(loaded: Dict[str, Any], merged_cfg, filename: str) -> bool:
    """Give ``merged_cfg`` the v1 components if ``loaded`` is a v1 file; True if it was one."""
    if not is_maskformer_v1_file(loaded, merged_cfg):
        return False
    node = merged_cfg.MODEL.MASK_FORMER
    applied = []
    for path, value in V1_VALUES:
        set_by_file, _ = _lookup(loaded, ("MODEL", "MASK_FORMER") + path)
        if set_by_file:
            continue
        target = node
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        applied.append(f"MODEL.MASK_FORMER.{'.'.join(path)}={value!r}")
    if applied:
        _logger.info(
            "Config file %s is a MaskFormer (v1) config (no TRANSFORMER_DECODER_NAME, "
            "TRANSFORMER_IN_FEATURE=%r): using v1's %s",
            filename, node.TRANSFORMER_IN_FEATURE, ", ".join(applied),
        )
    return True
