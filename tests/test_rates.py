"""Rate fits, windows and support settle times (THEOREMS.md Sec. 0.7)."""

import math

import numpy as np
import pytest
import torch

from udlbench import rates

pytestmark = pytest.mark.fast


def test_fit_recovers_a_known_linear_rate_and_t_factor():
    t = np.arange(10, 200)
    fit = rates.fit_log_linear(t, 3.0 * 0.9**t)
    assert fit.rate == pytest.approx(0.9, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0)
    with_t = rates.fit_log_linear(t, 2.0 * t * 0.8**t, with_log_t=True)
    assert with_t.log_t_coef == pytest.approx(1.0, abs=1e-9)
    assert with_t.rate == pytest.approx(0.8, rel=1e-9)
    assert (with_t.t_first, with_t.t_last, with_t.n_points) == (10, 199, 190)


def test_window_starts_late_and_stops_at_the_floor():
    errors = np.concatenate([np.full(20, 1.0), 0.5 ** np.arange(1, 60)])
    index = rates.window(errors, start=25, floor=1e-12)
    assert index[0] == 25
    assert errors[index].min() > 1e-12 and errors[index[-1] + 1] <= 1e-12
    assert rates.window(errors, start=75, floor=1e-12) is None  # fewer than 8 points left
    fit = rates.fit_window(errors, start=25, floor=1e-12)
    assert fit.rate == pytest.approx(0.5)


def test_settle_times_find_the_last_support_change():
    limit = torch.tensor([[1.0, 0.0], [0.0, -2.0]])
    iterates = torch.stack([
        torch.tensor([[0.0, 0.0], [0.0, 0.0]]),
        torch.tensor([[0.5, 0.1], [0.0, -1.0]]),
        torch.tensor([[0.9, 0.0], [0.0, 1.0]]),
        torch.tensor([[1.0, 0.0], [0.0, -2.0]]),
    ])
    assert rates.settle_times(iterates, limit).tolist() == [1, 2]
    assert rates.settle_times(iterates, limit, signed=False).tolist() == [1, 0]
    assert rates.settle_times(iterates[-1:], limit).tolist() == [-1, -1]


def test_loglog_slope_and_bad_input():
    lam = [0.025, 0.05, 0.1, 0.2]
    assert rates.loglog_slope(lam, [3 * x**2 for x in lam]).slope == pytest.approx(2.0)
    with pytest.raises(ValueError, match="min_points"):
        rates.fit_log_linear(np.arange(3), np.ones(3))
    with pytest.raises(ValueError, match="positive"):
        rates.fit_log_linear(np.arange(10), np.zeros(10))
    assert math.isclose(rates.fit_log_linear(np.arange(8), np.ones(8)).slope, 0, abs_tol=1e-15)


def test_local_rate_is_the_norm_of_the_exact_local_map():
    """rho_S = ||I - alpha D_S^T D_S||_2 on the support (TMLR 2023, Thm 4.3); 0 for an empty
    support."""
    g = torch.Generator().manual_seed(0)
    D = torch.randn(10, 6, generator=g, dtype=torch.float64)
    Z = torch.zeros(2, 6, dtype=torch.float64)
    Z[0, [1, 4]] = torch.tensor([0.5, -2.0], dtype=torch.float64)
    alpha = 0.05
    S = [1, 4]
    expected = torch.linalg.matrix_norm(
        torch.eye(2, dtype=torch.float64) - alpha * D[:, S].T @ D[:, S], ord=2)
    assert np.allclose(rates.local_rate(D, Z, alpha), [float(expected), 0.0], atol=1e-14)
