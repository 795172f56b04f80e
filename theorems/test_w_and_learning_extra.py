"""PUDLE workshop version (W) and the remaining PUDLE (P) learning items: global gradient errors
with respect to the lasso-optimal and the generating dictionary (W Thm 3.4, eqs 15-17), the decay
conjecture (W Sec. 3), the denoising tables (W Table 1 against P Table 1), Arora-initialised
dictionary learning (P Fig. 15) and the large-scale comparison (P Figs 5, 16). THEOREMS.md
Secs. 1, 2 and 7.1.

Notation of W (THEOREMS.md Sec. 2): D*_lam is the *lasso-optimal* dictionary (a stationary point
of the mean lasso objective over unit-norm atoms), D~ the *generating* one; g* is the gradient
with the lasso codes at D*_lam held fixed, g~ the gradient with the generating codes (P's g*).
"""

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_p_learning import draw_error_curves

from baselines.arora import AroraInitWarning, arora_init
from baselines.noodl import NOODL
from baselines.sporco_am import SporcoAM
from udlbench import data, gradients, jacobians, lasso, metrics, operators, rates, training
from udlbench.linalg import lipschitz_constant

M, P, S, LAM = 50, 100, 5, 0.2
E_Z2 = 7.0 / 3.0  # E[z^2] for U(1, 2) amplitudes
STATIONARY_TOL = 1e-8  # THEOREMS.md W-T3.4: tangent-projected gradient of every column


# ---------------------------------------------------------------------------------------------
# The lasso-optimal dictionary D*_lam (W's D*), by Algorithm 1 of P with certified lasso codes
# ---------------------------------------------------------------------------------------------


def tangent_norms(D, G):
    """``||g_j - D_j (D_j^T g_j)||`` per column: the part of the gradient along the unit sphere
    of each atom (the radial part is removed by the column normalisation)."""
    return torch.linalg.vector_norm(G - D * (D * G).sum(0, keepdim=True), dim=0)


def lasso_optimal_dictionary(X, D0, *, lam, s, max_steps=400):
    """D*_lam: udlbench's alternating minimisation (P Algorithm 1: certified lasso codes, then a
    full-batch projected gradient step on D with column normalisation) run from ``D0`` until
    every column's tangent-projected gradient is below ``STATIONARY_TOL``.

    The step is ``0.9 p / (s E[z^2])``, 0.9 over the curvature ``p_j E[z^2]`` of one column's
    objective, ``p_j = s/p``. Stationarity is checked at every iterate (one more certified solve,
    since the learner's own gradient is evaluated before its update). Returns a dict with the
    dictionary, its certified codes, ``g_hat`` there, the number of steps, the tangent norm at
    ``D0`` and the number of uncertified samples met along the way."""
    p = D0.shape[1]
    state = dict(steps=0, uncertified=0, initial_tangent=None)

    def check(row, D):
        Z, info = lasso.solve(X, D, lam=lam, return_info=True)
        G = gradients.analytic(X, D, Z)
        tangent = float(tangent_norms(D, G).max())
        state["uncertified"] += int((~info.certified).sum())
        if state["initial_tangent"] is None:
            state["initial_tangent"] = tangent
        state.update(D=D.clone(), Z=Z, G=G, steps=row["step"], tangent=tangent)
        return tangent < STATIONARY_TOL

    learner = training.AlternatingMinimization(
        lam=lam, lr=0.9 * p / (s * E_Z2), optimizer="sgd", n_epochs=max_steps, record_every=1
    )
    learner.fit(X, D0, callback=check)
    if state["tangent"] >= STATIONARY_TOL:
        raise RuntimeError(f"no stationary point in {max_steps} steps: {state['tangent']:.3g}")
    return state


def ls_limit(X, D, Z_hat, lam):
    """``g^ae-ls_inf = g_hat + J_hat^T[grad_1 L(z_hat)] = g_hat - lam J_hat^T[sign z_hat]``
    (P-T4.9, exact limit), from the closed-form VJP at the certified codes (Sec. 0.5)."""
    g_hat = gradients.analytic(X, D, Z_hat)
    return g_hat - lam * jacobians.vjp_closed_form(X, D, torch.sign(Z_hat), Z_hat)


def p_small(n, seed, device):
    """P-small: m=50, p=100, s=5, U(1, 2) amplitudes, iid signs, noiseless."""
    return data.make_sparse(M, P, n, S, sign="iid", seed=seed, device=device)


