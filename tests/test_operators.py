"""Proximal operators satisfy the optimality conditions of their problems and are
(firmly) non-expansive where convex; schedules follow TMLR 2023 Sec. 4.3 and App. C.1."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from udlbench import operators as ops

pytestmark = pytest.mark.fast

EPS = 1e-12
vectors = arrays(
    "float64",
    st.integers(1, 24).map(lambda k: 2 * k),
    elements=st.floats(-10, 10, allow_nan=False, allow_subnormal=False),
)
thresholds = st.floats(0.0, 5.0, allow_subnormal=False)


@given(vectors, thresholds)
def test_soft_threshold_is_the_l1_prox(v, b):
    v = torch.from_numpy(v)
    u = ops.soft_threshold(v, b)
    on = u != 0
    # v - u in b * subdifferential of ||.||_1 at u (TMLR 2023, Lemma A.3 form)
    assert torch.allclose((v - u)[on], b * torch.sign(u[on]), atol=EPS * (1 + b))
    assert bool((torch.abs(v[~on]) <= b + EPS).all())


@given(vectors, thresholds)
def test_relu_threshold_is_the_nonnegative_l1_prox(v, b):
    v = torch.from_numpy(v)
    u = ops.relu_threshold(v, b)
    assert bool((u >= 0).all())
    on = u > 0
    assert torch.allclose((v - u)[on], torch.full_like(v[on], b), atol=EPS * (1 + b))
    assert bool((v[~on] <= b + EPS).all())


@given(vectors, thresholds, st.sampled_from([1, 2]))
def test_group_soft_threshold_is_the_group_prox(v, b, d):
    v = torch.from_numpy(v)
    u = ops.group_soft_threshold(v, b, group_size=d).reshape(-1, d)
    groups = v.reshape(-1, d)
    norms_u = torch.linalg.vector_norm(u, dim=1)
    on = norms_u > 0
    # v_g - u_g = b u_g / ||u_g|| on active groups; ||v_g|| <= b on inactive ones (eq. 7)
    expected = b * u[on] / norms_u[on, None]
    assert torch.allclose(groups[on] - u[on], expected, atol=1e-10 * (1 + b))
    assert bool((torch.linalg.vector_norm(groups[~on], dim=1) <= b + EPS).all())


@given(vectors, thresholds)
def test_hard_threshold_minimises_the_l0_problem(v, b):
    """HT_b(v) minimises 0.5||u - v||^2 + (b^2/2)||u||_0 entrywise (ties at |v| = b)."""
    v = torch.from_numpy(v)
    u = ops.hard_threshold(v, b)
    cost = 0.5 * (u - v) ** 2 + 0.5 * b**2 * (u != 0).to(v.dtype)
    alternatives = torch.minimum(0.5 * v**2, torch.full_like(v, 0.5 * b**2))
    assert bool((cost <= alternatives + 1e-12 * (1 + v**2)).all())
    assert bool(((u == v) | (u == 0)).all())


@pytest.mark.parametrize("name", ["soft", "relu", "group"])
@given(v=vectors, data=st.data(), b=thresholds)
def test_convex_proxes_are_firmly_nonexpansive(name, v, data, b):
    w = data.draw(arrays("float64", v.shape, elements=st.floats(-10, 10, allow_subnormal=False)))
    prox = ops.get_prox(name, group_size=2 if name == "group" else None)
    v, w = torch.from_numpy(v), torch.from_numpy(w)
    diff = prox(v, b) - prox(w, b)
    assert float(diff @ diff) <= float(diff @ (v - w)) + 1e-9


def test_hard_threshold_is_not_nonexpansive():
    """Negative control: HT jumps at the threshold, so the property above must fail for it."""
    v, w = torch.tensor([1.0 + 1e-3]), torch.tensor([1.0 - 1e-3])
    diff = ops.hard_threshold(v, 1.0) - ops.hard_threshold(w, 1.0)
    assert float(diff @ diff) > float(diff @ (v - w))


def test_autograd_derivatives_follow_the_documented_conventions():
    v = torch.tensor([-2.0, -0.5, 0.0, 0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    for prox, expected in [
        (ops.soft_threshold, [1, 0, 0, 0, 0, 1]),
        (ops.hard_threshold, [1, 0, 0, 0, 1, 1]),
        (ops.relu_threshold, [0, 0, 0, 0, 0, 1]),
    ]:
        (grad,) = torch.autograd.grad(prox(v, 1.0).sum(), v)
        assert grad.tolist() == expected, prox.__name__
    # |z| has derivative sign(z) with sign(0) = 0: the subgradient of TMLR 2023 eq. 7
    z = torch.tensor([-1.0, 0.0, 3.0], requires_grad=True)
    (grad,) = torch.autograd.grad(z.abs().sum(), z)
    assert grad.tolist() == [-1.0, 0.0, 1.0]


def test_group_prox_jacobian_is_the_exact_nondiagonal_one():
    v = torch.tensor([3.0, 4.0], dtype=torch.float64)
    b = 1.0
    jac = torch.autograd.functional.jacobian(
        lambda x: ops.group_soft_threshold(x, b, group_size=2), v
    )
    norm = 5.0
    expected = (1 - b / norm) * torch.eye(2, dtype=torch.float64) + b * torch.outer(v, v) / norm**3
    assert torch.allclose(jac, expected, atol=1e-14)


def test_lam_schedules():
    assert ops.lam_schedule(0.2, 3) == [0.2, 0.2, 0.2]
    assert ops.lam_schedule(0.2, 3, lam_decay=0.5) == pytest.approx([0.2, 0.1, 0.05])
    assert ops.lam_schedule([0.3, 0.2], 2) == [0.3, 0.2]
    with pytest.raises(ValueError, match="n_layers=3"):
        ops.lam_schedule([0.3, 0.2], 3)
    with pytest.raises(ValueError, match="lam_decay"):
        ops.lam_schedule(0.2, 3, lam_decay=1.5)
    with pytest.raises(ValueError, match="lam"):
        ops.lam_schedule(-0.1, 3)
    with pytest.raises(ValueError, match="per-sample lam of shape"):
        ops.lam_schedule(torch.full((3,), 0.1), 3)  # a tensor is never read as a schedule
    assert ops.lam_schedule(torch.tensor(0.25), 2) == [0.25, 0.25]


def test_nu_training_schedule_matches_app_c1():
    """nu = 1 - 0.005 floor(k/100): 1.0 for the first 100 updates, 0.955 after 900 (THEOREMS)."""
    assert ops.nu_at_step(0) == 1.0
    assert ops.nu_at_step(99) == 1.0
    assert ops.nu_at_step(100) == pytest.approx(0.995)
    assert ops.nu_at_step(999) == pytest.approx(0.955)
    assert ops.nu_at_step(10**6) == 0.5


def test_prox_registry_errors_name_the_argument():
    with pytest.raises(ValueError, match="prox"):
        ops.get_prox("median")
    with pytest.raises(ValueError, match="group_size"):
        ops.get_prox("group")
    with pytest.raises(ValueError, match="group_size"):
        ops.group_soft_threshold(torch.ones(5), 0.1, group_size=2)
