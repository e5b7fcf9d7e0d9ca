"""``CfgNode`` with ``_BASE_`` inheritance and errors that name the offending key and file."""
from __future__ import annotations

import copy
import os
from typing import Any, Dict, List

from fvcore.common.config import CfgNode as _FvcoreCfgNode
from iopath.common.file_io import PathManager as _PathManagerClass

from .maskformer_v1 import apply_maskformer_v1_values
from .yaml_loader import load_yaml

_PATH_MANAGER = _PathManagerClass()


class ConfigKeyError(KeyError):
    """An override or YAML file names a key that the config does not have."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class CfgNode(_FvcoreCfgNode):
    """A YAML-backed config tree (fvcore's ``CfgNode``) as detectron2 uses it.

    * ``merge_from_file`` follows ``_BASE_`` chains (paths relative to the including file);
    * unknown keys raise :class:`ConfigKeyError` naming the full key and the file or override.
    """

    @classmethod
    def _open_cfg(cls, filename: str):
        return _PATH_MANAGER.open(filename, "r")

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> Dict[str, Any]:
        """Load a YAML file as a dict, merged on top of its ``_BASE_`` file (recursively).

        Never runs code from the file: the official numeric ``!!python/object/apply:eval`` lists
        are evaluated by a restricted arithmetic evaluator; ``allow_unsafe`` is accepted for
        detectron2 compatibility and ignored.
        """
        if not _PATH_MANAGER.isfile(filename):
            raise FileNotFoundError(f"Config file {filename!r} does not exist (or is not a file)")
        with cls._open_cfg(filename) as f:
            cfg = load_yaml(f, filename) or {}
        if not isinstance(cfg, dict):
            raise ValueError(f"Config file {filename!r} must hold a mapping at the top level")
        base = cfg.pop(BASE_KEY, None)
        if base is None:
            return cfg
        if not isinstance(base, str) or not base:
            raise ValueError(f"_BASE_ of config file {filename!r} must be a file path, got {base!r}")
        base_path = os.path.expanduser(base)
        if not base_path.startswith(("/", "~")) and "://" not in base_path:
            base_path = os.path.join(os.path.dirname(filename), base_path)
        if not _PATH_MANAGER.isfile(base_path):
            raise FileNotFoundError(f"_BASE_ {base!r} of config file {filename!r} does not exist "
                                    f"(looked for {base_path!r})")
        base_cfg = cls.load_yaml_with_base(base_path, allow_unsafe=allow_unsafe)
        _merge_dict_into(cfg, base_cfg)
        return base_cfg

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge a YAML file (and its ``_BASE_`` chain) into this config."""
        loaded_dict = self.load_yaml_with_base(cfg_filename, allow_unsafe=allow_unsafe)
        loaded = type(self)(copy.deepcopy(loaded_dict))
        try:
            self.merge_from_other_cfg(loaded)
        except KeyError as err:
            raise ConfigKeyError(f"{_key_error_text(err)} (in config file {cfg_filename!r})") from None
        if "MASK_FORMER" in self.get("MODEL", {}):  # a full model config (not a bare test tree)
            apply_maskformer_v1_values(loaded_dict, self, cfg_filename)

    def merge_from_list(self, cfg_list: List[Any]) -> None:
        """Merge ``["KEY", value, ...]`` overrides, as given on the command line."""
        if len(cfg_list) % 2 != 0:
            raise ValueError(
                f"Config overrides must be KEY VALUE pairs, got an odd number of items: {cfg_list}"
            )
        # yacs reports an unknown override key with an AssertionError; check keys first.
        for full_key in cfg_list[0::2]:
            node = self
            for subkey in str(full_key).split("."):
                if not isinstance(node, _FvcoreCfgNode) or subkey not in node:
                    raise ConfigKeyError(
                        f"Non-existent config key: {full_key} (in command-line overrides)"
                    )
                node = node[subkey]
        try:
            super().merge_from_list(cfg_list)
        except KeyError as err:
            raise ConfigKeyError(f"{_key_error_text(err)} (in command-line overrides)") from None



BASE_KEY = "_BASE_"


def _merge_dict_into(source: Dict[str, Any], target: Dict[str, Any]) -> None:
    """Recursively write ``source`` over ``target`` (nested dicts merged, other values replaced)."""
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_dict_into(value, target[key])
        else:
            target[key] = value


def _key_error_text(err: KeyError) -> str:
    text = err.args[0] if err.args else str(err)
    return str(text)