@pytest.mark.medium
@pytest.mark.claim("W-T3.4", statement="W Thm 3.4, eqs 15-17 (t -> inf)")
def test_W_T3_4_lasso_gradient_tracks_g_star_ls_gradient_tracks_g_tilde(evidence, seed, device):
    """W eq. 17: ||g^lasso_inf - g*|| <= O(C*) and ||g^ls_inf - g*|| <= O(C* + C*_h) (ae-lasso is
    the better estimator of the lasso-optimal direction), ||g^ls_inf - g~|| <= O(C~) and
    ||g^lasso_inf - g~|| <= O(C~ + C^t_h) (ae-ls the better estimator of the generating one).

    P-small data, n = 1000 (the catalogue's size). D*_lam by Algorithm 1 from D~ to a
    tangent-projected gradient < 1e-8 in every column, with 0 uncertified lasso samples along the
    way. Then at D = normalize(D*_lam + eps B):
    (a) eps = 0: ||g^lasso_inf - g*||_F <= 1e-10 and ||g^ls_inf - g*||_F > 1e-3;
    (b) eps in {1e-3, 1e-2}: ||g^lasso_inf - g*|| < ||g^ls_inf - g*|| (Frobenius and spectral);
    (c) at D~ (g~ = 0, noiseless) over lam in {0.05, 0.1, 0.2}: slope of log ||g^lasso_inf|| in
    [0.8, 1.15], slope of log ||g^ls_inf|| in [1.8, 2.2], and ||g^ls_inf|| <= ||g^lasso_inf|| / 3
    at lam = 0.2 (the P-T4.10 A ordering). ||D*_lam - D~||_F / ||D~||_F is reported (O(lam)).
    Negative controls: the stationarity criterion rejects D~ itself; with the two gradients'
    labels swapped (a) fails and the slopes of (c) leave their bands.
    Measured (base seeds 0 / 1 / 2): AM steps 41 / 44 / 36, final max tangent gradient 8.2e-9 /
    9.6e-9 / 7.3e-9 (5.3e-3 / 5.6e-3 / 5.4e-3 at D~); ||D*_lam - D~||_F/||D~||_F = 0.0528 / 0.0516
    / 0.0518; (a) ||g^lasso - g*||_F = 1.1e-16 / 1.1e-16 / 8.7e-17, ||g^ls - g*||_F = 0.113 /
    0.112 / 0.112; (b) ||g^lasso - g*||_F = 1.1e-4 / 1.2e-4 / 1.2e-4 at eps = 1e-3 and 1.18e-3 /
    1.25e-3 / 1.24e-3 at eps = 1e-2, against ||g^ls - g*||_F = 0.112-0.113 at both;
    (c) slopes 0.914 / 0.912 / 0.913 (lasso) and 2.000 (ls, every seed), ratio at lam = 0.2
    5.88 / 5.72 / 5.77 (catalogue [proto], n=2000: 0.91, 2.00, 5.8). Runtime about 8 s."""
    problem = p_small(1000, seed(0), device)
    X, D_tilde, Z_tilde = problem.X, problem.D_star, problem.Z_star
    optimum = lasso_optimal_dictionary(X, D_tilde, lam=LAM, s=S)
    D_lam, Z_lam = optimum["D"], optimum["Z"]
    distance = float((D_lam - D_tilde).norm() / D_tilde.norm())

    def errors(D):
        Z_hat, info = lasso.solve(X, D, lam=LAM, return_info=True)
        assert bool(info.certified.all())
        g_lasso = gradients.analytic(X, D, Z_hat)  # g^ae-lasso_inf = g_hat
        g_ls = ls_limit(X, D, Z_hat, LAM)
        g_star = gradients.analytic(X, D, Z_lam)  # W's g*: codes fixed at z_hat(D*_lam)
        return {name: {"fro": float((g - g_star).norm()),
                       "spectral": float(torch.linalg.matrix_norm(g - g_star, 2))}
                for name, g in (("lasso", g_lasso), ("ls", g_ls))}

    eps_errors = {}
    for k, eps in enumerate((0.0, 1e-3, 1e-2)):
        eps_errors[eps] = errors(data.perturb(D_lam, eps, seed=seed(1) + k))

    at_tilde = {}
    for lam in (0.05, 0.1, 0.2):
        Z_hat, info = lasso.solve(X, D_tilde, lam=lam, return_info=True)
        assert bool(info.certified.all())
        g_tilde = gradients.analytic(X, D_tilde, Z_tilde)  # 0 up to rounding (noiseless)
        at_tilde[lam] = {
            "lasso": float((gradients.analytic(X, D_tilde, Z_hat) - g_tilde).norm()),
            "ls": float((ls_limit(X, D_tilde, Z_hat, lam) - g_tilde).norm()),
            "g_tilde": float(g_tilde.norm()),
        }
    lams = list(at_tilde)
    slope = {name: rates.loglog_slope(lams, [at_tilde[lam][name] for lam in lams]).slope
             for name in ("lasso", "ls")}
    swapped = {"lasso": slope["ls"], "ls": slope["lasso"]}

    evidence.seeds = [seed(0), seed(1)]
    evidence.measure(
        am_steps=optimum["steps"], max_tangent_gradient=optimum["tangent"],
        tangent_gradient_at_D_tilde=optimum["initial_tangent"],
        uncertified_samples=optimum["uncertified"],
        relative_distance_D_lam_to_D_tilde=distance,
        errors_wrt_g_star=eps_errors, errors_wrt_g_tilde_at_D_tilde=at_tilde,
        slope_lasso=slope["lasso"], slope_ls=slope["ls"],
        ratio_at_lam_0_2=at_tilde[0.2]["lasso"] / at_tilde[0.2]["ls"],
        sigma_max_sq_D_lam=lipschitz_constant(D_lam),
        control_swapped_slopes=swapped,
    )
    evidence.predict(slope_lasso=1.0, slope_ls=2.0, relative_distance_D_lam_to_D_tilde="O(lam)",
                     errors_wrt_g_star="lasso < ls (lasso = 0 at eps = 0)")
    # D*_lam is a certified stationary point, and the criterion is not vacuous: D~ fails it
    assert optimum["uncertified"] == 0
    assert optimum["tangent"] < STATIONARY_TOL
    assert optimum["initial_tangent"] > 1e3 * STATIONARY_TOL
    # (a) at D*_lam itself
    assert eps_errors[0.0]["lasso"]["fro"] <= 1e-10
    assert eps_errors[0.0]["ls"]["fro"] > 1e-3
    # (b) near D*_lam: the substantive part of eq. 17
    for eps in (1e-3, 1e-2):
        for norm in ("fro", "spectral"):
            assert eps_errors[eps]["lasso"][norm] < eps_errors[eps]["ls"][norm], (eps, norm)
    # (c) at the generating dictionary: ae-ls is the better estimator of g~
    assert max(v["g_tilde"] for v in at_tilde.values()) <= 1e-12
    assert 0.8 <= slope["lasso"] <= 1.15
    assert 1.8 <= slope["ls"] <= 2.2
    assert at_tilde[0.2]["ls"] <= at_tilde[0.2]["lasso"] / 3
    # negative control: labels swapped
    assert not eps_errors[0.0]["ls"]["fro"] <= 1e-10  # swapped (a): "g^lasso" = g^ls is not 0
    assert not (0.8 <= swapped["lasso"] <= 1.15 and 1.8 <= swapped["ls"] <= 2.2)


