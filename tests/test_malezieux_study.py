"""Tests of udlbench.malezieux: Malezieux, Moreau & Kowalski (ICLR 2022) Figures 1-4 and 6 as a
study. Building blocks against their definitions (the Thm 2.4 recursion against autograd, the
closed-form J* against implicit differentiation, truncated back-propagation against the
encoder's ``backprop_depth``, the angle formulas, the line searches), option errors, a smoke run
of every figure with render, determinism, and (slow) the quick profile's qualitative result."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from udlbench import encoders, jacobians, lasso, malezieux
from udlbench.data import make_malezieux, normalize_columns

TINY = {
    **malezieux.QUICK,
    "m": 8, "p": 12, "n_jacobian": 6, "n_rows": 3, "jacobian_iterations": 40,
    "truncation_depths": [5], "n_gradient": 30, "gradient_iterations": 12,
    "n_gradient_points": 4, "backprop_depths": [5, 0], "n_problems": 1, "n_learning": 40,
    "learning_depths": [5], "max_steps": 3, "stochastic_m": 8, "stochastic_p": 12,
    "n_stochastic": 60, "batch_sizes": [10, 60], "stochastic_layers": 5, "epochs": 2,
    "iterations_per_epoch": 2,
}


def small_problem(n=4, seed=0):
    problem = make_malezieux(6, 9, n, seed=seed)
    return problem.X, problem.D_init


def autograd_row_jacobians(X, D, rows, n_layers, **options):
    """d z_N / d D[l, k] for l in rows by autograd through ``encoders.ista`` (step fixed)."""
    alpha = options.pop("alpha")
    full = torch.autograd.functional.jacobian(
        lambda W: encoders.ista(X, W, lam=0.1, n_layers=n_layers, alpha=alpha, **options), D)
    return full[:, :, rows, :]  # (n, p, R, p)


def test_recursion_matches_autograd_through_ista():
    """Thm 2.4's recursion (row_jacobian_step from J^0 = 0) equals autograd of unrolled ISTA
    with the step held constant, for N = 1 and 15, to 1e-10 relative."""
    X, D = small_problem()
    rows, alpha = [0, 3, 5], 1.0 / float(torch.linalg.matrix_norm(D, ord=2)) ** 2
    trace = encoders.ista(X, D, lam=0.1, n_layers=15, alpha=alpha, trace=True)
    J = torch.zeros(X.shape[0], D.shape[1], len(rows), D.shape[1], dtype=D.dtype)
    for t in range(15):
        J = malezieux.row_jacobian_step(J, trace[t], trace[t + 1], X, D, rows, alpha=alpha)
        if t + 1 in (1, 15):
            reference = autograd_row_jacobians(X, D, rows, t + 1, alpha=alpha)
            assert float((J - reference).abs().max()) <= 1e-10 * float(reference.abs().max())
            assert float(reference.abs().max()) > 0


def test_truncated_errors_match_the_encoders_backprop_depth():
    """jacobian_errors with start = N - K (J^{N-K} = 0, Prop. 2.5) gives the error of the
    autograd Jacobian of ISTA run with ``backprop_depth=K`` (N = 12, K = 4), and differs from
    full back-propagation (the truncation is not a no-op)."""
    X, D = small_problem()
    rows, alpha, N, K = [1, 2], 1.0 / float(torch.linalg.matrix_norm(D, ord=2)) ** 2, 12, 4
    Z_star = lasso.solve(X, D, lam=0.1)
    J_star = malezieux.closed_form_row_jacobians(X, D, Z_star, rows)
    trace = encoders.ista(X, D, lam=0.1, n_layers=N, alpha=alpha, trace=True)
    truncated = malezieux.jacobian_errors(X, D, trace, J_star, rows, alpha=alpha,
                                          start=N - K, stop=N)[-1]
    reference = autograd_row_jacobians(X, D, rows, N, alpha=alpha, backprop_depth=K)
    expected = torch.linalg.vector_norm(reference - J_star, dim=(1, 3)).mean(-1)
    assert torch.allclose(truncated, expected, rtol=1e-10, atol=0)
    full = malezieux.jacobian_errors(X, D, trace, J_star, rows, alpha=alpha)[-1]
    assert float((full - truncated).abs().max()) > 1e-6


def test_closed_form_matches_implicit_differentiation():
    """J*_l[:, k] of Thm 2.4 equals ``jacobians.jvp_closed_form`` in the direction E = e_l
    e_k^T (THEOREMS.md Sec. 0.5), to 1e-12 relative; and it is zero off supp(z*)."""
    X, D = small_problem(n=5)
    Z_star = lasso.solve(X, D, lam=0.1)
    rows = [0, 4]
    J_star = malezieux.closed_form_row_jacobians(X, D, Z_star, rows)
    scale = float(J_star.abs().max())
    for r, l in enumerate(rows):
        for k in (0, 3, 8):
            E = torch.zeros_like(D)
            E[l, k] = 1.0
            tangent = jacobians.jvp_closed_form(X, D, E, Z_star)
            assert float((J_star[:, :, r, k] - tangent).abs().max()) <= 1e-12 * scale
    off = (Z_star == 0)[:, :, None, None].expand_as(J_star)
    assert float(J_star[off].abs().max()) == 0.0


def test_full_backprop_error_starts_at_err0_and_converges():
    """err_0 = mean_l ||J*_l|| (J^0 = 0), and after 3000 ISTA iterations on a settled support
    the error of full back-propagation is below 1e-6 err_0 (linear convergence, Cor. 2.6)."""
    X, D = small_problem(n=3)
    rows = [0, 1, 2]
    alpha = 1.0 / float(torch.linalg.matrix_norm(D, ord=2)) ** 2
    Z_star = lasso.solve(X, D, lam=0.1)
    J_star = malezieux.closed_form_row_jacobians(X, D, Z_star, rows)
    trace = encoders.ista(X, D, lam=0.1, n_layers=3000, alpha=alpha, trace=True)
    errors = malezieux.jacobian_errors(X, D, trace, J_star, rows, alpha=alpha)
    err0 = torch.linalg.vector_norm(J_star, dim=(1, 3)).mean(-1)
    assert torch.allclose(errors[0], err0, rtol=1e-14)
    assert bool((errors[-1] < 1e-6 * err0).all())


def test_cosine_and_relative_angle_gain_follow_their_definitions():
    """<g, h> = Tr(g^T h) / (||g|| ||h||): 1 for g, 2g; -1 for g, -g; 0 for orthogonal. Gain =
    (<g2,g*> - <g1,g*>) / (1 - <g1,g*>): 1 when g2 = g*, 0 when g2 = g1, NaN when g1 = g*."""
    g = torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=torch.float64)
    h = torch.tensor([[2.0, -1.0], [3.0, 0.0]], dtype=torch.float64)
    assert malezieux.cosine(g, 2 * g) == pytest.approx(1.0, abs=1e-15)
    assert malezieux.cosine(g, -g) == pytest.approx(-1.0, abs=1e-15)
    assert malezieux.cosine(g, h) == pytest.approx(0.0, abs=1e-15)
    g1 = g + 0.3 * h
    assert malezieux.relative_angle_gain(g, g1, g) == pytest.approx(1.0, rel=1e-12)
    assert malezieux.relative_angle_gain(g1, g1, g) == 0.0
    c1 = malezieux.cosine(h + g, g)
    expected = (malezieux.cosine(h, g) - c1) / (1 - c1)
    assert malezieux.relative_angle_gain(h, h + g, g) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(malezieux.relative_angle_gain(g, g, g))


def test_backtrack_decreases_or_reports_no_step():
    """backtrack halves the step until the projected candidate lowers the loss (the accepted
    step is the first such one), returns unit-norm atoms, and returns None when no step
    decreases the loss."""
    D = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    loss = lambda W: float(((W - target) ** 2).sum())  # noqa: E731
    g = D - target
    D_new, value, eta = malezieux.backtrack(loss, D, g, loss(D), 8.0)
    assert value == loss(D_new) < loss(D)
    assert eta == 8.0 or loss(normalize_columns(D - 2 * eta * g)) >= loss(D)
    assert torch.allclose(torch.linalg.vector_norm(D_new, dim=0), torch.ones(2, dtype=D.dtype))
    tiny_step = malezieux.backtrack(lambda W: float(((W - D) ** 2).sum()) - 1e-3, D, g, 0.0, 8.0)
    assert tiny_step is not None and tiny_step[2] < 8.0
    assert malezieux.backtrack(lambda W: 1.0, D, g, 1.0, 1.0) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["am", "ddl"])
def test_line_search_descent_is_monotone(method, dtype):
    """Every accepted step of the projected line search lowers G_N (its contract), the reported
    solver time is non-decreasing, and the start is G_N at the normalised D_init; float32 and
    float64."""
    problem = make_malezieux(8, 12, 50, seed=1, dtype=dtype)
    record = []
    steps = malezieux.line_search_descent(
        problem.X, problem.D_init, lam=0.1, n_layers=5, method=method, max_steps=6,
        callback=lambda step, D, value, seconds: record.append((step, value, seconds)))
    values = [value for _, value, _ in record]
    assert steps == len(record) - 1 >= 2
    assert all(b < a for a, b in zip(values, values[1:], strict=False))
    assert all(b >= a for (*_, a), (*_, b) in zip(record, record[1:], strict=False))
    start = malezieux.approximate_loss(problem.X, normalize_columns(problem.D_init), lam=0.1,
                                       n_layers=5)
    assert values[0] == pytest.approx(start, rel=1e-12)
    with pytest.raises(ValueError, match="method"):
        malezieux.line_search_descent(problem.X, problem.D_init, lam=0.1, n_layers=5,
                                      method="sgd", max_steps=1)


def test_stochastic_line_search_is_deterministic_and_calls_back_per_iteration():
    """Same generator seed -> same dictionaries; epochs x iterations + 1 callbacks; a different
    minibatch seed gives a different path."""
    problem = make_malezieux(8, 12, 80, seed=2)
    D0 = torch.randn(8, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def path(seed):
        seen = []
        malezieux.stochastic_line_search(
            problem.X, D0, lam=0.1, n_layers=5, batch_size=10, epochs=2,
            iterations_per_epoch=3, generator=torch.Generator().manual_seed(seed),
            callback=lambda step, D, seconds: seen.append(D.clone()))
        return seen

    first, again, other = path(0), path(0), path(1)
    assert len(first) == 7
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[-1], other[-1])
    assert not torch.equal(first[-1], first[0])


def test_log_grid():
    assert malezieux.log_grid(100, 3) == [1, 10, 100]
    grid = malezieux.log_grid(1000, 60)
    assert grid[0] == 1 and grid[-1] == 1000 and grid == sorted(set(grid))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"figures": ["fig5"]}, "figures must be one of"),
        ({"figures": []}, "figures must be a non-empty list"),
        ({"n_rows": 40}, "n_rows must be <= m = 30; got 40"),
        ({"lam": 0}, "lam must be a finite number > 0; got 0"),
        ({"backprop_depths": [20, -1]}, "backprop_depths must be an integer >= 0; got -1"),
        ({"learning_depths": [0]}, "learning_depths must be an integer >= 1; got 0"),
        ({"batch_sizes": [50, 5000]}, "batch_sizes must be <= n_stochastic = 1000; got 5000"),
        ({"epochs": 1.5}, "epochs must be an integer >= 1; got 1.5"),
        ({"colour": 1}, r"unknown option\(s\) \['colour'\]; the valid options are"),
    ],
)
def test_check_names_the_option_value_and_range(change, message):
    with pytest.raises(ValueError, match=message):
        malezieux.check({**malezieux.QUICK, **change})


def test_check_accepts_both_profiles_and_requires_every_key():
    malezieux.check(malezieux.QUICK)
    malezieux.check(malezieux.FULL)
    options = dict(malezieux.QUICK)
    del options["epochs"]
    with pytest.raises(ValueError, match=r"missing option\(s\) \['epochs'\]"):
        malezieux.check(options)


@pytest.fixture(scope="module")
def tiny_run():
    return malezieux.run(TINY, seed=3, dtype=torch.float64)


def test_run_smoke_all_figures_and_render(tiny_run, tmp_path):
    """run on tiny options makes every figure as a tidy table with the documented columns; the
    Fig. 2 fraction matches its per-sample flags and interval; fig3 cosines lie in [-1, 1];
    render writes PNG + SVG per figure, the summary CSV, and a section citing the paper's 40 %."""
    table = tiny_run
    assert list(table.columns) == [*malezieux.COLUMNS, "compute_dtype", "seed"]
    assert set(table["figure"]) == set(malezieux.FIGURES)
    flags = table[(table["figure"] == "fig2") & (table["metric"] == "unstable")]["value"]
    fraction = table[table["metric"] == "unstable_fraction"]["value"].iloc[0]
    assert len(flags) == TINY["n_jacobian"] and fraction == pytest.approx(flags.mean())
    low = table[table["metric"] == "ci95_low"]["value"].iloc[0]
    high = table[table["metric"] == "ci95_high"]["value"].iloc[0]
    assert low <= fraction <= high
    cosines = table[table["metric"] == "cosine"]["value"]
    assert cosines.between(-1 - 1e-12, 1 + 1e-12).all()
    assert set(table[table["figure"] == "fig3"]["method"]) == {"am", "ddl", "ddl-K5"}
    assert set(table[table["figure"] == "fig6"]["batch_size"]) == {10, 60}
    steps = table[(table["figure"] == "fig6")].groupby("batch_size")["step"].max()
    assert (steps == TINY["epochs"] * TINY["iterations_per_epoch"]).all()
    fragment = malezieux.render(table, tmp_path)
    for figure in malezieux.FIGURES:
        for suffix in ("png", "svg"):
            assert (tmp_path / f"malezieux_{figure}.{suffix}").stat().st_size > 0
        assert f"malezieux_{figure}.png" in fragment
    assert (tmp_path / "malezieux_summary.csv").exists()
    assert fragment.startswith("<section><h2>") and "40 %" in fragment
    assert "not available offline" in fragment and "<table" in fragment


