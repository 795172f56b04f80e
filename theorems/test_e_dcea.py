"""DCEA (Tolooshams, Song, Temereanca & Ba, ICML 2020): the binomial shallow exponential
autoencoder (SEA) of Thm 4.1 = Thm 7.2 (ReLU_b) and Thm 7.3 (HT_b), its gradient alignment
(Lemmas 7.4-7.5, 7.7-7.8), the encoder step sizes of Table 1 / Sec. 3.2, the goodness-of-fit
method of the spiking-data experiment (Fig. 6e, App. 11), and the paper's inconsistencies of
THEOREMS.md Sec. 8 (items 38-48). THEOREMS.md Sec. 5: E-T7.2, E-T7.3, E-L7.5, E-ISTA, E-KS.

Every SEA run uses udlbench's exponential-family encoder. One binomial layer from x_0 = 0 with
alpha = 4 and trials = 1 on mu = sigma(A x*) (the M -> infinity limit of y / M, eq. 8) is
c_1 = 4 W^T (mu - 1/2) followed by S_b with b = alpha lam (Alg. 1); the gradient g = dL/dW is
autograd of the loss (D6) through encoder and decoder (tied W), averaged over one fixed sample of
N codes, which stands for the J -> infinity expectation (D7).
"""

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from udlbench import data, encoders, operators
from udlbench.linalg import lipschitz_constant

PAPER_TEXT = Path(__file__).parent.parent.parent / "shared" / "papers" / "004_5c935d8a161f4967.txt"

# E-T7.2 setup (THEOREMS.md Sec. 5): data dimension n = 100, p = 150 atoms, s = 3, q = 0.3.
SEA_DIM, SEA_ATOMS, SEA_S, SEA_Q = 100, 150, 3, 0.3
SEA_SAMPLES = 10_000  # the expectation (D7); the catalogue's prototype used 20,000
SEA_ALPHA = 4.0  # Alg. 1: c_1 = 4 W^T (y - 1/2)
SEA_STEPS = 20
C_XS = (2.0, 1.0, 0.5, 0.25)
KAPPA_FACTOR = 0.5  # kappa = 0.5 / (nu s / (4 p)), the proof's 1 / (nu tau s / (4 p)) halved
B_RELU = 0.3  # b = 0.3 C_x for ReLU_b (THEOREMS.md E-T7.2)
B_HT = 0.4  # b = 0.4 C_x for HT_b, re-calibrated in E-T7.3 (0.3 C_x fails, see its docstring)


@dataclass(frozen=True)
class SEAProblem:
    """Binomial SEA data in the J, M -> infinity limit (THEOREMS.md Sec. 0.6 gen_binomial_sea).

    ``A`` (n, p) unit-norm Gaussian atoms; ``codes`` (N, p) s-sparse with magnitudes
    U[C_x / 2, C_x] (non-negative, or with i.i.d. signs); ``mu`` (N, n) = sigma(codes @ G^T) with
    G = A, or an unrelated dictionary for the negative controls; ``nu`` = E[x_i^2 | i in S]
    measured; ``W0`` = normalize(A + (q / sqrt(n)) N(0, I)).
    """

    A: torch.Tensor
    codes: torch.Tensor
    mu: torch.Tensor
    nu: float
    W0: torch.Tensor


def sea_problem(C_x, *, seed, device, symmetric=False, unrelated=False):
    sample = data.make_sparse(SEA_DIM, SEA_ATOMS, SEA_SAMPLES, SEA_S, amplitude=(C_x / 2, C_x),
                              seed=seed, device=device)
    codes = sample.Z_star if symmetric else sample.Z_star.abs()
    source = sample.D_star
    if unrelated:
        source = data.make_sparse(SEA_DIM, SEA_ATOMS, 1, SEA_S, seed=seed + 50_000,
                                  device=device).D_star
    nu = float(codes[codes != 0].pow(2).mean())
    W0 = data.perturb(sample.D_star, SEA_Q, seed=seed + 1)
    return SEAProblem(A=sample.D_star, codes=codes, mu=torch.sigmoid(codes @ source.T), nu=nu,
                      W0=W0)


def sea_encode(W, mu, *, b, prox):
    """Alg. 1 encoder: S_b(c_1), c_1 = 4 W^T (mu - 1/2), by udlbench's binomial encoder."""
    return encoders.expfamily(mu, W, family="binomial", trials=1.0, lam=b / SEA_ALPHA, n_layers=1,
                              alpha=SEA_ALPHA, prox=prox, check_step=False)


def sea_gradient(W, mu, *, b, prox):
    """g = dL/dW of the loss (D6), -(Wx)^T mu + 1^T log(1 + e^{Wx}), averaged over the samples,
    by autograd through the tied encoder and decoder; and the codes x."""
    W = W.detach().requires_grad_(True)
    x = sea_encode(W, mu, b=b, prox=prox)
    c2 = x @ W.T
    loss = (F.softplus(c2) - mu * c2).sum(1).mean()
    (g,) = torch.autograd.grad(loss, W)
    return g, x.detach()


def kappa_for(nu):
    return KAPPA_FACTOR / (0.25 * nu * SEA_S / SEA_ATOMS)


