"""``@configurable``: build an object from a cfg or from explicit keyword arguments.

Same contract as detectron2: a decorated ``__init__`` (or function) accepts either
``(cfg, **overrides)`` -- turned into kwargs by ``from_config`` -- or plain kwargs.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, Optional

__all__ = ["configurable"]


def configurable(init_func: Optional[Callable] = None, *, from_config: Optional[Callable] = None):
    """Decorate ``__init__`` (uses the class's ``from_config``) or a function (pass ``from_config``)."""
    if init_func is not None:
        if not (inspect.isfunction(init_func) and init_func.__name__ == "__init__"):
            raise TypeError("@configurable without arguments only decorates __init__")

        @functools.wraps(init_func)
        def wrapped_init(self, *args, **kwargs):
            try:
                from_config_func = type(self).from_config
            except AttributeError as err:
                raise AttributeError(
                    f"{type(self).__name__} uses @configurable and must define 'from_config'"
                ) from err
            if _called_with_cfg(*args, **kwargs):
                explicit = _get_args_from_config(from_config_func, *args, **kwargs)
                init_func(self, **explicit)
            else:
                init_func(self, *args, **kwargs)

        return wrapped_init

    if from_config is None:
        return configurable  # @configurable() with no arguments
    if not inspect.isfunction(from_config):
        raise TypeError("from_config must be a function")

    def decorator(orig_func):
        @functools.wraps(orig_func)
        def wrapped(*args, **kwargs):
            if _called_with_cfg(*args, **kwargs):
                explicit = _get_args_from_config(from_config, *args, **kwargs)
                return orig_func(**explicit)
            return orig_func(*args, **kwargs)

        wrapped.from_config = from_config
        return wrapped

    return decorator


def _called_with_cfg(*args, **kwargs) -> bool:
    from fvcore.common.config import CfgNode as _CfgNode  # a DictConfig is not supported

    if args and isinstance(args[0], _CfgNode):
        return True
    return isinstance(kwargs.get("cfg"), _CfgNode)


def _get_args_from_config(from_config_func: Callable, *args, **kwargs) -> Dict[str, Any]:
    signature = inspect.signature(from_config_func)
    if list(signature.parameters.keys())[0] != "cfg":
        raise TypeError(f"{from_config_func.__qualname__} must take 'cfg' as its first argument")
    accepts_var_kw = any(
        p.kind == inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    )
    if accepts_var_kw:
        return from_config_func(*args, **kwargs)
    supported = set(signature.parameters.keys())
    extra = {name: kwargs.pop(name) for name in list(kwargs) if name not in supported}
    result = from_config_func(*args, **kwargs)
    result.update(extra)  # explicit kwargs not consumed by from_config override it
    return result
