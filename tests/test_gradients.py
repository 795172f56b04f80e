"""Each PUDLE gradient against its definition (TMLR 2023, Alg. 2, eq. 7): autograd of the right
loss through an independent plain loop, the closed form of g_dec, finite differences, the
identity g_ae-lasso - g_ae-ls = lam J^T sign(z_T) (P-AUX) and the converged-encoder limits."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from udlbench import data, encoders, gradients, jacobians, lasso

pytestmark = pytest.mark.fast

LAM, ALPHA, T = 0.1, 0.15, 40


def problem(seed=0, m=20, p=40, n=12, s=3):
    d = data.make_sparse(m, p, n, s, seed=seed)
    return d.X, data.perturb(d.D_star, 0.1, seed=seed + 1), d


def plain_encoder(X, D, lam, alpha, n_layers):
    """ISTA written out with torch primitives only, independent of udlbench.encoders."""
    z = torch.zeros(X.shape[0], D.shape[1], dtype=X.dtype)
    for _ in range(n_layers):
        u = z - alpha * (z @ D.T - X) @ D
        z = torch.sign(u) * torch.clamp(torch.abs(u) - alpha * lam, min=0)
    return z


def autograd_of(loss_name, X, D):
    D = D.clone().requires_grad_(True)
    Z = plain_encoder(X, D, LAM, ALPHA, T)
    per_sample = 0.5 * ((X - Z @ D.T) ** 2).sum(1)
    if loss_name == "ae-lasso":
        per_sample = per_sample + LAM * Z.abs().sum(1)
    (g,) = torch.autograd.grad(per_sample.mean(), D)
    return g


@pytest.mark.parametrize("kind", ["ae-lasso", "ae-ls"])
def test_backprop_gradients_equal_autograd_of_their_loss(kind):
    X, D, _ = problem()
    g = gradients.estimate(kind, X, D, lam=LAM, alpha=ALPHA, n_layers=T)
    assert torch.allclose(g, autograd_of(kind, X, D), atol=1e-14, rtol=1e-12)


def test_dec_is_the_closed_form_with_codes_held_constant():
    X, D, _ = problem()
    Z = plain_encoder(X, D, LAM, ALPHA, T)
    expected = (Z @ D.T - X).T @ Z / X.shape[0]
    g = gradients.estimate("dec", X, D, lam=LAM, alpha=ALPHA, n_layers=T)
    assert torch.allclose(g, expected, atol=1e-15, rtol=1e-12)
    # ... and it differs from back-propagating the same loss (no silent .detach() equivalence)
    assert not torch.allclose(
        g, gradients.estimate("ae-ls", X, D, lam=LAM, alpha=ALPHA, n_layers=T), atol=1e-6
    )


@pytest.mark.parametrize("kind", ["ae-lasso", "ae-ls"])
def test_gradients_match_central_finite_differences(kind):
    X, D, _ = problem()
    g = gradients.estimate(kind, X, D, lam=LAM, alpha=ALPHA, n_layers=T)
    directions = torch.randn(
        (3, *D.shape), generator=torch.Generator().manual_seed(3), dtype=D.dtype
    )

    def loss(W):
        Z = encoders.ista(X, W, lam=LAM, alpha=ALPHA, n_layers=T)
        value = 0.5 * ((X - Z @ W.T) ** 2).sum(1)
        if kind == "ae-lasso":
            value = value + LAM * Z.abs().sum(1)
        return float(value.mean())

    eps = 1e-6
    for E in directions:
        fd = (loss(D + eps * E) - loss(D - eps * E)) / (2 * eps)
        assert fd == pytest.approx(float((g * E).sum()), rel=1e-6, abs=1e-9)


def test_aux_identity_lasso_minus_ls_is_lam_jt_sign():
    """P-AUX: g_ae-lasso - g_ae-ls = lam mean_i J_T^i^T sign(z_T^i), to 1e-12."""
    X, D, _ = problem()
    kw = dict(lam=LAM, alpha=ALPHA, n_layers=T)
    difference = gradients.estimate("ae-lasso", X, D, **kw) - gradients.estimate(
        "ae-ls", X, D, **kw
    )
    z_T = encoders.ista(X, D, **kw)
    rhs = LAM * jacobians.vjp_autograd(X, D, torch.sign(z_T), **kw)
    assert float((difference - rhs).norm()) <= 1e-12 * float(rhs.norm())


def test_per_sample_gradients_average_to_the_batch_gradient():
    X, D, _ = problem()
    for kind in gradients.ESTIMATORS:
        per_sample = gradients.estimate(
            kind, X, D, lam=LAM, alpha=ALPHA, n_layers=T, reduction="none"
        )
        assert per_sample.shape == (X.shape[0], *D.shape)
        mean = gradients.estimate(kind, X, D, lam=LAM, alpha=ALPHA, n_layers=T)
        assert torch.allclose(per_sample.mean(0), mean, atol=1e-15)


def test_return_codes_gives_z_T():
    X, D, _ = problem()
    _, Z = gradients.estimate("ae-ls", X, D, lam=LAM, alpha=ALPHA, n_layers=T, return_codes=True)
    assert torch.allclose(Z, plain_encoder(X, D, LAM, ALPHA, T), atol=1e-15)


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_converged_encoder_limits(seed):
    """Once z_T = z_hat: g_dec = g_ae-lasso = g_hat and g_ae-ls - g_hat = mean -J^T(lam sign z_hat)
    exactly (the bias behind TMLR 2023 Thm 4.9)."""
    X, D, _ = problem(seed=seed, n=8)
    lam = 0.3  # supports of 3-6 atoms at m = 20: ISTA reaches z_hat to rounding in 3000 layers
    z_hat = lasso.solve(X, D, lam=lam)
    g_hat = gradients.oracle("hat", X, D, lam=lam)
    kw = dict(lam=lam, alpha=ALPHA, n_layers=3000)
    assert torch.allclose(encoders.ista(X, D, **kw), z_hat, atol=1e-11)
    scale = float(g_hat.norm())
    for kind in ("dec", "ae-lasso"):
        g = gradients.estimate(kind, X, D, **kw)
        assert float((g - g_hat).norm()) <= 1e-9 * scale
    bias = -lam * jacobians.vjp_closed_form(X, D, torch.sign(z_hat), z_hat)
    g_ls = gradients.estimate("ae-ls", X, D, **kw)
    assert float((g_ls - g_hat - bias).norm()) <= 1e-9 * float(bias.norm())
    assert float(bias.norm()) > 1e-3 * scale  # the bias is really there


def test_oracles():
    X, D, d = problem()
    z_hat = lasso.solve(X, D, lam=LAM)
    assert torch.allclose(
        gradients.oracle("hat", X, D, lam=LAM), (z_hat @ D.T - X).T @ z_hat / X.shape[0], atol=1e-15
    )
    g_star = gradients.oracle("star", X, d.D_star, Z_star=d.Z_star)
    assert float(g_star.abs().max()) < 1e-14  # noiseless data: D* z* = x
    with pytest.raises(ValueError, match="Z_star"):
        gradients.oracle("star", X, D)
    with pytest.raises(ValueError, match="lam"):
        gradients.oracle("hat", X, D)


def test_bad_kind_names_the_choices():
    X, D, _ = problem()
    with pytest.raises(ValueError, match="kind"):
        gradients.estimate("ae-l2", X, D, lam=LAM, n_layers=3)
    with pytest.raises(ValueError, match="encoder"):
        gradients.estimate("dec", X, D, lam=LAM, n_layers=3, encoder="lista")


def test_float32_gradients_agree_with_float64(device):
    X, D, _ = problem()
    for kind in gradients.ESTIMATORS:
        g64 = gradients.estimate(kind, X, D, lam=LAM, alpha=ALPHA, n_layers=T)
        g32 = gradients.estimate(
            kind, X.float().to(device), D.float().to(device), lam=LAM, alpha=ALPHA, n_layers=T
        )
        assert g32.dtype == torch.float32
        assert torch.allclose(g32.double().cpu(), g64, atol=1e-4)
