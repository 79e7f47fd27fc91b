r"""Cost couplings on manifolds: the squared geodesic distance as the ground cost.

References are computed here in numpy from closed forms, independently of
`manifold.dist`: the sphere's $\arccos\langle x, y\rangle$, the torus's wrapped
angle differences, and SO(3)'s rotation angle $\arccos((\operatorname{tr}(R^\top
S) - 1)/2)$. SO(3)'s `dist` is that angle itself, in $[0, \pi]$: its metric is
$\frac12\operatorname{tr}(u^\top v)$, so $\|R\hat\omega\| = \|\omega\|$ (no
factor $\sqrt2$ as with the Frobenius metric). Float64 throughout (conftest).
That `import flowlab.couplings` loads no ott-jax is `tests/test_cli_start.py`'s.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlab import couplings, manifolds

# one worker for the file: the module fixture's compilations are then done once
pytestmark = pytest.mark.xdist_group("manifold_couplings")

N = 64
TWO_PI = 2 * np.pi
MANIFOLDS = {
    "sphere": manifolds.Sphere(2),
    "torus": manifolds.FlatTorus(2),
    "so3": manifolds.SO3(),
}


def _reference(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared geodesic distances `(n, m)` from the closed forms, in numpy."""
    if name == "sphere":
        theta = np.arccos(np.clip(a @ b.T, -1.0, 1.0))
    elif name == "torus":
        gap = np.abs(a[:, None, :] - b[None, :, :]) % TWO_PI
        return (np.minimum(gap, TWO_PI - gap) ** 2).sum(-1)
    elif name == "so3":
        trace = np.einsum("nij,mij->nm", a, b)  # tr(R^T S)
        theta = np.arccos(np.clip((trace - 1) / 2, -1.0, 1.0))
    else:
        raise ValueError(name)
    return theta**2


def _uniform(manifold, key, n=N):
    return jax.vmap(manifold.random_uniform)(jax.random.split(key, n))


def _batch(name: str, seed: int = 0):
    k0, k1 = jax.random.split(jax.random.key(seed))
    manifold = MANIFOLDS[name]
    return _uniform(manifold, k0), _uniform(manifold, k1)


def _call(coupling, key, x0, x1):
    return coupling(key, x0, x1)


_run = jax.jit(_call)
# exact_ot's own solver on a given cost matrix: one compilation for every manifold
# (the auction dominates: ~4 s to compile, so only SO(3) runs exact_ot end to end)
_match = jax.jit(lambda cost: couplings.exact_ot().pair(None, cost)[1])


@pytest.fixture(scope="module")
def exact():
    """Per manifold: `(x0, x1, y0, y1, ids)`, exact OT on `exact_ot(manifold=...)`.

    The cost matrix is the coupling's own (`GeodesicCost`), the permutation its
    solver's; the full call `coupling(key, x0, x1)` is checked against it on SO(3).
    """
    out = {}
    for name, manifold in MANIFOLDS.items():
        x0, x1 = _batch(name)
        cost = couplings.exact_ot(manifold=manifold).cost_matrix(x0, x1)
        ids = np.asarray(_match(cost))
        x0, x1 = np.asarray(x0), np.asarray(x1)
        out[name] = (x0, x1, x0, x1[ids], ids)
    return out


@pytest.mark.parametrize("name", sorted(MANIFOLDS))
def test_cost_matrix_is_the_squared_geodesic_distance(name):
    x0, x1 = _batch(name)
    cost = couplings.exact_ot(manifold=MANIFOLDS[name]).cost_matrix(x0, x1)
    want = _reference(name, np.asarray(x0), np.asarray(x1))
    # float64; arccos near +-1 costs digits, but no pair of 64 random points is
    # within 1e-3 of coinciding or antipodal, so 1e-10 is ample
    np.testing.assert_allclose(cost, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(MANIFOLDS))
def test_exact_ot_cost_is_pots_optimum(name, exact):
    ot = pytest.importorskip("ot")
    x0, x1, y0, y1, _ = exact[name]
    matrix = _reference(name, x0, x1)
    weights = np.full(N, 1 / N)
    optimum = ot.emd2(weights, weights, matrix)  # the mean cost of an optimal plan
    got = np.diagonal(_reference(name, y0, y1)).mean()
    np.testing.assert_allclose(got, optimum, rtol=1e-5)


def test_exact_ot_call_on_so3_permutes_x1_and_stays_on_the_manifold(exact):
    x0, x1, *_, want = exact["so3"]
    so3 = MANIFOLDS["so3"]
    coupling = couplings.exact_ot(manifold=so3)
    y0, (y1, ids) = _run(coupling, jax.random.key(1), x0, (x1, jnp.arange(N)))
    np.testing.assert_array_equal(ids, want)  # the optimum is unique here
    np.testing.assert_array_equal(y0, x0)  # x0 keeps its order
    assert sorted(np.asarray(ids).tolist()) == list(range(N))  # both marginals
    np.testing.assert_array_equal(y1, x1[np.asarray(ids)])  # rows moved whole
    assert y1.shape == x1.shape  # 3x3 matrices again, not flattened rows
    assert bool(jnp.all(jax.vmap(so3.is_point)(y1)))


