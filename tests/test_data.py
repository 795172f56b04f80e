"""Tests of the generative models in udlbench.data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from udlbench.data import (
    make_conv_expfamily,
    make_group_sparse,
    make_malezieux,
    make_sparse,
    normalize_columns,
    perturb,
    project_columns,
    sample_counts,
)
from udlbench.metrics import coherence

pytestmark = pytest.mark.fast



def col_norms(D: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(D, dim=0)


# --- make_sparse ------------------------------------------------------------------------------


def test_make_sparse_shapes_dtype_device(dtype, device):
    data = make_sparse(20, 30, 7, 3, snr_db=10.0, dtype=dtype, device=device)
    assert data.X.shape == (7, 20)
    assert data.D_star.shape == (20, 30)
    assert data.Z_star.shape == (7, 30)
    assert data.noise.shape == (7, 20)
    for t in (data.X, data.D_star, data.Z_star, data.noise):
        assert t.dtype == dtype
        assert t.device.type == device.type
    assert data.seed == 0


def test_make_sparse_float32_is_float64_rounded_once():
    d64 = make_sparse(10, 15, 20, 4, snr_db=5.0, seed=3)
    d32 = make_sparse(10, 15, 20, 4, snr_db=5.0, seed=3, dtype=torch.float32)
    for a, b in [(d64.X, d32.X), (d64.D_star, d32.D_star), (d64.Z_star, d32.Z_star)]:
        assert torch.equal(a.float(), b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_make_sparse_cpu_and_cuda_identical():
    cpu = make_sparse(10, 15, 20, 4, snr_db=5.0, seed=3)
    gpu = make_sparse(10, 15, 20, 4, snr_db=5.0, seed=3, device="cuda")
    assert torch.equal(cpu.X, gpu.X.cpu())
    assert torch.equal(cpu.Z_star, gpu.Z_star.cpu())


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"sign": "shared"},
        {"amplitude": "normal"},
        {"amplitude": "bernoulli-gaussian", "density": 0.2},
        {"dictionary": "orthogonal"},
        {"snr_db": 3.0},
    ],
)
def test_make_sparse_deterministic(kwargs):
    a = make_sparse(12, 12, 50, 3, seed=11, **kwargs)
    b = make_sparse(12, 12, 50, 3, seed=11, **kwargs)
    c = make_sparse(12, 12, 50, 3, seed=12, **kwargs)
    assert torch.equal(a.X, b.X) and torch.equal(a.Z_star, b.Z_star)
    assert torch.equal(a.D_star, b.D_star)
    assert not torch.equal(a.X, c.X)
    assert not torch.equal(a.D_star, c.D_star)


@pytest.mark.parametrize("s", [1, 5, 30])
def test_make_sparse_support_size_exact(s):
    data = make_sparse(20, 30, 500, s, seed=1)
    sizes = (data.Z_star != 0).sum(dim=1)
    assert bool((sizes == s).all())


def test_make_sparse_supports_are_uniform():
    p, s, n = 10, 3, 20000
    data = make_sparse(5, p, n, s, seed=2)
    frequency = (data.Z_star != 0).double().mean(dim=0)
    # each atom is active with probability s/p = 0.3; 5 standard errors
    assert torch.allclose(frequency, torch.full((p,), s / p, dtype=torch.float64),
                          atol=5 * math.sqrt(0.3 * 0.7 / n))


@pytest.mark.parametrize("amplitude", [(1.0, 2.0), (0.5, 0.7), (3.0, 3.0)])
def test_make_sparse_amplitudes_within_range(amplitude):
    a, b = amplitude
    data = make_sparse(20, 40, 300, 5, amplitude=amplitude, seed=4)
    magnitudes = data.Z_star[data.Z_star != 0].abs()
    assert magnitudes.numel() == 300 * 5
    assert float(magnitudes.min()) >= a and float(magnitudes.max()) <= b
    if a < b:  # uniform: the mean is near the centre
        assert abs(float(magnitudes.mean()) - (a + b) / 2) < 0.05 * (b - a)


def test_make_sparse_shared_sign_one_sign_per_sample():
    data = make_sparse(20, 40, 400, 6, sign="shared", seed=5)
    signs = torch.sign(data.Z_star)
    positive = (signs > 0).sum(dim=1)
    negative = (signs < 0).sum(dim=1)
    assert bool(((positive == 0) | (negative == 0)).all())
    share_positive = float((positive > 0).double().mean())
    assert 0.4 < share_positive < 0.6


def test_make_sparse_iid_signs_mix_within_a_sample():
    data = make_sparse(20, 40, 2000, 5, sign="iid", seed=6)
    signs = torch.sign(data.Z_star)
    mixed = ((signs > 0).any(dim=1) & (signs < 0).any(dim=1)).double().mean()
    # P(both signs among 5 iid signs) = 1 - 2/32 = 0.9375
    assert float(mixed) > 0.9


def test_make_sparse_normal_amplitude_moments():
    data = make_sparse(10, 20, 5000, 4, amplitude="normal", seed=7)
    values = data.Z_star[data.Z_star != 0]
    assert values.numel() == 5000 * 4
    assert abs(float(values.mean())) < 0.05
    assert abs(float(values.var()) - 1) < 0.05


def test_make_sparse_bernoulli_gaussian_density():
    data = make_sparse(10, 50, 4000, 0, amplitude="bernoulli-gaussian", density=0.3, seed=8)
    active = float((data.Z_star != 0).double().mean())
    assert abs(active - 0.3) < 5 * math.sqrt(0.3 * 0.7 / (4000 * 50))
    sizes = (data.Z_star != 0).sum(dim=1)
    assert int(sizes.min()) < int(sizes.max())  # the support size varies


def test_make_sparse_gaussian_dictionary_unit_columns():
    D = make_sparse(30, 60, 1, 1, seed=9).D_star
    assert torch.allclose(col_norms(D), torch.ones(60, dtype=D.dtype), atol=1e-14)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-13), (torch.float32, 1e-6)])
def test_make_sparse_orthogonal_dictionary(dtype, tol):
    D = make_sparse(25, 25, 1, 1, dictionary="orthogonal", seed=10, dtype=dtype).D_star
    eye = torch.eye(25, dtype=dtype)
    assert torch.allclose(D.T @ D, eye, atol=tol)
    assert torch.allclose(D @ D.T, eye, atol=tol)


def test_make_sparse_noiseless_is_exact_product():
    data = make_sparse(20, 30, 40, 4, seed=11)
    assert data.noise is None and data.noise_std is None
    assert torch.allclose(data.X, data.Z_star @ data.D_star.T, rtol=0, atol=1e-13)


@pytest.mark.parametrize("snr_db", [0.0, 5.0, 20.0])
def test_make_sparse_snr_within_tolerance(snr_db):
    data = make_sparse(50, 100, 2000, 5, snr_db=snr_db, seed=12)
    signal = data.X - data.noise
    measured = 10 * math.log10(float(signal.square().sum() / data.noise.square().sum()))
    assert abs(measured - snr_db) < 0.3
    assert torch.allclose(signal, data.Z_star @ data.D_star.T, atol=1e-12)
    assert abs(float(data.noise.std()) - data.noise_std) < 0.02 * data.noise_std


def test_make_sparse_given_dictionary_used_as_is():
    D = 3.0 * torch.randn(8, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    data = make_sparse(8, 12, 30, 2, dictionary=D, seed=13)
    assert torch.equal(data.D_star, D)
    assert torch.allclose(data.X, data.Z_star @ D.T, atol=1e-12)
    other = make_sparse(8, 12, 30, 2, dictionary=D, seed=14)
    assert not torch.equal(data.Z_star, other.Z_star)


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        ((10, 20, 5, 21), {}, "s must be at most p"),
        ((10, 20, 5, 0), {}, "s must be an integer >= 1"),
        ((10, 20, 5, -1), {"amplitude": "bernoulli-gaussian", "density": 0.1}, "s must be"),
        ((10, 20, 5, 2), {"dictionary": "orthogonal"}, "p == m"),
        ((10, 20, 5, 2), {"dictionary": "dct"}, "dictionary must be one of"),
        ((10, 20, 5, 2), {"snr_db": float("nan")}, "snr_db must be a finite"),
        ((10, 20, 5, 2), {"snr_db": float("inf")}, "snr_db must be a finite"),
        ((10, 20, 5, 2), {"amplitude": (2.0, 1.0)}, "amplitude must be a pair"),
        ((10, 20, 5, 2), {"amplitude": (-1.0, 1.0)}, "amplitude must be a pair"),
        ((10, 20, 5, 2), {"amplitude": "laplace"}, "amplitude must be one of"),
        ((10, 20, 5, 2), {"amplitude": "bernoulli-gaussian"}, "needs density"),
        ((10, 20, 5, 2), {"amplitude": "bernoulli-gaussian", "density": 0.0}, "density must"),
        ((10, 20, 5, 2), {"amplitude": "bernoulli-gaussian", "density": 1.5}, "density must"),
        ((10, 20, 5, 2), {"density": 0.5}, "density is only used"),
        ((10, 20, 5, 2), {"sign": "shared", "amplitude": "normal"}, "sign='shared' is only"),
        ((10, 20, 5, 2), {"sign": "random"}, "sign must be one of"),
        ((10, 20, 5, 2), {"seed": -1}, "seed must be"),
        ((0, 20, 5, 2), {}, "m must be"),
        ((10, 20, 0, 2), {}, "n must be"),
        ((10, 20, 5, 2), {"dictionary": torch.ones(10, 19, dtype=torch.float64)}, "shape"),
        ((10, 20, 5, 2), {"dictionary": torch.zeros(10, 20, dtype=torch.float64)}, "zero atoms"),
    ],
)
def test_make_sparse_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_sparse(*args, **kwargs)


def test_make_sparse_bad_dtype():
    with pytest.raises(TypeError, match="dtype"):
        make_sparse(10, 20, 5, 2, dtype=torch.int64)


# --- normalize_columns, project_columns -------------------------------------------------------


def test_normalize_and_project_columns(dtype):
    D = torch.tensor([[3.0, 0.3, 0.0], [4.0, 0.4, 2.0]], dtype=dtype)
    N = normalize_columns(D)
    assert torch.allclose(col_norms(N), torch.ones(3, dtype=dtype))
    assert torch.allclose(N[:, 0], torch.tensor([0.6, 0.8], dtype=dtype))
    P = project_columns(D)
    assert torch.allclose(P[:, 0], torch.tensor([0.6, 0.8], dtype=dtype))
    assert torch.equal(P[:, 1], D[:, 1])  # inside the unit ball: unchanged
    assert torch.allclose(P[:, 2], torch.tensor([0.0, 1.0], dtype=dtype))
    assert P.dtype == dtype and N.dtype == dtype


def test_normalize_columns_rejects_zero_atom():
    with pytest.raises(ValueError, match="zero atoms"):
        normalize_columns(torch.zeros(3, 2, dtype=torch.float64))


# --- perturb ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.01, 0.05])
def test_perturb_random_moves_columns_by_tau(tau):
    D_star = make_sparse(50, 100, 1, 1, seed=0).D_star
    D = perturb(D_star, tau, seed=0)  # same seed as D_star: the streams must be independent
    assert torch.allclose(col_norms(D), torch.ones(100, dtype=D.dtype), atol=1e-14)
    distances = col_norms(D - D_star)
    # normalisation removes the radial part of B: E||D_j - D*_j|| ~ tau sqrt((m-1)/m)
    assert 0.9 < float(distances.mean()) / tau < 1.05
    assert float(distances.max()) < 1.6 * tau


def test_perturb_tau_zero_and_determinism():
    D_star = make_sparse(20, 30, 1, 1, seed=1).D_star
    assert torch.allclose(perturb(D_star, 0.0, seed=3), D_star, atol=1e-15)
    assert torch.equal(perturb(D_star, 0.2, seed=3), perturb(D_star, 0.2, seed=3))
    assert not torch.equal(perturb(D_star, 0.2, seed=3), perturb(D_star, 0.2, seed=4))
    aligned = perturb(D_star, 0.2, seed=3, mode="aligned")
    assert torch.equal(aligned, perturb(D_star, 0.2, seed=3, mode="aligned"))


def test_perturb_aligned_closed_form_with_four_atoms():
    # with p = 4 the "3 other atoms" of atom i are all the others, so u_i is deterministic
    D_star = make_sparse(30, 4, 1, 1, seed=3).D_star
    tau = 0.4
    D = perturb(D_star, tau, seed=8, mode="aligned")
    for i in range(4):
        u = D_star.sum(dim=1) - D_star[:, i]
        expected = D_star[:, i] + tau * u / torch.linalg.vector_norm(u)
        assert torch.allclose(D[:, i], expected / torch.linalg.vector_norm(expected), atol=1e-14)
    assert coherence(D) > coherence(D_star)


def top3_cross_correlation(D: torch.Tensor) -> float:
    """Mean over atoms of the 3 largest |<D_i, D_j>|, j != i."""
    G = (D.T @ D).abs()
    G.fill_diagonal_(0.0)
    return float(G.topk(3, dim=1).values.mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perturb_aligned_moves_atoms_toward_other_atoms(seed):
    D_star = make_sparse(50, 100, 1, 1, seed=2).D_star
    tau = 0.5
    aligned = perturb(D_star, tau, seed=seed, mode="aligned")
    random = perturb(D_star, tau, seed=seed, mode="random")
    assert torch.allclose(col_norms(aligned), torch.ones(100, dtype=aligned.dtype), atol=1e-14)
    # the maximum coherence need not grow (an atom may leave its most coherent partner), but the
    # cross-talk with its nearest atoms does; random B, nearly orthogonal to every atom, leaves
    # it unchanged
    assert top3_cross_correlation(aligned) > top3_cross_correlation(D_star) + 0.01
    assert top3_cross_correlation(aligned) > top3_cross_correlation(random) + 0.01


def test_perturb_keeps_dtype(dtype):
    D_star = make_sparse(10, 12, 1, 1, dtype=dtype).D_star
    for mode in ("random", "aligned"):
        D = perturb(D_star, 0.1, mode=mode)
        assert D.dtype == dtype and D.shape == (10, 12)


@pytest.mark.parametrize(
    "tau,kwargs,p,match",
    [
        (-0.1, {}, 10, "tau must be"),
        (float("nan"), {}, 10, "tau must be"),
        (0.1, {"mode": "adversarial"}, 10, "mode must be one of"),
        (0.1, {"mode": "aligned"}, 3, "at least 4 atoms"),
    ],
)
def test_perturb_bad_input(tau, kwargs, p, match):
    D_star = make_sparse(10, p, 1, 1).D_star
    with pytest.raises(ValueError, match=match):
        perturb(D_star, tau, **kwargs)


# --- make_malezieux ---------------------------------------------------------------------------


def test_make_malezieux_model():
    data = make_malezieux(n=4000, seed=1)
    assert data.X.shape == (4000, 30) and data.A.shape == (30, 50)
    assert data.A is data.D_star
    assert torch.allclose(col_norms(data.A), torch.ones(50, dtype=data.A.dtype), atol=1e-14)
    active = float((data.Z_star != 0).double().mean())
    assert abs(active - 0.3) < 0.01
    assert abs(float(data.noise.std()) - 0.1) < 0.002
    assert torch.allclose(data.X, data.Z_star @ data.A.T + data.noise, atol=1e-12)
    perturbation = data.D_init - data.A
    expected = 0.5 * float(data.A.std(correction=0))
    assert abs(float(perturbation.std()) - expected) < 0.05 * expected
    assert not torch.allclose(col_norms(data.D_init), torch.ones(50, dtype=torch.float64))


def test_make_malezieux_determinism_and_float32():
    a, b = make_malezieux(n=50, seed=3), make_malezieux(n=50, seed=3)
    assert torch.equal(a.X, b.X) and torch.equal(a.D_init, b.D_init)
    assert not torch.equal(a.X, make_malezieux(n=50, seed=4).X)
    c = make_malezieux(n=50, seed=3, dtype=torch.float32)
    assert c.X.dtype == torch.float32 and torch.equal(c.D_init, a.D_init.float())


@pytest.mark.parametrize(
    "kwargs,match",
    [({"density": 0.0}, "density"), ({"noise_std": -1.0}, "noise_std"),
     ({"dict_noise": -0.5}, "dict_noise"), ({"n": 0}, "n must be")],
)
def test_make_malezieux_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_malezieux(**kwargs)


# --- make_group_sparse ------------------------------------------------------------------------


def test_make_group_sparse_model(dtype):
    n, n_groups, d, k = 300, 20, 3, 4
    data = make_group_sparse(n, n_groups, d, k, m=40, seed=2, dtype=dtype)
    p = n_groups * d
    assert data.X.shape == (n, 40) and data.D_star.shape == (40, p)
    assert data.Z_star.shape == (n, p) and data.groups.shape == (n, k)
    assert data.X.dtype == dtype and data.group_size == d and data.noise is None
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(col_norms(data.D_star), torch.ones(p, dtype=dtype), atol=tol)
    groups = data.groups
    assert bool((groups[:, 1:] > groups[:, :-1]).all())  # sorted, distinct
    block_norms = torch.linalg.vector_norm(data.Z_star.reshape(n, n_groups, d), dim=-1)
    active = block_norms > 0
    expected = torch.zeros(n, n_groups, dtype=torch.bool).scatter_(1, groups.cpu(), True)
    assert torch.equal(active.cpu(), expected)
    on = block_norms[active]
    assert float(on.min()) >= 4.0 - tol and float(on.max()) <= 5.0 + tol
    assert torch.allclose(data.X, data.Z_star @ data.D_star.T, atol=10 * tol)


def test_make_group_sparse_defaults_and_noise():
    data = make_group_sparse(2000, 25, 2, 3, snr_db=5.0, seed=3)
    assert data.D_star.shape == (50, 50)  # m defaults to n_groups * group_size
    signal = data.X - data.noise
    measured = 10 * math.log10(float(signal.square().sum() / data.noise.square().sum()))
    assert abs(measured - 5.0) < 0.3
    again = make_group_sparse(2000, 25, 2, 3, snr_db=5.0, seed=3)
    assert torch.equal(data.X, again.X)
    assert not torch.equal(data.X, make_group_sparse(2000, 25, 2, 3, snr_db=5.0, seed=4).X)


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        ((10, 5, 2, 6), {}, "n_active must be at most n_groups"),
        ((10, 5, 2, 0), {}, "n_active must be"),
        ((10, 5, 0, 2), {}, "group_size must be"),
        ((10, 5, 2, 2), {"b_min": 5.0, "b_max": 4.0}, "b_min and b_max"),
        ((10, 5, 2, 2), {"m": 0}, "m must be"),
        ((10, 5, 2, 2), {"snr_db": float("nan")}, "snr_db"),
    ],
)
def test_make_group_sparse_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_group_sparse(*args, **kwargs)


# --- make_conv_expfamily, sample_counts -------------------------------------------------------


def test_make_conv_expfamily_paper_defaults():
    data = make_conv_expfamily(n=4)
    assert data.Y.shape == (4, 500) and data.H_star.shape == (3, 50)
    assert data.X_star.shape == (4, 3, 451)
    assert data.family == "binomial" and data.trials == 25 and data.baseline == -2.0


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_make_conv_expfamily_model(family):
    n, length, C, K, events = 40, 120, 2, 15, 4
    trials = 7 if family == "binomial" else None
    data = make_conv_expfamily(
        n, length, C, K, family=family, trials=trials, n_events=events,
        amplitude=(1.0, 3.0), baseline=-1.0, seed=5,
    )
    H, X = data.H_star, data.X_star
    assert torch.allclose(torch.linalg.vector_norm(H, dim=1), torch.ones(C, dtype=H.dtype))
    assert X.shape == (n, C, length - K + 1)
    assert bool(((X != 0).sum(dim=-1) == events).all())
    values = X[X != 0]
    assert float(values.min()) >= 1.0 and float(values.max()) <= 3.0
    # linear predictor: full convolution, summed over filters, checked against numpy
    Hn, Xn = H.numpy(), X.numpy()
    eta = -1.0 + sum(np.convolve(Xn[0, c], Hn[c]) for c in range(C))
    mean = 1 / (1 + np.exp(-eta)) if family == "binomial" else np.exp(eta)
    np.testing.assert_allclose(data.mu[0].numpy(), mean, rtol=1e-12)
    Y = data.Y
    assert torch.equal(Y, Y.round()) and float(Y.min()) >= 0
    expected = data.mu * (trials if trials else 1)
    if trials:
        assert float(Y.max()) <= trials
    # law of large numbers over n * length counts
    assert abs(float(Y.mean() - expected.mean())) < 0.05 * float(expected.mean())


def test_make_conv_expfamily_determinism_and_float32():
    a = make_conv_expfamily(6, 80, 2, 10, seed=1)
    b = make_conv_expfamily(6, 80, 2, 10, seed=1)
    assert torch.equal(a.Y, b.Y) and torch.equal(a.H_star, b.H_star)
    assert not torch.equal(a.Y, make_conv_expfamily(6, 80, 2, 10, seed=2).Y)
    c = make_conv_expfamily(6, 80, 2, 10, seed=1, dtype=torch.float32)
    assert c.Y.dtype == torch.float32 and torch.equal(c.Y, a.Y.float())


def test_sample_counts_second_draw():
    data = make_conv_expfamily(6, 80, 2, 10, seed=1)
    second = sample_counts(data.mu, trials=25, seed=9)
    assert second.shape == data.Y.shape and second.dtype == data.Y.dtype
    assert torch.equal(second, sample_counts(data.mu, trials=25, seed=9))
    assert not torch.equal(second, data.Y)
    poisson = sample_counts(torch.full((3, 1000), 2.0, dtype=torch.float64), family="poisson")
    assert abs(float(poisson.mean()) - 2.0) < 0.1
    with pytest.raises(ValueError, match="mu must lie in"):
        sample_counts(torch.full((2,), 1.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="trials is only used"):
        sample_counts(data.mu, family="poisson", trials=3)


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        ((4, 50, 2, 60), {}, "filter_length must be at most length"),
        ((4, 50, 2, 10), {"n_events": 42}, "n_events must be at most"),
        ((4, 50, 2, 10), {"family": "gaussian"}, "family must be one of"),
        ((4, 50, 2, 10), {"family": "poisson", "trials": 5}, "trials is only used"),
        ((4, 50, 2, 10), {"trials": 0}, "trials must be"),
        ((4, 50, 2, 10), {"amplitude": (-1.0, 2.0)}, "amplitude must be"),
        ((4, 50, 2, 10), {"baseline": float("nan")}, "baseline must be a finite"),
    ],
)
def test_make_conv_expfamily_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_conv_expfamily(*args, **kwargs)
