"""Minibatch couplings: how `(x0, x1)` rows are paired.

A coupling is `coupling(key, x0, x1) -> (x0, x1)`, a re-pairing of a minibatch. `x0`
and `x1` may be pytrees whose leaves share the batch axis, e.g. `(x1, cond)`: rows
move together.
"""

from typing import Any

import equinox as eqx
from jaxtyping import PRNGKeyArray

__all__ = ["Independent", "get", "independent"]


class Independent(eqx.Module):
    """The independent coupling: rows stay as drawn (I-CFM)."""

    def __call__(self, key: PRNGKeyArray, x0: Any, x1: Any) -> tuple[Any, Any]:
        """Return the pairs unchanged."""
        del key
        return x0, x1


def independent() -> Independent:
    r"""The independent coupling $\pi = p_0 \otimes p_1$."""
    return Independent()


_NAMED = {"independent": independent}


def get(name: str, **kwargs) -> Any:
    """A coupling by name."""
    if name not in _NAMED:
        raise ValueError(
            f"unknown coupling {name!r}; expected one of {sorted(_NAMED)}."
        )
    return _NAMED[name](**kwargs)
