"""Malezieux, Moreau & Kowalski (ICLR 2022): gradient directions of AM and DDL (Fig. 3, Fig. C),
optimisation dynamics (Fig. 4), the empirical side of Prop. 2.1, the experimental set-up
(App. A) and the MEG table (Table 1). THEOREMS.md Sec. 3 (M-GRAD, M-OPT, M-P2.1 sandwich,
M-TAB1), Sec. 7.3 and Sec. 8 item 29.

Conventions as in test_m_malezieux.py: FISTA with step 1/L, L = ||D||_2^2 outside the graph,
returning its last prox iterate; AM's gradient is g1_N = ``gradients.estimate("dec")`` (codes held
constant), DDL's is g2_N = ``gradients.estimate("ae-lasso")`` (autograd of F(z_N(D), D)), with
``backprop_depth`` for truncated back-propagation; g* = ``gradients.oracle("hat")`` at the
certified lasso codes. Gradients are means over samples (the paper sums; angles do not change).
"""

import functools
import time

import numpy as np
import pytest
import torch

from udlbench import data, encoders, gradients, lasso, metrics
from udlbench.data import normalize_columns
from udlbench.linalg import lipschitz_constant

LAM = 0.1


def m_small(n, seed, device):
    """M-small (THEOREMS.md Sec. 3): ``data.make_malezieux(30, 50, n)``; D = ``D_init``."""
    return data.make_malezieux(30, 50, n, seed=seed, device=device)


def cosine(g, h):
    """<g, h> = Tr(g^T h) / (||g|| ||h||) (ICLR 2022, Sec. 2)."""
    return float((g * h).sum() / (torch.linalg.vector_norm(g) * torch.linalg.vector_norm(h)))


def relative_angle_gain(g2, g1, g_star):
    """(<g2, g*> - <g1, g*>) / (1 - <g1, g*>) (ICLR 2022, Sec. 2, Fig. 3 right): > 0 when DDL's
    direction is closer to g* than AM's."""
    c1 = cosine(g1, g_star)
    return (cosine(g2, g_star) - c1) / (1 - c1)


# ---------------------------------------------------------------------------------------------
# M-GRAD
# ---------------------------------------------------------------------------------------------

EARLY_N = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 35, 40, 45, 50)

