"""PUDLE (TMLR 2023): gradient-implementation identities (P-AUX), the fixed-point property
(Lemma 3.2) and the lasso KKT conditions (Lemma A.3). THEOREMS.md Secs. 0.3, 0.4 and 1."""

import math

import pytest
import torch

from udlbench import data, encoders, gradients, jacobians, lasso
from udlbench.linalg import lipschitz_constant

M, P, S, LAM, ALPHA = 50, 100, 5, 0.2, 0.2
TAU_B = 0.55 / math.log(M)


def p_small(n, seed, device):
    """P-small (THEOREMS.md Sec. 1): m=50, p=100, s=5, U(1,2) amplitudes, iid signs, and the close
    dictionary D* + tau_B B at tau_B = 0.55 / ln m."""
    problem = data.make_sparse(M, P, n, S, sign="iid", seed=seed, device=device)
    D = data.perturb(problem.D_star, TAU_B, seed=seed + 10_000)
    return problem, D


@pytest.mark.fast
@pytest.mark.claim("P-AUX", statement="eq. 7 (implementation identities)")
def test_P_AUX_lasso_minus_ls_is_lam_JT_sign(evidence, seed, device):
    """g_ae-lasso - g_ae-ls = lam J_T^T sign(z_T), with the right side a vector-Jacobian product
    through the encoder; and g_dec equals its closed form mean (D z_T - x) z_T^T. Tolerance 1e-12.
    Negative control: the misplaced-detach bug (g_dec, codes held constant, standing in for
    g_ae-ls) must break the identity."""
    problem, D = p_small(64, seed(0), device)
    X = problem.X
    kw = dict(lam=LAM, alpha=ALPHA, n_layers=100)
    g_lasso = gradients.estimate("ae-lasso", X, D, **kw)
    g_ls = gradients.estimate("ae-ls", X, D, **kw)
    z_T = encoders.ista(X, D, **kw)
    rhs = LAM * jacobians.vjp_autograd(X, D, torch.sign(z_T), **kw)
    identity_error = float((g_lasso - g_ls - rhs).norm() / rhs.norm())
    closed_form = (z_T @ D.T - X).T @ z_T / X.shape[0]
    g_dec = gradients.estimate("dec", X, D, **kw)
    dec_error = float((g_dec - closed_form).norm() / closed_form.norm())
    control_error = float((g_lasso - g_dec - rhs).norm() / rhs.norm())
    evidence.seeds = [seed(0)]
    evidence.measure(
        identity_rel_error=identity_error,
        dec_rel_error=dec_error,
        control_rel_error=control_error,
        sigma_max_sq=lipschitz_constant(D),
    )
    evidence.predict(identity_rel_error=0.0, dec_rel_error=0.0)
    assert identity_error <= 1e-12
    assert dec_error <= 1e-12
    assert control_error > 1e-3


@pytest.mark.fast
@pytest.mark.claim("P-L3.2", statement="Lemma 3.2")
def test_P_L3_2_lasso_solution_is_a_fixed_point_for_every_step(evidence, seed, device):
    """z_hat = ST_{alpha lam}(z_hat - alpha D^T (D z_hat - x)) for every alpha > 0, at D* and at the
    close D: ||Phi_alpha(z_hat) - z_hat||_inf <= 1e-10 (1 + ||z_hat||_inf) for alpha in
    {0.01, 0.2, 1/L, 1.9/L, 5}. Negative controls: z_hat + 1e-3 N(0, I) has residual > 1e-5;
    the solution at 1.1 lam has residual > 1e-4."""
    problem, D_close = p_small(200, seed(0), device)
    noise = torch.Generator().manual_seed(seed(1))
    worst, noisy_min, other_min = 0.0, math.inf, math.inf
    for D in (problem.D_star, D_close):
        L = lipschitz_constant(D)
        z_hat = lasso.solve(problem.X, D, lam=LAM)
        noisy = z_hat + 1e-3 * torch.randn(z_hat.shape, generator=noise).to(device)
        z_other = lasso.solve(problem.X, D, lam=1.1 * LAM)
        for alpha in (0.01, 0.2, 1 / L, 1.9 / L, 5.0):

            def step(Z, alpha=alpha, D=D):
                mapped = encoders.proximal_gradient_map(Z, problem.X, D, lam=LAM, alpha=alpha)
                return (mapped - Z).abs().amax(1)

            scale = 1 + z_hat.abs().amax(1)
            worst = max(worst, float((step(z_hat) / scale).max()))
            noisy_min = min(noisy_min, float(step(noisy).min()))
            other_min = min(other_min, float(step(z_other).min()))
    evidence.seeds = [seed(0), seed(1)]
    evidence.measure(
        max_fixed_point_residual=worst,
        control_noisy_min_residual=noisy_min,
        control_other_lam_min_residual=other_min,
    )
    evidence.predict(max_fixed_point_residual=0.0, control_other_lam_min_residual=0.1 * 0.01 * LAM)
    assert worst <= 1e-10
    assert noisy_min > 1e-5
    assert other_min > 1e-4


@pytest.mark.fast
@pytest.mark.claim("P-LA.3", statement="Lemma A.3")
def test_P_LA_3_certified_lasso_satisfies_kkt(evidence, seed, device):
    """D^T (x - D z_hat) in lam d||z_hat||_1: on the support D_j^T r = lam sign(z_hat_j) to
    1e-12 lam,
    off the support |D_j^T r| <= lam (1 + 1e-12), and strictly positive slack (uniqueness,
    Assumption 3.6) for 100 % of 500 samples of P-small at D*. Negative control: 5 ISTA
    iterations fail the certificate on >= 90 % of samples."""
    problem, _ = p_small(500, seed(0), device)
    X, D = problem.X, problem.D_star
    z_hat, info = lasso.solve(X, D, lam=LAM, return_info=True)
    certificate = lasso.kkt_certificate(X, D, z_hat, lam=LAM)
    early = lasso.kkt_certificate(
        X, D, encoders.ista(X, D, lam=LAM, alpha=ALPHA, n_layers=5), lam=LAM
    )
    fail_rate = 1 - float(early.certified.double().mean())
    evidence.seeds = [seed(0)]
    evidence.measure(
        uncertified=int((~info.certified).sum()),
        max_equality_residual_over_lam=float(certificate.kkt_residual.max()),
        min_slack=float(certificate.slack.min()),
        median_support_size=float(certificate.support_size.double().median()),
        control_fail_rate_5_ista=fail_rate,
    )
    evidence.predict(uncertified=0, max_equality_residual_over_lam=0.0)
    assert int((~info.certified).sum()) == 0
    assert bool(certificate.certified.all())
    assert float(certificate.kkt_residual.max()) <= 1e-12
    assert float(certificate.slack.min()) > 0
    assert fail_rate >= 0.9