def test_run_is_deterministic_for_a_seed(tiny_run):
    """Same seed -> the same values (timings aside); another seed -> other values; a subset of
    figures gives exactly that subset."""
    again = malezieux.run(TINY, seed=3, dtype=torch.float64)
    pd.testing.assert_frame_equal(tiny_run.drop(columns="time_s"), again.drop(columns="time_s"))
    other = malezieux.run({**TINY, "figures": ["fig3"]}, seed=4, dtype=torch.float64)
    assert set(other["figure"]) == {"fig3"}
    mine = tiny_run[tiny_run["figure"] == "fig3"].reset_index(drop=True)
    assert not np.allclose(mine["value"], other["value"])


def test_run_trains_in_float32():
    """Figs 4 and 6 train in the runner's dtype (recorded), Figs 1-3 in float64; fig1 alone
    runs the Jacobian study without fig2 rows."""
    table = malezieux.run({**TINY, "figures": ["fig1", "fig4", "fig6"]}, seed=5,
                          dtype=torch.float32)
    dtypes = table.groupby("figure")["compute_dtype"].first().to_dict()
    assert dtypes == {"fig1": "float64", "fig4": "float32", "fig6": "float32"}
    assert np.isfinite(table["value"]).all()
    with pytest.raises(ValueError, match="dtype must be"):
        malezieux.run(TINY, seed=0, dtype=torch.int64)