@pytest.mark.fast
@pytest.mark.claim("M-GRAD", statement="Sec. 2, Fig. 3 (DDL beats AM in early iterations)")
def test_M_GRAD_unrolling_gives_a_better_direction_early(evidence, seed, device):
    """Fig. 3 (synthetic): M-small with 1000 samples, FISTA, lam = 0.1. For N in [2, 50] (16
    values, EARLY_N, for time), (i) the relative angle gain of DDL with back-propagation depth
    20 over AM, (<g2_N, g*> - <g1_N, g*>) / (1 - <g1_N, g*>), is > 0 for the majority of N
    [measured: all 49 N in [2, 50] at seed 0, gains 0.16-0.51]; (ii) both directions converge:
    <g1_1000, g*> and <g2_1000, g*> (depth 20; at N = 1000 the iterates are on the support,
    where the subgradient term of any depth vanishes) exceed 1 - 1e-8; full back-propagation at
    N = 1000 (~14 s) is checked in the slow test. AM's g1_N for N <= 50 comes from one FISTA
    trace through the product's ``gradients.analytic``, pinned to ``gradients.estimate("dec")``
    at N = 50 to 1e-12. Negative control: the same criterion on the least-squares
    back-propagation g^ae-ls (the subgradient term lam J^+ sign(z_N) of eq. 4 left out) fails:
    its gain is > 0 for at most half of the N [measured 3 of 16, median gain -25, seed 0]. The
    instability of full back-propagation (Fig. 3 right, criterion (iii)) needs a dense grid of N
    up to 1000: test_M_GRAD_full_backpropagation_becomes_unstable (slow)."""
    problem = m_small(1000, seed(0), device)
    X, D = problem.X, problem.D_init
    g_star = gradients.oracle("hat", X, D, lam=LAM)
    trace = encoders.fista(X, D, lam=LAM, n_layers=max(EARLY_N), trace=True)
    am = {N: gradients.analytic(X, D, trace[N]) for N in EARLY_N}
    pin = gradients.estimate("dec", X, D, lam=LAM, n_layers=50, encoder="fista")
    pinned = float((pin - am[50]).abs().max() / pin.abs().max())
    gains, control = [], []
    for N in EARLY_N:
        g2 = gradients.estimate("ae-lasso", X, D, lam=LAM, n_layers=N, encoder="fista",
                                backprop_depth=20)
        gains.append(relative_angle_gain(g2, am[N], g_star))
        ls = gradients.estimate("ae-ls", X, D, lam=LAM, n_layers=N, encoder="fista",
                                backprop_depth=20)
        control.append(relative_angle_gain(ls, am[N], g_star))
    gains, control = np.array(gains), np.array(control)
    late = dict(n_layers=1000, encoder="fista", lam=LAM)
    cos_am = cosine(gradients.estimate("dec", X, D, **late), g_star)
    cos_ddl = cosine(gradients.estimate("ae-lasso", X, D, backprop_depth=20, **late), g_star)
    evidence.seeds = [seed(0)]
    evidence.measure(
        analytic_vs_estimate_N50=pinned, fraction_gain_positive_depth20=float((gains > 0).mean()),
        gain_depth20_min=gains.min(), gain_depth20_median=float(np.median(gains)),
        gain_depth20_max=gains.max(), one_minus_cos_am_1000=1 - cos_am,
        one_minus_cos_ddl_depth20_1000=1 - cos_ddl,
        control_ae_ls_fraction_gain_positive=float((control > 0).mean()),
        control_ae_ls_gain_median=float(np.median(control)),
    )
    evidence.predict(fraction_gain_positive_depth20="> 0.5", one_minus_cos_1000="< 1e-8")
    assert pinned <= 1e-12
    assert (gains > 0).mean() > 0.5
    assert cos_am > 1 - 1e-8 and cos_ddl > 1 - 1e-8
    assert (control > 0).mean() <= 0.5


@pytest.mark.slow
@pytest.mark.claim("M-GRAD", statement="Sec. 2, Fig. 3 right, Fig. C (instability at full depth)")
def test_M_GRAD_full_backpropagation_becomes_unstable(evidence, seed, device, figures):
    """Fig. 3 right / Fig. C: "with too many back-propagated steps, g2 becomes unstable".
    M-small, 1000 samples, FISTA. On N in {20, 30, .., 390} U {400, 425, .., 1000}, the relative
    angle gain of full back-propagation over AM is < 0 for at least one N (criterion (iii) of
    THEOREMS.md M-GRAD; N <= 20 excluded, where full and depth-20 back-propagation coincide)
    [measured at seed 0: N = 150, 775, 875, 900, 950, 975; none for depths 20 and 50]; depth 50
    and the catalogue's depth-20 curve are recorded with it and drawn (Fig. 3 right) with
    ``--figures``. Negative control: depth 20 on the same grid has a smaller share of negative
    gains than full back-propagation. Also criterion (ii) for full back-propagation: <g2_1000,
    g*> > 1 - 1e-8."""
    problem = m_small(1000, seed(0), device)
    X, D = problem.X, problem.D_init
    g_star = gradients.oracle("hat", X, D, lam=LAM)
    grid = list(range(20, 400, 10)) + list(range(400, 1001, 25))
    trace = encoders.fista(X, D, lam=LAM, n_layers=grid[-1], trace=True)
    curves = {depth: [] for depth in (20, 50, None)}
    for N in grid:
        g1 = gradients.analytic(X, D, trace[N])
        for depth in curves:
            g2 = gradients.estimate("ae-lasso", X, D, lam=LAM, n_layers=N, encoder="fista",
                                    backprop_depth=depth)
            curves[depth].append(relative_angle_gain(g2, g1, g_star))
    curves = {depth: np.array(values) for depth, values in curves.items()}
    negative = {str(depth): [N for N, v in zip(grid, values, strict=True) if v < 0]
                for depth, values in curves.items()}
    full_1000 = gradients.estimate("ae-lasso", X, D, lam=LAM, n_layers=1000, encoder="fista")
    cos_full = cosine(full_1000, g_star)
    evidence.seeds = [seed(0)]
    evidence.measure(grid=grid, gain_full=curves[None], gain_depth50=curves[50],
                     gain_depth20=curves[20], negative_gain_N=negative,
                     one_minus_cos_ddl_full_1000=1 - cos_full)
    evidence.predict(negative_gain_full="some N <= 1000")
    if figures.enabled:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for depth, values in curves.items():
            ax.plot(grid, values, label=f"depth {depth or 'full'}")
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("FISTA iterations N")
        ax.set_ylabel("relative angle gain of DDL over AM")
        ax.set_title("Malezieux et al. Fig. 3 right (M-small, 1000 samples)")
        ax.legend()
        figures(evidence, fig, "fig3_right")
    assert len(negative["None"]) >= 1
    assert (curves[20] < 0).mean() < (curves[None] < 0).mean()
    assert cos_full > 1 - 1e-8


