"""BCOMP baseline (Tolooshams, Song, Temereanca & Ba, ICML 2020, Appendix Sec. 8, Algorithm 2):
optimality of the refits and of the filter update, the greedy rule against its definition,
filter recovery on a scaled-down version of the simulation of Sec. 5.2.1 (THEOREMS.md, E-SIM),
validation, determinism, dtypes and devices."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize

from baselines.bcomp import BCOMP, ConvergenceWarning, binomial_nll, refit
from udlbench import metrics
from udlbench.data import make_conv_expfamily, perturb, sample_counts
from udlbench.dictionaries import Convolutional

pytestmark = pytest.mark.fast

F64 = torch.float64
M = 25


def _simulation(n=200, length=200, filter_length=30, n_events=2, *, seed=0, dtype=F64):
    """Sec. 5.2.1 scaled down: C = 3 filters, M = 25 trials, 2 events per filter and example."""
    return make_conv_expfamily(
        n, length, 3, filter_length, n_events=n_events, trials=M, seed=seed, dtype=dtype
    )


def _start(H_star: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    return perturb(H_star.T, tau, seed=1).T


def _decode(codes: torch.Tensor, H: torch.Tensor, intercept: torch.Tensor, length: int):
    """``a + sum_c h_c * x_c`` with the shared convolutional dictionary, (n, N)."""
    return intercept.unsqueeze(1) + Convolutional(H.unsqueeze(1)).decode(codes, (length,)).squeeze(
        1
    )


def _atom_rows(support: torch.Tensor, H: torch.Tensor, length: int) -> torch.Tensor:
    """The picked atoms of each example as rows (n, T, N), decoded from one-hot codes."""
    n, T = support.shape
    C, K = H.shape
    one_hot = torch.zeros(n * T, C * (length - K + 1), dtype=H.dtype)
    one_hot[torch.arange(n * T), support.flatten()] = 1.0
    rows = Convolutional(H.unsqueeze(1)).decode(one_hot.reshape(n * T, C, -1), (length,))
    return rows.reshape(n, T, length)


def _per_trial_gradient(target, atoms, x, offset=0.0):
    """Gradient of ``sum_n softplus(eta) - target eta`` over x by autograd, (n, q)."""
    x = x.clone().requires_grad_(True)
    eta = offset + torch.einsum("jq,jqn->jn", x, atoms)
    (F.softplus(eta) - target * eta).sum().backward()
    return x.grad


def test_refit_meets_kkt_and_matches_scipy_lbfgsb():
    """A fitted intercept and six atoms, three of them from the wrong place: the refit reaches
    KKT residuals <= 1e-10, some coefficients sit on the bound, and L-BFGS-B finds the same
    minimum (objective to 1e-12 relative, coefficients to 1e-5)."""
    data = _simulation(3, 120, 20, seed=4)
    target = data.Y / M
    generator = torch.Generator().manual_seed(0)
    support = torch.stack([torch.randperm(3 * 101, generator=generator)[:6] for _ in range(3)])
    true_support = data.X_star.flatten(1).nonzero()[:, 1].reshape(3, -1)[:, :3]
    support[:, :3] = true_support
    atoms = torch.cat([torch.ones(3, 1, 120, dtype=F64), _atom_rows(support, data.H_star, 120)], 1)
    constrained = torch.tensor([False] + [True] * 6)
    x0 = torch.cat([torch.logit(target.mean(1, keepdim=True)), torch.zeros(3, 6, dtype=F64)], 1)
    x, kkt = refit(target, atoms, x0, constrained, tol=1e-10)

    assert float(kkt.max()) <= 1e-10
    grad = _per_trial_gradient(target, atoms, x)
    positive = constrained & (x > 0)
    at_zero = constrained & (x == 0)
    assert bool((x[:, 1:] >= 0).all())
    assert float(grad[positive].abs().max()) <= 1e-9
    assert float(grad[:, 0].abs().max()) <= 1e-9
    assert int(at_zero.sum()) >= 1 and float(grad[at_zero].min()) >= 0

    a = atoms[0].numpy()
    y = target[0].numpy()

    def objective(v):
        eta = v @ a
        return float(np.logaddexp(0, eta).sum() - y @ eta), a @ (1 / (1 + np.exp(-eta)) - y)

    reference = minimize(
        objective,
        x0[0].numpy(),
        jac=True,
        method="L-BFGS-B",
        bounds=[(None, None)] + [(0, None)] * 6,
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000},
    )
    ours = objective(x[0].numpy())[0]
    assert ours <= reference.fun + 1e-12 * abs(reference.fun)
    assert abs(ours - reference.fun) <= 1e-12 * abs(reference.fun)
    np.testing.assert_allclose(x[0].numpy(), reference.x, atol=1e-5)


def test_csc_codes_are_kkt_points_on_their_picked_atoms():
    """Every example's codes, refitted after the last pick, satisfy the KKT conditions of the
    non-negative GLM on the picked atoms (recomputed by autograd through the shared decoder)."""
    data = _simulation(20)
    coding = BCOMP(n_nonzero=6).code(data.Y, data.H_star)
    tol = math.sqrt(torch.finfo(F64).eps)
    assert float(coding.kkt.max()) <= tol

    support = coding.support
    assert all(len(set(row.tolist())) == 6 for row in support)
    codes = coding.codes.flatten(1)
    assert bool((codes >= 0).all()) and int((codes != 0).sum(1).max()) <= 6
    outside = torch.ones_like(codes, dtype=torch.bool).scatter_(1, support, False)
    assert bool((codes[outside] == 0).all())

    atoms = torch.cat([torch.ones(20, 1, 200, dtype=F64), _atom_rows(support, data.H_star, 200)], 1)
    x = torch.cat([coding.intercept.unsqueeze(1), codes.gather(1, support)], 1)
    eta = _decode(coding.codes, data.H_star, coding.intercept, 200)
    torch.testing.assert_close(torch.einsum("jq,jqn->jn", x, atoms), eta)
    grad = _per_trial_gradient(data.Y / M, atoms, x)
    assert float(grad[:, 0].abs().max()) <= 1.01 * tol
    coefficients, gradient = x[:, 1:], grad[:, 1:]
    assert float(gradient[coefficients > 0].abs().max()) <= 1.01 * tol
    at_zero = gradient[coefficients == 0]
    assert at_zero.numel() == 0 or float(at_zero.min()) >= -1.01 * tol


@pytest.mark.parametrize("baseline", [None, -2.0, 1.0])
def test_picks_maximise_correlation_with_working_observation(baseline):
    """Pick t is the atom not yet picked of largest ``(h_c * (y - M sigmoid(eta)))[n]``
    (Algorithm 2, lines 6-7), computed here with the shared ``Convolutional.adjoint``. The
    offset 1.0, above the data's -2, makes the residuals mostly negative, so that the largest
    correlation and the largest absolute correlation pick different atoms."""
    data = _simulation(30)
    dictionary = Convolutional(data.H_star.unsqueeze(1))
    first = BCOMP(n_nonzero=1, baseline=baseline).code(data.Y, data.H_star)
    second = BCOMP(n_nonzero=2, baseline=baseline).code(data.Y, data.H_star)
    if baseline is None:
        offset = torch.logit(data.Y.mean(1, keepdim=True) / M)
    else:
        offset = torch.full((30, 1), baseline, dtype=F64)
    residual = data.Y - M * torch.sigmoid(offset.expand(-1, 200))
    correlation = dictionary.adjoint(residual.unsqueeze(1)).flatten(1)
    assert torch.equal(first.support[:, 0], correlation.argmax(1))
    assert torch.equal(second.support[:, 0], first.support[:, 0])

    eta = _decode(first.codes, data.H_star, first.intercept, 200)
    correlation = dictionary.adjoint((data.Y - M * torch.sigmoid(eta)).unsqueeze(1)).flatten(1)
    correlation.scatter_(1, first.support, -math.inf)
    assert torch.equal(second.support[:, 1], correlation.argmax(1))


def test_cdu_solves_the_ball_constrained_problem_then_rescales():
    """The filter update is a minimiser of the mean per-trial NLL over ``||h_c|| <= 1`` (its
    gradient mapping, by autograd through the shared decoder, vanishes), lowers the objective,
    and its unit-norm rescaling leaves the linear predictor unchanged."""
    data = _simulation(100)
    model = BCOMP(n_nonzero=6)
    H0 = _start(data.H_star)
    coding = model.code(data.Y, H0)
    H, codes, gradient_map = model.update_filters(data.Y, H0, coding.codes, coding.intercept)
    assert gradient_map <= model.cdu_tol
    torch.testing.assert_close(torch.linalg.vector_norm(H, dim=1), torch.ones(3, dtype=F64))
    nonzero = coding.codes != 0
    factors = torch.stack([(codes / coding.codes)[:, c][nonzero[:, c]].mean() for c in range(3)])
    torch.testing.assert_close(codes, coding.codes * factors.reshape(1, 3, 1))
    assert bool((factors <= 1 + 1e-12).all())
    H_ball = H * factors.unsqueeze(1)

    target = data.Y / M

    def objective(filters):
        eta = _decode(coding.codes, filters, coding.intercept, 200)
        return (F.softplus(eta) - target * eta).sum(1).mean()

    variable = H_ball.clone().requires_grad_(True)
    objective(variable).backward()
    projected = variable.detach() - variable.grad
    projected = projected / torch.linalg.vector_norm(projected, dim=1, keepdim=True).clamp(min=1)
    assert float(torch.linalg.vector_norm(H_ball - projected)) <= 10 * model.cdu_tol
    assert float(objective(H_ball)) < float(objective(H0))
    torch.testing.assert_close(
        _decode(codes, H, coding.intercept, 200),
        _decode(coding.codes, H_ball, coding.intercept, 200),
    )


@pytest.mark.parametrize("baseline", [None, -2.0])
def test_recovers_filters_of_scaled_down_simulation(baseline):
    """Sec. 5.2.1 scaled down (J = 200, N = 200, K = 30, 6 events, M = 25), start at sine
    ~0.45: after G = 5 rounds with T = 6 every filter error is below 0.1 (measured 0.060 with
    fitted intercepts, 0.059 with the known baseline); the records hold the NLL of the returned
    codes and filters and converged refits."""
    data = _simulation()
    H0 = _start(data.H_star)
    model = BCOMP(n_nonzero=6, baseline=baseline).fit(data.Y, H0, H_star=data.H_star)
    records = model.records_
    assert records["error"].iloc[0] > 0.35
    assert records["error"].iloc[-1] < 0.1
    assert list(records["step"]) == list(range(6)) and list(records["epoch"]) == list(range(6))
    assert records["time"].is_monotonic_increasing
    assert float(records["refit_kkt"].iloc[1:].max()) <= math.sqrt(torch.finfo(F64).eps)
    errors = [records[f"error_filter_{c}"].iloc[-1] for c in range(3)]
    assert records["error"].iloc[-1] == max(errors)
    sines = metrics.atom_sines(model.filters_.T, data.H_star.T)
    assert sorted(errors) == pytest.approx(sorted(sines.tolist()))
    eta = _decode(model.codes_, model.filters_, model.intercept_, 200)
    assert records["loss"].iloc[-1] == pytest.approx(float(binomial_nll(data.Y, eta, M).mean()))
    if baseline is not None:
        assert bool((model.intercept_ == baseline).all())


def test_too_few_picks_do_not_recover_the_filters():
    """Negative control: with T = 1 pick for 6 events per example, the same start and data end
    with a filter error above 0.15 (measured 0.218)."""
    data = _simulation()
    model = BCOMP(n_nonzero=1).fit(data.Y, _start(data.H_star), H_star=data.H_star)
    assert model.records_["error"].iloc[-1] > 0.15


@pytest.mark.slow
def test_recovers_filters_at_paper_length_and_fails_from_random_filters():
    """Sec. 5.2.1 sizes except J (500 of 1000 examples): N = 500, K = 50, 15 events, T = 15,
    G = 5. From a perturbed start the filter errors fall below 0.1 (measured 0.037; 0.028 at
    J = 1000); from N(0, 1) filters, the negative control, they stay above 0.5 (measured 0.995:
    BCOMP is a local method)."""
    data = _simulation(500, 500, 50, 5)
    model = BCOMP(n_nonzero=15).fit(data.Y, _start(data.H_star), H_star=data.H_star)
    assert model.records_["error"].iloc[-1] < 0.1
    random = torch.randn(3, 50, generator=torch.Generator().manual_seed(5), dtype=F64)
    control = BCOMP(n_nonzero=15).fit(data.Y, random, H_star=data.H_star)
    assert control.records_["error"].iloc[-1] > 0.5


@pytest.mark.parametrize(
    "option",
    [
        {"n_nonzero": 0},
        {"n_nonzero": 2.0},
        {"trials": 0},
        {"trials": 2.5},
        {"n_iter": 0},
        {"baseline": math.nan},
        {"baseline": "zero"},
        {"n_refit_iter": 0},
        {"refit_tol": 0.0},
        {"n_cdu_iter": 0},
        {"cdu_tol": -1e-3},
        {"cdu_step": 0.0},
    ],
)
def test_options_are_validated_by_name(option):
    (name,) = option
    options = {"n_nonzero": 3, **option}
    with pytest.raises(ValueError, match=name):
        BCOMP(**options)


@pytest.mark.parametrize(
    "corrupt",
    [lambda Y: Y + 0.5, lambda Y: Y + M + 1, lambda Y: Y - M - 1],
    ids=["fractional", "above_M", "negative"],
)
def test_counts_must_be_integers_in_range(corrupt):
    data = _simulation(5, 60, 10)
    Y = data.Y.clone()
    Y[2, 7] = corrupt(Y[2, 7])
    with pytest.raises(
        ValueError, match=r"Y must hold integer counts in \[0, trials\] = \[0, 25\]"
    ):
        BCOMP(n_nonzero=2).fit(Y, data.H_star)


def test_rows_without_variation_need_a_known_baseline():
    data = _simulation(5, 60, 10)
    Y = data.Y.clone()
    Y[1] = 0
    with pytest.raises(ValueError, match="all 0 or all trials"):
        BCOMP(n_nonzero=2).fit(Y, data.H_star)
    BCOMP(n_nonzero=2, baseline=-2.0, n_iter=1).fit(Y, data.H_star)


def test_shapes_and_sparsity_are_validated():
    data = _simulation(5, 60, 10)
    with pytest.raises(ValueError, match="H0 has filter length K = 61"):
        BCOMP(n_nonzero=2).fit(data.Y, torch.randn(3, 61, dtype=F64))
    with pytest.raises(ValueError, match=r"n_nonzero must be at most .* = 153"):
        BCOMP(n_nonzero=154).fit(data.Y, data.H_star)
    with pytest.raises(ValueError, match="H_star has shape"):
        BCOMP(n_nonzero=2).fit(data.Y, data.H_star, H_star=data.H_star[:2])
    with pytest.raises(ValueError, match="zero filters"):
        BCOMP(n_nonzero=2).fit(data.Y, data.H_star * torch.tensor([[1.0], [0.0], [1.0]], dtype=F64))
    with pytest.raises(TypeError, match="dtype"):
        BCOMP(n_nonzero=2).fit(data.Y, data.H_star.float())
    with pytest.raises(TypeError, match="Y must have dtype"):
        BCOMP(n_nonzero=2).fit(data.Y.long(), data.H_star)
    with pytest.raises(RuntimeError, match="not fitted"):
        BCOMP(n_nonzero=2).encode(data.Y)


def test_same_data_same_result_and_seed_changes_it():
    data = _simulation(60, 120, 20)
    H0 = _start(data.H_star)
    fits = [BCOMP(n_nonzero=6, n_iter=2).fit(data.Y, H0, H_star=data.H_star) for _ in range(2)]
    assert torch.equal(fits[0].filters_, fits[1].filters_)
    assert torch.equal(fits[0].codes_, fits[1].codes_)
    columns = [c for c in fits[0].records_.columns if c != "time"]
    assert fits[0].records_[columns].equals(fits[1].records_[columns])
    other = _simulation(60, 120, 20, seed=1)
    refitted = BCOMP(n_nonzero=6, n_iter=2).fit(other.Y, H0)
    assert not torch.allclose(refitted.filters_, fits[0].filters_)


def test_float32_matches_float64():
    """The float32 run keeps its dtype, converges its refits to sqrt(eps_32), and ends within
    1e-3 of the float64 filter errors (measured difference 3e-4)."""
    runs = {}
    for dtype in (torch.float32, F64):
        data = _simulation(100, 150, 20, dtype=dtype)
        model = BCOMP(n_nonzero=6, n_iter=3).fit(data.Y, _start(data.H_star), H_star=data.H_star)
        assert model.filters_.dtype == dtype and model.codes_.dtype == dtype
        assert model.records_["refit_kkt"].iloc[-1] <= math.sqrt(torch.finfo(dtype).eps)
        runs[dtype] = model.records_
    for column in ("error_filter_0", "error_filter_1", "error_filter_2"):
        assert runs[torch.float32][column].iloc[-1] == pytest.approx(
            runs[F64][column].iloc[-1], abs=1e-3
        )
    assert runs[torch.float32]["error"].iloc[-1] < 0.2


def test_runs_on_device(device):
    data = _simulation(40, 100, 20)
    H0 = _start(data.H_star)
    model = BCOMP(n_nonzero=6, n_iter=2).fit(
        data.Y.to(device), H0.to(device), H_star=data.H_star.to(device)
    )
    assert model.filters_.device.type == device.type
    reference = BCOMP(n_nonzero=6, n_iter=2).fit(data.Y, H0)
    torch.testing.assert_close(model.filters_.cpu(), reference.filters_, atol=1e-8, rtol=0)


def test_callback_stops_the_loop_and_sees_unit_filters():
    data = _simulation(40, 100, 20)
    seen = []

    def callback(row, H):
        seen.append(torch.linalg.vector_norm(H, dim=1))
        return row["step"] == 2

    model = BCOMP(n_nonzero=6).fit(data.Y, 3 * _start(data.H_star), callback=callback)
    assert model.n_iter_ == 2 and len(model.records_) == 3
    for norms in seen:
        torch.testing.assert_close(norms, torch.ones(3, dtype=F64))


def test_unconverged_refits_warn():
    data = _simulation(20, 100, 20)
    with pytest.warns(ConvergenceWarning, match="n_refit_iter=1"):
        BCOMP(n_nonzero=4, n_refit_iter=1, refit_tol=1e-14).fit(data.Y, data.H_star)


def test_encode_gives_sparse_nonnegative_codes_of_new_counts():
    data = _simulation(40, 100, 20)
    model = BCOMP(n_nonzero=6, n_iter=2).fit(data.Y, _start(data.H_star))
    fresh = sample_counts(data.mu, trials=M, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        codes = model.encode(fresh)
    assert codes.shape == data.X_star.shape
    assert bool((codes >= 0).all()) and int((codes.flatten(1) != 0).sum(1).max()) <= 6
