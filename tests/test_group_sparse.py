"""The group-sparse autoencoder's closed forms (Theodosis et al.): the exact gradient equals
autograd and finite differences, the approximation is eq. 51, and the geometric helpers satisfy
their defining identities."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from udlbench import data, gradients, metrics
from udlbench import group_sparse as gs
from udlbench.operators import group_soft_threshold

pytestmark = pytest.mark.fast


def model(n_groups=6, d=2, m=12, N=64, seed=0, dtype=torch.float64, device="cpu"):
    """Group-sparse samples and a perturbed dictionary with orthonormal groups."""
    problem = data.make_group_sparse(N, n_groups, d, 2, m=m, b_min=1.0, b_max=2.0, seed=seed,
                                     dtype=dtype, device=device)
    A_star = gs.orthonormalize_groups(problem.D_star, group_size=d)
    A = gs.perturb_groups(A_star, 0.2, group_size=d, seed=seed + 1)
    return problem.Z_star @ A_star.T, A, problem.Z_star


def loss(X, D, lam, d):
    """Mean 0.5 ||x - D sigma_lam(D^T x)||^2 written directly with the group prox (eq. 40)."""
    Z = group_soft_threshold(X @ D, lam, group_size=d)
    return 0.5 * (X - Z @ D.T).pow(2).sum(1).mean()


@pytest.mark.parametrize("d", [1, 2, 3])
def test_gradient_equals_autograd_through_the_encoder(device, dtype, d):
    X, A, _ = model(n_groups=12 // d, d=d, dtype=dtype, device=device)
    options = dict(lam=0.5, n_layers=1, alpha=1.0, prox="group", group_size=d, check_step=False)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for reduction in ("mean", "none"):
        auto = gradients.estimate("ae-ls", X, A, reduction=reduction, **options)
        exact = gs.gradient(X, A, lam=0.5, group_size=d, reduction=reduction)
        assert exact.dtype == dtype and exact.device == A.device
        assert float((auto - exact).norm() / auto.norm()) <= tol


def test_gradient_matches_central_differences():
    X, A, _ = model(seed=3)
    lam, d = 0.5, 2
    margins = (gs.group_norms(X @ A, group_size=d) - lam).abs()
    assert float(margins.min()) > 1e-3  # no group at the kink of the prox
    grad = gs.gradient(X, A, lam=lam, group_size=d)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        E = torch.randn(A.shape, generator=g, dtype=torch.float64)
        h = 1e-6
        numeric = (loss(X, A + h * E, lam, d) - loss(X, A - h * E, lam, d)) / (2 * h)
        assert math.isclose(float(numeric), float((grad * E).sum()), rel_tol=1e-6, abs_tol=1e-9)


def test_approximate_gradient_is_eq_51():
    """Eq. 51 per sample: -tau_g [(I - A_S diag(tau) A_S^T) y y^T + y y^T (I - ...)^T] A_g on the
    groups the encoder keeps, 0 elsewhere."""
    d, lam = 2, 0.5
    X, A, _ = model(N=16, seed=5)
    approx = gs.approximate_gradient(X, A, lam=lam, group_size=d, reduction="none")
    n_groups, partial = A.shape[1] // d, 0
    for i, y in enumerate(X):
        norms = gs.group_norms(y @ A, group_size=d)
        S = [g for g in range(n_groups) if norms[g] > lam]
        partial += 0 < len(S) < n_groups
        columns = [c for g in S for c in range(g * d, (g + 1) * d)]
        tau = torch.tensor([1 - lam / float(norms[g]) for g in S for _ in range(d)],
                           dtype=torch.float64)
        A_S = A[:, columns]
        M = torch.eye(A.shape[0], dtype=torch.float64) - A_S @ torch.diag(tau) @ A_S.T
        yy = torch.outer(y, y)
        expected = torch.zeros_like(A)
        for g in S:
            block = slice(g * d, (g + 1) * d)
            expected[:, block] = -(1 - lam / float(norms[g])) * (M @ yy + yy @ M.T) @ A[:, block]
        assert torch.allclose(approx[i], expected, atol=1e-12 * (1 + float(expected.abs().max())))
    assert partial >= len(X) // 2  # most samples keep some groups and drop others


@given(st.integers(0, 10**6), st.sampled_from([1, 2, 3]))
def test_exact_and_approximate_gradients_agree_at_lam_zero(seed, d):
    """The dropped rank-one term lam u u^T / ||u||^3 vanishes at lam = 0 (tau_g = 1)."""
    X, A, _ = model(n_groups=12 // d, d=d, N=8, seed=seed)
    exact = gs.gradient(X, A, lam=0.0, group_size=d)
    approx = gs.approximate_gradient(X, A, lam=0.0, group_size=d)
    assert torch.allclose(exact, approx, atol=1e-12 * (1 + float(exact.abs().max())))


def random_rotations(n, d, generator):
    Q, _ = torch.linalg.qr(torch.randn(n, d, d, generator=generator, dtype=torch.float64))
    return Q


@given(st.integers(0, 10**6), st.sampled_from([1, 2, 3]))
def test_gradient_is_equivariant_under_rotations(seed, d):
    """L(Q D R; Q x) = L(D; x) for an orthogonal Q on the signal side and orthogonal R_g inside
    every group (sigma_lam(R^T u) = R^T sigma_lam(u)), so grad(Q X, Q D R) = Q grad(X, D) R."""
    X, A, _ = model(n_groups=12 // d, d=d, N=8, seed=seed)
    g = torch.Generator().manual_seed(seed)
    Q = random_rotations(1, A.shape[0], g)[0]
    R = torch.block_diag(*random_rotations(A.shape[1] // d, d, g))
    left = gs.gradient(X @ Q.T, Q @ A @ R, lam=0.5, group_size=d)
    right = Q @ gs.gradient(X, A, lam=0.5, group_size=d) @ R
    assert torch.allclose(left, right, atol=1e-10 * (1 + float(right.abs().max())))


def test_entrywise_threshold_breaks_group_rotation_equivariance():
    """Control for the law above: with d = 1 groups (the entry-wise soft threshold) a rotation
    mixing two atoms changes the loss, so the rotation law is specific to group thresholds."""
    X, A, _ = model(N=32, seed=2)
    R = torch.block_diag(*random_rotations(6, 2, torch.Generator().manual_seed(1)))
    grouped = [float(loss(X, A, 0.5, 2)), float(loss(X, A @ R, 0.5, 2))]
    entrywise = [float(loss(X, A, 0.5, 1)), float(loss(X, A @ R, 0.5, 1))]
    assert math.isclose(*grouped, rel_tol=1e-12)
    assert not math.isclose(*entrywise, rel_tol=1e-3)


def test_block_coherence_conventions(dtype):
    D = data.make_group_sparse(1, 20, 1, 1, m=15, seed=0, dtype=dtype).D_star
    assert math.isclose(gs.block_coherence(D, group_size=1), metrics.coherence(D), rel_tol=1e-6)
    D2 = data.make_group_sparse(1, 10, 2, 1, m=15, seed=0, dtype=dtype).D_star
    mu, raw = gs.block_coherence(D2, group_size=2), gs.block_coherence(D2, group_size=2, raw=True)
    assert math.isclose(raw, 2 * mu, rel_tol=1e-12)
    assert raw >= metrics.coherence(D2) - 1e-6  # the largest entry of a block <= its norm
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
    assert gs.block_coherence(Q, group_size=4, raw=True) <= 1e-12
    with pytest.raises(ValueError, match="at least 2 groups"):
        gs.block_coherence(Q[:, :4], group_size=4)
    with pytest.raises(ValueError, match="group_size=3 must divide"):
        gs.block_coherence(Q, group_size=3)


def test_orthonormalize_groups_gives_the_nearest_orthonormal_groups(device, dtype):
    D = data.make_group_sparse(1, 5, 3, 1, m=10, seed=1, dtype=dtype, device=device).D_star
    P = gs.orthonormalize_groups(D, group_size=3)
    assert P.dtype == dtype and P.device == D.device
    blocks = P.reshape(10, 5, 3).permute(1, 0, 2)
    eye = torch.eye(3, dtype=dtype, device=device)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert float((blocks.transpose(1, 2) @ blocks - eye).abs().max()) <= tol
    assert torch.allclose(gs.orthonormalize_groups(P, group_size=3), P, atol=tol)
    R = torch.block_diag(*random_rotations(5, 3, torch.Generator().manual_seed(0))).to(P)
    for g in range(5):
        block = slice(3 * g, 3 * g + 3)
        assert (D[:, block] - P[:, block]).norm() <= (D[:, block] - (P @ R)[:, block]).norm() + tol
    with pytest.raises(ValueError, match="exceeds the dimension"):
        gs.orthonormalize_groups(D[:2], group_size=3)


def test_perturb_groups_moves_every_group_by_exactly_delta(dtype):
    A_star = gs.orthonormalize_groups(
        data.make_group_sparse(1, 8, 2, 1, m=20, seed=4, dtype=dtype).D_star, group_size=2)
    A = gs.perturb_groups(A_star, 0.3, group_size=2, seed=7)
    assert A.dtype == dtype
    distances = torch.linalg.vector_norm((A - A_star).reshape(20, 8, 2), dim=(0, 2))
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert float((distances - 0.3).abs().max()) <= tol
    assert torch.allclose(gs.orthonormalize_groups(A, group_size=2), A, atol=tol)
    assert torch.equal(A, gs.perturb_groups(A_star, 0.3, group_size=2, seed=7))
    assert not torch.equal(A, gs.perturb_groups(A_star, 0.3, group_size=2, seed=8))
    assert torch.allclose(gs.perturb_groups(A_star, 0.0, group_size=2), A_star, atol=tol)
    with pytest.raises(ValueError, match="orthonormal groups"):
        gs.perturb_groups(2 * A_star, 0.1, group_size=2)
    with pytest.raises(ValueError, match=r"delta must lie in \[0, 1\)"):
        gs.perturb_groups(A_star, 1.0, group_size=2)
    with pytest.raises(ValueError, match="delta must be a finite number >= 0"):
        gs.perturb_groups(A_star, -0.1, group_size=2)


def test_recovery_range_of_lemma_1():
    low, high = gs.recovery_range(n_active=3, b_min=4, b_max=5, mu_B=0.0, delta=0.05)
    assert math.isclose(low, 0.75) and math.isclose(high, 3.05)
    low, high = gs.recovery_range(n_active=3, b_min=4, b_max=5, mu_B=0.2, delta=0.0)
    assert low > high  # the paper's regime: empty
    with pytest.raises(ValueError, match="b_min <= b_max"):
        gs.recovery_range(n_active=1, b_min=5, b_max=4, mu_B=0.0, delta=0.0)
    with pytest.raises(ValueError, match="n_active"):
        gs.recovery_range(n_active=0, b_min=4, b_max=5, mu_B=0.0, delta=0.0)


@given(st.floats(0.05, 1.0), st.floats(0.0, 1.0), st.integers(1, 1000))
def test_gram_bound_is_the_solution_of_eq_68(tau, delta, size):
    """At ||A_g^T A*_g||_F^2 = gram_bound, the left side of eq. 68 equals (2 - tau) delta^2, and
    it grows with ||A_g^T A*_g||_F^2 (so the bound is the largest admissible value, eq. 69)."""
    bound = gs.gram_bound(tau, delta=delta, size=size)

    def lhs68(K):
        return (2 - tau) ** 2 * size + tau**2 * K - 2 * (2 - tau) * tau * (size - delta**2 / 2)

    scale = (2 - tau) ** 2 * size + 1
    assert math.isclose(lhs68(bound), (2 - tau) * delta**2, abs_tol=1e-12 * scale)
    assert lhs68(bound + 1) > lhs68(bound)


def test_gram_bound_values_and_errors():
    assert math.isclose(gs.gram_bound(0.5, delta=0.0, size=950), -2850.0)
    values = gs.gram_bound(torch.tensor([0.5, 0.9]), delta=1.0, size=2)
    assert isinstance(values, torch.Tensor) and values.shape == (2,)
    with pytest.raises(ValueError, match="tau must lie in"):
        gs.gram_bound(1.5, delta=0.1, size=2)
    with pytest.raises(ValueError, match="size"):
        gs.gram_bound(0.5, delta=0.1, size=0)


def test_stiefel_tangent_projection(dtype):
    A = gs.orthonormalize_groups(
        data.make_group_sparse(1, 4, 2, 1, m=9, seed=2, dtype=dtype).D_star, group_size=2)
    G = torch.randn(A.shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    P = gs.stiefel_tangent(A, G, group_size=2)
    blocks = (A.reshape(9, 4, 2).permute(1, 0, 2), P.reshape(9, 4, 2).permute(1, 0, 2))
    inner = blocks[0].transpose(1, 2) @ blocks[1]
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert float((inner + inner.transpose(1, 2)).abs().max()) <= tol  # tangent: sym(A_g^T P_g) = 0
    assert torch.allclose(gs.stiefel_tangent(A, P, group_size=2), P, atol=tol)  # a projection
    with pytest.raises(ValueError, match="shape of D"):
        gs.stiefel_tangent(A, G[:, :4], group_size=2)


def test_group_support_and_recovery():
    Z_star = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]], dtype=torch.float64)
    assert gs.group_support(Z_star, group_size=2).tolist() == [[True, False], [False, True]]
    assert gs.group_norms(Z_star, group_size=2)[0, 0] == pytest.approx(math.sqrt(5))
    assert gs.group_support_recovery(Z_star * 0.5, Z_star, group_size=2) == 1.0
    partial = Z_star.clone()
    partial[1, 0] = 1e-3  # an extra group in the second sample
    assert gs.group_support_recovery(partial, Z_star, group_size=2) == 0.5
    with pytest.raises(ValueError, match="same shape"):
        gs.group_support_recovery(Z_star[:, :2], Z_star, group_size=2)
    with pytest.raises(ValueError, match="tol"):
        gs.group_support(Z_star, group_size=2, tol=-1.0)
