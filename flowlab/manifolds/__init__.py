r"""Riemannian manifolds for flow matching on curved spaces.

Each manifold is an `equinox.Module` behind `AbstractManifold` (`_base.py` lists
the interface) whose methods act on one point; `jax.vmap` makes batches. Their
names (`"euclidean"`, `"sphere"`, `"torus"`, `"product"`, `"so3"`, `"hyperbolic"`,
`"spd"`, `"spd_log_euclidean"`) are in `flowlab.registry` under `"manifold"`.

```python
import jax
from flowlab import manifolds

s2 = manifolds.Sphere(2)
x = jax.vmap(s2.random_uniform)(jax.random.split(jax.random.key(0), 128))
```
"""

from ._base import (
    AbstractCompactManifold,
    AbstractFlatManifold,
    AbstractManifold,
    safe_norm,
    safe_sqrt,
)
from .euclidean import Euclidean
from .hyperbolic import Hyperbolic
from .product import AbstractProduct, CompactProduct, Product, ProductManifold
from .so3 import (
    SO3,
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    quaternion_to_matrix,
)
from .spd import SPD, SPDLogEuclidean
from .sphere import Sphere
from .torus import FlatTorus
from .wrapped_normal import WrappedNormal, log_expmap_jacobian, tangent_basis

__all__ = [
    "SO3",
    "SPD",
    "AbstractCompactManifold",
    "AbstractFlatManifold",
    "AbstractManifold",
    "AbstractProduct",
    "CompactProduct",
    "Euclidean",
    "FlatTorus",
    "Hyperbolic",
    "Product",
    "ProductManifold",
    "SPDLogEuclidean",
    "Sphere",
    "WrappedNormal",
    "axis_angle_to_matrix",
    "log_expmap_jacobian",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "safe_norm",
    "safe_sqrt",
    "tangent_basis",
]