# ---------------------------------------------------------------------------------------------
# W Table 1 against P Table 1 (report items; THEOREMS.md Sec. 7.1)
# ---------------------------------------------------------------------------------------------

# BSD68 denoising at sigma = 25, PSNR in dB, transcribed from P (TMLR 2023) Table 1 (mean and the
# unexplained parenthesised number) and from W (arXiv 2106.00058v1) Table 1; THEOREMS.md Sec. 7.1.
LAMS_TAB1 = (0.08, 0.12, 0.16, 0.2)
B_TAB1 = (0.02, 0.05, 0.08, 0.1)
P_TABLE1 = {
    "dec": ((24.21, 0.12), (24.93, 0.14), (25.25, 0.06), (24.88, 0.00)),
    "ae-ls": ((24.79, 0.03), (25.43, 0.03), (25.63, 0.04), (25.46, 0.05)),
    "ae-ls, HT": ((22.92, 0.07), (25.26, 0.1), (24.76, 0.06), (23.94, 0.13)),
}
W_TABLE1 = {
    "dec": (24.31, 24.73, 25.24, 24.89),
    "ae-ls": (24.80, 25.48, 25.67, 25.51),
    "ae-ls, HT": (22.87, 25.40, 24.68, 23.77),
}
PAPERS_DIR = Path(__file__).resolve().parents[2] / "shared" / "papers"
PAPER_TEXT = {"P": "000_f288abf592590917.txt", "W": "001_987501b5af03c035.txt"}


def table_differences(p_table, w_table):
    """Per cell, P - W (dB), keyed "method@column"."""
    return {
        f"{method}@{column}": round(p_table[method][k][0] - w_table[method][k], 10)
        for method in p_table
        for k, column in enumerate(B_TAB1 if method.endswith("HT") else LAMS_TAB1)
    }


def transcription_found(tag, values):
    """Whether every number of ``values`` is printed in the paper's text copy (None when the copy
    is not available on this machine)."""
    path = PAPERS_DIR / PAPER_TEXT[tag]
    if not path.is_file():
        return None
    printed = set(re.findall(r"\d+\.\d+", path.read_text(errors="replace")))
    return all(f"{v:.2f}" in printed for v in values)