# ---------------------------------------------------------------------------------------------
# M-OPT and the sandwich of M-P2.1: projected gradient descent with a line search
# ---------------------------------------------------------------------------------------------

def approximate_loss(X, D, n_layers):
    """G_N(D) = mean_i F(z_N^i(D), D) with N = ``n_layers`` FISTA iterations (ICLR 2022, Sec. 2;
    mean instead of sum)."""
    Z = encoders.fista(X, D, lam=LAM, n_layers=n_layers)
    return float(lasso.objective(X, D, Z, lam=LAM).mean())


def line_search_learning(X, D0, *, n_layers, method, max_steps, tol=1e-8):
    """Projected gradient descent on G_N over unit-norm atoms with a backtracking line search
    (ICLR 2022, Sec. 3 and App. A.3): direction g2_N (``method="ddl"``) or g1_N ("am"); each step
    first doubles the previous step size, then halves it until G_N decreases (down to 1e-10,
    which counts as convergence); stops after ``max_steps`` accepted steps or when the relative
    decrease falls below ``tol``. Returns the dictionary, the losses (one per accepted step, the
    initial one first), the number of accepted steps and the mean wall time of one gradient
    evaluation (the clock runs around ``gradients.estimate`` only)."""
    kind = "ae-lasso" if method == "ddl" else "dec"
    D = normalize_columns(D0)
    losses, eta, clock = [approximate_loss(X, D, n_layers)], 1.0, 0.0
    for _ in range(max_steps):
        start = time.perf_counter()
        g = gradients.estimate(kind, X, D, lam=LAM, n_layers=n_layers, encoder="fista")
        if g.device.type == "cuda":
            torch.cuda.synchronize(g.device)
        clock += time.perf_counter() - start
        eta *= 2
        while eta >= 1e-10:
            candidate = normalize_columns(D - eta * g)
            value = approximate_loss(X, candidate, n_layers)
            if value < losses[-1]:
                break
            eta /= 2
        if eta < 1e-10:
            break
        D = candidate
        losses.append(value)
        if (losses[-2] - losses[-1]) / abs(losses[-2]) < tol:
            break
    steps = len(losses) - 1
    return D, np.array(losses), steps, clock / max(steps, 1)