def _stable(m):
    return couplings.stable_matching(manifold=m)


def _hard_sinkhorn(m):
    return couplings.sinkhorn(0.1, hard=True, manifold=m)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("sphere", _stable),
        ("torus", _stable),
        ("so3", _stable),
        ("so3", _hard_sinkhorn),
    ],
)
def test_permutation_couplings_keep_points_on_the_manifold(name, make):
    x0, x1 = _batch(name, seed=1)
    y0, (y1, ids) = _run(
        make(MANIFOLDS[name]), jax.random.key(2), x0, (x1, jnp.arange(N))
    )
    assert sorted(np.asarray(ids).tolist()) == list(range(N))
    np.testing.assert_array_equal(y0, x0)
    np.testing.assert_array_equal(y1, np.asarray(x1)[np.asarray(ids)])
    assert bool(jnp.all(jax.vmap(MANIFOLDS[name].is_point)(y1)))
    # shape kept: SO(3) points come back as 3x3 matrices, not flattened rows
    assert y1.shape == x1.shape


_solve = jax.jit(lambda coupling, cost: coupling.solve_cost(cost))


@pytest.mark.parametrize("name", sorted(MANIFOLDS))
def test_sinkhorn_plan_cost_tends_to_the_optimum(name, exact):
    r"""$0 \le \langle C, \pi_\varepsilon\rangle - \mathrm{OT} \le \varepsilon\log n$.

    The entropic plan minimises $\langle C, \pi\rangle - \varepsilon H(\pi)$, and
    $H$ lies between $\log n$ (a permutation, the exact plan) and $2\log n$, so
    its cost exceeds the optimum by at most $\varepsilon\log n$. Measured gaps
    (mean cost, optimum 0.18 / 0.39 / 0.69 on sphere / torus / SO(3)): 0.73 ..
    0.93 at $\varepsilon = 1$ down to 5e-4 .. 2.3e-3 at 0.01.
    """
    x0, x1, y0, y1, _ = exact[name]
    optimum = np.diagonal(_reference(name, y0, y1)).mean()  # = POT's, see above
    cost = _reference(name, x0, x1)
    gaps = []
    for eps in (1.0, 0.3, 0.1, 0.03, 0.01):
        sb = couplings.sinkhorn(
            eps, manifold=MANIFOLDS[name], threshold=1e-6, max_iterations=20_000
        )
        out, logits = _solve(sb, jnp.asarray(cost))
        # epsilon is absolute, in the cost's units (never rescaled by the costs)
        assert float(out.ot_prob.geom.epsilon) == pytest.approx(eps)
        plan = np.exp(np.asarray(logits))
        gap = (plan * cost).sum() / plan.sum() - optimum
        assert -1e-9 <= gap <= eps * np.log(N)
        gaps.append(gap)
    assert np.all(np.diff(gaps) < 0)
    assert gaps[-1] <= 0.02 * optimum  # measured <= 1.3%


def _labelled_sphere(exact):
    """The sphere batch of `exact` with 4 labels, as often in x0 as in x1."""
    x0, x1, *_ = exact["sphere"]
    rng = np.random.default_rng(3)
    l0 = rng.permutation(np.arange(N) % 4)
    l1 = rng.permutation(np.arange(N) % 4)
    return x0, jnp.asarray(l0), x1, jnp.asarray(l1)


@pytest.mark.parametrize("base", ["exact_ot", "sinkhorn"])
def test_conditional_never_pairs_across_labels_on_the_sphere(base, exact):
    x0, l0, x1, l1 = _labelled_sphere(exact)
    s2 = MANIFOLDS["sphere"]
    coupling = couplings.get("conditional", base=base, manifold=s2)
    assert coupling.base.cost_fn == couplings.GeodesicCost(s2)
    (y0, m0), (y1, m1) = _run(coupling, jax.random.key(4), (x0, l0), (x1, l1))
    np.testing.assert_array_equal(m0, m1)
    assert bool(jnp.all(jax.vmap(s2.is_point)(y0)))
    assert bool(jnp.all(jax.vmap(s2.is_point)(y1)))
    # without the labels, exact OT on the same points does pair across them
    ids = exact["sphere"][4]
    assert np.any(np.asarray(l0) != np.asarray(l1)[ids])


