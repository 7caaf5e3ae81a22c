"""Importing the code an id names (a model factory, a data factory), with errors that name the
real problem: a library to install, a module that does not exist (a typo, or not on the path), or a
module whose own import breaks (a missing dependency of it, a syntax error)."""

from __future__ import annotations

import importlib
from types import ModuleType

from zoo.errors import ZooError

__all__ = ["import_for", "THIRD_PARTY"]

THIRD_PARTY = {"torchvision": "torchvision", "timm": "timm", "transformers": "transformers"}


def import_for(package: str, what: str) -> ModuleType:
    """``importlib.import_module(package)`` on behalf of ``what`` (e.g. ``"model 'x:y'"``)."""
    try:
        return importlib.import_module(package)
    except ModuleNotFoundError as e:
        missing = e.name or package
        if missing == package.split(".")[0] or missing == package:
            if package in THIRD_PARTY:
                raise ZooError(f"{what} needs {package!r}; install it: pip install {THIRD_PARTY[package]}") from e
            raise ZooError(
                f"{what}: there is no Python module {package!r} (check the spelling, and that its folder is on "
                "PYTHONPATH or the package is installed)"
            ) from e
        raise ZooError(
            f"{what}: importing {package!r} failed because it imports {missing!r}, which is not installed "
            f"(pip install {missing.split('.')[0]}, or fix that import in {package!r})"
        ) from e
    except Exception as e:  # noqa: BLE001 - the user's module failed while importing: say how
        raise ZooError(f"{what}: importing {package!r} failed: {type(e).__name__}: {e}") from e
