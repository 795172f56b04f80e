"""PUDLE (TMLR 2023) local forward-pass rates: finite-iteration support selection (Prop. 4.1),
linear code convergence (Thm 4.3), Jacobian convergence O(t rho^t) (Thm 4.7) and the tightness
example (Lemma A.4); and the workshop version's local rates (W Thms 3.1-3.3), which are the same
statements up to the constant 1/rho. THEOREMS.md Secs. 0.7, 1 (P-P4.1, P-T4.3, P-T4.7, P-LA.4)
and 2 (W-T3.1 / W-T3.2 / W-T3.3). The numbers behind P Fig. 2 / W Fig. 2 (mean_i ||z_t - z_hat||
against t) are recorded in the P-T4.3 evidence, and the figure is drawn from the same run when
the suite runs with ``--figures``.

The runs are shared between checks through small caches keyed by seed and device: P-T4.3 and
W-T3.1 read the same code run, P-T4.7, W-T3.2 and W-T3.3 the same Jacobian run.
"""

import functools
import math

import numpy as np
import pytest
import torch

from udlbench import data, encoders, gradients, jacobians, lasso, rates
from udlbench.evidence import clopper_pearson
from udlbench.linalg import lipschitz_constant

M, P, S, LAM, ALPHA = 50, 100, 5, 0.2, 0.2
TAU_B = 0.55 / math.log(M)
UNIT_ROUNDOFF = torch.finfo(torch.float64).eps / 2
ROUNDING = 1e-15  # allowance for one float64 ISTA step, times (1 + ||z_hat||); see P-T4.3
FIG2_T = (0, 10, 25, 50, 100, 200, 400)


def p_small(n, seed, device):
    """P-small (THEOREMS.md Sec. 1): m=50, p=100, s=5, U(1,2) amplitudes, iid signs, and the close
    dictionary D* + tau_B B at tau_B = 0.55 / ln m."""
    problem = data.make_sparse(M, P, n, S, sign="iid", seed=seed, device=device)
    D = data.perturb(problem.D_star, TAU_B, seed=seed + 10_000)
    return problem, D


def restricted_spectrum(D, Z_hat):
    """Per sample, the extreme eigenvalues of D_S^T D_S on S = supp(z_hat)."""
    gram = D.T @ D
    low, high = [], []
    for z in Z_hat:
        support = torch.nonzero(z).ravel()
        values = torch.linalg.eigvalsh(gram[support][:, support])
        low.append(float(values[0]))
        high.append(float(values[-1]))
    return np.array(low), np.array(high)


def local_rate(low, high, alpha):
    """rho_S = max(|1 - alpha lam_min(D_S^T D_S)|, |1 - alpha lam_max(D_S^T D_S)|): the norm of the
    exact local map z_{t+1} - z_hat = (I - alpha D_S^T D_S)(z_t - z_hat) (THEOREMS.md P-T4.3)."""
    return np.maximum(np.abs(1 - alpha * low), np.abs(1 - alpha * high))


def common_window(first, second, *, start, floor_first, floor_second):
    """THEOREMS.md Sec. 0.7 window (t >= B_i + 5, above the floor, >= 8 points) of two error
    curves at once, so that their slopes are compared over the same iterations."""
    a = rates.window(first, start=start, floor=floor_first)
    b = rates.window(second, start=start, floor=floor_second)
    if a is None or b is None:
        return None
    index = np.intersect1d(a, b)
    return index if index.size >= 8 else None


def envelope_exponent(errors, index, log_rate):
    """b of the upper-envelope fit log e(t) = a + b log t + t log(rate), the rate held fixed
    (THEOREMS.md P-T4.7 (iii)); also returns the intercept a."""
    t = index.astype(np.float64)
    scaled = np.exp(np.log(errors[index]) - t * log_rate)
    fit = rates.fit_log_linear(np.log(t), scaled)
    return fit.slope, fit.intercept


def slope_ratio(numerator, denominator, index):
    """slope(log numerator) / slope(log denominator) over the same window."""
    return (rates.fit_log_linear(index, numerator[index]).slope
            / rates.fit_log_linear(index, denominator[index]).slope)


# ---------------------------------------------------------------------------------------------
# Shared runs
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def support_run(seed, device):
    """P-P4.1: P-small, n=200, T_max=2000, fixed lam=0.2, alpha=0.2."""
    n, T = 200, 2000
    problem, D = p_small(n, seed, device)
    X = problem.X
    z_hat, info = lasso.solve(X, D, lam=LAM, return_info=True)
    settle, settle_signed, final = [], [], []
    for chunk in range(0, n, 50):
        Z = encoders.ista(X[chunk:chunk + 50], D, lam=LAM, alpha=ALPHA, n_layers=T, trace=True)
        limit = z_hat[chunk:chunk + 50]
        settle.append(rates.settle_times(Z, limit, signed=False))
        settle_signed.append(rates.settle_times(Z, limit))
        final.append(Z[-1])
    # Negative control: lam = 0 (least squares with p > m), the same encoder otherwise.
    Z_ls = encoders.ista(X, D, lam=0.0, alpha=ALPHA, n_layers=50, trace=True)
    return dict(
        n=n, T=T, D=D, z_hat=z_hat, info=info, settle=torch.cat(settle).cpu().numpy(),
        settle_signed=torch.cat(settle_signed).cpu().numpy(), z_T=torch.cat(final),
        ls_support_sizes=(Z_ls[1:] != 0).sum(-1).cpu().numpy(),
    )


@functools.lru_cache(maxsize=2)
def code_run(seed, device):
    """P-T4.3 / W-T3.1: P-small, T_max=400, per-sample errors e_t = ||z_t - z_hat||, settle
    times, rho_S, the per-step ratio test, the exact local-map identity and the rate fits.
    n=1000 (catalogue: 30) so that the ">= 95 % of samples" criterion is decided with resolution;
    see test_P_T4_3_local_linear_code_convergence."""
    n, T, chunk_size = 1000, 400, 200
    problem, D = p_small(n, seed, device)
    X = problem.X
    z_hat, info = lasso.solve(X, D, lam=LAM, return_info=True)
    low, high = restricted_spectrum(D, z_hat)
    rho_S = local_rate(low, high, ALPHA)
    gram = D.T @ D
    errors, settle, ratio_excess, map_residual = [], [], [], []
    for start in range(0, n, chunk_size):
        part = slice(start, start + chunk_size)
        Z = encoders.ista(X[part], D, lam=LAM, alpha=ALPHA, n_layers=T, trace=True)
        limit = z_hat[part]
        B = rates.settle_times(Z, limit)
        diff = Z - limit
        e = torch.linalg.vector_norm(diff, dim=-1)
        steps = torch.arange(T + 1, device=Z.device)[:, None]
        after = steps[:-1] > B[None, :]  # t > B_i: z_t and z_{t+1} have the signs of z_hat
        # Exact local map on S: z_{t+1} - z_hat = (I - alpha D_S^T D_S)(z_t - z_hat).
        mask = (limit != 0).to(diff.dtype)
        predicted = diff[:-1] - ALPHA * mask * (diff[:-1] @ gram)
        residual = torch.linalg.vector_norm(diff[1:] - predicted, dim=-1)
        scale = 1 + torch.linalg.vector_norm(limit, dim=-1)
        map_residual.append(torch.where(after, residual / scale, 0.0).amax(0))
        # (i): r_t <= rho_S (1 + 1e-9) + ROUNDING (1 + ||z_hat||) / e_t while e > 1e-13.
        rho = torch.as_tensor(rho_S[part], device=Z.device)
        resolvable = after & (e[:-1] > 1e-13) & (e[1:] > 1e-13)
        excess = (e[1:] - rho * (1 + 1e-9) * e[:-1]) / (UNIT_ROUNDOFF * scale)
        ratio_excess.append(torch.where(resolvable, excess, -math.inf).amax(0))
        errors.append(e)
        settle.append(B)
    errors = torch.cat(errors, 1).cpu().numpy()
    settle = torch.cat(settle).cpu().numpy()
    z_norm = torch.linalg.vector_norm(z_hat, dim=-1).cpu().numpy()
    fits = [rates.fit_window(errors[:, i], start=int(settle[i]) + 5, floor=1e-12 * z_norm[i])
            for i in range(n)]
    rho_hat = np.array([f.rate if f is not None else math.nan for f in fits])
    return dict(
        n=n, T=T, X=X, D=D, z_hat=z_hat, info=info, rho_S=rho_S, lam_max_S=high,
        errors=errors, settle=settle, z_norm=z_norm, fits=fits, rho_hat=rho_hat,
        map_residual=torch.cat(map_residual).cpu().numpy(),
        ratio_excess=torch.cat(ratio_excess).cpu().numpy(),
    )


