"""Import the ``datasets/prepare_*.py`` scripts (and their helper modules) in tests."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "datasets"
if str(SCRIPTS_DIR) not in sys.path:  # the scripts import their sibling helper modules
    sys.path.insert(0, str(SCRIPTS_DIR))


def load_script(file_stem: str) -> ModuleType:
    """Import ``datasets/<file_stem>.py`` (file names may hold dots) as a module, once."""
    module_name = file_stem.replace(".", "_")
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, SCRIPTS_DIR / f"{file_stem}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # before exec: worker processes unpickle its functions by name
        spec.loader.exec_module(module)
    return sys.modules[module_name]
