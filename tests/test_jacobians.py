"""The three code Jacobians agree: autograd, the forward recursion of Malezieux et al. (ICLR 2022,
Thm 2.4) and the closed form on the support (THEOREMS.md Sec. 0.5)."""

import pytest
import torch

from udlbench import data, jacobians, lasso

pytestmark = pytest.mark.fast

LAM, ALPHA = 0.3, 0.15


def problem(seed=0, n=10):
    d = data.make_sparse(20, 40, n, 3, seed=seed)
    D = data.perturb(d.D_star, 0.1, seed=seed + 1)
    g = torch.Generator().manual_seed(seed + 2)
    E = torch.randn(D.shape, generator=g, dtype=D.dtype)
    V = torch.randn(n, D.shape[1], generator=g, dtype=D.dtype)
    return d.X, D, E, V


@pytest.mark.parametrize(
    "prox, group_size, lam_decay",
    [("soft", None, None), ("soft", None, 0.98), ("group", 2, None), ("relu", None, None)],
)
def test_recursion_equals_autograd_at_every_layer(prox, group_size, lam_decay):
    X, D, E, _ = problem()
    kw = dict(
        lam=LAM,
        alpha=ALPHA,
        n_layers=60,
        prox=prox,
        lam_decay=lam_decay,
        group_size=group_size,
        trace=True,
    )
    kw = {k: v for k, v in kw.items() if v is not None}
    by_recursion = jacobians.jvp_recursion(X, D, E, **kw)
    by_autograd = jacobians.jvp_autograd(X, D, E, **kw)
    assert by_recursion.shape == (61, *X.shape[:1], D.shape[1])
    assert torch.allclose(by_recursion, by_autograd, rtol=1e-12, atol=1e-13)


def test_recursion_without_the_mask_misses_the_limit():
    """Negative control (P-T4.7): differentiating as if the prox were the identity does not
    converge to the closed-form Jacobian, while the masked recursion does."""
    X, D, E, _ = problem()
    z_hat = lasso.solve(X, D, lam=LAM)
    limit = jacobians.jvp_closed_form(X, D, E, z_hat)
    iterates = jacobians.jvp_autograd(X, D, E, lam=LAM, alpha=ALPHA, n_layers=1500, trace=True)
    unmasked = torch.zeros_like(limit)
    for z in iterates[:-1]:
        unmasked = unmasked - ALPHA * ((unmasked @ D.T) @ D + (z @ D.T - X) @ E + (z @ E.T) @ D)
    masked = jacobians.jvp_recursion(X, D, E, lam=LAM, alpha=ALPHA, n_layers=1500)
    assert float((masked - limit).norm()) < 1e-6 * float(limit.norm())
    assert float((unmasked - limit).norm()) > 0.1 * float(limit.norm())


def test_closed_forms_are_the_limit_of_the_unrolled_jacobian():
    X, D, E, V = problem()
    z_hat = lasso.solve(X, D, lam=LAM)
    kw = dict(lam=LAM, alpha=ALPHA, n_layers=3000)
    jvp = jacobians.jvp_closed_form(X, D, E, z_hat)
    assert torch.allclose(jacobians.jvp_recursion(X, D, E, **kw), jvp, rtol=1e-8, atol=1e-12)
    vjp = jacobians.vjp_closed_form(X, D, V, z_hat)
    assert torch.allclose(jacobians.vjp_autograd(X, D, V, **kw), vjp, rtol=1e-8, atol=1e-12)
    assert bool((jvp[z_hat == 0] == 0).all())  # zero off the support


def test_closed_form_jvp_and_vjp_are_adjoint():
    X, D, E, V = problem()
    z_hat = lasso.solve(X, D, lam=LAM)
    lhs = (jacobians.jvp_closed_form(X, D, E, z_hat) * V).sum()
    rhs = (jacobians.vjp_closed_form(X, D, V, z_hat, reduction="none").sum(0) * E).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)
    per_sample = jacobians.vjp_closed_form(X, D, V, z_hat, reduction="none")
    assert torch.allclose(per_sample.mean(0), jacobians.vjp_closed_form(X, D, V, z_hat), atol=1e-15)


def test_closed_form_matches_finite_differences_of_the_lasso_solution():
    X, D, E, _ = problem(n=4)
    z_hat = lasso.solve(X, D, lam=LAM)
    eps = 1e-6
    fd = (lasso.solve(X, D + eps * E, lam=LAM) - lasso.solve(X, D - eps * E, lam=LAM)) / (2 * eps)
    assert torch.allclose(jacobians.jvp_closed_form(X, D, E, z_hat), fd, atol=1e-7)


def test_direction_must_be_shaped_like_D():
    X, D, _, V = problem()
    with pytest.raises(ValueError, match="E must be a tensor shaped like D"):
        jacobians.jvp_recursion(X, D, V, lam=LAM, n_layers=3)
    with pytest.raises(ValueError, match="V must have shape"):
        jacobians.vjp_autograd(X, D, V[:, :5], lam=LAM, n_layers=3)
