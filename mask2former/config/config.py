"""``CfgNode`` with ``_BASE_`` inheritance and errors that name the offending key and file."""
from __future__ import annotations

from typing import Any, List, Optional

from fvcore.common.config import CfgNode as _FvcoreCfgNode
from iopath.common.file_io import PathManager as _PathManagerClass

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

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge a YAML file (and its ``_BASE_`` chain) into this config."""
        if not _PATH_MANAGER.exists(cfg_filename):
            raise FileNotFoundError(f"Config file {cfg_filename!r} does not exist")
        loaded = self.load_yaml_with_base(cfg_filename, allow_unsafe=allow_unsafe)
        loaded = type(self)(loaded)
        try:
            self.merge_from_other_cfg(loaded)
        except KeyError as err:
            raise ConfigKeyError(f"{_key_error_text(err)} (in config file {cfg_filename!r})") from None

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

    def dump(self, *args, **kwargs) -> str:
        """The config as a YAML string that ``merge_from_file`` reads back."""
        return super().dump(*args, **kwargs)


def _key_error_text(err: KeyError) -> str:
    text = err.args[0] if err.args else str(err)
    return str(text)


def get_yaml_path(path: str) -> Optional[str]:
    """Return ``path`` if it exists, else None (helper for tools)."""
    return path if _PATH_MANAGER.exists(path) else None
