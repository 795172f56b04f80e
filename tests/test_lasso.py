"""Tests of the certified lasso solver (``THEOREMS.md`` section 0.4, P-L3.2, P-LA.3).

Data: the P-small generative model written out here, m = 50, p = 100, Gaussian dictionary with
unit-norm columns, 5-sparse codes with Uniform(1, 2) amplitudes and i.i.d. random signs,
``X = Z D^T`` (Tolooshams & Ba, TMLR 2023, App. C.1). Seeds are stated in each test.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from udlbench.lasso import (
    LassoInfo,
    UncertifiedWarning,
    kkt_certificate,
    objective,
    solve,
)
from udlbench.operators import soft_threshold

pytestmark = pytest.mark.fast

M, P, S = 50, 100, 5


def make_problem(
    seed: int, n: int, *, m: int = M, p: int = P, s: int = S
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dictionary D (m, p) with unit-norm atoms and samples X (n, m) from s-sparse codes."""
    generator = torch.Generator().manual_seed(seed)
    D = torch.randn(m, p, generator=generator, dtype=torch.float64)
    D = D / torch.linalg.vector_norm(D, dim=0)
    support = torch.argsort(torch.rand(n, p, generator=generator), dim=1)[:, :s]
    amplitude = 1 + torch.rand(n, s, generator=generator, dtype=torch.float64)
    sign = 2 * torch.randint(0, 2, (n, s), generator=generator).to(torch.float64) - 1
    Z = torch.zeros(n, p, dtype=torch.float64).scatter(1, support, amplitude * sign)
    return D, Z @ D.T


def fixed_point_residual(
    X: torch.Tensor, D: torch.Tensor, Z: torch.Tensor, *, lam: float, alpha: float
) -> torch.Tensor:
    """Per-sample ``||Phi_alpha(z) - z||_inf`` for the ISTA map of TMLR 2023, Lemma 3.2.

    ``Phi_alpha(z) = ST_{alpha lam}(z - alpha D^T (D z - x))``.
    """
    step = soft_threshold(Z - alpha * (Z @ D.T - X) @ D, alpha * lam)
    return (step - Z).abs().amax(dim=1)


@pytest.mark.parametrize("lam", [0.05, 0.1, 0.2])
def test_PLA3_every_sample_certified(lam: float) -> None:
    """P-LA.3: 0 uncertified of 500 samples; equality residual <= 1e-12 lam; slack > 0."""
    D, X = make_problem(seed=0, n=500)
    Z, info = solve(X, D, lam=lam, return_info=True)
    assert isinstance(info, LassoInfo)
    assert bool(info.certified.all())
    assert float(info.kkt_residual.max()) <= 1e-12
    assert float(info.slack.min()) > 0
    assert info.n_iter > 0
    assert torch.equal(info.support_size, (Z != 0).sum(dim=1))
    again = kkt_certificate(X, D, Z, lam=lam)
    assert bool(again.certified.all())
    assert again.n_iter == 0
    assert torch.equal(again.support_size, info.support_size)
    assert torch.allclose(again.slack, info.slack, rtol=0, atol=1e-14)


def test_orthonormal_dictionary_gives_soft_threshold() -> None:
    """With orthonormal atoms the lasso solution is ``ST_lam(D^T x)`` in closed form."""
    generator = torch.Generator().manual_seed(1)
    D, _ = torch.linalg.qr(torch.randn(20, 20, generator=generator, dtype=torch.float64))
    X = 0.5 * torch.randn(40, 20, generator=generator, dtype=torch.float64)
    Z, info = solve(X, D, lam=0.3, return_info=True)
    assert bool(info.certified.all())
    torch.testing.assert_close(Z, soft_threshold(X @ D, 0.3), rtol=0, atol=1e-13)


def test_matches_scikit_learn() -> None:
    """Lasso(alpha = lam / m) minimises (1 / 2m)||x - D w||^2 + alpha ||w||_1, the same problem."""
    sklearn_lasso = pytest.importorskip("sklearn.linear_model").Lasso
    lam = 0.1
    D, X = make_problem(seed=2, n=10)
    Z = solve(X, D, lam=lam)
    reference = []
    for x in X.numpy():
        model = sklearn_lasso(alpha=lam / M, fit_intercept=False, tol=1e-12, max_iter=1_000_000)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a ConvergenceWarning would make the comparison moot
            model.fit(D.numpy(), x)
        reference.append(model.coef_)
    Z_sklearn = torch.from_numpy(np.stack(reference))
    torch.testing.assert_close(Z, Z_sklearn, rtol=0, atol=1e-6)
    ours = objective(X, D, Z, lam=lam)
    theirs = objective(X, D, Z_sklearn, lam=lam)
    assert bool((ours <= theirs + 1e-12).all())


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), lam=st.floats(0.02, 0.5))
def test_PL32_fixed_point_for_every_step(seed: int, lam: float) -> None:
    """P-L3.2: ``Phi_alpha(z_hat) = z_hat`` to 1e-10 (1 + ||z_hat||_inf) for every alpha > 0."""
    D, X = make_problem(seed=seed, n=40)
    Z, info = solve(X, D, lam=lam, return_info=True)
    assert bool(info.certified.all())
    L = float(torch.linalg.matrix_norm(D, ord=2)) ** 2
    bound = 1e-10 * (1 + Z.abs().amax(dim=1))
    for alpha in (0.01, 0.2, 1 / L, 1.9 / L, 5.0):
        residual = fixed_point_residual(X, D, Z, lam=lam, alpha=alpha)
        assert bool((residual <= bound).all()), (alpha, float(residual.max()))


