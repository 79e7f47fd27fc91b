r"""Riemannian manifolds for flow matching on curved spaces.

Each manifold is an `equinox.Module` behind `AbstractManifold` (`_base.py` lists
the interface) whose methods act on one point; `jax.vmap` makes batches. Their
names (`"euclidean"`, `"sphere"`, `"torus"`) are in `flowlab.registry` under
`"manifold"`.

```python
import jax
from flowlab import manifolds

s2 = manifolds.Sphere(2)
x = jax.vmap(s2.random_uniform)(jax.random.split(jax.random.key(0), 128))
```
"""

from ._base import AbstractCompactManifold, AbstractFlatManifold, AbstractManifold
from .euclidean import Euclidean
from .sphere import Sphere
from .torus import FlatTorus

__all__ = [
    "AbstractCompactManifold",
    "AbstractFlatManifold",
    "AbstractManifold",
    "Euclidean",
    "FlatTorus",
    "Sphere",
]