@pytest.mark.fast
@pytest.mark.claim("W-Tab1", statement="W Table 1 against P Table 1 (report item)")
def test_W_Tab1_workshop_table_differs_from_tmlr_by_at_most_0_20_dB(evidence):
    """Report item (THEOREMS.md Sec. 2 W-Tab1, Sec. 7.1, Sec. 8 item 23): the W and P denoising
    tables are different runs. Asserted on the transcribed numbers: the largest absolute cell
    difference is 0.20 dB, at g_dec with lam = 0.12 (P 24.93 against W 24.73), and both versions
    rank g_ae-ls above g_dec at every lam and the best g_ae-ls (lam = 0.16) above the best HT
    (b = 0.05), which are the orderings P-Tab1 asserts at full scale. Where the papers' text copies
    are present, every transcribed number is checked to be printed there. Negative control: W's
    row matched against the wrong lam columns (shifted by one) does not give 0.20 dB."""
    diffs = table_differences(P_TABLE1, W_TABLE1)
    largest = max(diffs, key=lambda key: abs(diffs[key]))
    p_means = {method: [v for v, _ in row] for method, row in P_TABLE1.items()}
    orderings = {}
    for tag, table in (("P", p_means), ("W", W_TABLE1)):
        orderings[tag] = {
            "ls_above_dec_at_every_lam": all(
                ls > dec for ls, dec in zip(table["ae-ls"], table["dec"], strict=True)),
            "best_ls_above_best_HT": max(table["ae-ls"]) > max(table["ae-ls, HT"]),
            "best_ls_at_lam_0_16": LAMS_TAB1[int(np.argmax(table["ae-ls"]))] == 0.16,
        }
    found = {"P": transcription_found("P", [v for row in P_TABLE1.values() for v, _ in row]),
             "W": transcription_found("W", [v for row in W_TABLE1.values() for v in row])}
    shifted = {method: row[1:] + row[:1] for method, row in W_TABLE1.items()}
    control = table_differences(P_TABLE1, shifted)
    control_max = max(abs(v) for v in control.values())
    mean_abs = float(np.mean(np.abs(list(diffs.values()))))
    evidence.measure(differences_P_minus_W=diffs, max_abs_difference=abs(diffs[largest]),
                     argmax=largest, mean_abs_difference=mean_abs,
                     orderings=orderings, transcription_checked_against_text=found,
                     control_shifted_max=control_max)
    evidence.predict(max_abs_difference=0.20, argmax="dec@0.12")
    assert math.isclose(abs(diffs[largest]), 0.20, abs_tol=1e-9)
    assert largest == "dec@0.12"
    for tag in ("P", "W"):
        assert all(orderings[tag].values()), (tag, orderings[tag])
    for tag, ok in found.items():
        assert ok is not False, f"a transcribed {tag} number is not printed in the paper text"
    assert not math.isclose(control_max, 0.20, abs_tol=1e-9)


# ---------------------------------------------------------------------------------------------
# Training-based checks (slow tier)
# ---------------------------------------------------------------------------------------------


def axis_position(D, D_tilde, D_lam):
    """Coordinate of D along the axis D~ -> D*_lam: <A - D~, D*_lam - D~> / ||D*_lam - D~||_F^2
    with A the aligned, column-normalised D. It is 0 at D~ and 1 at D*_lam, and (all three having
    unit columns) A is closer to D*_lam than to D~ in Frobenius norm exactly when it exceeds 0.5."""
    A = data.normalize_columns(metrics.align(D, D_tilde).D)
    delta = D_lam - D_tilde
    return float(((A - D_tilde) * delta).sum() / (delta * delta).sum())


DL4_QUICK = dict(lam=0.2, alpha=0.2, n_layers=50, lr=1e-3, adam_eps=1e-8, n_epochs=600,
                 record_every=10)  # P-DL4 quick configuration (theorems/test_p_learning.py)