@functools.lru_cache(maxsize=2)
def plateau_control(seed, device):
    """Negative control of P-T4.3 (ii) on the first 100 samples of code_run: an encoder that
    thresholds with lam instead of alpha lam, i.e. ISTA at lam' = lam / alpha. It converges to
    the lasso at lam / alpha, so its error to z_hat plateaus. Fitted over the same windows."""
    run = code_run(seed, device)
    n = 100
    Z = encoders.ista(run["X"][:n], run["D"], lam=LAM / ALPHA, alpha=ALPHA, n_layers=run["T"],
                      trace=True)
    errors = torch.linalg.vector_norm(Z - run["z_hat"][:n], dim=-1).cpu().numpy()
    rho_hat = []
    for i in range(n):
        fit = rates.fit_window(errors[:, i], start=int(run["settle"][i]) + 5,
                               floor=1e-12 * run["z_norm"][i])
        rho_hat.append(fit.rate)
    return np.array(rho_hat), errors[-1]


@functools.lru_cache(maxsize=2)
def jacobian_run(seed, device):
    """P-T4.7 / W-T3.2 / W-T3.3: P-small, K=6 directions E_k ~ N(0, I_{m x p}).

    n = 100 (catalogue: 30). At n = 30, one sample in about 140 falls outside the P-T4.7 (ii)
    band (slope ratios down to 0.80 and up to 1.10 over seeds 0-39; one out-of-band sample at 8
    of 40 seeds, none with two), so ">= 95 %" (at most 1 of 30) would fail at roughly 2 % of
    base seeds; at n = 100 it allows 5.
    T_max = 2000 (catalogue: 400): samples with rho_S ~ 0.96-0.97 and late support
    identification (B_i up to 306) are not within 1e-8 ||J_hat|| by t = 400 (measured max_i
    e_J(400)/||J_hat_i|| = 1.4e-9, 2.5e-7, 1.4e-6 at seeds 0, 1, 2 with n = 30, and 1.1e-7 at
    t = 800 for seed 29). The window fits end at the 1e-12 floor, so the longer run only adds
    iterations.

    Besides e_J(t) (recursion against the closed form), it projects the three gradients of eq. 7
    on the same directions, <g_t - g_hat, E_k> per sample, using the forward-mode J_t[E_k]:
    <g^dec_t, E> = r_t^T E z_t, <g^ae-ls_t, E> = <g^dec_t, E> + <D^T r_t, J_t[E]> and
    <g^ae-lasso_t, E> = <g^ae-ls_t, E> + lam <sign z_t, J_t[E]> (r_t = D z_t - x). The
    projections are pinned to ``gradients.estimate`` at T = 60 (test_W_T3_3_...). Samples are
    processed in chunks of 50 to bound the memory of the (T + 1, n, p) traces; the autograd
    comparison runs on the first chunk.
    """
    n, T, K, chunk_size = 100, 2000, 6, 50
    problem, D = p_small(n, seed, device)
    X = problem.X
    z_hat, info = lasso.solve(X, D, lam=LAM, return_info=True)
    low, high = restricted_spectrum(D, z_hat)
    generator = torch.Generator().manual_seed(seed + 20_000)
    directions = [torch.randn(M, P, generator=generator).to(device) for _ in range(K)]
    rho_S = local_rate(low, high, ALPHA)
    parts = [jacobian_chunk(X[i:i + chunk_size], D, z_hat[i:i + chunk_size], directions,
                            rho_S[i:i + chunk_size], T=T, check_autograd=i == 0)
             for i in range(0, n, chunk_size)]
    out = {key: np.concatenate([part[key] for part in parts], axis=-1)
           for key in parts[0] if key not in ("autograd_gap", "projections_T60")}
    out.update(
        n=n, T=T, X=X, D=D, z_hat=z_hat, info=info, rho_S=rho_S,
        z_norm=torch.linalg.vector_norm(z_hat, dim=-1).cpu().numpy(), directions=directions,
        autograd_gap=parts[0]["autograd_gap"], projections_T60=parts[0]["projections_T60"],
    )
    return out


def jacobian_chunk(X, D, z_hat, directions, rho_S, *, T, check_autograd, T_autograd=400,
                   T_control=600):
    """The per-sample quantities of :func:`jacobian_run` for one chunk of samples.

    Explicit envelope of the proof of Thm 4.7 (P-T4.7 (iii)). For t > B_i the mask is S and
    J_t is supported on S, so with A = I - alpha D_S^T D_S (norm rho_S), M_E = (E^T D + D^T E)_SS
    and d_t = z_t - z_hat = A^(t - t0) d_t0, the error E_t = J_t[E] - J_hat[E] obeys exactly
    E_{t+1} = A E_t - alpha M_E d_t. Hence, from t0 = B_i + 1,
    ||E_t|| <= rho_S^(t-t0) ||E_t0|| + alpha (t - t0) rho_S^(t-t0-1) ||M_E||_2 ||d_t0||,
    an O(t rho^t) bound with the sample's own constants (summed over the K directions in
    quadrature). Its variant without the factor (t - t0) is recorded too.
    """
    n = X.shape[0]
    Z = encoders.ista(X, D, lam=LAM, alpha=ALPHA, n_layers=T, trace=True)
    settle = rates.settle_times(Z, z_hat)
    start = settle + 1
    rows = torch.arange(n, device=X.device)
    e_z = torch.linalg.vector_norm(Z - z_hat, dim=-1)
    steps = torch.arange(T + 1, device=X.device)[:, None] - start[None, :]
    after = steps.clamp(min=0).to(X.dtype)
    rho = torch.as_tensor(rho_S, device=X.device)[None, :]
    mask = (z_hat != 0).to(X.dtype)
    envelope2, envelope_no_t2 = torch.zeros(T + 1, n), torch.zeros(T + 1, n)
    envelope2, envelope_no_t2 = envelope2.to(X.device), envelope_no_t2.to(X.device)
    R = Z @ D.T - X
    grad_code = R @ D  # nabla_1 L(z_t) = D^T (D z_t - x)
    r_hat = z_hat @ D.T - X
    zeros = torch.zeros(T + 1, n, device=X.device)
    e_J2, J_hat2, g_hat2 = zeros.clone(), torch.zeros(n, device=X.device), zeros[0].clone()
    dec2, lasso2, ls_off2, bug2, bias2 = (zeros.clone() for _ in range(5))
    no_mask2 = torch.zeros(T_control + 1, n, device=X.device)
    autograd_gap = 0.0
    projections_T60 = []
    for k, E in enumerate(directions):
        J = jacobians.jvp_recursion(X, D, E, lam=LAM, n_layers=T, alpha=ALPHA, trace=True)
        J_hat = jacobians.jvp_closed_form(X, D, E, z_hat)
        e_J2 += ((J - J_hat) ** 2).sum(-1)
        J_hat2 += (J_hat ** 2).sum(-1)
        coupling = mask[:, :, None] * (E.T @ D + D.T @ E) * mask[:, None, :]
        coupling_norm = torch.linalg.eigvalsh(coupling).abs().amax(-1)
        initial = torch.linalg.vector_norm(J[start, rows] - J_hat, dim=-1)
        forcing = ALPHA * coupling_norm * e_z[start, rows]
        envelope2 += (rho**after * initial + after * rho ** (after - 1) * forcing) ** 2
        envelope_no_t2 += (rho**after * initial + rho ** (after - 1) * forcing) ** 2
        if check_autograd and k < 2:
            J_auto = jacobians.jvp_autograd(X, D, E, lam=LAM, n_layers=T_autograd, alpha=ALPHA,
                                            trace=True)
            gap = torch.linalg.vector_norm(J_auto - J[: T_autograd + 1], dim=-1).amax(0)
            size = torch.linalg.vector_norm(J[: T_autograd + 1], dim=-1).amax(0)
            autograd_gap = max(autograd_gap, float((gap / size).max()))
        g_hat_E = torch.einsum("nm,mp,np->n", r_hat, E, z_hat)
        dec = torch.einsum("tnm,tnm->tn", R, Z @ E.T) - g_hat_E
        ls = dec + (grad_code * J).sum(-1)
        sign_term = LAM * (torch.sign(Z) * J).sum(-1)
        bias = -LAM * (torch.sign(z_hat) * J_hat).sum(-1)  # <-lam J_hat^T sign(z_hat), E>
        dec2 += dec ** 2
        lasso2 += (ls + sign_term) ** 2
        ls_off2 += (ls - bias) ** 2
        bug2 += (ls - sign_term) ** 2  # control: +lam replaced by -lam in d h
        bias2 += bias ** 2
        g_hat2 += g_hat_E ** 2
        projections_T60.append(torch.stack([dec[60], ls[60] + sign_term[60], ls[60]]) + g_hat_E)
        no_mask2 += ((no_mask_recursion(X, D, E, Z[: T_control + 1]) - J_hat) ** 2).sum(-1)
        del J
    as_numpy = lambda v: v.sqrt().cpu().numpy()
    # Where the envelope is checked: t >= t0 + 1 (at t0 it is e_J itself) and e_J above the
    # Sec. 0.7 floor 1e-12 ||J_hat||.
    checked = (steps >= 1) & (e_J2 > (1e-12) ** 2 * J_hat2)
    ratio = lambda bound2: torch.where(checked, (e_J2 / bound2).sqrt(), 0.0).amax(0)
    early = checked[: T_control + 1]
    return dict(
        settle=settle.cpu().numpy(), e_z=e_z.cpu().numpy(),
        envelope_ratio=ratio(envelope2).cpu().numpy(),
        envelope_no_t_ratio=ratio(envelope_no_t2).cpu().numpy(),
        no_mask_envelope_ratio=torch.where(early, (no_mask2 / envelope2[: T_control + 1])
                                           .sqrt(), 0.0).amax(0).cpu().numpy(),
        e_J=as_numpy(e_J2), J_hat_norm=as_numpy(J_hat2), e_J_no_mask=as_numpy(no_mask2),
        e_dec=as_numpy(dec2), e_lasso=as_numpy(lasso2), e_ls_off_bias=as_numpy(ls_off2),
        e_sign_bug=as_numpy(bug2), bias=as_numpy(bias2), g_hat=as_numpy(g_hat2),
        autograd_gap=autograd_gap, projections_T60=torch.stack(projections_T60, -1),
    )