def sea_descent(problem, *, b, prox, kappa, steps=SEA_STEPS):
    """Approximate gradient descent with normalisation (A11), w_i <- normalize(w_i - kappa g_i),
    from W0. Returns e_i(l) = ||w_i^(l) - a_i||^2 as an array of shape (steps + 1, p)."""
    W, A = problem.W0, problem.A
    errors = [((W - A) ** 2).sum(0)]
    for _ in range(steps):
        g, _ = sea_gradient(W, problem.mu, b=b, prox=prox)
        W = data.normalize_columns(W - kappa * g)
        errors.append(((W - A) ** 2).sum(0))
    return torch.stack(errors).cpu().numpy()


def support_consistency(problem, *, b, prox):
    """Fraction of samples with supp(S_b(c_1)) = supp(x*) at W0 (code consistency, (A4))."""
    x = sea_encode(problem.W0, problem.mu, b=b, prox=prox)
    return float(((x != 0) == (problem.codes != 0)).all(1).double().mean())


def contraction_summary(errors):
    """Median e_i at l = 0, 5 and 20, and the fraction of (i, l < 5) with e_i(l+1) <= e_i(l)."""
    median = np.median(errors, axis=1)
    return dict(median_e0=float(median[0]), median_e5=float(median[5]),
                median_e20=float(median[20]),
                contracting_first5=float((errors[1:6] <= errors[:5]).mean()))


def check_sea_recovery(evidence, seed, device, *, prox, b_factor, symmetric):
    """Pass criteria (i), (ii) for every C_x, and the two negative controls at C_x = 2."""
    results, problems = {}, {}
    for C_x in C_XS:
        problem = problems[C_x] = sea_problem(C_x, seed=seed(0), device=device,
                                              symmetric=symmetric)
        b = b_factor * C_x
        errors = sea_descent(problem, b=b, prox=prox, kappa=kappa_for(problem.nu))
        results[C_x] = dict(contraction_summary(errors), nu=problem.nu,
                            floor_over_initial=float(np.median(errors[-1]) / np.median(errors[0])),
                            support_consistency_W0=support_consistency(problem, b=b, prox=prox))
    C_x = C_XS[0]
    unrelated = sea_problem(C_x, seed=seed(0), device=device, symmetric=symmetric, unrelated=True)
    unrelated_errors = sea_descent(unrelated, b=b_factor * C_x, prox=prox,
                                   kappa=kappa_for(unrelated.nu), steps=10)
    flipped = sea_descent(problems[C_x], b=b_factor * C_x, prox=prox,
                          kappa=-kappa_for(problems[C_x].nu), steps=5)
    control_unrelated = float(np.median(unrelated_errors[-1]) / np.median(unrelated_errors[0]))
    control_flipped = float(np.median(flipped[-1]) / np.median(flipped[0]))
    evidence.seeds = [seed(0), seed(0) + 1]
    evidence.measure(
        per_C_x={str(c): r for c, r in results.items()},
        sigma_max_sq_A=lipschitz_constant(problems[C_x].A),
        control_unrelated_dictionary_final_over_initial=control_unrelated,
        control_flipped_sign_final_over_initial=control_flipped,
    )
    evidence.predict(median_e20_over_e0="<= 0.15 for every C_x",
                     contracting_first5=">= 0.85",
                     control_unrelated_dictionary_final_over_initial=">= 0.9",
                     control_flipped_sign_final_over_initial="> 1")
    for C_x, r in results.items():
        assert r["median_e20"] <= 0.15 * r["median_e0"], (C_x, r)
        assert r["contracting_first5"] >= 0.85, (C_x, r)
    assert control_unrelated >= 0.9
    assert control_flipped > 1


@pytest.mark.fast
@pytest.mark.claim("E-T7.2", statement="Thm 4.1 = Thm 7.2 (binomial SEA, ReLU_b)")
def test_E_T7_2_sea_with_relu_contracts_to_a_small_floor(evidence, seed, device):
    """Binomial SEA, S_b = ReLU_b (eq. 4), n = 100, p = 150, s = 3, codes U[C_x/2, C_x] >= 0,
    N = 10,000 samples of the M -> infinity limit, W0 q-close with q = 0.3, b = 0.3 C_x,
    kappa = 0.5 / (nu s / (4p)) with nu = E[x_i^2 | i in S] measured, 20 steps of
    w_i <- normalize(w_i - kappa g_i). Pass, for every C_x in {2, 1, 0.5, 0.25}: (i) median_i
    e_i(20) <= 0.15 median_i e_i(0), e_i = ||w_i - a_i||^2; (ii) >= 85 % of the (i, l < 5) pairs
    have e_i(l+1) <= e_i(l). Report only: the floor against C_x (the paper's intuition that a
    smaller C_x gives a smaller floor is not expected at this size) and the code consistency (A4)
    at W0. Negative controls at C_x = 2: (a) data generated by an unrelated dictionary A': the
    median error to A after 10 steps is >= 0.9 x its initial value; (b) kappa -> -kappa: the median
    error grows within 5 steps. Catalogue [proto] (N = 20,000, seed 0): 0.0816 -> 0.0052 at C_x = 2,
    0.0823 -> 0.0048 at C_x = 0.25, 26 % code consistency. Measured here (base seeds 0-2): median
    e(0) = 0.081-0.083, e(20)/e(0) = 0.071-0.083 for every C_x, 100 % contracting steps, 26-30 %
    code consistency; controls (a) 10.5-10.6 and (b) 16.2-16.7 x the initial error."""
    check_sea_recovery(evidence, seed, device, prox="relu", b_factor=B_RELU, symmetric=False)