@pytest.mark.parametrize("name", sorted(MANIFOLDS))
def test_ot_pairs_are_shorter_than_independent_pairs(name, exact):
    x0, x1, y0, y1, _ = exact[name]
    independent = np.diagonal(_reference(name, x0, x1))
    coupled = np.diagonal(_reference(name, y0, y1))
    # the mean squared distance: a theorem (the identity is one of the permutations)
    assert coupled.mean() <= independent.mean()
    # the mean distance: statistical, fixed keys; measured ratio 0.30 .. 0.41
    assert np.sqrt(coupled).mean() <= 0.6 * np.sqrt(independent).mean()


def test_geodesic_cost_on_euclidean_space_is_squared_euclidean():
    rng = np.random.default_rng(5)
    x0, x1 = rng.normal(size=(2, 16, 3))
    geodesic = couplings.exact_ot(manifold=manifolds.Euclidean(3)).cost_matrix(x0, x1)
    euclidean = couplings.exact_ot().cost_matrix(x0, x1)
    np.testing.assert_allclose(geodesic, euclidean, rtol=1e-12, atol=1e-12)


def test_geodesic_cost_works_as_a_pytree_under_jit_and_vmap():
    s2 = MANIFOLDS["sphere"]
    cost_fn = couplings.GeodesicCost(s2)
    coupling = couplings.stable_matching(manifold=s2)
    # a pytree: the coupling passes through jit as an argument, without retracing
    assert jax.tree_util.tree_structure(coupling) == jax.tree_util.tree_structure(
        couplings.stable_matching(cost_fn=couplings.GeodesicCost(manifolds.Sphere(2)))
    )
    run = jax.jit(chex.assert_max_traces(_call, n=1))
    for seed in (6, 7):
        run(coupling, jax.random.key(0), *_batch("sphere", seed))
    # one pair at a time under vmap, on SO(3)'s matrices flattened or not
    x0, x1 = _batch("so3", 8)
    want = np.diagonal(_reference("so3", np.asarray(x0), np.asarray(x1)))
    so3_cost = couplings.GeodesicCost(MANIFOLDS["so3"])
    np.testing.assert_allclose(jax.vmap(so3_cost)(x0, x1), want, rtol=1e-10)
    flat = jax.vmap(so3_cost)(x0.reshape(N, 9), x1.reshape(N, 9))
    np.testing.assert_allclose(flat, want, rtol=1e-10)
    assert float(cost_fn(s2.origin(), s2.origin())) == 0.0


@pytest.mark.parametrize("name", sorted(MANIFOLDS))
def test_float32_points_give_float32_costs(name):
    cost_fn = couplings.GeodesicCost(MANIFOLDS[name])
    x0, x1 = (a.astype(jnp.float32).reshape(N, -1) for a in _batch(name))
    cost = cost_fn.all_pairs(x0, x1)
    assert cost.dtype == jnp.float32
    # against the same points in float64 (not the arccos reference: float32
    # rotations are orthogonal to ~1e-7, which arccos near pi turns into 1e-4)
    want = cost_fn.all_pairs(x0.astype(jnp.float64), x1.astype(jnp.float64))
    np.testing.assert_allclose(cost, want, rtol=1e-5, atol=1e-6)  # float32


def test_manifold_by_name_and_the_factories_that_take_it():
    so3 = couplings.GeodesicCost(manifolds.SO3())
    for coupling in (
        couplings.exact_ot(manifold="so3"),
        couplings.sinkhorn(manifold="so3"),
        couplings.unbalanced(manifold="so3"),
        couplings.partial(manifold="so3"),
        couplings.stable_matching(manifold="so3"),
        couplings.get("exact_ot", manifold=manifolds.SO3()),
        couplings.get("conditional", base="stable_matching", manifold="so3").base,
    ):
        assert coupling.cost_fn == so3


def test_bad_arguments_name_themselves():
    s2 = MANIFOLDS["sphere"]
    with pytest.raises(ValueError, match="cost_fn or manifold, not both"):
        couplings.sinkhorn(cost_fn=couplings.GeodesicCost(s2), manifold=s2)
    with pytest.raises(TypeError, match="manifold must be a flowlab.manifolds"):
        couplings.GeodesicCost("sphere")
    with pytest.raises(TypeError, match="manifold 'sphere'.*dim"):
        couplings.exact_ot(manifold="sphere")  # a name builds with defaults only
    with pytest.raises(ValueError, match="unknown manifold 'globe'"):
        couplings.exact_ot(manifold="globe")
    with pytest.raises(ValueError, match=r"points of shape \(3,\).*got x of shape"):
        couplings.exact_ot(manifold=s2).cost_matrix(
            jnp.zeros((4, 2)), jnp.zeros((4, 2))
        )
    with pytest.raises(ValueError, match="manifold= is passed to a base given by name"):
        couplings.get("conditional", base=couplings.exact_ot(), manifold=s2)
    with pytest.raises(TypeError, match="coupling 'independent'.*manifold"):
        couplings.get("independent", manifold=s2)