@pytest.mark.slow
@pytest.mark.claim("W-T3.4", statement="W Sec. 3, Remarks after Thm 3.4 (learned dictionaries)")
def test_W_T3_4_dec_and_lasso_dictionaries_are_closer_to_the_lasso_optimum(evidence, seed, device):
    """W, Remarks after Thm 3.4: "the learned dictionary by g^dec and g^ae-lasso is closer to D*
    than D~. This is reversed for g^ae-ls". Checked with the P-DL4 quick configuration (m=20,
    p=40, s=3, n=1000, shared signs, tau_B=0.3, T=50, lam=0.2, alpha=0.2, full-batch Adam lr 1e-3,
    600 epochs) on 3 seeds, D*_lam computed for each data set as in the analytic W-T3.4 check. With
    d(D, R) the aligned relative Frobenius distance averaged over the last 100 epochs and the
    margin d(D, D~) - d(D, D*_lam) (> 0: closer to D*_lam), asserted: for g^dec and g^ae-lasso the
    margin is positive on every seed and exceeds 3x its standard deviation over those epochs.
    Negative control: a reference at the same distance from D~ as D*_lam but in a random
    direction is not closer to the g^ae-lasso dictionary than D~ is.
    Calibration (THEOREMS.md: "at small sizes D*_lam and D~ may be too close"), seeds 0 / 1 / 2 /
    3 / 4 (base seeds 0, 1, 2): ||D*_lam - D~||_F/||D~||_F = 0.038 / 0.041 / 0.041 / 0.038 /
    0.038. Margins: dec 0.0058 / 0.0085 / 0.0067 / 0.0069 / 0.0048, ae-lasso 0.0057 / 0.0093 /
    0.0082 / 0.0067 / 0.0052, each with std over the last 100 epochs <= 3e-4, axis positions
    1.2-1.9 (beyond D*_lam, far from both). The g^ae-ls half is NOT resolvable at this size, so it
    is reported, not asserted: margins -0.0001 / +0.0016 / +0.0011 / +0.0059 / -0.0008 (axis
    positions 0.50 / 0.55 / 0.54 / 0.81 / 0.47), i.e. its sign changes from seed to seed, and its
    distance to D~ (0.05-0.08) exceeds ||D*_lam - D~|| itself: its error is mostly orthogonal to
    the D~ -> D*_lam axis. Control: 0.205 / 0.208 / 0.196 to the random reference against 0.202
    / 0.206 / 0.192 to D~. Runtime 145-215 s on one core."""
    runs, seeds = [], [seed(k) for k in range(3)]
    control = None
    for s in seeds:
        problem = data.make_sparse(20, 40, 1000, 3, sign="shared", seed=s, device=device)
        D_tilde = problem.D_star
        D0 = data.perturb(D_tilde, 0.3, seed=s + 1)
        optimum = lasso_optimal_dictionary(problem.X, D_tilde, lam=0.2, s=3)
        D_lam = optimum["D"]
        assert optimum["uncertified"] == 0 and optimum["tangent"] < STATIONARY_TOL
        distance = float((D_lam - D_tilde).norm() / D_tilde.norm())
        D_random = data.perturb(D_tilde, distance, seed=s + 2)  # same distance, random direction
        run = dict(seed=s, D_lam_distance=distance, random_reference_distance=float(
            (D_random - D_tilde).norm() / D_tilde.norm()))
        for estimator in ("ae-ls", "ae-lasso", "dec"):
            rows = []

            def log(row, D, rows=rows, D_tilde=D_tilde, D_lam=D_lam, D_random=D_random):
                rows.append((metrics.dictionary_error(D, D_tilde, norm="fro"),
                             metrics.dictionary_error(D, D_lam, norm="fro"),
                             metrics.dictionary_error(D, D_random, norm="fro"),
                             axis_position(D, D_tilde, D_lam)))

            training.PUDLE(estimator=estimator, seed=s, **DL4_QUICK).fit(
                problem.X, D0, callback=log)
            last = np.array(rows[-10:])  # the last 100 epochs
            margins = last[:, 0] - last[:, 1]
            run[estimator] = dict(to_D_tilde=float(last[:, 0].mean()),
                                  to_D_lam=float(last[:, 1].mean()),
                                  margin=float(margins.mean()), margin_std=float(margins.std()),
                                  axis_position=float(last[:, 3].mean()))
            if estimator == "ae-lasso" and control is None:
                control = dict(to_D_tilde=float(last[:, 0].mean()),
                               to_random_reference=float(last[:, 2].mean()))
        runs.append(run)
    evidence.seeds = seeds
    evidence.measure(runs=runs, control_random_reference=control,
                     ls_margins_reported=[r["ae-ls"]["margin"] for r in runs],
                     ls_half="reported, not asserted: the sign of its margin varies over seeds")
    evidence.predict(margin="> 0 for dec and ae-lasso (closer to D*_lam); < 0 for ae-ls (W)")
    for r in runs:
        for estimator in ("dec", "ae-lasso"):
            result = r[estimator]
            assert result["margin"] > 0, (estimator, r)
            assert result["margin"] > 3 * result["margin_std"], (estimator, r)
    assert not control["to_random_reference"] < control["to_D_tilde"]