@pytest.mark.fast
@pytest.mark.claim("E-T7.3", statement="Thm 7.3 (binomial SEA, HT_b)")
def test_E_T7_3_sea_with_hard_threshold_contracts_to_a_small_floor(evidence, seed, device):
    """As E-T7.2 with x = HT_b(c_1) = c_1 1{|c_1| >= b} and symmetric codes +-U[C_x/2, C_x]
    ((A2)'s non-negativity is not needed; (A3) holds), with the same pass criteria and controls.
    Re-calibrated threshold b = 0.4 C_x: the catalogue's b = 0.3 C_x (marked "calibrate; not
    prototyped") lets 85 % of the samples through with spurious support entries, which HT_b keeps
    at full amplitude (ReLU_b shrinks them by b); measured at 0.3 C_x, seed 0: median e(20)/e(0)
    = 0.35 (C_x = 2) and 0.43 (C_x = 0.25), and only 67-74 % contracting steps, so (i) and (ii)
    fail. At 0.4 C_x the code consistency is 61-65 % and, measured (base seeds 0-2),
    e(20)/e(0) = 0.065-0.091 with 95.5-99 % contracting steps; controls (a) 2.5-3.0 and
    (b) 10.8-11.5 x the initial error."""
    check_sea_recovery(evidence, seed, device, prox="hard", b_factor=B_HT, symmetric=True)


def tangential(W, V):
    """Columns of V with their component along the unit columns of W removed, (I - w_i w_i^T) v_i:
    what survives the normalisation step of (A11) to first order."""
    return V - W * (W * V).sum(0)


def alignment(problem, *, b, prox, lead_factor):
    """Lemmas 7.4-7.5 (ReLU_b) / 7.7-7.8 (HT_b) at W0: g_i against its leading term
    lead_i = (1/4) p_i nu tau_i (w_i - a_i), p_i = s/p, tau_i = <w_i, a_i>."""
    W, A = problem.W0, problem.A
    g, _ = sea_gradient(W, problem.mu, b=b, prox=prox)
    tau = (W * A).sum(0)
    p_i = SEA_S / SEA_ATOMS
    delta = W - A
    lead = 0.25 * p_i * problem.nu * tau * delta
    v = g - lead
    lemma_bound = lead_factor * p_i * tau * problem.nu * SEA_Q * delta.norm(dim=0)
    c = 0.25 * problem.nu * tau * SEA_S / SEA_ATOMS
    q_term = (1 - 2 * SEA_Q**2) if lead_factor == 0.25 else (1 - SEA_Q**2 / 2)
    slack = 2 * (g * delta).sum(0) - c * q_term * (delta**2).sum(0) - (g**2).sum(0) / c
    return dict(
        positive=float(((g * delta).sum(0) > 0).double().mean()),
        positive_tangential=float(((tangential(W, g) * delta).sum(0) > 0).double().mean()),
        ratio_median=float((v.norm(dim=0) / lead.norm(dim=0)).median()),
        ratio_tangential_median=float(
            (tangential(W, v).norm(dim=0) / tangential(W, lead).norm(dim=0)).median()),
        v_over_lemma_bound_median=float((v.norm(dim=0) / lemma_bound).median()),
        slack_without_O_term_median=float(slack.median()),
    )