def no_mask_recursion(X, D, E, Z):
    """The deliberately wrong Jacobian recursion of the P-T4.7 negative control: differentiate as
    if soft-thresholding were the identity (no mask 1{|u_t| > alpha lam}), along the iterates Z
    (T + 1, n, p) of the correct encoder."""
    jac = torch.zeros_like(Z[0])
    history = [jac]
    for z in Z[:-1]:
        residual = z @ D.T - X
        jac = jac - ALPHA * ((jac @ D.T) @ D + residual @ E + (z @ E.T) @ D)
        history.append(jac)
    return torch.stack(history)


def jacobian_fits(run):
    """Per sample: the P-T4.7 (ii) slope ratio over the common window, the (iii) envelope exponent
    with rho_S and with the fitted rho_hat_z, and the no-mask control's slope ratio."""
    out = {"ratio": [], "b": [], "a": [], "b_W": [], "a_W": [], "b_rho_hat": [],
           "control_ratio": []}
    for i in range(run["n"]):
        start = int(run["settle"][i]) + 5
        e_z, e_J = run["e_z"][:, i], run["e_J"][:, i]
        floor_z, floor_J = 1e-12 * run["z_norm"][i], 1e-12 * run["J_hat_norm"][i]
        index = common_window(e_z, e_J, start=start, floor_first=floor_z, floor_second=floor_J)
        out["ratio"].append(slope_ratio(e_J, e_z, index))
        window_J = rates.window(e_J, start=start, floor=floor_J)
        log_rho = math.log(run["rho_S"][i])
        b, a = envelope_exponent(e_J, window_J, log_rho)
        out["b"].append(b)
        out["a"].append(a)
        # W Thm 3.2 normalisation: log e_J = a' + b' log t + (t - 1) log rho.
        t = window_J.astype(np.float64)
        fit_W = rates.fit_log_linear(np.log(t), np.exp(np.log(e_J[window_J]) - (t - 1) * log_rho))
        out["b_W"].append(fit_W.slope)
        out["a_W"].append(fit_W.intercept)
        rho_hat = rates.fit_window(e_z, start=start, floor=floor_z).slope
        out["b_rho_hat"].append(envelope_exponent(e_J, window_J, rho_hat)[0])
        control = run["e_J_no_mask"][:, i]
        window_z = rates.window(e_z[: control.size], start=start, floor=floor_z)
        out["control_ratio"].append(slope_ratio(control, e_z, window_z))
    return {k: np.array(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# P-P4.1
# ---------------------------------------------------------------------------------------------

@pytest.mark.fast
@pytest.mark.claim("P-P4.1", statement="Prop. 4.1")
def test_P_P4_1_support_is_selected_in_finitely_many_steps(evidence, seed, device):
    """Prop. 4.1: there is a B with supp(z_t) = supp(z_hat) for all t > B. P-small, n=200,
    T_max=2000, lam=alpha=0.2, certified z_hat (0 uncertified). Pass: supp(z_T) = supp(z_hat) and
    sign(z_T) = sign(z_hat) for 100 % of samples, i.e. B_i < T_max (B_i = the last t with
    supp(z_t) != supp(z_hat); no support change in [B_i + 1, T_max] by construction). The
    distribution of B_i is recorded (Fig. 2 / W Fig. 2 regime).
    Negative control: lam = 0 (least squares, p > m) never selects a sparse support:
    |supp z_t| = p for every t >= 1, so the same criterion rejects it for every sample.
    Measured over base seeds 0, 1, 2: B_i in [23, 230], [26, 165], [20, 177] (median 51.5, 51,
    55); over seeds 0-15 min B_i >= 19 and max B_i <= 230."""
    run = support_run(seed(0), device)
    z_hat, z_T, settle = run["z_hat"], run["z_T"], run["settle"]
    same_support = ((z_T != 0) == (z_hat != 0)).all(-1)
    same_sign = (torch.sign(z_T) == torch.sign(z_hat)).all(-1)
    ls_sizes = run["ls_support_sizes"]
    control_selects = (ls_sizes[-1] == (z_hat != 0).sum(-1).cpu().numpy()).mean()
    evidence.seeds = [seed(0)]
    evidence.measure(
        uncertified=int((~run["info"].certified).sum()),
        fraction_support_selected=float(same_support.double().mean()),
        fraction_sign_selected=float(same_sign.double().mean()),
        B_min=int(settle.min()), B_median=float(np.median(settle)), B_max=int(settle.max()),
        B_quantiles_5_25_50_75_95=np.quantile(settle, [0.05, 0.25, 0.5, 0.75, 0.95]),
        B_signed_max=int(run["settle_signed"].max()),
        support_size_median=float((z_hat != 0).sum(-1).double().median()),
        control_lam0_min_support_size=int(ls_sizes.min()),
        control_lam0_fraction_selected=float(control_selects),
        sigma_max_sq=lipschitz_constant(run["D"]), T_max=run["T"],
    )
    evidence.predict(fraction_support_selected=1.0, fraction_sign_selected=1.0,
                     control_lam0_min_support_size=P)
    assert int((~run["info"].certified).sum()) == 0
    assert bool(same_support.all()) and bool(same_sign.all())
    assert int(settle.max()) < run["T"] and int(run["settle_signed"].max()) < run["T"]
    assert int(ls_sizes.min()) == P  # the control has a dense support at every t >= 1
    assert control_selects == 0.0


@pytest.mark.fast
@pytest.mark.claim("P-P4.1", statement="Prop. 4.1 and the B = 1 claim after Thms 4.1-4.2")
def test_P_P4_1_deviation_support_settles_late_at_fixed_lam(evidence, seed, device):
    """Documented deviation (THEOREMS.md P-P4.1, Sec. 6 and Sec. 8 item 15): the paper adds B = 1
    under Thms 4.1-4.2, but in its own experimental regime (fixed lam = 0.2, alpha = 0.2, P-small)
    the support settles only after tens to hundreds of iterations. Asserted: B_i > 1 for every
    sample and median B_i >= 20 (so the printed B = 1 is violated by every sample, not by a few
    outliers). Catalogue [proto]: B_i from 28 to 134. Measured over base seeds 0, 1, 2: min B_i =
    23, 26, 20; median 51.5, 51, 55; max 230, 165, 177 (n = 200 each). B = 1 needs the lam_t
    schedule of Thm 4.2 (P-T4.2)."""
    run = support_run(seed(0), device)
    settle = run["settle"]
    evidence.seeds = [seed(0)]
    evidence.measure(B_min=int(settle.min()), B_median=float(np.median(settle)),
                     B_max=int(settle.max()),
                     fraction_B_gt_1=float((settle > 1).mean()),
                     fraction_B_gt_1_ci95=clopper_pearson(int((settle > 1).sum()), settle.size),
                     sigma_max_sq=lipschitz_constant(run["D"]))
    evidence.predict(B_max=1)
    assert (settle > 1).all()
    assert float(np.median(settle)) >= 20


# ---------------------------------------------------------------------------------------------
# P-T4.3
# ---------------------------------------------------------------------------------------------

def draw_fig2(evidence, figures, errors, faint=8):
    """P Fig. 2 / W Fig. 2 from the P-T4.3 run: mean_i ||z_t - z_hat_i||_2 against t (log scale),
    with the first ``faint`` samples drawn faintly. Exact zeros are left out of the log axis."""
    import matplotlib.pyplot as plt

    t = np.arange(errors.shape[0])
    positive = lambda e: np.where(e > 0, e, np.nan)
    fig, ax = plt.subplots(figsize=(6, 4))
    for i in range(min(faint, errors.shape[1])):
        ax.plot(t, positive(errors[:, i]), color="0.6", lw=0.7, alpha=0.5,
                label="individual samples" if i == 0 else None)
    ax.plot(t, positive(errors.mean(1)), color="C0", lw=2,
            label=f"mean over n = {errors.shape[1]} samples")
    ax.set_yscale("log")
    ax.set_xlabel("encoder iteration t")
    ax.set_ylabel(r"$\|z_t - \hat z\|_2$")
    ax.set_title(f"PUDLE Fig. 2 (P-small, m={M}, p={P}, s={S}, lam={LAM}, alpha={ALPHA})")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    figures(evidence, fig, "fig2")


@pytest.mark.fast
@pytest.mark.claim("P-T4.3", statement="Thm 4.3 (with Lemma A.2)")
def test_P_T4_3_local_linear_code_convergence(evidence, seed, device, figures):
    """Thm 4.3: ||z_t - z_hat|| <= O(rho^t) for t > B, in the sharper form of THEOREMS.md: once the
    signed support is fixed, z_{t+1} - z_hat = (I - alpha D_S^T D_S)(z_t - z_hat) exactly, so the
    per-step ratio is <= rho_S = max(|1 - alpha lam_min|, |1 - alpha lam_max|) of D_S^T D_S, and
    the asymptotic rate equals rho_S. P-small, T_max = 400, certified z_hat.

    Pass:
    (i)  r_t = e_{t+1}/e_t <= rho_S (1 + 1e-9) + 1e-15 (1 + ||z_hat||) / e_t for every t > B_i
         with e > 1e-13, and the exact local map holds to 1e-14 (1 + ||z_hat||). The second term
         is the float64 rounding of one ISTA step (1e-15 = 9 u, u = 2^-53): without it, the 1e-9
         relative criterion is violated by rounding alone wherever e_t < ~1e-7 (956, 942, 952 of
         the 1000 samples have such a step at seeds 0, 1, 2), always with e_{t+1} - rho_S e_t <=
         0.62 u (1 + ||z_hat||) over seeds 0-15; the map identity residual is <= 1e-16.
    (ii) |rho_hat_i / rho_S - 1| <= 0.01 for >= 95 % of samples (rho_hat from the Sec. 0.7
         window t >= B_i + 5, e > 1e-12 ||z_hat||).
    (iii) rho_S < 1 for all samples.
    Sample size: n = 1000 instead of the catalogue's 30. The out-of-band samples (rho_hat/rho_S
    down to 0.97) are those whose two slowest modes of I - alpha D_S^T D_S are close (e.g. rates
    0.856 and 0.832), so the window still carries the second mode. At n = 30 they are 0, 1 or 2
    per seed (2 at seeds 6, 7 and 12 of 0-19: 28/30 = 93 % < 95 %); at n = 1000 the in-band
    fraction is 0.972, 0.978, 0.985 at seeds 0, 1, 2 and within [0.972, 0.985] over seeds 0-15
    [catalogue proto: ratios in [0.9956, 1.00001] over 30 samples].
    Negative control (ii): thresholding with lam instead of alpha lam (ISTA at lam/alpha) plateaus:
    rho_hat > 0.999 and the in-band fraction is far below 95 %. The divergent-step control is
    test_P_T4_3_divergent_step_control.
    Reproduces the numbers of Fig. 2 / W Fig. 2 (mean_i e_t at FIG2_T, recorded); with
    ``--figures`` it draws the figure (mean_i e_t against t, a few samples faintly) from the same
    run."""
    run = code_run(seed(0), device)
    rho_S, rho_hat = run["rho_S"], run["rho_hat"]
    ratio = rho_hat / rho_S
    in_band = np.abs(ratio - 1) <= 0.01  # a missing fit (nan) counts as out of band
    control_rho_hat, control_final = plateau_control(seed(0), device)
    control_in_band = np.abs(control_rho_hat / rho_S[: control_rho_hat.size] - 1) <= 0.01
    raw_violations = int((run["ratio_excess"] > 0).sum())
    evidence.seeds = [seed(0)]
    evidence.measure(
        n=run["n"], uncertified=int((~run["info"].certified).sum()),
        rho_S_min=rho_S.min(), rho_S_median=np.median(rho_S), rho_S_max=rho_S.max(),
        rate_ratio_quantiles_0_1_5_50_100=np.nanquantile(ratio, [0, 0.01, 0.05, 0.5, 1]),
        fraction_rate_within_1pct=in_band.mean(),
        fraction_rate_within_1pct_ci95=clopper_pearson(int(in_band.sum()), in_band.size),
        missing_fits=int(np.isnan(rho_hat).sum()),
        max_step_excess_over_rounding_unit=float(run["ratio_excess"].max()),
        samples_with_raw_ratio_above_rho_S=raw_violations,
        max_local_map_residual=float(run["map_residual"].max()),
        B_min=int(run["settle"].min()), B_median=float(np.median(run["settle"])),
        B_max=int(run["settle"].max()),
        fig2_t=list(FIG2_T), fig2_mean_error=[float(run["errors"][t].mean()) for t in FIG2_T],
        control_lam_over_alpha_rho_hat_min=control_rho_hat.min(),
        control_lam_over_alpha_fraction_within_1pct=control_in_band.mean(),
        control_lam_over_alpha_final_error_median=float(np.median(control_final)),
        sigma_max_sq=lipschitz_constant(run["D"]),
    )
    evidence.predict(rate_ratio=1.0, fraction_rate_within_1pct=">= 0.95",
                     max_step_excess_over_rounding_unit=f"<= {ROUNDING / UNIT_ROUNDOFF:.1f}")
    if figures.enabled:
        draw_fig2(evidence, figures, run["errors"])
    assert int((~run["info"].certified).sum()) == 0
    # (i)
    assert float(run["ratio_excess"].max()) <= ROUNDING / UNIT_ROUNDOFF
    assert float(run["map_residual"].max()) <= 1e-14
    # (ii)
    assert in_band.mean() >= 0.95
    # (iii)
    assert (rho_S < 1).all()
    # Negative control: the plateau is rejected by the same criterion.
    assert (control_rho_hat > 0.999).all()
    assert control_in_band.mean() < 0.95


@pytest.mark.fast
@pytest.mark.claim("P-T4.3", statement="Thm 4.3 (step-size condition)")
def test_P_T4_3_divergent_step_control(evidence, seed, device):
    """Negative control of Thm 4.3 (THEOREMS.md P-T4.3): with alpha_i = 1.2 * 2 / lam_max(D_S^T D_S)
    (per sample, check_step=False on purpose) the error diverges: rho_S(alpha_i) = |1 - alpha_i
    lam_max| = 1.4 > 1 violates (iii), the error grows by > 1e6 over 60 layers, and the fitted
    rate over t in [5, 60] exceeds 1, so (ii) (|rho_hat / rho_S(0.2) - 1| <= 0.01) fails for
    every sample. First 30 samples of the P-T4.3 run."""
    run = code_run(seed(0), device)
    n, T = 30, 60
    growth, rho_hat, rho_S_bad, rho_S_ok = [], [], [], []
    for i in range(n):
        alpha = 1.2 * 2 / run["lam_max_S"][i]
        Z = encoders.ista(run["X"][i:i + 1], run["D"], lam=LAM, alpha=alpha, n_layers=T,
                          trace=True, check_step=False)
        e = torch.linalg.vector_norm(Z[:, 0] - run["z_hat"][i], dim=-1).cpu().numpy()
        growth.append(e[-1] / e[0])
        rho_hat.append(rates.fit_log_linear(np.arange(5, T + 1), e[5:]).rate)
        rho_S_bad.append(abs(1 - alpha * run["lam_max_S"][i]))
        rho_S_ok.append(run["rho_S"][i])
    growth, rho_hat = np.array(growth), np.array(rho_hat)
    rho_S_bad, rho_S_ok = np.array(rho_S_bad), np.array(rho_S_ok)
    evidence.seeds = [seed(0)]
    evidence.measure(growth_min=growth.min(), rho_hat_min=rho_hat.min(),
                     rho_S_at_bad_alpha=rho_S_bad.max(),
                     fraction_rate_within_1pct=float((np.abs(rho_hat / rho_S_ok - 1) <= 0.01)
                                                     .mean()),
                     sigma_max_sq=lipschitz_constant(run["D"]))
    evidence.predict(rho_S_at_bad_alpha=1.4)
    assert np.allclose(rho_S_bad, 1.4, rtol=1e-12)
    assert (rho_S_bad >= 1).all()  # (iii) rejects it
    assert (growth > 1e6).all()
    assert (rho_hat > 1).all()
    assert (np.abs(rho_hat / rho_S_ok - 1) > 0.01).all()  # (ii) rejects it


# ---------------------------------------------------------------------------------------------
# P-T4.7
# ---------------------------------------------------------------------------------------------

@pytest.mark.fast
@pytest.mark.claim("P-T4.7", statement="Thm 4.7")
def test_P_T4_7_jacobian_convergence_t_rho_t(evidence, seed, device):
    """Thm 4.7: ||J_t - J_hat|| <= O(t rho^t) for t > B. P-small, n=100, K=6 directions
    E_k ~ N(0, I), e_J(t) = (sum_k ||J_t[E_k] - J_hat[E_k]||^2)^(1/2) with J_t from the forward
    recursion (jacobians.jvp_recursion) and J_hat from the closed form of Sec. 0.5.

    Pass:
    (0) the recursion equals torch.func.jvp through the unrolled encoder (jvp_autograd) to 1e-12
        relative, for t = 0..400, 2 directions, the first 50 samples;
    (i) e_J(T_max) < 1e-8 ||J_hat|| for every sample (T_max = 2000, see jacobian_run);
    (ii) slope(log e_J) / slope(log e_z) over the common Sec. 0.7 window lies in [0.85, 1.05] for
        >= 95 % of samples [proto: [0.928, 1.006]; measured ranges at seeds 0, 1, 2 (n = 100):
        [0.915, 1.013], [0.919, 1.028], [0.922, 1.021]; in-band fraction >= 0.97 over seeds
        0-59];
    (iii) upper envelope. Asserted: the explicit O(t rho^t) envelope of the proof (see
        jacobian_chunk), e_J(t) <= [sum_k (rho_S^(t-t0) ||E^k_t0|| + alpha (t - t0)
        rho_S^(t-t0-1) ||M_k|| ||d_t0||)^2]^(1/2) (1 + 1e-9) for every t > t0 = B_i + 1 above
        the 1e-12 floor; measured max e_J / envelope 0.975, 0.992, 0.980 at seeds 0, 1, 2. The
        t factor is needed: 65 %, 60 %, 61 % of the samples exceed the same envelope without
        the factor (t - t0) (recorded).
        Report only: the catalogue's fit log e_J = a + b log t + t log rho with b <= 1.3. It is
        not a consequence of the theorem and fails at some seeds: with rho = rho_S, b reached
        1.323 at seed 53 (1 of 6000 samples over seeds 0-59; next 1.271, 1.241) on a sample whose
        e_J / (t rho_S^t) rises monotonically from 5.06 to 7.75 over the window - the
        (a_1 t - c) rho^t shape of an O(t rho^t) error whose constant term cancels near the
        window start, not a faster factor. With the catalogue's fitted rho_hat_z instead of
        rho_S, b reaches 1.8-2.0 on the samples whose rho_hat_z is 1.3-2.4 % below rho_S
        (P-T4.3 (ii) out-of-band samples), the missing (rho_S / rho_hat_z)^t being absorbed by
        log t. [proto: b in [-0.15, 1.07].]
    Negative control: dropping the mask 1{|u_t| > alpha lam} in the recursion makes the error
    plateau: slope ratio < 0.3 for every sample, so (ii) rejects it, and it exceeds the
    envelope (iii) for every sample."""
    run = jacobian_run(seed(0), device)
    fits = jacobian_fits(run)
    ratio, b = fits["ratio"], fits["b"]
    in_band = (ratio >= 0.85) & (ratio <= 1.05)
    final = run["e_J"][-1] / run["J_hat_norm"]
    envelope = run["envelope_ratio"]
    evidence.seeds = [seed(0), seed(0) + 20_000]
    evidence.measure(
        n=run["n"], uncertified=int((~run["info"].certified).sum()), T_max=run["T"],
        recursion_vs_autograd_rel=run["autograd_gap"],
        e_J_final_over_J_hat_max=final.max(),
        e_J_400_over_J_hat_max=float((run["e_J"][400] / run["J_hat_norm"]).max()),
        slope_ratio_min=ratio.min(), slope_ratio_median=np.median(ratio),
        slope_ratio_max=ratio.max(), fraction_slope_ratio_in_band=in_band.mean(),
        envelope_ratio_max=envelope.max(), envelope_ratio_median=np.median(envelope),
        fraction_above_envelope_without_t_factor=float((run["envelope_no_t_ratio"] > 1).mean()),
        catalogue_b_min=b.min(), catalogue_b_max=b.max(),
        catalogue_b_with_rho_hat_z_max=fits["b_rho_hat"].max(),
        rho_S_min=run["rho_S"].min(), rho_S_max=run["rho_S"].max(),
        B_max=int(run["settle"].max()),
        control_no_mask_slope_ratio_max=fits["control_ratio"].max(),
        control_no_mask_envelope_ratio_min=run["no_mask_envelope_ratio"].min(),
        sigma_max_sq=lipschitz_constant(run["D"]),
    )
    evidence.predict(slope_ratio=1.0, envelope_ratio_max="<= 1",
                     catalogue_b="<= 1 asymptotically", e_J_final_over_J_hat_max=0.0)
    assert int((~run["info"].certified).sum()) == 0
    assert run["autograd_gap"] <= 1e-12
    assert (final < 1e-8).all()
    assert in_band.mean() >= 0.95
    assert (envelope <= 1 + 1e-9).all()
    assert (fits["control_ratio"] < 0.3).all()
    assert ((fits["control_ratio"] >= 0.85) & (fits["control_ratio"] <= 1.05)).mean() < 0.95
    assert (run["no_mask_envelope_ratio"] > 1).all()


# ---------------------------------------------------------------------------------------------
# P-LA.4
# ---------------------------------------------------------------------------------------------

Z_STAR_1, LAM_1, ALPHA_1, M_1, T_1 = 1.5, 0.2, 0.2, 8, 200


def tightness_closed_forms(d, t):
    """The exact trajectories of the Lemma A.4 example (THEOREMS.md P-LA.4, derived there): one
    atom d (unit norm), x = d z*, z_0 = 0, rho = 1 - alpha, at t = 0..T (arrays of shape (T+1,))
    and the vector-valued ones as (T+1, m)."""
    rho, z_star, lam, alpha = 1 - ALPHA_1, Z_STAR_1, LAM_1, ALPHA_1
    z_hat = z_star - lam
    delta = -rho**t * z_hat  # z_t - z_hat
    c = rho**t * (z_star - 2 * lam) + 2 * alpha * t * rho ** (t - 1.0) * z_hat  # J_t - J_hat = c d
    J_hat = -(z_star - 2 * lam)
    g_hat = -lam * z_hat
    dec = delta * (z_star - 2 * lam) + delta**2
    lasso_error = delta**2 + c * delta
    ls_error = lasso_error - lam * (J_hat + c)
    out = dict(z=z_hat + delta, delta=delta, J_hat=J_hat * d, g_hat=g_hat * d,
               J=(J_hat + c)[:, None] * d, J_error=c, dec=dec, lasso=lasso_error, ls=ls_error)
    for name in ("dec", "lasso", "ls"):
        out[f"g_{name}"] = (g_hat + out[name])[:, None] * d
    return out


@functools.lru_cache(maxsize=2)
def tightness_run(seed, device):
    """Lemma A.4 example through the product: z_t (encoders.ista), J_t (jacobians.jvp_autograd
    along the m basis directions) and g_t of the three kinds (gradients.estimate) for t = 1..200."""
    generator = torch.Generator().manual_seed(seed)
    d = torch.randn(M_1, 1, generator=generator)
    D = (d / torch.linalg.vector_norm(d)).to(device)
    X = (Z_STAR_1 * D).T  # (1, m): x = D_i z*
    kw = dict(lam=LAM_1, alpha=ALPHA_1)
    z_hat = lasso.solve(X, D, lam=LAM_1)
    Z = encoders.ista(X, D, n_layers=T_1, trace=True, **kw)[:, 0, 0]
    J = torch.stack([
        jacobians.jvp_autograd(X, D, E.reshape(M_1, 1), n_layers=T_1, trace=True, **kw)[:, 0, 0]
        for E in torch.eye(M_1, device=device)
    ], -1)
    G = {kind: torch.stack([gradients.estimate(kind, X, D, n_layers=t, **kw)[:, 0]
                            for t in range(1, T_1 + 1)])
         for kind in ("dec", "ae-lasso", "ae-ls")}
    g_hat = gradients.oracle("hat", X, D, lam=LAM_1)[:, 0]
    as_np = lambda v: v.detach().cpu().numpy()
    return dict(d=as_np(D[:, 0]), z_hat=float(z_hat[0, 0]), Z=as_np(Z), J=as_np(J),
                g_dec=as_np(G["dec"]), g_lasso=as_np(G["ae-lasso"]), g_ls=as_np(G["ae-ls"]),
                g_hat=as_np(g_hat))


def tightness_checks(run):
    """Compare the product's trajectories with the closed forms; return the measured numbers."""
    t = np.arange(T_1 + 1, dtype=np.float64)
    exact = tightness_closed_forms(run["d"], t)
    rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    out = dict(
        z_hat_gap=abs(run["z_hat"] - (Z_STAR_1 - LAM_1)),
        g_hat_gap=rel(run["g_hat"], exact["g_hat"]),
        z_gap=rel(run["Z"], exact["z"]),
        J_gap=rel(run["J"], exact["J"]),
    )
    for name in ("dec", "lasso", "ls"):
        out[f"g_{name}_gap"] = rel(run[f"g_{name}"], exact[f"g_{name}"][1:])
    # Errors to the limits, measured against the closed-form limits, with their own scales.
    e_z = np.abs(run["Z"] - (Z_STAR_1 - LAM_1))
    e_J = np.linalg.norm(run["J"] - exact["J_hat"], axis=-1)
    e_g = {name: np.linalg.norm(run[f"g_{name}"] - exact["g_hat"], axis=-1)
           for name in ("dec", "lasso", "ls")}
    out["e_z_gap"] = float(np.max(np.abs(e_z - np.abs(exact["delta"]))) / (Z_STAR_1 - LAM_1))
    out["e_J_gap"] = float(np.max(np.abs(e_J - np.abs(exact["J_error"])))
                           / np.linalg.norm(exact["J_hat"]))
    for name in ("dec", "lasso", "ls"):
        out[f"e_{name}_gap"] = float(np.max(np.abs(e_g[name] - np.abs(exact[name][1:])))
                                     / np.linalg.norm(exact["g_hat"]))
    out.update(e_z=e_z, e_J=e_J, e_g=e_g, exact=exact, t=t)
    return out


@pytest.mark.fast
@pytest.mark.claim("P-LA.4", statement="Lemma A.4")
def test_P_LA_4_tightness_example_exact(evidence, seed, device):
    """Lemma A.4 (tightness of the Thm 4.3/4.7/4.9 orders), checked exactly. One active atom
    D = D* = d (||d|| = 1, m = 8), x = d z*, z* = 1.5, lam = alpha = 0.2, z_0 = 0, rho = 1 - alpha.
    Closed forms (THEOREMS.md P-LA.4, derived there): z_hat = z* - lam, e_z = rho^t (z* - lam),
    J_hat = -d (z* - 2 lam), J_t - J_hat = [rho^t (z* - 2 lam) + 2 alpha t rho^(t-1) (z* - lam)] d,
    g^ae-lasso_t - g_hat = (delta_t^2 + c_t delta_t) d with delta_t = z_t - z_hat (signed) and
    c_t d = J_t - J_hat, Theta(t rho^2t); g^dec_t - g_hat = (delta_t (z* - 2 lam) + delta_t^2) d,
    Theta(rho^t); g^ae-ls_t - g_hat = g^ae-lasso_t - g_hat - lam J_t.
    Pass: encoders.ista, jacobians.jvp_autograd and gradients.estimate reproduce z_t, J_t and the
    three g_t to 1e-12 relative for t = 1..200, and the errors e_z, e_J, e_dec, e_lasso to 1e-12
    of the limit's norm. Tightness: e_J(t) / (t rho^t) = 2 alpha (z* - lam)/rho + (z* - 2 lam)/t
    exactly, so it is >= 2 alpha (z* - lam)/rho = 0.65 for every t (Theta, not only O); the
    measured ratio matches this to 1e-4 wherever e_J is resolvable (e_J > 1e-10, t <= 122).
    Likewise the gradient orders that the lemma states: the measured e_dec and e_lasso equal the
    closed forms to 1e-4 relative wherever > 1e-10, e_dec / rho^t -> (z* - lam)(z* - 2 lam) and
    e_lasso / (t rho^2t) -> 2 alpha (z* - lam)^2 / rho (within 1 % at t = 200).
    Catalogue window: "within 1 % for t in [100, 200]" does not hold for its own parameters -
    the exact gap (z* - 2 lam) rho / (2 alpha (z* - lam) t) is 1.69 % at t = 100 and drops below 1 %
    only from t = 170, where e_J ~ 4e-15 is below what float64 resolves on J_t ~ 1. Asserted
    instead: the exact gap <= 1 % for t in [170, 200] and the measured gap equals the exact one.
    Negative control: the paper's printed J_hat = alpha (2 D_i z_hat - D*_i z*) is not the limit of
    J_t: ||J_200 - J_hat_printed|| > 0.1 (it is (1 + alpha)(z* - 2 lam) = 1.32)."""
    run = tightness_run(seed(0), device)
    checks = tightness_checks(run)
    t, exact, rho = checks["t"], checks["exact"], 1 - ALPHA_1
    limit = 2 * ALPHA_1 * (Z_STAR_1 - LAM_1) / rho
    exact_ratio = np.abs(exact["J_error"][1:]) / (t[1:] * rho ** t[1:])
    resolvable = checks["e_J"][1:] > 1e-10
    measured_ratio = checks["e_J"][1:][resolvable] / (t[1:] * rho ** t[1:])[resolvable]
    ratio_gap = np.max(np.abs(measured_ratio / exact_ratio[resolvable] - 1))
    gap_late = np.abs(exact_ratio[169:] / limit - 1)  # t = 170..200
    d = run["d"]
    printed = ALPHA_1 * (2 * d * (Z_STAR_1 - LAM_1) - d * Z_STAR_1)
    control = float(np.linalg.norm(run["J"][-1] - printed))
    lasso_limit = 2 * ALPHA_1 * (Z_STAR_1 - LAM_1) ** 2 / rho
    lasso_ratio = np.abs(exact["lasso"][1:]) / (t[1:] * rho ** (2 * t[1:]))
    # Gradient orders (what Lemma A.4 states): measured e_dec / rho^t and e_lasso / (t rho^2t)
    # equal the closed forms wherever the error is resolvable in float64.
    gradient_gap, gradient_points = {}, {}
    for name in ("dec", "lasso"):
        measured = checks["e_g"][name]
        usable = measured > 1e-10
        gradient_gap[name] = float(np.max(np.abs(measured[usable]
                                                 / np.abs(exact[name][1:][usable]) - 1)))
        gradient_points[name] = int(usable.sum())
    evidence.seeds = [seed(0)]
    evidence.measure(
        **{k: v for k, v in checks.items() if k.endswith("_gap")},
        t_resolvable_max=int(t[1:][resolvable].max()),
        measured_vs_exact_tightness_ratio_gap=ratio_gap,
        tightness_ratio_at_t={t_: float(exact_ratio[t_ - 1]) for t_ in (1, 10, 50, 100, 170, 200)},
        exact_gap_to_limit_at_100=float(abs(exact_ratio[99] / limit - 1)),
        exact_gap_to_limit_170_200_max=float(gap_late.max()),
        e_J_60=float(checks["e_J"][60]),
        lasso_ratio_over_t_rho_2t_at_200=float(lasso_ratio[-1]),
        dec_ratio_over_rho_t_at_200=float(abs(exact["dec"][-1]) / rho ** T_1),
        gradient_error_vs_closed_form_resolvable=gradient_gap,
        gradient_error_resolvable_points=gradient_points,
        control_printed_J_hat_error=control, sigma_max_sq=1.0,
    )
    evidence.predict(tightness_limit=limit, lasso_limit=lasso_limit,
                     dec_limit=(Z_STAR_1 - LAM_1) * (Z_STAR_1 - 2 * LAM_1),
                     control_printed_J_hat_error=(1 + ALPHA_1) * (Z_STAR_1 - 2 * LAM_1),
                     e_J_60=float(np.abs(exact["J_error"][60])))
    for name in ("z", "J", "g_dec", "g_lasso", "g_ls", "g_hat"):
        assert checks[f"{name}_gap"] <= 1e-12, name
    assert checks["z_hat_gap"] <= 1e-12
    for name in ("e_z", "e_J", "e_dec", "e_lasso", "e_ls"):
        assert checks[f"{name}_gap"] <= 1e-12, name
    assert ratio_gap <= 1e-4
    assert (measured_ratio >= limit * (1 - 1e-4)).all()
    assert (exact_ratio >= limit).all()
    assert gap_late.max() <= 0.01
    assert abs(lasso_ratio[-1] / lasso_limit - 1) <= 0.01
    for name in ("dec", "lasso"):
        assert gradient_points[name] >= 20 and gradient_gap[name] <= 1e-4, name
    assert control > 0.1


# ---------------------------------------------------------------------------------------------
# W-T3.1 / W-T3.2 / W-T3.3
# ---------------------------------------------------------------------------------------------

@pytest.mark.fast
@pytest.mark.claim("W-T3.1", statement="W Thm 3.1 (= P Thm 4.3)")
def test_W_T3_1_code_convergence_reuses_P_T4_3(evidence, seed, device):
    """W Thm 3.1 (||z_t - z_hat|| <= O(rho^t), t > B) is P Thm 4.3 without the B = 1 addendum
    (THEOREMS.md Sec. 2). The P-T4.3 measurements are reused unchanged (same seeds): rho_S < 1
    for all samples, |rho_hat/rho_S - 1| <= 0.01 for >= 95 %, and the per-step bound of P-T4.3
    (i). A fitted rate cannot tell rho^t from rho^(t-1): they differ by the constant 1/rho,
    which only moves the intercept. Negative control (reused): the lam-instead-of-alpha-lam
    encoder plateaus (rho_hat > 0.999), so the criterion rejects it."""
    run = code_run(seed(0), device)
    in_band = np.abs(run["rho_hat"] / run["rho_S"] - 1) <= 0.01
    control_rho_hat, _ = plateau_control(seed(0), device)
    evidence.seeds = [seed(0)]
    evidence.measure(n=run["n"], rho_S_max=run["rho_S"].max(),
                     fraction_rate_within_1pct=in_band.mean(),
                     max_step_excess_over_rounding_unit=float(run["ratio_excess"].max()),
                     control_lam_over_alpha_rho_hat_min=control_rho_hat.min(),
                     note="reuses the P-T4.3 run; W Thm 3.1 = P Thm 4.3 (no B = 1 claim)")
    evidence.predict(rate_ratio=1.0)
    assert (run["rho_S"] < 1).all()
    assert in_band.mean() >= 0.95
    assert float(run["ratio_excess"].max()) <= ROUNDING / UNIT_ROUNDOFF
    assert (control_rho_hat > 0.999).all()


@pytest.mark.fast
@pytest.mark.claim("W-T3.2", statement="W Thm 3.2, eq. 10")
def test_W_T3_2_jacobian_convergence_reuses_P_T4_7(evidence, seed, device):
    """W Thm 3.2: ||J_t - J_hat|| <= O(t rho^(t-1)), t > B. Equivalent to P Thm 4.7's O(t rho^t):
    the two differ by the constant 1/rho and no test can tell them apart (THEOREMS.md Sec. 2,
    Sec. 8 item 5). The P-T4.7 measurements are reused unchanged: e_J(T_max) < 1e-8 ||J_hat||,
    slope ratio in [0.85, 1.05] for >= 95 %, and the explicit envelope of the proof, whose
    t-term alpha (t - t0) rho_S^(t-t0-1) ||M|| ||d_t0|| is written in W's form t rho^(t-1) (and is
    <= (1/rho) t rho^t, P's form). Asserted for the equivalence: fitting the W normalisation
    log e_J = a' + b' log t + (t - 1) log rho_S gives b' = b to 1e-9 and a' = a + log rho_S to
    1e-9 (only the intercept moves; b itself is report-only, see P-T4.7). Negative control
    (reused): the no-mask recursion plateaus (slope ratio < 0.3) and exceeds the envelope."""
    run = jacobian_run(seed(0), device)
    fits = jacobian_fits(run)
    in_band = (fits["ratio"] >= 0.85) & (fits["ratio"] <= 1.05)
    b_gap = np.abs(fits["b_W"] - fits["b"]).max()
    a_gap = np.abs(fits["a_W"] - fits["a"] - np.log(run["rho_S"])).max()
    evidence.seeds = [seed(0), seed(0) + 20_000]
    evidence.measure(catalogue_b_max=fits["b"].max(), catalogue_b_W_max=fits["b_W"].max(),
                     b_W_minus_b_max=b_gap, intercept_shift_minus_log_rho_max=a_gap,
                     envelope_ratio_max=run["envelope_ratio"].max(),
                     fraction_slope_ratio_in_band=in_band.mean(),
                     e_J_final_over_J_hat_max=float((run["e_J"][-1] / run["J_hat_norm"]).max()),
                     control_no_mask_slope_ratio_max=fits["control_ratio"].max(),
                     note="reuses the P-T4.7 run; O(t rho^(t-1)) = O(t rho^t) up to 1/rho")
    evidence.predict(b_W_minus_b_max=0.0, intercept_shift="log rho_S", envelope_ratio_max="<= 1")
    assert (run["e_J"][-1] / run["J_hat_norm"] < 1e-8).all()
    assert in_band.mean() >= 0.95
    assert (run["envelope_ratio"] <= 1 + 1e-9).all()
    assert b_gap <= 1e-9 and a_gap <= 1e-9
    assert (fits["control_ratio"] < 0.3).all()
    assert (run["no_mask_envelope_ratio"] > 1).all()


@pytest.mark.fast
@pytest.mark.claim("W-T3.3", statement="W Thm 3.3, eq. 11")
def test_W_T3_3_gradient_rates_reuse_P_runs(evidence, seed, device):
    """W Thm 3.3: ||g^dec_t - g_hat|| <= O(rho^t), ||g^ae-lasso_t - g_hat|| <= O(t rho^(2t-1)),
    ||g^ae-ls_t - g_hat|| <= O(t rho^(2t-1) + C_h), C_h an upper bound on M_J ||dh(z_hat)||
    = M_J lam sqrt|S|. Equivalent to P Thm 4.9 (O(t rho^2t), M_J lam sqrt s) up to 1/rho; P-T4.9
    itself is checked elsewhere. Here, reusing the P-T4.7 run (n=100, K=6, T=2000), the
    gradient errors are measured along the K directions (see jacobian_run), pinned to
    gradients.estimate at T=60 to 1e-10 (relative to ||g_hat||).
    Pass (the P-T4.9 criteria that the projections decide):
    (a) slope(e_lasso)/slope(e_dec) (each over its Sec. 0.7 window, floor 1e-11 max(1, ||g_hat||))
        has median in [1.9, 2.05] and >= 90 % of samples in [1.8, 2.15] [proto: median 1.965];
        measured medians 1.975, 1.976, 1.976 at seeds 0, 1, 2 (n = 100), medians in
        [1.958, 1.989] and in-band fractions >= 0.95 over seeds 0-15;
    (b) report only (calibrate): the upper-envelope exponents with rho_S, log e_lasso -
        2t log rho_S = a + b log t and log e_dec - t log rho_S = a + b log t; b is ~1 and ~0 at
        most seeds but transients push it past any a-priori band (max b_lasso 1.12, 1.54, 1.08
        at seeds 0, 1, 2);
    (c) the ae-ls plateau is exactly the bias -lam J_hat^T sign(z_hat): relative deviation
        <= 1e-12 at T = 2000;
    (d) in the Lemma A.4 example the orders are exact, with the W constants: e_lasso/(t rho^(2t-1))
        -> 2 alpha (z* - lam)^2 (1 % at t = 200), and the ae-ls plateau equals C_h = M_J lam sqrt|S|
        with M_J = ||J_hat|| (|S| = 1) to 1e-12: the C_h term is attained.
    Negative control: the sign bug (+lam replaced by -lam in dh) turns ae-lasso into a biased
    estimator: slope ratio < 1.3 for every sample."""
    run = jacobian_run(seed(0), device)
    scale = np.maximum(1.0, run["g_hat"])
    ratios, b_lasso, b_dec, control = [], [], [], []
    for i in range(run["n"]):
        start = int(run["settle"][i]) + 5
        floor = 1e-11 * scale[i]
        log_rho = math.log(run["rho_S"][i])
        e_dec, e_lasso = run["e_dec"][:, i], run["e_lasso"][:, i]
        window_dec = rates.window(e_dec, start=start, floor=floor)
        window_lasso = rates.window(e_lasso, start=start, floor=floor)
        slope_dec = rates.fit_log_linear(window_dec, e_dec[window_dec]).slope
        ratios.append(rates.fit_log_linear(window_lasso, e_lasso[window_lasso]).slope / slope_dec)
        b_lasso.append(envelope_exponent(e_lasso, window_lasso, 2 * log_rho)[0])
        b_dec.append(envelope_exponent(e_dec, window_dec, log_rho)[0])
        e_bug = run["e_sign_bug"][:, i]
        window_bug = rates.window(e_bug, start=start, floor=floor)
        control.append(rates.fit_log_linear(window_bug, e_bug[window_bug]).slope / slope_dec)
    ratios, b_lasso, b_dec, control = map(np.array, (ratios, b_lasso, b_dec, control))
    in_band = (ratios >= 1.8) & (ratios <= 2.15)
    plateau = (run["e_ls_off_bias"][-1] / run["bias"]).max()
    # Pin the projections to the product's gradients at T = 60 (first 3 samples).
    X, D = run["X"][:3], run["D"]
    pinned = 0.0
    for j, kind in enumerate(("dec", "ae-lasso", "ae-ls")):
        G = gradients.estimate(kind, X, D, lam=LAM, alpha=ALPHA, n_layers=60, reduction="none")
        measured = torch.stack([(G * E).sum((1, 2)) for E in run["directions"]], -1)
        projected = run["projections_T60"][j, :3]
        pinned = max(pinned, float((measured - projected).abs().max()) / float(scale[:3].max()))
    # Lemma A.4 example with the W constants.
    tight = tightness_checks(tightness_run(seed(0), device))
    rho1, t1 = 1 - ALPHA_1, tight["t"][1:]
    lasso_W_exact = np.abs(tight["exact"]["lasso"][-1]) / (t1[-1] * rho1 ** (2 * t1[-1] - 1))
    C_h = np.linalg.norm(tight["exact"]["J_hat"]) * LAM_1 * 1.0
    ls_plateau = tight["e_g"]["ls"][-1]
    evidence.seeds = [seed(0), seed(0) + 20_000]
    evidence.measure(
        projections_vs_estimate_T60=pinned,
        lasso_over_dec_slope_median=np.median(ratios), lasso_over_dec_slope_min=ratios.min(),
        lasso_over_dec_slope_max=ratios.max(), fraction_in_1_8_2_15=in_band.mean(),
        envelope_b_lasso_max=b_lasso.max(), envelope_b_dec_max=b_dec.max(),
        ls_plateau_vs_bias_rel=float(plateau),
        scalar_example_lasso_over_t_rho_2t_minus_1_exact_at_200=float(lasso_W_exact),
        scalar_example_ls_plateau=float(ls_plateau), scalar_example_C_h=float(C_h),
        control_sign_bug_slope_ratio_max=control.max(),
        note="reuses the P-T4.7 run and the P-LA.4 example; O(t rho^(2t-1)) = O(t rho^2t)")
    evidence.predict(lasso_over_dec_slope=2.0,
                     scalar_example_lasso_over_t_rho_2t_minus_1=2 * ALPHA_1
                     * (Z_STAR_1 - LAM_1) ** 2,
                     scalar_example_ls_plateau=float(C_h))
    assert pinned <= 1e-10
    assert 1.9 <= np.median(ratios) <= 2.05
    assert in_band.mean() >= 0.9
    assert plateau <= 1e-12
    assert abs(lasso_W_exact / (2 * ALPHA_1 * (Z_STAR_1 - LAM_1) ** 2) - 1) <= 0.01
    assert abs(ls_plateau / C_h - 1) <= 1e-12
    assert (control < 1.3).all()