@pytest.mark.slow
@pytest.mark.claim("W-conj", statement="W Sec. 3 (conjecture in W): D*(lam_t) -> D~")
def test_W_conj_decaying_lam_approaches_the_generating_dictionary(evidence, seed, device):
    """Conjecture in W ("Towards unbiased estimation", Sec. 3): with a decaying lam_t the
    sequence D*(lam_t) of lasso-optimal dictionaries converges to D~. P promotes it to Thm 4.11
    (with the psi-sign issue, see P-T4.11). Evidence only, never a proof: the P-T4.11 (iii)
    experiment (m=40, p=60, s=3, n=3000, iid signs, tau_B=0.3, g_dec full-batch GD with
    eta = 0.5 p/(s E[z^2]), T=100, practical schedule nu 1 -> 0.995 -> 0.99 -> 0.98 -> 0.97;
    helpers imported from theorems/test_p_learning.py), plus the conjecture's own object on the
    same data: D*_lam by Algorithm 1 (tangent gradient < 1e-8) at lam in {0.2, 0.1, 0.05}.
    Asserted: (i) the decayed run ends below 1/5 of the fixed-lam plateau (median column error);
    (ii) ||D*_lam - D~|| decreases strictly as lam decreases, with log-log slope in [0.7, 1.3];
    (iii) the fixed-lam g_dec run converges to D*_lam: its distance to D*_0.2 is < 0.2 x its
    distance to D~. Negative control: the fixed-lam run continued to twice as many steps stays
    above plateau / 5 (the gain is the schedule's, not more training).
    Measured, base seeds 0 / 1 / 2: decayed 0.00148 / 0.00151 / 0.00133 against the fixed-lam
    plateau 0.0176 / 0.0179 / 0.0169 (unchanged to 1e-10 after twice the steps: the control);
    ||D*_lam - D~||_F/||D~||_F at lam = 0.2, 0.1, 0.05: 0.0184, 0.0094, 0.0048 / 0.0180, 0.0092,
    0.0047 / 0.0176, 0.0090, 0.0046 (slopes 0.974 / 0.972 / 0.973); the fixed-lam g_dec run ends
    1.9e-5 / 1.7e-5 / 1.8e-5 from D*_0.2 (0.018 from D~): g_dec with T = 100 converges to the
    lasso optimum, whose distance to D~ is the plateau. Runtime 30-50 s."""
    from test_p_learning import column_errors, practical_decay, t411_options, t411_problem, train

    problem, D0 = t411_problem(seed(0), device)
    D_tilde = problem.D_star
    _, decayed = train(problem, D0, **t411_options(lam_decay=practical_decay))
    _, fixed = train(problem, D0, **t411_options())
    _, longer = train(problem, D0, **t411_options(n_epochs=2 * t411_options()["n_epochs"]))

    def median_column_error(trajectory):
        return float(np.median(np.sqrt(column_errors(trajectory[-1:], D_tilde))))

    plateau, final, control = (median_column_error(t) for t in (fixed, decayed, longer))
    optima = {}
    for lam in (0.2, 0.1, 0.05):
        optimum = lasso_optimal_dictionary(problem.X, D_tilde, lam=lam, s=3)
        assert optimum["uncertified"] == 0 and optimum["tangent"] < STATIONARY_TOL
        optima[lam] = optimum["D"]
    distances = {lam: float((D - D_tilde).norm() / D_tilde.norm()) for lam, D in optima.items()}
    slope = rates.loglog_slope(list(distances), list(distances.values())).slope
    fixed_to_lam = metrics.dictionary_error(fixed[-1], optima[0.2], norm="fro")
    fixed_to_tilde = metrics.dictionary_error(fixed[-1], D_tilde, norm="fro")
    evidence.seeds = [seed(0)]
    evidence.measure(decayed_final=final, fixed_plateau=plateau,
                     control_fixed_twice_as_long=control,
                     D_lam_relative_distance=distances, D_lam_slope=slope,
                     fixed_run_to_D_lam=fixed_to_lam, fixed_run_to_D_tilde=fixed_to_tilde,
                     status="conjecture in W (evidence only)")
    evidence.predict(decayed_final=f"< {plateau / 5:.4g}", D_lam_slope="> 0 (-> D~ as lam -> 0)")
    assert final < plateau / 5
    values = [distances[lam] for lam in (0.2, 0.1, 0.05)]
    assert values[0] > values[1] > values[2]
    assert 0.7 <= slope <= 1.3
    assert fixed_to_lam < 0.2 * fixed_to_tilde
    assert not control < plateau / 5


F15_INIT = "pairwise initialisation of Arora, Ge, Ma & Moitra (COLT 2015), baselines.arora"