@pytest.mark.fast
@pytest.mark.claim("E-L7.5", statement="Lemmas 7.4-7.5 (ReLU_b), 7.7-7.8 (HT_b)")
def test_E_L7_5_gradient_is_aligned_with_w_minus_a(evidence, seed, device):
    """At W0 of the E-T7.2 setup (ReLU_b, b = 0.3 C_x, codes >= 0) and of E-T7.3 (HT_b,
    b = 0.4 C_x, symmetric codes), C_x in {2, 0.25}, with g_i the sample-mean gradient (D7).
    Pass: (i) <g_i, w_i - a_i> > 0 for >= 95 % of the columns, and so is its tangential part
    <P g_i, w_i - a_i>, P = I - w_i w_i^T (normalisation (A11) discards the component along w_i);
    (ii, re-calibrated) the median of ||P(g_i - lead_i)|| / ||P lead_i|| is < 1, with
    lead_i = (1/4) p_i nu tau_i (w_i - a_i) (eq. 34 / 80). The catalogue's (ii) without P
    ("calibrate") is reported: measured 2.1 (ReLU_b) and 0.7-1.1 (HT_b), dominated by the
    component of v along w_i (the (nu tau_i (tau_i - 1) + b_i^2) w_i term of eq. 34, which (A14)
    is meant to keep small but, with its nu restored (Sec. 8 item 42), allows only b <= 0.26 C_x
    here). Also reported: ||v|| over Lemma 7.4's (1/4) p_i tau_i nu q ||w_i - a_i|| (1/8 for
    Lemma 7.7; measured 5-7, so the O-term dominates) and the slack of Lemma 7.5's inequality
    without its O-term (negative: the O-term is needed). Negative control: data from an unrelated
    dictionary: the tangential alignment (i) holds for < 95 % of the columns. Measured (base seeds
    0-2): tangential ratio 0.44-0.62, control alignment 47-56 %."""
    results, controls = {}, {}
    for prox, b_factor, symmetric, lead_factor in (("relu", B_RELU, False, 0.25),
                                                   ("hard", B_HT, True, 0.125)):
        for C_x in (2.0, 0.25):
            problem = sea_problem(C_x, seed=seed(0), device=device, symmetric=symmetric)
            results[f"{prox}@{C_x}"] = alignment(problem, b=b_factor * C_x, prox=prox,
                                                  lead_factor=lead_factor)
        unrelated = sea_problem(2.0, seed=seed(0), device=device, symmetric=symmetric,
                                unrelated=True)
        controls[prox] = alignment(unrelated, b=b_factor * 2.0, prox=prox,
                                   lead_factor=lead_factor)
    evidence.seeds = [seed(0), seed(0) + 1]
    evidence.measure(at_W0=results, control_unrelated_dictionary=controls)
    evidence.predict(positive=">= 0.95", ratio_tangential_median="< 1",
                     ratio_median="< 1 (catalogue; reported)")
    for key, r in results.items():
        assert r["positive"] >= 0.95, (key, r)
        assert r["positive_tangential"] >= 0.95, (key, r)
        assert r["ratio_tangential_median"] < 1, (key, r)
    for key, r in controls.items():
        assert r["positive_tangential"] < 0.95, (key, r)


# ---------------------------------------------------------------------------------------------
# E-ISTA: encoder step sizes (Table 1, Sec. 3.2)
# ---------------------------------------------------------------------------------------------

ISTA_TRIALS, ISTA_LAM, ISTA_LAYERS = 25, 0.05, 2000


def binomial_objective(Z, Y, H, *, trials, lam):
    """Per sample, l(x) + lam ||x||_1 with l the binomial negative log-likelihood per trial,
    sum_d log(1 + e^{(Hx)_d}) - (y_d / M) (Hx)_d (eq. 2 with Table 1's binomial row; Z may carry
    leading iterate dimensions)."""
    eta = Z @ H.T
    return (F.softplus(eta) - Y / trials * eta).sum(-1) + lam * Z.abs().sum(-1)


def gaussian_objective(Z, Y, H, *, lam, quadratic=0.5):
    """Per sample, -(Hx)^T y + c ||Hx||^2 + lam ||x||_1: the Gaussian l(x) of eq. 2 with
    B(z) = c z^T z; c = 1/2 is the Gaussian likelihood, c = 1 is Table 1's printed B."""
    eta = Z @ H.T
    return -(eta * Y).sum(-1) + quadratic * (eta * eta).sum(-1) + lam * Z.abs().sum(-1)


def ista_problem(seed, device):
    """Random H (100 x 150, unit-norm Gaussian columns), 20 samples: binomial counts
    Y ~ Binomial(25, sigma(H x*)) and Gaussian Y = H x* + noise (20 dB), x* >= 0, 5-sparse."""
    sample = data.make_sparse(100, 150, 20, 5, amplitude=(1.0, 2.0), snr_db=20.0, seed=seed,
                              device=device)
    codes = sample.Z_star.abs()
    counts = data.sample_counts(torch.sigmoid(codes @ sample.D_star.T), trials=ISTA_TRIALS,
                                seed=seed + 1)
    return sample.D_star, counts, sample.X