def test_PLA3_negative_control_five_ista_iterations_fail() -> None:
    """P-LA.3 negative control: 5 PUDLE-encoder iterations (alpha = 0.2, z_0 = 0) fail on >= 90%."""
    lam, alpha = 0.2, 0.2
    D, X = make_problem(seed=3, n=500)
    Z = torch.zeros(X.shape[0], P, dtype=torch.float64)
    for _ in range(5):
        Z = soft_threshold(Z - alpha * (Z @ D.T - X) @ D, alpha * lam)
    info = kkt_certificate(X, D, Z, lam=lam)
    assert float((~info.certified).double().mean()) >= 0.9


def test_PL32_negative_controls_perturbed_and_wrong_lam() -> None:
    """P-L3.2 negative controls: z_hat + 1e-3 N(0, I) and z_hat at 1.1 lam are not certified."""
    lam = 0.2
    D, X = make_problem(seed=4, n=200)
    Z = solve(X, D, lam=lam)
    noise = 1e-3 * torch.randn(Z.shape, generator=torch.Generator().manual_seed(5), dtype=Z.dtype)
    noisy = Z + noise
    assert not bool(kkt_certificate(X, D, noisy, lam=lam).certified.any())
    assert bool((fixed_point_residual(X, D, noisy, lam=lam, alpha=0.2) > 1e-5).all())
    Z_other = solve(X, D, lam=1.1 * lam)
    assert not bool(kkt_certificate(X, D, Z_other, lam=lam).certified.any())
    assert bool((fixed_point_residual(X, D, Z_other, lam=lam, alpha=0.2) > 1e-4).all())


def test_float32_input_returns_float32() -> None:
    lam = 0.2
    D, X = make_problem(seed=6, n=100)
    Z64 = solve(X, D, lam=lam)
    Z32, info = solve(X.float(), D.float(), lam=lam, return_info=True)
    assert Z32.dtype == torch.float32
    assert bool(info.certified.all())
    assert info.kkt_residual.dtype == torch.float64
    torch.testing.assert_close(Z32.double(), Z64, rtol=0, atol=1e-5)


def test_zero_solution_above_lam_max() -> None:
    """lam >= ||D^T x||_inf gives exactly z = 0 (TMLR 2023, Sec. 3), certified, no iteration."""
    D, X = make_problem(seed=7, n=50)
    lam = 1.01 * float((X @ D).abs().amax())
    Z, info = solve(X, D, lam=lam, return_info=True)
    assert bool((Z == 0).all())
    assert bool(info.certified.all())
    assert bool((info.support_size == 0).all())
    assert info.n_iter == 0


def test_zero_solution_at_lam_max_is_not_certified() -> None:
    """At lam = lam_max exactly, z = 0 is a minimizer but the uniqueness margin fails: warn."""
    D, X = make_problem(seed=8, n=1)
    lam = float((X @ D).abs().amax())
    with pytest.warns(UncertifiedWarning, match="1 of 1 samples"):
        Z, info = solve(X, D, lam=lam, return_info=True)
    assert bool((Z == 0).all())
    assert not bool(info.certified[0])
    assert float(info.slack[0]) == 0.0


def test_uncertified_samples_warn_and_keep_a_descent_point() -> None:
    lam = 0.2
    D, X = make_problem(seed=9, n=50)
    with pytest.warns(UncertifiedWarning, match="samples are not certified"):
        Z, info = solve(X, D, lam=lam, max_iter=3, check_every=2, return_info=True)
    assert info.n_iter == 3
    assert not bool(info.certified.all())
    zero = torch.zeros_like(Z)
    assert bool((objective(X, D, Z, lam=lam) < objective(X, D, zero, lam=lam)).all())
    torch.testing.assert_close(
        info.kkt_residual, kkt_certificate(X, D, Z, lam=lam).kkt_residual, rtol=0, atol=1e-12
    )


def test_empty_batch() -> None:
    D, X = make_problem(seed=10, n=3)
    Z, info = solve(X[:0], D, lam=0.2, return_info=True)
    assert Z.shape == (0, P)
    assert info.certified.shape == (0,)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"lam": 0.0}, ValueError, "lam must be a finite number > 0"),
        ({"lam": -0.1}, ValueError, "lam"),
        ({"lam": math.nan}, ValueError, "lam"),
        ({"lam": 0.2, "tol": 0.0}, ValueError, "tol"),
        ({"lam": 0.2, "max_iter": 0}, ValueError, "max_iter"),
        ({"lam": 0.2, "check_every": 0}, ValueError, "check_every"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    D, X = make_problem(seed=11, n=4)
    with pytest.raises(error, match=match):
        solve(X, D, **kwargs)


def test_bad_tensors() -> None:
    D, X = make_problem(seed=12, n=4)
    with pytest.raises(ValueError, match="X"):
        solve(X[0], D, lam=0.2)
    with pytest.raises(ValueError, match="X"):
        solve(X[:, :10], D, lam=0.2)
    with pytest.raises(TypeError, match="dtype"):
        solve(X.float(), D, lam=0.2)
    bad = X.clone()
    bad[0, 0] = math.inf
    with pytest.raises(ValueError, match="X"):
        solve(bad, D, lam=0.2)
    zero_atom = D.clone()
    zero_atom[:, 3] = 0
    with pytest.raises(ValueError, match="D has 1 zero atoms"):
        solve(X, zero_atom, lam=0.2)
    with pytest.raises(ValueError, match="Z"):
        kkt_certificate(X, D, torch.zeros(4, P - 1, dtype=torch.float64), lam=0.2)
    with pytest.raises(ValueError, match="margin"):
        kkt_certificate(X, D, torch.zeros(4, P, dtype=torch.float64), lam=0.2, margin=1.0)
    with pytest.raises(ValueError, match="lam"):
        objective(X, D, torch.zeros(4, P, dtype=torch.float64), lam=-1.0)
