"""Name -> object registries (fvcore's ``Registry``, re-exported under detectron2's name)."""
from fvcore.common.registry import Registry

__all__ = ["Registry"]