@pytest.mark.fast
@pytest.mark.claim("E-ISTA", statement="Table 1, Sec. 3.2 (encoder step sizes)")
def test_E_ISTA_steps_4_over_sigma2_binomial_and_1_over_sigma2_gaussian_descend(
        evidence, seed, device):
    """Random H (100 x 150), binomial y with M = 25, lam = 0.05, ReLU_b encoder (b = alpha lam),
    2000 layers from x = 0 with alpha = 4 / sigma_max(H)^2 (binomial, L = sigma_max^2 / 4) and
    alpha = 1 / sigma_max(H)^2 (Gaussian, B(z) = z^T z / 2). Pass: the objective l(x) + lam ||x||_1
    never increases by more than 1e-12 |objective| (per sample and step), and it converges: the
    fixed-point residual ||x_T - S_b(x_T + alpha H^T r(x_T))||_inf <= 1e-8. Negative control
    (calibrated): alpha = 16 / sigma_max^2 (4x the allowed step; sigma' = 1/4 is maximal at the
    start x = 0) increases the binomial objective at some step of the first 50 for >= 50 % of the
    samples. Measured (base seeds 0-2): largest increase <= 1.5e-15 relative, residual <= 1.5e-12;
    control 100 %, 75 % and 90 % of the samples."""
    H, counts, signals = ista_problem(seed(0), device)
    sigma2 = lipschitz_constant(H)
    runs = {
        "binomial": dict(Y=counts, family="binomial", trials=float(ISTA_TRIALS),
                         alpha=4.0 / sigma2),
        "gaussian": dict(Y=signals, family="gaussian", alpha=1.0 / sigma2),
    }
    measured = {}
    for name, run in runs.items():
        Y = run.pop("Y")
        iterates = encoders.expfamily(Y, H, lam=ISTA_LAM, n_layers=ISTA_LAYERS, trace=True, **run)
        if name == "binomial":
            values = binomial_objective(iterates, Y, H, trials=float(ISTA_TRIALS), lam=ISTA_LAM)
        else:
            values = gaussian_objective(iterates, Y, H, lam=ISTA_LAM)
        increase = (values[1:] - values[:-1]) / values.abs().amax(0)
        step = encoders.expfamily(Y, H, lam=ISTA_LAM, n_layers=1, z0=iterates[-1], **run)
        measured[name] = dict(max_relative_increase=float(increase.max()),
                              fixed_point_residual=float((step - iterates[-1]).abs().max()),
                              nonzeros_per_sample=float((iterates[-1] > 0).sum(1).double().mean()))
    control = encoders.expfamily(counts, H, family="binomial", trials=float(ISTA_TRIALS),
                                 lam=ISTA_LAM, n_layers=50, alpha=16.0 / sigma2, trace=True,
                                 check_step=False)
    values = binomial_objective(control, counts, H, trials=float(ISTA_TRIALS), lam=ISTA_LAM)
    increased = float(((values[1:] - values[:-1]) > 1e-12 * values.abs().amax(0)).any(0)
                      .double().mean())
    evidence.seeds = [seed(0), seed(0) + 1]
    evidence.measure(sigma_max_sq=sigma2, **measured,
                     control_alpha_16_over_sigma2_fraction_increasing=increased)
    evidence.predict(max_relative_increase="<= 1e-12", fixed_point_residual="<= 1e-8",
                     control_alpha_16_over_sigma2_fraction_increasing=">= 0.5")
    for name, m in measured.items():
        assert m["max_relative_increase"] <= 1e-12, (name, m)
        assert m["fixed_point_residual"] <= 1e-8, (name, m)
        assert m["nonzeros_per_sample"] > 0, (name, m)
    assert increased >= 0.5


@pytest.mark.fast
@pytest.mark.claim("E-ISTA", statement="Table 1 Gaussian row, B(z) = z^T z (Sec. 8 item 46)")
def test_E_ISTA_deviation_gaussian_B_must_be_half_zTz(evidence, seed, device):
    """Sec. 8 item 46: Table 1 prints the Gaussian B(z) = z^T z, but its encoder row
    x_t = S_b(x_{t-1} + alpha H^T (y - H x_{t-1})) and the step 1/sigma_max^2 belong to
    B(z) = z^T z / 2. Asserted: (a) one layer of udlbench's Gaussian encoder (lam = 0) moves x by
    exactly -alpha grad l(x) for B = z^T z / 2 (relative error <= 1e-12), but not for the printed
    B = z^T z (relative difference >= 0.1); (b) for the printed B the gradient is
    2-sigma_max^2-Lipschitz, so alpha = 1/sigma_max^2 is 2/L: proximal gradient on it (encoder
    with W_d = 2H, lam = 0) still moves by a median ||x_T - x_{T-1}|| >= 1e-3 after T = 2000
    layers (it oscillates along the top singular vector), while for B = z^T z / 2 it has converged
    (<= 1e-9). Measured (base seeds 0-2): 0.14-0.18 against 2e-16-1.4e-13."""
    H, _, signals = ista_problem(seed(0), device)
    sigma2 = lipschitz_constant(H)
    z0 = torch.randn(signals.shape[0], H.shape[1], generator=torch.Generator().manual_seed(seed(2)),
                     dtype=H.dtype).to(device)
    z1 = encoders.expfamily(signals, H, family="gaussian", lam=0.0, prox="soft", n_layers=1,
                            alpha=1.0 / sigma2, z0=z0)
    moves = {}
    for quadratic in (0.5, 1.0):
        z = z0.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(gaussian_objective(z, signals, H, lam=0.0,
                                                         quadratic=quadratic).sum(), z)
        expected = -grad / sigma2
        moves[quadratic] = float((z1 - z0 - expected).norm() / expected.norm())
    settle = {}
    for quadratic, W_d in ((0.5, H), (1.0, 2.0 * H)):
        iterates = encoders.expfamily(signals, H, family="gaussian", lam=0.0, prox="soft",
                                      n_layers=ISTA_LAYERS, alpha=1.0 / sigma2, W_e=H, W_d=W_d,
                                      trace=True)
        settle[quadratic] = float((iterates[-1] - iterates[-2]).norm(dim=1).median())
    evidence.seeds = [seed(0), seed(2)]
    evidence.measure(layer_vs_gradient_half=moves[0.5], layer_vs_gradient_printed=moves[1.0],
                     last_move_half=settle[0.5], last_move_printed=settle[1.0])
    evidence.predict(layer_vs_gradient_half=0.0, last_move_half=0.0)
    assert moves[0.5] <= 1e-12
    assert moves[1.0] >= 0.1
    assert settle[0.5] <= 1e-9
    assert settle[1.0] >= 1e-3