@functools.lru_cache(maxsize=2)
def dynamics_run(seed, device, n_dictionaries, n_samples, depths, max_steps):
    """M-OPT: for each of ``n_dictionaries`` M-small problems (seeds seed .. seed + k - 1) and each
    N in ``depths``, AM and DDL from the same initialisation D_init: recovery score S(C) against
    A (``metrics.recovery_score``), final G_N, accepted steps and time per gradient."""
    rows = []
    for k in range(n_dictionaries):
        problem = m_small(n_samples, seed + k, device)
        for N in depths:
            for method in ("am", "ddl"):
                D, losses, steps, per_step = line_search_learning(
                    problem.X, problem.D_init, n_layers=N, method=method, max_steps=max_steps)
                rows.append(dict(problem=k, N=N, method=method, steps=steps, time=per_step,
                                 score=metrics.recovery_score(D, problem.D_star),
                                 loss=float(losses[-1]),
                                 monotone=bool((np.diff(losses) < 0).all())))
    return rows


def summarise_dynamics(rows, depths):
    """Per N: median recovery score, steps and time per gradient step of AM and DDL."""
    out = {}
    for N in depths:
        pick = lambda method, key, N=N: np.array([r[key] for r in rows
                                                  if r["N"] == N and r["method"] == method])
        out[str(N)] = dict(
            score_am=float(np.median(pick("am", "score"))),
            score_ddl=float(np.median(pick("ddl", "score"))),
            steps_am=float(np.median(pick("am", "steps"))),
            steps_ddl=float(np.median(pick("ddl", "steps"))),
            time_ratio_ddl_over_am=float(np.median(pick("ddl", "time") / pick("am", "time"))),
        )
    return out


@pytest.mark.slow
@pytest.mark.claim("M-OPT", statement="Sec. 3.1, Fig. 4 (quick check)")
def test_M_OPT_ddl_recovers_better_than_am_at_small_depth(evidence, seed, device):
    """Fig. 4 / Sec. 3.1, the quick check of THEOREMS.md M-OPT: 10 M-small problems (500 samples
    each), projected gradient descent with line search for 200 steps (line_search_learning), N
    in {5, 10, 20}. Pass: the median recovery score of DDL is >= that of AM at each N, and every
    run decreases G_N at every accepted step (the line search's contract). Calibration (seeds
    0-9): medians AM / DDL 0.882 / 0.910 (N = 5), 0.925 / 0.937 (N = 10), 0.944 / 0.948 (N =
    20); DDL is ahead on 29 of the 30 (problem, N) pairs of a 10-problem prototype, the
    exception being AM 0.9445 against DDL 0.9437 at N = 20. Reported: median accepted steps (N =
    5: AM 199, DDL 62.5, "DDL needs fewer gradient steps") and the time of one DDL gradient over
    one AM gradient (2.8-3.6 here against the paper's 1.5; the catalogue's band [1.2, 3] is
    report only: the ratio depends on the implementation of the backward pass)."""
    depths = (5, 10, 20)
    rows = dynamics_run(seed(0), device, 10, 500, depths, 200)
    summary = summarise_dynamics(rows, depths)
    evidence.seeds = [seed(0) + k for k in range(10)]
    evidence.measure(by_N=summary, runs=len(rows),
                     all_monotone=all(r["monotone"] for r in rows))
    evidence.predict(score_ddl_minus_am=">= 0 for N < 50", time_ratio_ddl_over_am=1.5)
    assert all(r["monotone"] for r in rows)
    for N in depths:
        assert summary[str(N)]["score_ddl"] >= summary[str(N)]["score_am"], N


@pytest.mark.full
@pytest.mark.claim("M-OPT", statement="Sec. 3.1, Fig. 4 (paper scale)")
def test_M_OPT_paper_scale(evidence, seed, device):
    """Fig. 4 at paper scale: 50 M-small problems (1000 samples), N in {5, 10, 20, 50, 100, 200},
    up to 1000 line-search steps. Pass: DDL's median recovery score >= AM's for every N < 50
    (Sec. 3.1: "DDL better estimates the dictionary for small depths, inferior to 50"), and every
    run is monotone. Recorded: median steps and the DDL / AM time per gradient step."""
    depths = (5, 10, 20, 50, 100, 200)
    rows = dynamics_run(seed(0), device, 50, 1000, depths, 1000)
    summary = summarise_dynamics(rows, depths)
    evidence.seeds = [seed(0) + k for k in range(50)]
    evidence.measure(by_N=summary, runs=len(rows))
    evidence.predict(score_ddl_minus_am=">= 0 for N < 50", time_ratio_ddl_over_am=1.5)
    assert all(r["monotone"] for r in rows)
    for N in (5, 10, 20):
        assert summary[str(N)]["score_ddl"] >= summary[str(N)]["score_am"], N


