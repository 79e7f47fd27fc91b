r"""Names to objects: the one lookup behind configs, the command line and conveniences.

Library functions take objects (a diffrax solver, a coupling, a sampler). Where a
name is the natural thing to write (a config file, `flowlab train coupling=exact_ot`,
`flowlab.sample_ode(..., solver="dopri5")`), it is turned into an object here, and
only here. Each module registers the names of what it defines next to the
definition, so this module imports nothing from flowlab and everything may import
it:

```python
from flowlab import registry

registry.names("coupling")  # ('conditional', 'exact_ot', 'independent', ...)
registry.build("coupling", "sinkhorn", epsilon=0.1)  # couplings.sinkhorn(0.1)
```

A user's own factory joins the same tables, and then configs and the command line
accept its name too:

```python
registry.register("coupling", "my_ot", my_ot_factory)
```

| kind | what a name builds |
| :--- | :--- |
| `coupling` | a minibatch coupling (`flowlab.couplings`) |
| `data` | a sampler (`flowlab.data`) |
| `schedule` | an affine path's schedule (`flowlab.schedules`) |
| `time_sampler` | a sampler of training times (`flowlab.time_samplers`) |
| `ode_solver`, `sde_solver` | a diffrax solver (`flowlab.sampling`) |
| `manifold_solver` | a diffrax solver that steps on a manifold (`flowlab.sampling`) |
| `optimizer`, `lr_schedule` | optax pieces (`flowlab.training.make_optimizer`) |
| `nonfinite` | what training does on a non-finite loss (`flowlab.training`) |
| `unconverged` | what an entropic coupling does when Sinkhorn has not converged |
| `precision` | the dtype the model computes in (`None` for the parameters' own) |
| `prediction` | what a loss's model predicts (`flowlab.losses`) |
| `divergence` | how `log_likelihood` estimates $\nabla\cdot v$ |
| `brownian` | how `sample_sde` draws its Brownian motion |
| `manifold` | a Riemannian manifold (`flowlab.manifolds`) |
| `path` | a probability path built from a schedule (`flowlab.paths`) |
| `model` | a flax module, the network of a run (`flowlab.models`) |

Any kind also takes `"package.module:attribute"`: the user's own factory, imported
when the name is looked up (`flowlab train path.name=my_project.paths:MyPath`).
"""

import importlib
import inspect
import types
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "KINDS",
    "accepted",
    "build",
    "lookup",
    "names",
    "register",
    "resolve",
    "table",
]

KINDS: Mapping[str, str] = types.MappingProxyType(
    {
        "coupling": "coupling",
        "data": "data set",
        "schedule": "schedule",
        "time_sampler": "time sampler",
        "ode_solver": "ODE solver",
        "sde_solver": "SDE solver",
        "manifold_solver": "manifold solver",
        "optimizer": "optimizer",
        "lr_schedule": "lr schedule",
        "nonfinite": "non-finite policy",
        "unconverged": "unconverged-Sinkhorn policy",
        "precision": "precision",
        "prediction": "prediction",
        "divergence": "divergence estimator",
        "brownian": "Brownian motion",
        "manifold": "manifold",
        "path": "path",
        "model": "model",
        "loss": "loss",
    }
)
"""The kinds of names and how error messages call them."""

_PROVIDERS: Mapping[str, str] = types.MappingProxyType(
    {
        "coupling": "flowlab.couplings",
        "data": "flowlab.data",
        "schedule": "flowlab.schedules",
        "time_sampler": "flowlab.time_samplers",
        "ode_solver": "flowlab.sampling",
        "sde_solver": "flowlab.sampling",
        "manifold_solver": "flowlab.sampling",
        "optimizer": "flowlab.training",
        "lr_schedule": "flowlab.training",
        "nonfinite": "flowlab.training",
        "unconverged": "flowlab.couplings",
        "precision": "flowlab.training",
        "prediction": "flowlab.losses",
        "divergence": "flowlab.sampling",
        "brownian": "flowlab.sampling",
        "manifold": "flowlab.manifolds",
        "path": "flowlab.paths",
        "model": "flowlab.models",
        "loss": "flowlab.flowmaps",
    }
)
"""The module whose import registers the built-in names of each kind."""