@pytest.mark.slow
@pytest.mark.claim("P-F15", statement="Fig. 15; App. C.1 (Arora-initialised DL)")
def test_P_F15_ae_ls_closest_from_the_arora_initialisation(evidence, seed, device, figures):
    """P Fig. 15: initialised close to D*, g^ae-ls converges to a closer neighbourhood of D* than
    g^dec and g^ae-lasso. Set-up (THEOREMS.md P-F15, reduced size): m = p = 50, orthogonal D*,
    s = 5 with N(0, 1) amplitudes, n = 2000, lam = 0.05, alpha = 0.2, T = 25 (of {25, 100}; T = 100
    costs 4x), full-batch Adam (lr 1e-3, eps 1e-8) for 300 epochs, unit-norm atoms, errors
    aligned by linear_sum_assignment. Initialisation: Arora et al.'s pairwise method computed from
    X (baselines.arora.arora_init with 2000 candidate pairs; with its default 500 one atom in 50
    is often not found and filled with a random unit vector, which then dominates the Frobenius
    error: e_ls 0.19-0.21 against e_dec 0.12 on such seeds, measured; shortfalls are counted).
    Criterion (i) of P-DL4 quick on each of 3 seeds, e_X the mean relative Frobenius error over
    the last 40 epochs: e_ls <= 0.5 min(e_dec, e_lasso). Negative control (first seed): g^ae-ls
    with the threshold bug (lam instead of alpha lam) does not satisfy it against g^dec.
    From the Arora start (error about 0.20) g^ae-ls needs about 300 epochs to settle: at epoch
    150 it was still at 0.022 / 0.019 on two seeds (ratio 0.52-0.54, failing); at epoch 300,
    e_ls 0.0046 / 0.0048 / 0.0047 against min(e_dec, e_lasso) 0.052 / 0.053 / 0.051 (ratio 0.09),
    seeds 0 / 1 / 2 (base seed 0).
    Calibration with the catalogue's proxy start normalize(D* + 0.05 N(0, I/m)), seeds 0-4:
    initial error 0.048-0.050; e_ls 0.0043-0.0044, e_lasso 0.0435-0.0455, e_dec 0.0464-0.0483
    (e_ls / min = 0.10); control 0.058-0.060 against 0.5 e_dec = 0.023-0.024."""
    options = dict(lam=0.05, alpha=0.2, n_layers=25, lr=1e-3, adam_eps=1e-8, n_epochs=300,
                   record_every=10)
    results, seeds, curves = [], [seed(k) for k in range(3)], {}
    control = None
    for s in seeds:
        problem = data.make_sparse(50, 50, 2000, 5, dictionary="orthogonal", amplitude="normal",
                                   seed=s, device=device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AroraInitWarning)
            D0 = arora_init(problem.X, 50, seed=s + 1, n_pairs=2000)
        missing = sum(issubclass(w.category, AroraInitWarning) for w in caught)
        finals = {}
        for estimator in ("ae-ls", "ae-lasso", "dec"):
            learner = training.PUDLE(estimator=estimator, seed=s, **options)
            learner.fit(problem.X, D0, D_star=problem.D_star)
            finals[estimator] = float(learner.records_["error_fro"].iloc[-5:].mean())
            if s == seeds[0]:
                records = learner.records_
                curves[f"g_{estimator}"] = (records["epoch"], records["error_fro"])
        initial = float(learner.records_["error_fro"].iloc[0])
        results.append(dict(seed=s, initial=initial, final=finals, arora_shortfalls=missing))
        if control is None:
            buggy = training.PUDLE(estimator="ae-ls", seed=s,
                                   **{**options, "lam": options["lam"] / options["alpha"]})
            buggy.fit(problem.X, D0, D_star=problem.D_star)
            control = dict(ls_threshold_bug=float(buggy.records_["error_fro"].iloc[-5:].mean()),
                           dec=finals["dec"])
    if figures.enabled:
        title = f"PUDLE Fig. 15, reduced size (m = p = 50, s = 5, T = 25, seed {seeds[0]})"
        figures(evidence, draw_error_curves(curves, title), "fig15")
    evidence.seeds = seeds
    evidence.measure(runs=results, control=control, initialisation=F15_INIT, n_layers=25,
                     sigma_max_sq_D_star=1.0)
    evidence.measure(ratios=[r["final"]["ae-ls"] / min(r["final"]["dec"], r["final"]["ae-lasso"])
                             for r in results])
    evidence.predict(order="e_ls <= 0.5 min(e_dec, e_lasso)")
    for r in results:
        f = r["final"]
        assert f["ae-ls"] <= 0.5 * min(f["dec"], f["ae-lasso"]), r
    assert not control["ls_threshold_bug"] <= 0.5 * control["dec"]