@pytest.mark.slow
@pytest.mark.claim("M-P2.1", statement="Prop. 2.1 (empirical sandwich, report)")
def test_M_P2_1_sandwich_of_learned_dictionaries(evidence, seed, device):
    """The empirical side of Prop. 2.1 (THEOREMS.md M-P2.1 (3), report only): DDL on G_N with
    N in {5, 20, 50} and AM with N = 1000 FISTA iterations (g1 ~ g*) from the same D_init (M-small,
    500 samples, 200 line-search steps) give D_N and D_hat; recorded: G_N(D_N) - G(D_hat) against
    the FISTA bound of Prop. 2.1's proof, K(D_hat) C(N) = 2 L mean_i ||z*_i||^2 / (N + 1)^2 at
    D_hat. Not asserted: D_N and D_hat are local minimisers, not the global ones of the statement.
    Asserted (ingredient (2) of M-P2.1 at the learned dictionaries): G_N(D_N) >= G(D_N), and AM
    lowered the exact objective G (G(D_hat) < G(D_init))."""
    problem = m_small(500, seed(0), device)
    X = problem.X
    G = lambda D: float(lasso.objective(X, D, lasso.solve(X, D, lam=LAM), lam=LAM).mean())
    D_hat, _, am_steps, _ = line_search_learning(X, problem.D_init, n_layers=1000, method="am",
                                                 max_steps=200)
    G_hat = G(D_hat)
    Z_hat = lasso.solve(X, D_hat, lam=LAM)
    constant = 2 * lipschitz_constant(D_hat) * float((Z_hat**2).sum(1).mean())
    report, ordering = {}, []
    for N in (5, 20, 50):
        D_N, losses, steps, _ = line_search_learning(X, problem.D_init, n_layers=N,
                                                     method="ddl", max_steps=200)
        report[str(N)] = dict(G_N_of_D_N_minus_G_of_D_hat=float(losses[-1] - G_hat),
                              bound=constant / (N + 1) ** 2, steps=steps,
                              score=metrics.recovery_score(D_N, problem.D_star))
        ordering.append(float(losses[-1]) >= G(D_N) - 1e-12 * abs(G_hat))
    evidence.seeds = [seed(0)]
    evidence.measure(by_N=report, G_of_D_hat=G_hat, G_of_D_init=G(normalize_columns(
        problem.D_init)), am_steps=am_steps,
        am_score=metrics.recovery_score(D_hat, problem.D_star))
    evidence.predict(G_N_of_D_N_minus_G_of_D_hat="<= K C(N) only for global minimisers")
    assert all(ordering)
    assert G_hat < G(normalize_columns(problem.D_init))


# ---------------------------------------------------------------------------------------------
# M-A.1 (experimental set-up, Sec. 8 item 29) and M-TAB1
# ---------------------------------------------------------------------------------------------

@pytest.mark.fast
@pytest.mark.claim("M-A.1", statement="App. A.1-A.3 data against the released code (Sec. 8 "
                                      "item 29)")
