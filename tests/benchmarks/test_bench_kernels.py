"""Micro-benchmarks of the unrolled kernels (pytest-benchmark), each checked on its result.

The encoder forward (ISTA, FISTA; Tolooshams & Ba, TMLR 2023, Alg. 2, eq. 6), the forward and
backward of each dictionary-gradient estimator (eq. 7) with autograd's tape and with the adjoint
recursion of :mod:`udlbench.kernel`, and the certified lasso (Lemma A.3), on the small case of the
asv suite (m = 50, p = 100, 5-sparse codes, n = 200) in float32. Timing is off in the default
test run (see conftest.py); ``--benchmark-enable`` times ``ROUNDS`` rounds after
``WARMUP_ROUNDS`` untimed ones. On CUDA the timed function synchronises before it returns.
"""

from __future__ import annotations

import math

import pytest
import torch

from udlbench import gradients, lasso
from udlbench.data import make_sparse, perturb
from udlbench.encoders import unroll

pytestmark = pytest.mark.fast

M, P, S, N = 50, 100, 5, 200
LAM, ALPHA, N_LAYERS = 0.2, 0.2, 100
ROUNDS, WARMUP_ROUNDS = 10, 2
TOL = 1e-4  # adjoint vs autograd in float32 (tests/test_kernel.py)


@pytest.fixture
def problem(device):
    """X (N, M), D0 (M, P) near D* (tau = 0.55 / ln M, THEOREMS.md P-small), float32."""
    data = make_sparse(M, P, N, S, seed=0, dtype=torch.float32, device=device)
    return data.X, perturb(data.D_star, 0.55 / math.log(M), seed=1)


def _synchronized(result):
    """``result`` (a tensor, or a tuple starting with one) once its GPU, if any, has finished."""
    first = result[0] if isinstance(result, tuple) else result
    if first.device.type == "cuda":
        torch.cuda.synchronize(first.device)
    return result


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


@pytest.mark.parametrize("n_layers", [25, N_LAYERS])
@pytest.mark.parametrize("encoder", ["ista", "fista"])
def test_encoder_forward(benchmark, problem, encoder, n_layers):
    """z_T (N, P) without a graph: finite, on X's device, and of lower lasso objective than the
    start z_0 = 0 on every sample (both iterations converge to the lasso solution for a step
    alpha = 0.2 < 2/L)."""
    X, D = problem

    def forward():
        with torch.no_grad():
            return _synchronized(unroll(X, D, lam=LAM, n_layers=n_layers, alpha=ALPHA,
                                        accelerate=encoder == "fista", check_step=False))

    Z = benchmark.pedantic(forward, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)
    assert Z.shape == (N, P) and Z.dtype == X.dtype and Z.device == X.device
    assert bool(torch.isfinite(Z).all())
    start = lasso.objective(X, D, torch.zeros_like(Z), lam=LAM)
    assert bool((lasso.objective(X, D, Z, lam=LAM) < start).all())


@pytest.mark.parametrize(
    ("estimator", "backward"),
    [("dec", "auto"), ("ae-lasso", "autograd"), ("ae-lasso", "adjoint"), ("ae-ls", "autograd"),
     ("ae-ls", "adjoint")],
)
def test_gradient_estimate(benchmark, problem, estimator, backward):
    """The (M, P) gradient at T = 100, forward and backward: finite; g_dec equals the closed
    form (D z_T - x) z_T^T averaged over samples; the ae gradients agree with the other backward
    mode to 1e-4 relative."""
    X, D = problem

    def estimate(mode=backward):
        return _synchronized(gradients.estimate(estimator, X, D, lam=LAM, n_layers=N_LAYERS,
                                                alpha=ALPHA, backward=mode, check_step=False))

    g = benchmark.pedantic(estimate, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)
    assert g.shape == (M, P) and bool(torch.isfinite(g).all())
    if estimator == "dec":
        with torch.no_grad():
            Z = unroll(X, D, lam=LAM, n_layers=N_LAYERS, alpha=ALPHA, check_step=False)
        reference = (Z @ D.T - X).T @ Z / N
    else:
        reference = estimate("adjoint" if backward == "autograd" else "autograd")
    assert _relative(g, reference) < TOL


def test_lasso_solve(benchmark, problem):
    """Certified lasso codes (N, P): every sample passes the KKT certificate (Lemma A.3)."""
    X, D = problem

    def solve():
        return _synchronized(lasso.solve(X, D, lam=LAM, return_info=True))

    Z, info = benchmark.pedantic(solve, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)
    assert Z.shape == (N, P) and Z.dtype == X.dtype
    assert bool(info.certified.all())