_TABLES: dict[str, dict[str, Callable[..., Any]]] = {kind: {} for kind in KINDS}


def _entries(kind: str) -> dict[str, Callable[..., Any]]:
    if kind not in _TABLES:
        raise ValueError(
            f"unknown registry kind {kind!r}; expected one of {list(KINDS)}."
        )
    return _TABLES[kind]


def _table(kind: str) -> dict[str, Callable[..., Any]]:
    """The entries of `kind`, its built-in names included (`import flowlab` defers)."""
    entries = _entries(kind)
    importlib.import_module(_PROVIDERS[kind])
    return entries


def register(
    kind: str,
    name: str,
    factory: Callable[..., Any] | None = None,
    *,
    replace: bool = False,
):
    """Register `factory` under `name`; without `factory`, a decorator.

    Args:
        kind: one of `KINDS`.
        name: the name configs and the command line use.
        factory: a callable that builds the object from keyword arguments.
        replace: allow replacing an existing entry (otherwise an error).

    Returns:
        `factory` (or the decorator).
    """
    entries = _entries(kind)
    if not isinstance(name, str) or not name:
        raise ValueError(f"a registered name must be a non-empty str, got {name!r}.")

    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise TypeError(f"the factory of {kind} {name!r} must be callable.")
        if name in entries and not replace and entries[name] is not fn:
            raise ValueError(
                f"{KINDS[kind]} {name!r} is already registered; pass replace=True "
                "to replace it."
            )
        entries[name] = fn
        return fn

    return add if factory is None else add(factory)


def names(kind: str) -> tuple[str, ...]:
    """The registered names of `kind`, sorted."""
    return tuple(sorted(_table(kind)))


def table(kind: str) -> Mapping[str, Callable[..., Any]]:
    """A read-only live view of the names of `kind` and their factories."""
    return types.MappingProxyType(_table(kind))


def lookup(kind: str, name: str) -> Callable[..., Any]:
    """The factory registered as `name`; a `ValueError` lists the known names.

    A name `"package.module:attribute"` is the user's own factory: the module is
    imported and the (possibly dotted) attribute is returned, so a config or the
    command line can name code that was never registered.
    """
    if isinstance(name, str) and ":" in name:
        return _import_object(kind, name)
    entries = _table(kind)
    if not isinstance(name, str) or name not in entries:
        raise ValueError(
            f"unknown {KINDS[kind]} {name!r}; expected one of {list(names(kind))}."
        )
    return entries[name]


def _import_object(kind: str, name: str) -> Callable[..., Any]:
    """The attribute `name = "package.module:attribute"` names, for `lookup`."""
    module_name, _, attribute = name.partition(":")
    what = f"{KINDS[kind]} {name!r}"
    if not module_name or not attribute:
        raise ValueError(
            f"{what}: expected 'package.module:attribute', e.g. "
            "'my_project.paths:make_path'."
        )
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"{what}: cannot import module {module_name!r} ({err}); it is imported "
            "from the working directory and the installed packages."
        ) from err
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{what}: module {module_name!r} has no {attribute!r}.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(
            f"{what} is a {type(obj).__name__}, not a factory (a class or function "
            "that builds the object)."
        )
    return obj


def build(kind: str, name: str, **kwargs: Any) -> Any:
    """`lookup(kind, name)(**kwargs)`; a bad keyword names the entry in its error."""
    factory = lookup(kind, name)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as err:
        raise TypeError(f"{KINDS[kind]} {name!r}: {err}") from None
    except ValueError:  # a builtin without a signature: let the call decide
        pass
    return factory(**kwargs)


def resolve(kind: str, value: Any, **kwargs: Any) -> Any:
    """`build(kind, value, **kwargs)` for a name; any other value as it is."""
    if isinstance(value, str):
        return build(kind, value, **kwargs)
    return value


def accepted(kind: str, name: str, available: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `available` that the factory of `name` takes as keywords.

    For config sections that hold the settings of several entries (e.g. the path
    section's `sigma_min` and `beta_max`): each entry gets only its own.
    """
    params = inspect.signature(lookup(kind, name)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(available)
    return {k: v for k, v in available.items() if k in params}