def test_M_A1_deviation_data_follow_the_code_not_the_text(evidence, seed, device):
    """Documented deviation (THEOREMS.md Sec. 8 item 29, Sec. 0.6): M-small follows the released
    code, not App. A's text. Asserted on ``data.make_malezieux`` (n = 2000): A has unit columns
    (1e-12); the noise has standard deviation 0.1 (sample std within 3 %), not variance 0.1 (std
    0.316, which the text's "sigma^2_noise = 0.1" means); codes are Bernoulli(0.3) N(0, 1) (active
    fraction within 0.02 of 0.3, active entries with variance within 5 % of 1); the working
    dictionary D = A + N(0, (0.5 std A)^2) is not re-normalised (column norms spread by > 0.05
    around 1) and its perturbation has standard deviation 0.5 std(A) (within 5 %), not the text's
    "scale 0.5 sigma_D^2". Negative control: the text's noise (std sqrt(0.1)) would be > 3 times
    the measured one."""
    problem = m_small(2000, seed(0), device)
    A, D, Z = problem.D_star, problem.D_init, problem.Z_star
    column_norms = torch.linalg.vector_norm(D, dim=0)
    noise_std = float(problem.noise.std())
    active = Z != 0
    perturbation_std = float((D - A).std()) / float(A.std(correction=0))
    evidence.seeds = [seed(0)]
    evidence.measure(
        A_column_norm_error=float((torch.linalg.vector_norm(A, dim=0) - 1).abs().max()),
        noise_std=noise_std, active_fraction=float(active.double().mean()),
        active_variance=float(Z[active].var()),
        D_column_norm_range=[float(column_norms.min()), float(column_norms.max())],
        perturbation_std_over_std_A=perturbation_std,
    )
    evidence.predict(noise_std_code=0.1, noise_std_text=0.1**0.5, active_fraction=0.3,
                     perturbation_std_over_std_A=0.5)
    assert float((torch.linalg.vector_norm(A, dim=0) - 1).abs().max()) <= 1e-12
    assert abs(noise_std / 0.1 - 1) <= 0.03
    assert 0.1**0.5 > 3 * noise_std
    assert abs(float(active.double().mean()) - 0.3) <= 0.02
    assert abs(float(Z[active].var()) - 1) <= 0.05
    assert float(column_norms.max() - column_norms.min()) > 0.05
    assert abs(perturbation_std / 0.5 - 1) <= 0.05


TABLE_1 = [  # minibatch, window (s), step-size learning, corr u, corr v, mean, time (s); Sec. 7.3
    (5, 20, True, 0.85, 0.84, 0.845, 110),
    (5, 20, False, 0.88, 0.78, 0.83, 57),
    (5, 10, True, 0.83, 0.82, 0.825, 56),
    (20, 10, True, 0.85, 0.75, 0.80, 163),
]
ALPHACSC_SECONDS = 1400


@pytest.mark.fast
@pytest.mark.claim("M-TAB1", statement="Table 1, Fig. 7 (MEG), Figs 6, D, E (stochastic DDL)")
def test_M_TAB1_meg_table_is_not_checkable_here(evidence):
    """Not checkable here (THEOREMS.md M-TAB1, report only): Table 1 and Fig. 7 need the MNE
    "sample" MEG recording and alphacsc's 12 reference atoms, and Figs 6, D, E timings on 10^5
    samples with spams' online DL; none can be downloaded on these machines, and the harness has
    no rank-1 convolutional DDL. The record carries the paper's numbers (Sec. 7.3) for the report.
    What can be checked is the table's own arithmetic: the "mean corr." column is the mean of the
    u and v correlations to the printed precision (|mean - (u + v)/2| <= 0.0051), and the ratio
    of alphacsc's ~1400 s to each DDL time is recorded against the text's "ten times faster"
    (8.6-25 times)."""
    evidence.verdict = "not checkable"
    gaps = [abs(mean - (u + v) / 2) for *_, u, v, mean, _ in TABLE_1]
    speedups = [ALPHACSC_SECONDS / seconds for *_, seconds in TABLE_1]
    evidence.measure(mean_column_max_gap=max(gaps), alphacsc_speedups=speedups,
                     table_1=[list(row) for row in TABLE_1],
                     why="MEG data (MNE sample), alphacsc atoms and spams timings unavailable "
                         "offline; no rank-1 convolutional DDL in udlbench")
    evidence.predict(alphacsc_speedup="about 10 (text: ten times faster)",
                     correlation="80-90 %")
    assert max(gaps) <= 0.0051
    assert all(0.8 <= row[5] <= 0.9 for row in TABLE_1)
