"""Config system: ``get_cfg()``, ``CfgNode`` and ``configurable``."""
from .config import CfgNode, ConfigKeyError
from .configurable import configurable
from .defaults import get_cfg

__all__ = ["CfgNode", "ConfigKeyError", "configurable", "get_cfg"]