# ---------------------------------------------------------------------------------------------
# THEOREMS.md Sec. 8, DCEA items 38-45: documented deviations of the SEA analysis
# ---------------------------------------------------------------------------------------------


@pytest.mark.fast
@pytest.mark.claim("E-T7.2", statement="(A2)-(A3), eq. 12 (Sec. 8 items 38-39)")
def test_E_T7_2_deviation_nonnegative_codes_are_neither_zero_mean_nor_symmetric(
        evidence, seed, device):
    """Sec. 8 items 38-39. Fix a support S of s = 3 atoms of A and draw 20,000 codes on it with
    magnitudes U[C_x/2, C_x], C_x = 2. With the non-negative codes that ReLU_b needs ((A2)),
    E[x_i | S] = 3 C_x / 4 != 0 ((A3) says 0), and E[eps | S] != 0 for the Taylor remainder
    eps = sigma(A x*) - 1/2 - A x* / 4 of eq. 10 (eq. 12 claims 0 "by symmetry"): the largest
    |mean| / standard error over the n coordinates is >= 20. Control: with i.i.d. signs (symmetric
    codes, as (A3) assumes) the same statistic is <= 5. Item 39: (A3) bounds nu = E[x_i^2 | S] by
    C_x, but nu = 7 C_x^2 / 12 > C_x at C_x = 2, while nu <= C_x^2 holds for every C_x."""
    C_x = 2.0
    A = sea_problem(C_x, seed=seed(0), device=device).A
    S = torch.randperm(SEA_ATOMS, generator=torch.Generator().manual_seed(seed(1)))[:SEA_S]
    draws = data.make_sparse(SEA_DIM, SEA_S, 20_000, SEA_S, dictionary=A[:, S.to(A.device)],
                             amplitude=(C_x / 2, C_x), seed=seed(2), device=device)
    scores = {}
    for name, codes in (("nonnegative", draws.Z_star.abs()), ("symmetric", draws.Z_star)):
        linear = codes @ A[:, S.to(A.device)].T
        eps = torch.sigmoid(linear) - 0.5 - linear / 4
        error = eps.std(0) / math.sqrt(eps.shape[0])
        scores[name] = dict(code_mean=float(codes.mean()),
                            eps_mean_over_se_max=float((eps.mean(0).abs() / error).max()))
    nus = {str(c): float(sea_problem(c, seed=seed(0), device=device).nu) for c in C_XS}
    evidence.seeds = [seed(0), seed(1), seed(2)]
    evidence.measure(**{f"{k}_{m}": v for k, r in scores.items() for m, v in r.items()},
                     nu_by_C_x=nus)
    evidence.predict(nonnegative_code_mean=0.75 * C_x, symmetric_code_mean=0.0,
                     nu_by_C_x={str(c): 7 * c**2 / 12 for c in C_XS})
    assert scores["nonnegative"]["code_mean"] == pytest.approx(0.75 * C_x, rel=0.01)
    assert scores["nonnegative"]["eps_mean_over_se_max"] >= 20
    assert scores["symmetric"]["eps_mean_over_se_max"] <= 5
    assert nus[str(C_x)] > C_x
    assert all(nu <= float(c) ** 2 for c, nu in nus.items())


@pytest.mark.fast
@pytest.mark.claim("E-T7.2", statement="eq. 4 against App. 7.1 ReLU_b (Sec. 8 item 40)")
def test_E_T7_2_deviation_two_definitions_of_relu_b(evidence, seed, device):
    """Sec. 8 item 40: main eq. 4 defines ReLU_b(z) = (z - b) 1{z >= b}; App. 7.1 writes
    "ReLU_b(z) = z 1{|z| >= b}", which is hard thresholding, and then uses x = 1{x != 0}(c_1 - b),
    which is eq. 4 again. Asserted on a grid of z in [-2, 2] with b = 0.5: udlbench's
    relu_threshold equals eq. 4 exactly; the appendix formula equals udlbench's hard_threshold and
    differs from eq. 4 by b on z >= b and by |z| on z <= -b; and the SEA encoder (one binomial
    layer, alpha = 4) equals ReLU_b(4 W^T (mu - 1/2)) of eq. 4 to 1e-12 at W0 of E-T7.2."""
    z = torch.linspace(-2, 2, 401, device=device)
    b = 0.5
    eq4 = (z - b) * (z >= b).to(z.dtype)
    appendix = z * (z.abs() >= b).to(z.dtype)
    problem = sea_problem(1.0, seed=seed(0), device=device)
    encoded = sea_encode(problem.W0, problem.mu, b=0.3, prox="relu")
    closed_form = torch.relu(4 * (problem.mu - 0.5) @ problem.W0 - 0.3)
    sea_error = float((encoded - closed_form).abs().max())
    gap = (appendix - eq4).abs()
    evidence.seeds = [seed(0)]
    evidence.measure(relu_vs_eq4=float((operators.relu_threshold(z, b) - eq4).abs().max()),
                     appendix_vs_hard=float((operators.hard_threshold(z, b) - appendix).abs()
                                            .max()),
                     appendix_vs_eq4_max=float(gap.max()), sea_encoder_vs_eq4=sea_error)
    evidence.predict(relu_vs_eq4=0.0, appendix_vs_hard=0.0, appendix_vs_eq4_max=2.0)
    assert torch.equal(operators.relu_threshold(z, b), eq4)
    assert torch.equal(operators.hard_threshold(z, b), appendix)
    torch.testing.assert_close(gap[z >= b], torch.full_like(gap[z >= b], b), rtol=0, atol=1e-12)
    torch.testing.assert_close(gap[z <= -b], z[z <= -b].abs(), rtol=0, atol=0)
    assert sea_error <= 1e-12


