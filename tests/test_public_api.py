"""The public surface: a sorted, complete __all__ and documented public callables."""

from __future__ import annotations

import inspect
import types

import pytest

import edges_async as ea
import edges_async.testing


@pytest.mark.parametrize("module", [ea, edges_async.testing])
def test_all_is_sorted_and_complete(module: types.ModuleType) -> None:
    """__all__ is sorted, names only what exists, and leaves out no public name."""
    exported = module.__all__
    assert exported == sorted(exported, key=lambda name: (not name.isupper(), name))
    assert len(set(exported)) == len(exported)
    for name in exported:
        assert hasattr(module, name)
    public = {name for name in vars(module) if not name.startswith("_")}
    public -= {"annotations"}
    public = {name for name in public if not isinstance(getattr(module, name), types.ModuleType)}
    assert public <= set(exported) | {"__version__"}


@pytest.mark.parametrize("module", [ea, edges_async.testing])
def test_public_classes_and_functions_have_docstrings(module: types.ModuleType) -> None:
    """Every exported class, its public methods, and every exported function are documented."""
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not callable(member):
                    continue
                if not inspect.getdoc(member):
                    missing.append(f"{name}.{attr}")
    assert missing == []


def test_every_error_is_an_edges_error() -> None:
    """All exported exception classes derive from EdgesError."""
    errors = [getattr(ea, name) for name in ea.__all__ if name.endswith("Error")]
    assert len(errors) >= 19
    for error in errors:
        assert issubclass(error, ea.EdgesError)
    assert issubclass(ea.APITimeoutError, ea.APIConnectionError)
    assert issubclass(ea.ConfigurationError, ValueError)