@pytest.mark.slow
def test_quick_profile_orderings():
    """The QUICK profile on seed 0, asserting what held on seeds 0 and 1 (N <= 1000 ISTA
    iterations, 10 of 30 rows, 1000 gradient samples):

    * Fig. 2: the Clopper-Pearson 95 % interval of the unstable fraction intersects [0.25, 0.55]
      (measured 19/50 = 38 %, [0.25, 0.53] and 14/50 = 28 %, [0.16, 0.42]; paper 40 %);
    * Fig. 1: on the most unstable sample, truncated back-propagation of depth 20 stays below
      full back-propagation's maximum (max_N err_N / err_0: 1.00 against 1.41 and 1.44);
    * Fig. 3: DDL with depth 20 beats AM in angle for most N <= 50 (8 of 9 and 9 of 9 grid
      points, largest relative gain 0.48 and 0.57).

    Not asserted, because the paper's ordering does not hold at the quick size: Fig. 4 after 40
    line-search steps on 300 samples gives median S(C) AM / DDL 0.904 / 0.890 (N = 5), 0.927 /
    0.928 (N = 20), 0.928 / 0.927 (N = 50) on seed 0 (the theorem test M-OPT, 200 steps, does
    see DDL ahead); Fig. 6 from a random dictionary moves S(C) only from about 0.36 to 0.36-0.46
    in 40 iterations, too little to order the batch sizes."""
    table = malezieux.run(malezieux.QUICK, seed=0, dtype=torch.float64)
    pick = lambda metric: table[table["metric"] == metric]  # noqa: E731
    low = pick("ci95_low")["value"].iloc[0]
    high = pick("ci95_high")["value"].iloc[0]
    assert high >= 0.25 and low <= 0.55
    fig1 = table[(table["figure"] == "fig1") & (table["metric"] == "relative_jacobian_error")]
    unstable = pick("unstable")
    chosen = unstable[(unstable["figure"] == "fig1") & (unstable["value"] == 1)]["instance"]
    for i in chosen:
        curves = fig1[fig1["instance"] == i]
        full = curves[curves["method"] == "ddl"]["value"].max()
        assert curves[curves["method"] == "ddl-K20"]["value"].max() < full
    gain = pick("relative_angle_gain")
    early = gain[(gain["method"] == "ddl-K20") & (gain["N"] <= 50)]
    assert (early["value"] > 0).mean() > 0.5