@pytest.mark.fast
@pytest.mark.claim("E-T7.2", statement="Alg. 1 step 4 against (A6) (Sec. 8 item 41)")
def test_E_T7_2_deviation_step_4_is_outside_the_stable_range(evidence, seed, device):
    """Sec. 8 item 41: Alg. 1's step 4 "assumes the maximum singular value of A is 1", but (A6)
    has ||A||_2 = O(sqrt(p/n)) >= 1. At the E-T7.2 size (n = 100, p = 150) sigma_max(A)^2 > 2, so
    alpha = 4 >= 2/L = 8 / sigma_max^2 (L = sigma_max^2 / 4): udlbench's encoder refuses it
    (ValueError naming 2/L), and iterated 50 layers (check_step=False) with b = 0 (non-negative
    logistic regression, C_x = 1) it increases the binomial objective for >= 50 % of 200
    samples, while alpha = 4 / sigma_max^2 increases it for none. Reported: with the SEA's
    b = 0.3 C_x the codes are so sparse that alpha = 4 happens to descend (restricted curvature);
    the one-layer SEA never iterates, so Thm 7.2 itself is unaffected. Measured (seed 0):
    sigma_max^2 = 4.5, 100 % against 0 % at b = 0."""
    problem = sea_problem(1.0, seed=seed(0), device=device)
    A, mu = problem.A, problem.mu[:200]
    sigma2 = lipschitz_constant(A)
    with pytest.raises(ValueError, match="2/L"):
        encoders.expfamily(mu, A, family="binomial", trials=1.0, lam=0.3 / SEA_ALPHA, n_layers=1,
                           alpha=SEA_ALPHA)
    fractions = {}
    for b in (0.0, 0.3):
        for name, alpha in (("alpha_4", SEA_ALPHA), ("alpha_4_over_sigma2", 4.0 / sigma2)):
            iterates = encoders.expfamily(mu, A, family="binomial", trials=1.0, lam=b / alpha,
                                          n_layers=50, alpha=alpha, trace=True, check_step=False)
            values = binomial_objective(iterates, mu, A, trials=1.0, lam=b / alpha)
            rises = (values[1:] - values[:-1]) > 1e-12 * values.abs().amax(0)
            fractions[f"{name}@b={b}"] = float(rises.any(0).double().mean())
    evidence.seeds = [seed(0)]
    evidence.measure(sigma_max_sq_A=sigma2, stable_limit=8.0 / sigma2,
                     fraction_increasing=fractions)
    evidence.predict(sigma_max_sq_A="1 (Alg. 1's assumption)")
    assert sigma2 > 2
    assert fractions["alpha_4@b=0.0"] >= 0.5
    assert fractions["alpha_4_over_sigma2@b=0.0"] == 0.0


@pytest.mark.fast
@pytest.mark.claim("E-T7.2", statement="(A14) without nu (Sec. 8 item 42)")
def test_E_T7_2_deviation_printed_A14_admits_a_bias_that_kills_every_code(evidence, seed, device):
    """Sec. 8 item 42: (A14) as printed, |nu tau_i (tau_i - 1) + b^2| <= 2 tau_i (1 - tau_i), lacks
    the factor nu on its right side (the proof uses 2 nu tau_i (1 - tau_i)), so the bias it admits
    does not shrink with the code amplitude C_x, which Thm 7.2 wants small (C_x = O(p^{-1/3-xi})).
    At C_x = 0.125 (nu = 0.009) the printed condition admits, for every column at W0, b up to
    sqrt(min_i (2 + nu) tau_i (1 - tau_i)) (0.22-0.24 at W0, base seeds 0-2), which exceeds C_x,
    the largest code: at 0.99 of that b fewer than 1 % of the codes are non-zero and 5 descent
    steps leave the median error above 0.9 x its initial value (no recovery; measured: no
    non-zero code at all). With nu restored the largest admissible b is
    sqrt(min_i 3 nu tau_i (1 - tau_i)) < C_x / 2 (measured 0.026-0.028). b = 0 satisfies (A14) in
    both forms (nu <= 2) yet gives code consistency (A4) for < 1 % of the samples (measured 0)."""
    C_x = 0.125
    problem = sea_problem(C_x, seed=seed(0), device=device)
    tau = (problem.W0 * problem.A).sum(0)
    b_printed = 0.99 * float(((2 + problem.nu) * tau * (1 - tau)).min().sqrt())
    b_restored = float((3 * problem.nu * tau * (1 - tau)).min().sqrt())
    codes = sea_encode(problem.W0, problem.mu, b=b_printed, prox="relu")
    errors = sea_descent(problem, b=b_printed, prox="relu", kappa=kappa_for(problem.nu), steps=5)
    consistency_b0 = support_consistency(problem, b=0.0, prox="relu")
    evidence.seeds = [seed(0), seed(0) + 1]
    evidence.measure(nu=problem.nu, b_max_printed=b_printed / 0.99, b_max_restored=b_restored,
                     nonzero_fraction=float((codes != 0).double().mean()),
                     median_e5_over_e0=float(np.median(errors[-1]) / np.median(errors[0])),
                     support_consistency_b0=consistency_b0)
    evidence.predict(b_max_printed=f"<= C_x = {C_x} for (A4) to be possible")
    assert b_printed > C_x
    assert float((codes != 0).double().mean()) < 0.01
    assert np.median(errors[-1]) >= 0.9 * np.median(errors[0])
    assert b_restored < C_x / 2
    assert consistency_b0 < 0.01


