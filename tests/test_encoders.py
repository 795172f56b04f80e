"""Unrolled ISTA / FISTA against independent loops, monotonicity, schedules, truncation and
input validation (TMLR 2023 Alg. 2; ICLR 2022 Sec. 2)."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from udlbench import data, encoders, gradients, lasso
from udlbench.linalg import lipschitz_constant

pytestmark = pytest.mark.fast


def problem(seed=0, m=20, p=40, n=16, s=3, dtype=torch.float64, device="cpu"):
    return data.make_sparse(m, p, n, s, seed=seed, dtype=dtype, device=device)


def numpy_ista(X, D, lams, alpha, accelerate=False):
    """Plain row-wise ISTA / FISTA in numpy, written independently of udlbench."""
    z = np.zeros((X.shape[0], D.shape[1]))
    y, t = z, 1.0
    for lam in lams:
        u = y - alpha * (y @ D.T - X) @ D
        z_next = np.sign(u) * np.maximum(np.abs(u) - alpha * lam, 0)
        if accelerate:
            t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
            y = z_next + (t - 1) / t_next * (z_next - z)
            t = t_next
        else:
            y = z_next
        z = z_next
    return z


@pytest.mark.parametrize("accelerate", [False, True])
@pytest.mark.parametrize("lam_decay", [None, 0.97])
def test_matches_an_independent_loop(accelerate, lam_decay):
    d = problem()
    X, D = d.X.numpy(), d.D_star.numpy()
    alpha, T = 0.9 / np.linalg.norm(D, 2) ** 2, 60
    lams = [0.1 * (lam_decay or 1.0) ** t for t in range(T)]
    run = encoders.fista if accelerate else encoders.ista
    z = run(d.X, d.D_star, lam=0.1, alpha=alpha, n_layers=T, lam_decay=lam_decay)
    assert np.allclose(z.numpy(), numpy_ista(X, D, lams, alpha, accelerate), atol=1e-12)


def test_trace_stacks_every_iterate_and_ends_at_z_T():
    d = problem()
    full = encoders.ista(d.X, d.D_star, lam=0.1, n_layers=7, trace=True)
    assert full.shape == (8, 16, 40)
    assert torch.equal(full[0], torch.zeros(16, 40, dtype=torch.float64))
    assert torch.equal(full[-1], encoders.ista(d.X, d.D_star, lam=0.1, n_layers=7))
    assert torch.equal(full[3], encoders.ista(d.X, d.D_star, lam=0.1, n_layers=3))


def test_z0_continues_the_iteration():
    d = problem()
    z3 = encoders.ista(d.X, d.D_star, lam=0.1, n_layers=3)
    z7 = encoders.ista(d.X, d.D_star, lam=0.1, n_layers=7)
    assert torch.allclose(encoders.ista(d.X, d.D_star, lam=0.1, n_layers=4, z0=z3), z7, atol=0)


def test_default_step_is_one_over_sigma_max_squared():
    d = problem()
    L = float(torch.linalg.matrix_norm(d.D_star, 2) ** 2)
    assert lipschitz_constant(d.D_star) == pytest.approx(L, rel=1e-8)
    z = encoders.ista(d.X, d.D_star, lam=0.1, n_layers=20)
    assert torch.allclose(
        z, encoders.ista(d.X, d.D_star, lam=0.1, n_layers=20, alpha=1 / L), atol=1e-9
    )


@settings(max_examples=15)
@given(seed=st.integers(0, 10**6), lam=st.floats(0.02, 0.5), scale=st.floats(0.1, 1.0))
def test_ista_never_increases_the_lasso_objective(seed, lam, scale):
    """For alpha <= 1/L each ISTA step decreases 0.5||x - Dz||^2 + lam||z||_1 (Beck & Teboulle)."""
    d = problem(seed=seed)
    alpha = scale / lipschitz_constant(d.D_star)
    iterates = encoders.ista(d.X, d.D_star, lam=lam, alpha=alpha, n_layers=40, trace=True)
    values = torch.stack([lasso.objective(d.X, d.D_star, z, lam=lam) for z in iterates])
    increase = (values[1:] - values[:-1]).max()
    assert float(increase) <= 1e-12 * float(values.abs().max())


def test_ista_converges_to_the_certified_lasso_solution():
    d = problem()
    z_hat = lasso.solve(d.X, d.D_star, lam=0.1)
    z = encoders.ista(d.X, d.D_star, lam=0.1, n_layers=3000)
    assert torch.allclose(z, z_hat, atol=1e-10)
    assert torch.allclose(encoders.fista(d.X, d.D_star, lam=0.1, n_layers=1500), z_hat, atol=1e-10)


def test_group_hard_and_relu_encoders_run_their_prox():
    d = problem()
    zg = encoders.ista(d.X, d.D_star, lam=0.3, n_layers=30, prox="group", group_size=4)
    active = zg.reshape(16, 10, 4).abs().sum(-1) > 0
    assert bool(((zg.reshape(16, 10, 4) != 0).all(-1) | ~active).all())  # whole groups or none
    zr = encoders.ista(d.X, d.D_star, lam=0.1, n_layers=30, prox="relu")
    assert bool((zr >= 0).all())
    zh = encoders.ista(d.X, d.D_star, lam=0.5, alpha=0.2, n_layers=30, prox="hard")
    assert bool(((zh == 0) | (zh.abs() >= 0.1 - 1e-15)).all())


def test_truncated_backprop_differentiates_only_the_last_layers():
    """backprop_depth=K equals differentiating K layers started from the (constant) z_{T-K}."""
    d = problem()
    T, K = 30, 5

    def grad_of(run):
        D = d.D_star.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((run(D) ** 2).sum(), D)
        return g

    truncated = grad_of(
        lambda D: encoders.ista(d.X, D, lam=0.1, alpha=0.1, n_layers=T, backprop_depth=K)
    )
    start = encoders.ista(d.X, d.D_star, lam=0.1, alpha=0.1, n_layers=T - K)
    restarted = grad_of(lambda D: encoders.ista(d.X, D, lam=0.1, alpha=0.1, n_layers=K, z0=start))
    full = grad_of(lambda D: encoders.ista(d.X, D, lam=0.1, alpha=0.1, n_layers=T))
    deep = grad_of(
        lambda D: encoders.ista(d.X, D, lam=0.1, alpha=0.1, n_layers=T, backprop_depth=T)
    )
    assert torch.allclose(truncated, restarted, atol=1e-13)
    assert torch.equal(deep, full)
    assert not torch.allclose(truncated, full, atol=1e-6)


def test_float32_and_device(device, dtype):
    d = problem(dtype=dtype, device=device)
    z = encoders.ista(d.X, d.D_star, lam=0.1, n_layers=50)
    ref = encoders.ista(d.X.double().cpu(), d.D_star.double().cpu(), lam=0.1, n_layers=50)
    assert z.dtype == dtype and z.device.type == torch.device(device).type
    assert torch.allclose(z.double().cpu(), ref, atol=1e-4 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(X=torch.ones(5)), ValueError, "X must have 2 dimensions"),
        (dict(X=torch.ones(4, 7, dtype=torch.float64)), ValueError, "X.shape\\[1\\]"),
        (dict(X=torch.ones(4, 20, dtype=torch.float32)), TypeError, "dtype"),
        (dict(X=torch.full((4, 20), float("nan"), dtype=torch.float64)), ValueError, "non-finite"),
        (dict(D="zero-atom"), ValueError, "zero atoms"),
        (dict(n_layers=0), ValueError, "n_layers"),
        (dict(lam=-0.1), ValueError, "lam"),
        (dict(alpha=10.0), ValueError, "2/L"),
        (dict(alpha=-1.0), ValueError, "alpha"),
        (dict(prox="median"), ValueError, "prox"),
        (dict(z0=torch.zeros(3, 3, dtype=torch.float64)), ValueError, "z0"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, match):
    d = problem()
    args = dict(X=d.X, D=d.D_star, lam=0.1, n_layers=5)
    if kwargs.get("D") == "zero-atom":
        D = d.D_star.clone()
        D[:, 3] = 0
        kwargs = dict(D=D)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        encoders.ista(args.pop("X"), args.pop("D"), **args)


def test_lam_above_lam_max_warns_and_codes_are_zero():
    d = problem()
    lam_max = float(torch.abs(d.X @ d.D_star).max())
    with pytest.warns(encoders.ZeroCodeWarning, match="lam_max"):
        z = encoders.ista(d.X, d.D_star, lam=lam_max * 1.01, n_layers=10)
    assert not bool(z.any())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoders.ista(d.X, d.D_star, lam=lam_max * 0.5, n_layers=10)


def test_check_step_false_allows_a_divergent_step_on_purpose():
    d = problem()
    z = encoders.ista(
        d.X,
        d.D_star,
        lam=0.0,
        alpha=3.0 / lipschitz_constant(d.D_star),
        n_layers=40,
        check_step=False,
    )
    assert float(z.abs().max()) > 1e3


@pytest.mark.fast
@pytest.mark.parametrize("accelerate", [False, True])
@pytest.mark.parametrize("backward", ["autograd", "adjoint"])
def test_per_sample_lam_equals_encoding_each_sample_with_its_own_lam(accelerate, backward):
    """A lam of shape (n,) gives sample i the codes (and, for ae-lasso, the gradient) of a
    scalar lam_i, with a decay schedule too (float64, 1e-12)."""
    problem = data.make_sparse(20, 30, 6, 3, seed=0, dtype=torch.float64)
    X, D = problem.X, data.perturb(problem.D_star, 0.2, seed=1)
    lam = torch.tensor([0.05, 0.1, 0.2, 0.3, 0.0, 0.15], dtype=torch.float64)
    options = dict(n_layers=40, alpha=0.1, lam_decay=0.97, accelerate=accelerate)
    W = D.clone().requires_grad_(True)
    Z = encoders.unroll(X, W, lam=lam, backward=backward, **options)
    for i in range(X.shape[0]):
        alone = encoders.unroll(X[i : i + 1], D, lam=float(lam[i]), **options)
        assert torch.allclose(Z[i : i + 1].detach(), alone, atol=1e-12, rtol=0)
    g = gradients.estimate("ae-lasso", X, D, lam=lam, n_layers=40, alpha=0.1, backward=backward,
                           encoder="fista" if accelerate else "ista", lam_decay=0.97)
    per_sample = gradients.estimate("ae-lasso", X, D, lam=lam, n_layers=40, alpha=0.1,
                                    reduction="none", encoder="fista" if accelerate else "ista",
                                    lam_decay=0.97, backward=backward)
    assert torch.allclose(per_sample.mean(0), g, atol=1e-12, rtol=0)
    single = gradients.estimate("ae-lasso", X[2:3], D, lam=0.2, n_layers=40, alpha=0.1,
                                encoder="fista" if accelerate else "ista", lam_decay=0.97)
    assert torch.allclose(per_sample[2], single, atol=1e-12, rtol=0)


@pytest.mark.fast
def test_bad_per_sample_lam_is_named():
    X = torch.randn(4, 5, dtype=torch.float64)
    D = torch.randn(5, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"one value per sample: shape \(4,\)"):
        encoders.unroll(X, D, lam=torch.full((3,), 0.1, dtype=torch.float64), n_layers=2)
    with pytest.raises(ValueError, match="constant torch.float64"):
        encoders.unroll(X, D, lam=torch.full((4,), 0.1), n_layers=2)
    with pytest.raises(ValueError, match=">= 0"):
        negative = torch.tensor([0.1, -0.1, 0.1, 0.1], dtype=torch.float64)
        encoders.unroll(X, D, lam=negative, n_layers=2)
