"""The layout's promises: every sub-package states its public surface and its errors.

import-linter checks which package may import which; these tests check what each package
offers: a docstring that says what it holds, an ``__all__`` whose names exist, and every error
class it raises inside the package's one hierarchy and on its surface.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import edge
import flows
import pipeline
from edge.errors import EdgeError
from pipeline.errors import PipelineError

ROOTS = (edge, pipeline, flows)


def _walk(root: ModuleType) -> list[ModuleType]:
    """Every module and package below ``root`` (``__main__`` modules excluded)."""
    found = [root]
    for info in pkgutil.walk_packages(root.__path__, prefix=root.__name__ + "."):
        if not info.name.endswith("__main__"):
            found.append(importlib.import_module(info.name))
    return found


MODULES = [m for root in ROOTS for m in _walk(root)]
PACKAGES = [m for m in MODULES if hasattr(m, "__path__") and m not in ROOTS]


def _owning_package(module: ModuleType) -> ModuleType:
    """The sub-package a module belongs to (``pipeline.ingest`` for ``pipeline.ingest.landing``)."""
    parts = module.__name__.split(".")
    return importlib.import_module(".".join(parts[:2]))


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_sub_package_declares_its_surface(package: ModuleType) -> None:
    assert (package.__doc__ or "").strip(), f"{package.__name__} has no docstring"
    names = getattr(package, "__all__", None)
    assert isinstance(names, list), f"{package.__name__} declares no __all__"
    assert len(names) == len(set(names)), f"{package.__name__}.__all__ repeats a name"
    missing = [n for n in names if not hasattr(package, n)]
    assert not missing, f"{package.__name__}.__all__ names what it lacks: {missing}"


def _errors_defined_in(module: ModuleType) -> list[type[BaseException]]:
    return [obj for _, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__]


@pytest.mark.parametrize(("root", "base"), [(pipeline, PipelineError), (edge, EdgeError)],
                         ids=["pipeline", "edge"])
def test_every_error_is_in_its_packages_one_hierarchy(root: ModuleType,
                                                     base: type[Exception]) -> None:
    strays = [f"{e.__module__}.{e.__qualname__}" for m in MODULES
              if m.__name__.startswith(root.__name__ + ".") or m is root
              for e in _errors_defined_in(m) if not issubclass(e, base)]
    assert not strays, f"errors outside {base.__name__}: {strays}"


def test_every_error_raised_in_a_sub_package_is_on_its_surface() -> None:
    hidden = []
    for module in MODULES:
        if module.__name__.count(".") < 2 or module.__name__.startswith("flows."):
            continue  # a top-level module is its own surface; flows raise no errors of their own
        package = _owning_package(module)
        for error in _errors_defined_in(module):
            if getattr(package, error.__name__, None) is not error:
                hidden.append(f"{error.__name__} ({module.__name__}) not in {package.__name__}")
    assert not hidden, hidden