@pytest.mark.fast
@pytest.mark.claim("E-T7.2", statement="kappa = O(p/s) (Sec. 8 item 43)")
def test_E_T7_2_deviation_learning_rate_must_scale_with_one_over_nu(evidence, seed, device):
    """Sec. 8 item 43: Thm 7.2 states kappa = O(p/s), but the proof's kappa = 1/((1/4) nu tau s/p)
    is O(p/(nu s)), with nu = 7 C_x^2 / 12 here. No C_x-independent constant works: the kappa
    that passes E-T7.2 at C_x = 2 (0.5 / (nu(2) s / 4p)) leaves median e(20) > 0.5 median e(0) at
    C_x = 0.25 (64x too small), and the kappa of C_x = 0.25 fails criterion (i) (median
    e(20) <= 0.15 median e(0)) at C_x = 2 (64x too large). E-T7.2 shows both pass with the nu-aware
    kappa. Measured (base seeds 0-2): e(20)/e(0) = 0.76 and 24-25."""
    small = sea_problem(0.25, seed=seed(0), device=device)
    large = sea_problem(2.0, seed=seed(0), device=device)
    runs = {
        "kappa_of_2_at_0.25": sea_descent(small, b=B_RELU * 0.25, prox="relu",
                                          kappa=kappa_for(large.nu)),
        "kappa_of_0.25_at_2": sea_descent(large, b=B_RELU * 2.0, prox="relu",
                                          kappa=kappa_for(small.nu)),
    }
    ratios = {k: float(np.median(e[-1]) / np.median(e[0])) for k, e in runs.items()}
    evidence.seeds = [seed(0), seed(0) + 1]
    evidence.measure(median_e20_over_e0=ratios, nu_ratio=large.nu / small.nu)
    evidence.predict(median_e20_over_e0="<= 0.15 if kappa = O(p/s) held for every C_x")
    assert ratios["kappa_of_2_at_0.25"] > 0.5
    assert ratios["kappa_of_0.25_at_2"] > 0.15


def canonical_text():
    """The paper's text copy with whitespace and braces removed (for matching formulas)."""
    if not PAPER_TEXT.is_file():
        pytest.skip(f"the paper's text copy is not at {PAPER_TEXT}")
    return re.sub(r"[\s{}]", "", PAPER_TEXT.read_text(errors="replace"))


@pytest.mark.fast
@pytest.mark.claim("E-T7.3", statement="Thm 7.3 exponent, Lemma 7.6 constants (Sec. 8 44-45)")
def test_E_T7_3_deviation_printed_exponent_and_lemma_constants(evidence):
    """Sec. 8 items 44-45, asserted on the paper's text copy (formulas compared without spaces and
    braces): Thm 7.3 prints the floor exponent p^{1+delta xi}, Thms 4.1 and 7.2 print p^{1+6 xi}
    (the same floor; delta is the contraction factor, so "delta xi" is a typo for "6 xi"); Lemma
    7.6's statement has C_x^4 p^2 max(s, C_x^4 s^2) where its proof (eq. 61) ends with
    C_x^6 p^2 max(s, C_x^2 s^2); Lemma 7.9 repeats the statement's form. Control: each of the
    four formulas is searched for in its own form only (a misreading of the catalogue fails)."""
    text = canonical_text()
    counts = {
        "thm_7_3_p^1+delta_xi": text.count(r"p^1+\delta\xi"),
        "thm_4_1_and_7_2_p^1+6xi": text.count(r"p^1+6\xi"),
        "lemma_statement_C_x^4p^2max(s,C_x^4s^2)": text.count(r"C_x^4p^2\max(s,C_x^4s^2)"),
        "proof_C_x^6p^2max(s,C_x^2s^2)": text.count(r"C_x^6p^2\max(s,C_x^2s^2)"),
    }
    evidence.measure(occurrences=counts)
    evidence.predict(occurrences={k: ">= 1" for k in counts})
    assert counts["thm_7_3_p^1+delta_xi"] == 1
    assert counts["thm_4_1_and_7_2_p^1+6xi"] == 2
    assert counts["lemma_statement_C_x^4p^2max(s,C_x^4s^2)"] == 2
    assert counts["proof_C_x^6p^2max(s,C_x^2s^2)"] >= 2
