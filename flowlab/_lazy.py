"""Deferred imports: `import flowlab` and `flowlab --help` load no JAX and no ott-jax.

`flowlab/__init__.py` names its public attributes and the submodule each lives in;
`attach` turns that table into the package's `__getattr__` and `__dir__` (PEP 562),
so `flowlab.fit` imports `flowlab.training` on first use. `module("ott.geometry.costs")`
is a stand-in for a third-party module that is imported on its first attribute
access, so that the couplings that solve OT problems with ott-jax pull it in only
when they are built or run.
"""

import importlib
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["attach", "module"]


def attach(
    package: str, submodules: Iterable[str], attributes: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """`__getattr__`, `__dir__` and `__all__` of a package that imports on demand.

    Args:
        package: the package's `__name__`.
        submodules: submodules reachable as attributes (`flowlab.couplings`).
        attributes: public name -> the submodule (relative to `package`) that
            defines it.

    Returns:
        the package's `__getattr__`, `__dir__` and `__all__`.
    """
    submodules = frozenset(submodules)
    attributes = dict(attributes)
    names = sorted(submodules | set(attributes))

    def __getattr__(name: str) -> Any:  # noqa: N807 - PEP 562's name
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        if name in attributes:
            value = getattr(
                importlib.import_module(f"{package}.{attributes[name]}"), name
            )
            setattr(importlib.import_module(package), name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:  # noqa: N807 - PEP 562's name
        return names

    return __getattr__, __dir__, list(names)


class _Deferred(types.ModuleType):
    """A module imported when one of its attributes is first read."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__dict__["_target"] = None

    def __getattr__(self, attr: str) -> Any:
        target = self.__dict__["_target"]
        if target is None:
            target = importlib.import_module(self.__name__)
            self.__dict__["_target"] = target
        return getattr(target, attr)

    def __repr__(self) -> str:
        state = "imported" if self.__dict__["_target"] is not None else "deferred"
        return f"<module {self.__name__!r} ({state})>"


def module(name: str) -> types.ModuleType:
    """The module `name`, imported on its first attribute access."""
    return _Deferred(name)