@pytest.mark.slow
@pytest.mark.claim("P-DL5", statement="Figs 5, 16 (quick CPU proxy)")
def test_P_DL5_decay_and_HT_beat_ae_ls_which_beats_alternating_minimisation(
        evidence, seed, device, figures):
    """P Sec. 4.3, Figs 5 and 16: g^ae-ls with fixed lam converges to a neighbourhood of D*, closer
    than SPORCO-like alternating minimisation on the lasso; with a decaying lam or hard
    thresholding it converges to D* itself, "similar to NOODL". Quick proxy (THEOREMS.md P-DL5):
    m=100, p=150, s=3, n=5000, U(1, 2) amplitudes with shared signs [code], tau_B = 1/ln m,
    lam=0.2, alpha=0.2, T=100, Adam lr 1e-3 eps 1e-3, batch 50, 1000 updates (one pass = 100
    updates, so 10 epochs), unit-norm atoms. Decay: nu = udlbench.operators.nu_at_step (1 - 0.005
    floor(k / 100), ends at 0.955). HT: b = 0.1 [code], i.e. prox="hard", lam = b / alpha. AM:
    udlbench's Algorithm 1 (certified lasso codes, same optimiser and batches, same lam);
    SPORCO-AM: baselines.sporco_am.SporcoAM (ADMM lasso + constrained MOD, full batch, 200
    iterations as the paper's code); NOODL: baselines.noodl.NOODL (R = 50, tau = 0.3, eta_A = 1;
    the authors' eta_A = 20 diverges at this size). Asserted on the final relative Frobenius
    errors: (i) e(decay) < 0.5 e(ae-ls); (ii) e(HT) < 0.5 e(ae-ls); (iii) e(ae-ls) < e(AM) and
    e(ae-ls) < e(SPORCO-AM); (iv) NOODL converges: e(NOODL) < 0.1 e(initial). "Similar to NOODL"
    is reported (the ratios), not asserted. Negative control for (ii): soft thresholding at the HT
    threshold (prox="soft", lam = b / alpha) does not satisfy it.
    Calibration (catalogue: thresholds not prototyped), base seeds 0 / 1 / 2: initial error 0.211;
    e(ae-ls) 0.00412 / 0.00413 / 0.00411, e(decay) 5.0e-6 / 7.4e-6 / 8.2e-6, e(HT) 8.0e-11 /
    9.4e-10 / 3.7e-10, e(AM) 0.0395 / 0.0396 / 0.0404; control 0.0340 / 0.0341 / 0.0345. The
    orderings hold by factors > 400 (i, ii) and about 10 (iii). Runtime on one core: 25-30 s of
    updates per unrolled run, 9 s for AM, 120-130 s in all (one seed per base seed)."""
    s = seed(0)
    problem = data.make_sparse(100, 150, 5000, 3, sign="shared", seed=s, device=device)
    D0 = data.perturb(problem.D_star, 1 / math.log(100), seed=s + 1)
    loop = dict(lr=1e-3, adam_eps=1e-3, batch_size=50, n_epochs=1000, max_steps=1000,
                record_every=100, seed=s)
    unrolled = dict(alpha=0.2, n_layers=100, estimator="ae-ls", **loop)
    learners = {
        "ae-ls": training.PUDLE(lam=0.2, **unrolled),
        "decay": training.PUDLE(lam=0.2, lam_decay=operators.nu_at_step, **unrolled),
        "HT": training.PUDLE(lam=0.1 / 0.2, prox="hard", **unrolled),
        "AM": training.AlternatingMinimization(lam=0.2, **loop),
        "SPORCO-AM": SporcoAM(lam=0.2, batch_size=None, n_epochs=200, record_every=20, seed=s),
        "NOODL": NOODL(eta_A=1.0, tau=0.3, n_coding_iter=50, batch_size=50, n_epochs=1000,
                       max_steps=1000, record_every=100, seed=s),
        "control_soft_at_HT_threshold": training.PUDLE(lam=0.1 / 0.2, **unrolled),
    }
    finals, curves, seconds = {}, {}, {}
    for name, learner in learners.items():
        learner.fit(problem.X, D0, D_star=problem.D_star)
        records = learner.records_
        finals[name] = float(records["error_fro"].iloc[-1])
        curves[name] = records["error_fro"].tolist()
        seconds[name] = float(records["time"].iloc[-1])
    if figures.enabled:
        shown = {name: (learners[name].records_["step"], curve)
                 for name, curve in curves.items() if not name.startswith("control")}
        title = f"PUDLE Figs 5/16, quick proxy (m=100, p=150, s=3, seed {s})"
        figures(evidence, draw_error_curves(shown, title, xlabel="update"), "fig5")
    e = finals
    evidence.seeds = [s]
    evidence.measure(final_errors=e, error_curves_every_100_updates=curves,
                     update_seconds=seconds, sigma_max_sq_D_star=lipschitz_constant(problem.D_star),
                     initial_error=curves["ae-ls"][0],
                     noodl_over_decay=e["NOODL"] / e["decay"],
                     noodl_over_ae_ls=e["NOODL"] / e["ae-ls"],
                     last_update_nu=operators.nu_at_step(999))
    evidence.predict(order="e(decay), e(HT) < 0.5 e(ae-ls) < e(ae-ls) < e(AM), e(SPORCO-AM)")
    assert e["decay"] < 0.5 * e["ae-ls"], e
    assert e["HT"] < 0.5 * e["ae-ls"], e
    assert e["ae-ls"] < e["AM"] and e["ae-ls"] < e["SPORCO-AM"], e
    assert e["NOODL"] < 0.1 * curves["NOODL"][0], e
    assert not e["control_soft_at_HT_threshold"] < 0.5 * e["ae-ls"], e
