"""Malezieux, Moreau & Kowalski (ICLR 2022), Figures 1-4 and 6 as a study (:mod:`udlbench.studies`).

Notation of the paper (THEOREMS.md Sec. 3, "M-small"): data from :func:`udlbench.data.
make_malezieux` (A is m x p Gaussian with unit columns, codes Bernoulli(0.3) N(0, 1), noise std
0.1, working dictionary ``D = D_init = A + N(0, (0.5 std A)^2)``), lam = 0.1, ISTA / FISTA with
step 1/L, L = ||D||_2^2 computed outside the autograd graph, z_0 = 0.
``F(z, D) = 0.5 ||D z - y||^2 + lam ||z||_1``; the approximate loss ``G_N(D) = mean_i F(z_N^i(D),
D)``; AM's gradient ``g1_N = (D z_N - y) z_N^T`` (codes held fixed, ``gradients.estimate("dec")``)
and DDL's ``g2_N = d G_N / d D`` by back-propagation through the encoder
(``gradients.estimate("ae-lasso")``, optionally truncated to depth K, Prop. 2.5). ``J_l^N = d z_N
/ d D_l`` (p x p) is the code Jacobian with respect to row l of D.

* ``fig1``: two samples of the ``fig2`` run, the first stable one and the most unstable one
  (left: ``||J_l^N - J_l^*||`` and the support distance ``|supp z_N xor supp z*|`` against N;
  right: full against truncated back-propagation of depth K).
* ``fig2``: ``err_N = mean_{l in rows} ||J_l^N - J_l^*||_F`` (released code's norm; App. A.1
  writes the 1-norm) against the ISTA iteration N for ``n_jacobian`` samples, full
  back-propagation from ``J^0 = 0``; a sample is unstable iff ``max_N err_N > err_0 = mean_l
  ||J_l^*||`` (THEOREMS.md M-INST); samples with ``||J^*|| >= 1e5`` are excluded. The unstable
  fraction comes with its Clopper-Pearson 95 % interval (paper: "40 %").
* ``fig3``: cosine ``<g, g*>`` (``Tr(g^T g*) / (||g|| ||g*||)``) of AM and DDL (depths in
  ``backprop_depths``, 0 meaning full) against N for FISTA on ``n_gradient`` samples, g* at the
  certified lasso codes; the relative gain ``(<g2, g*> - <g1, g*>) / (1 - <g1, g*>)`` (Fig. 3
  right) and the relative error ``||g - g*|| / ||g*||`` (Fig. C).
* ``fig4``: projected gradient descent over unit-norm atoms with a backtracking line search on
  G_N (Sec. 3, App. A.3), AM against DDL, for ``n_problems`` dictionaries and N in
  ``learning_depths``: loss, recovery score S(C) (:func:`udlbench.metrics.recovery_score`) and
  solver time per accepted step.
* ``fig6``: stochastic DDL (Sec. 3.2, App. A.5) with a stochastic line search (Vaswani et al.,
  NeurIPS 2019) for several minibatch sizes, from a random Gaussian dictionary on the synthetic
  model at size ``stochastic_m x stochastic_p``: recovery score against solver time. The MEG data
  of Table 1 / Fig. 7 are not available offline; Fig. 6 uses the paper's synthetic model only.

Figures 1-3 run in float64 whatever dtype the runner passes (errors fall far below float32's
resolution and the angle gain divides by ``1 - <g1, g*>``); Figures 4 and 6 train in the runner's
dtype. The column ``compute_dtype`` says which.

The table is long: one row per recorded point, with columns ``figure`` ("fig1" .. "fig6"),
``metric``, ``method`` ("am", "ddl" (full back-propagation), "ddl-K20" (truncated, depth 20),
"ista", "stochastic-ddl"), ``N`` (encoder iterations; -1 when not applicable), ``batch_size``
(fig6; -1 elsewhere), ``instance`` (sample index in fig1/fig2, problem index in fig4; -1 for
aggregates), ``step`` (accepted optimisation step in fig4/fig6; -1 elsewhere), ``time_s``
(solver seconds, NaN elsewhere), ``value``, ``seed`` and ``compute_dtype``. Timings are the only
values that change between two runs with the same seed.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from udlbench import encoders, gradients, lasso, metrics
from udlbench._validation import (
    check_choice,
    check_data,
    check_dictionary,
    check_option_keys,
    check_positive,
    check_positive_int,
)
from udlbench.data import make_malezieux, normalize_columns
from udlbench.evidence import clopper_pearson
from udlbench.figures import save_figure
from udlbench.linalg import lipschitz_constant
from udlbench.training import clock

FIGURES = ("fig1", "fig2", "fig3", "fig4", "fig6")
QUICK: dict = {
    "figures": list(FIGURES),
    "m": 30,
    "p": 50,
    "lam": 0.1,
    "n_jacobian": 50,
    "n_rows": 10,
    "jacobian_iterations": 1000,
    "truncation_depths": [20, 50],
    "n_gradient": 1000,
    "gradient_iterations": 200,
    "n_gradient_points": 14,
    "backprop_depths": [20, 50, 0],
    "n_problems": 3,
    "n_learning": 300,
    "learning_depths": [5, 20, 50],
    "max_steps": 40,
    "stochastic_m": 50,
    "stochastic_p": 100,
    "n_stochastic": 1000,
    "batch_sizes": [20, 100, 1000],
    "stochastic_layers": 30,
    "epochs": 4,
    "iterations_per_epoch": 10,
}
FULL: dict = {
    **QUICK,
    "n_rows": 30,
    "jacobian_iterations": 10_000,
    "truncation_depths": [20, 50, 200],
    "gradient_iterations": 1000,
    "n_gradient_points": 40,
    "n_problems": 50,
    "n_learning": 1000,
    "learning_depths": [5, 10, 20, 50, 100, 200],
    "max_steps": 1000,
    "n_stochastic": 100_000,
    "batch_sizes": [200, 2000, 10_000, 100_000],
    "epochs": 10,
    "iterations_per_epoch": 100,
}
COLUMNS = ["figure", "metric", "method", "N", "batch_size", "instance", "step", "time_s", "value"]
J_STAR_LIMIT = 1e5
PAPER = {
    "fig1": "sample 1 converges linearly once on the support; sample 2 is unstable under full "
            "back-propagation and truncated back-propagation improves it",
    "fig2": "40 % of 50 samples have unstable Jacobians (N up to 10^4 ISTA iterations)",
    "fig3": "DDL's direction converges faster than AM's in early iterations and becomes "
            "unstable with too many back-propagated steps; up to 20 % better angle on images "
            "for N <= 50",
    "fig4": "DDL needs fewer line-search steps and reaches better recovery scores than AM for "
            "N < 50; 40 iterations suffice for a reasonable score; one DDL step costs 1.5 AM "
            "steps",
    "fig6": "10^5 samples, 50 x 100 dictionary, 10 random dictionaries: intermediate batch "
            "sizes give a good trade-off between speed and memory (no numbers printed)",
}


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------

def check(options: dict) -> None:
    """Every key of :data:`QUICK` is required. ``figures`` is a non-empty list of names among
    :data:`FIGURES`; sizes and iteration counts are positive integers; ``n_rows <= m``; depths
    are lists of positive integers (``backprop_depths`` may hold 0, full back-propagation);
    batch sizes lie in [1, n_stochastic]."""
    check_option_keys(options, QUICK)
    figures = options["figures"]
    if not isinstance(figures, list | tuple) or not figures:
        raise ValueError(f"figures must be a non-empty list among {list(FIGURES)}; "
                         f"got {figures!r}.")
    for name in figures:
        check_choice("figures", name, FIGURES)
    for name in ("m", "p", "n_jacobian", "n_rows", "jacobian_iterations", "n_gradient",
                 "gradient_iterations", "n_gradient_points", "n_problems", "n_learning",
                 "max_steps", "stochastic_m", "stochastic_p", "n_stochastic",
                 "stochastic_layers", "epochs", "iterations_per_epoch"):
        check_positive_int(name, options[name])
    check_positive("lam", options["lam"])
    if options["n_rows"] > options["m"]:
        raise ValueError(f"n_rows must be <= m = {options['m']}; got {options['n_rows']}.")
    for name, minimum in (("truncation_depths", 1), ("backprop_depths", 0),
                          ("learning_depths", 1), ("batch_sizes", 1)):
        values = options[name]
        if not isinstance(values, list | tuple) or not values:
            raise ValueError(f"{name} must be a non-empty list of integers >= {minimum}; "
                             f"got {values!r}.")
        for value in values:
            check_positive_int(name, value, minimum=minimum)
    largest = max(options["batch_sizes"])
    if largest > options["n_stochastic"]:
        raise ValueError(f"batch_sizes must be <= n_stochastic = {options['n_stochastic']}; "
                         f"got {largest}.")


# ---------------------------------------------------------------------------------------------
# Row Jacobians (Figs 1 and 2)
# ---------------------------------------------------------------------------------------------

def closed_form_row_jacobians(
    X: torch.Tensor, D: torch.Tensor, Z_star: torch.Tensor, rows: list[int]
) -> torch.Tensor:
    """The limit Jacobians ``J_l^*`` of Malezieux et al. (ICLR 2022, Thm 2.4) for rows ``rows``.

    On ``S = supp(z*)``: ``J_l^*[S, :] = -(D_S^T D_S)^{-1} (D_l z*^T + (D_l^T z* - y_l) I_p)[S, :]``
    and zero on the other code entries (``D_l`` is row l of D, a p-vector).

    Parameters
    ----------
    X : Tensor of shape (n, m)
    D : Tensor of shape (m, p)
    Z_star : Tensor of shape (n, p)
        Lasso solutions (:func:`udlbench.lasso.solve`).
    rows : list of R row indices of D

    Returns
    -------
    Tensor of shape (n, p, R, p), indexed [sample, code entry i, row, column k of D].
    """
    check_data(X, check_dictionary(D))
    n, p = Z_star.shape
    R = len(rows)
    eye = torch.eye(p, dtype=D.dtype, device=D.device)
    residual = (Z_star @ D.T - X)[:, rows]  # (n, R): D_l^T z* - y_l
    source = (D[rows].T[None, :, :, None] * Z_star[:, None, None, :]
              + eye[None, :, None, :] * residual[:, None, :, None])
    mask = (Z_star != 0).to(D.dtype)
    system = mask[:, :, None] * (D.T @ D) * mask[:, None, :] + torch.diag_embed(1 - mask)
    rhs = (mask[:, :, None, None] * source).reshape(n, p, R * p)
    return -(mask[:, :, None] * torch.linalg.solve(system, rhs)).reshape(n, p, R, p)


def row_jacobian_step(
    J: torch.Tensor, z: torch.Tensor, z_next: torch.Tensor, X: torch.Tensor, D: torch.Tensor,
    rows: list[int], *, alpha: float
) -> torch.Tensor:
    """One step of the Jacobian recursion of ISTA (Malezieux et al., ICLR 2022, Thm 2.4):

    ``J_l^{t+1} = 1{|z_{t+1}| > 0} (J_l^t - alpha (D_l z_t^T + (D_l^T z_t - y_l) I_p + D^T D
    J_l^t))``, the mask acting on the code entries (rows of the p x p matrix ``J_l``).

    ``J`` has shape (n, p, R, p) as in :func:`closed_form_row_jacobians`; ``z``, ``z_next`` are
    the ISTA iterates z_t, z_{t+1} of shape (n, p) run with step ``alpha``.
    """
    n, p, R, _ = J.shape
    out = ((D.T @ D) @ J.reshape(n, p, R * p)).reshape(n, p, R, p)
    out.mul_(-alpha).add_(J)
    out.addcmul_(D[rows].T[None, :, :, None], z[:, None, None, :], value=-alpha)
    residual = (z @ D.T - X)[:, rows]  # (n, R): D_l^T z_t - y_l, on the diagonal i = k
    out.diagonal(dim1=1, dim2=3).sub_(alpha * residual[:, :, None])
    return out.mul_((z_next != 0).to(J.dtype)[:, :, None, None])


def jacobian_errors(
    X: torch.Tensor, D: torch.Tensor, trace: torch.Tensor, J_star: torch.Tensor,
    rows: list[int], *, alpha: float, start: int = 0, stop: int | None = None
) -> torch.Tensor:
    """``err_t = mean_{l in rows} ||J_l^t - J_l^*||_F`` for t = start..stop, back-propagating from
    ``J^start = 0`` along the ISTA iterates ``trace`` (T + 1, n, p): full back-propagation for
    ``start = 0``, truncated back-propagation of depth ``stop - start`` otherwise (Prop. 2.5).
    Returns (stop - start + 1, n)."""
    stop = trace.shape[0] - 1 if stop is None else stop
    J = torch.zeros_like(J_star)
    out = [_mean_row_error(J, J_star)]
    for t in range(start, stop):
        J = row_jacobian_step(J, trace[t], trace[t + 1], X, D, rows, alpha=alpha)
        out.append(_mean_row_error(J, J_star))
    return torch.stack(out)


def _mean_row_error(J: torch.Tensor, J_star: torch.Tensor) -> torch.Tensor:
    return (J - J_star).square_().sum((1, 3)).sqrt_().mean(-1)


def log_grid(last: int, count: int, *, first: int = 1) -> list[int]:
    """``count`` integers spread geometrically over [first, last], distinct and sorted."""
    return sorted({int(round(v)) for v in np.geomspace(first, last, count)})


def _jacobian_study(o: dict, seed: int, device: str, figures: list[str]) -> list[tuple]:
    dtype = torch.float64
    problem = make_malezieux(o["m"], o["p"], o["n_jacobian"], seed=seed, dtype=dtype,
                             device=device)
    X, D, lam, T = problem.X, problem.D_init, o["lam"], o["jacobian_iterations"]
    generator = torch.Generator().manual_seed(seed)
    rows = sorted(torch.randperm(o["m"], generator=generator)[: o["n_rows"]].tolist())
    alpha = 1.0 / lipschitz_constant(D)
    Z_star = lasso.solve(X, D, lam=lam)
    J_star = closed_form_row_jacobians(X, D, Z_star, rows)
    trace = encoders.ista(X, D, lam=lam, n_layers=T, alpha=alpha, trace=True)
    errors = jacobian_errors(X, D, trace, J_star, rows, alpha=alpha)  # (T + 1, n)
    err0 = errors[0]
    ratio = (errors.amax(0) / err0).cpu().numpy()
    argmax = errors.argmax(0).cpu().numpy()
    included = (torch.linalg.vector_norm(J_star, dim=(1, 2, 3)) < J_STAR_LIMIT).cpu().numpy()
    unstable = (ratio > 1) & included
    grid = [0] + log_grid(T, 60)
    relative = (errors / err0).cpu().numpy()
    rows_out: list[tuple] = []
    if "fig2" in figures:
        for i in range(X.shape[0]):
            rows_out += [("fig2", "relative_jacobian_error", "ista", N, -1, i, -1, math.nan,
                          float(relative[N, i])) for N in grid]
            rows_out += [("fig2", "peak_ratio", "ista", -1, -1, i, -1, math.nan, float(ratio[i])),
                         ("fig2", "argmax_N", "ista", -1, -1, i, -1, math.nan, float(argmax[i])),
                         ("fig2", "unstable", "ista", -1, -1, i, -1, math.nan,
                          float(unstable[i])),
                         ("fig2", "included", "ista", -1, -1, i, -1, math.nan,
                          float(included[i]))]
        k, total = int(unstable.sum()), int(included.sum())
        low, high = clopper_pearson(k, total)
        rows_out += [("fig2", name, "ista", T, -1, -1, -1, math.nan, value) for name, value in
                     (("unstable_count", float(k)), ("included_samples", float(total)),
                      ("unstable_fraction", k / total), ("ci95_low", low), ("ci95_high", high),
                      ("fraction_ratio_above_1_05", float(((ratio > 1.05) & included).sum())
                       / total))]
    if "fig1" in figures:
        stable_ids = np.flatnonzero(~unstable & included)
        unstable_ids = np.flatnonzero(unstable)
        chosen = []
        if len(stable_ids):
            chosen.append(int(stable_ids[0]))
        if len(unstable_ids):
            chosen.append(int(unstable_ids[np.argmax(ratio[unstable_ids])]))
        support_star = Z_star != 0
        for i in chosen:
            distance = ((trace[:, i] != 0) != support_star[i]).sum(-1).cpu().numpy()
            rows_out += [("fig1", "support_distance", "ista", N, -1, i, -1, math.nan,
                          float(distance[N])) for N in grid]
            rows_out += [("fig1", "relative_jacobian_error", "ddl", N, -1, i, -1, math.nan,
                          float(relative[N, i])) for N in grid]
            rows_out.append(("fig1", "unstable", "ista", -1, -1, i, -1, math.nan,
                             float(unstable[i])))
            for K in o["truncation_depths"]:
                for N in grid:
                    if N <= K:
                        value = relative[N, i]
                    else:
                        value = float(jacobian_errors(
                            X[i : i + 1], D, trace[:, i : i + 1], J_star[i : i + 1], rows,
                            alpha=alpha, start=N - K, stop=N)[-1, 0] / err0[i])
                    rows_out.append(("fig1", "relative_jacobian_error", f"ddl-K{K}", N, -1, i,
                                     -1, math.nan, float(value)))
    return rows_out


# ---------------------------------------------------------------------------------------------
# Gradient directions (Fig. 3)
# ---------------------------------------------------------------------------------------------

def cosine(g: torch.Tensor, h: torch.Tensor) -> float:
    """``<g, h> = Tr(g^T h) / (||g||_F ||h||_F)`` (Malezieux et al., ICLR 2022, Sec. 2)."""
    return float((g * h).sum() / (torch.linalg.vector_norm(g) * torch.linalg.vector_norm(h)))


def relative_angle_gain(g2: torch.Tensor, g1: torch.Tensor, g_star: torch.Tensor) -> float:
    """``(<g2, g*> - <g1, g*>) / (1 - <g1, g*>)`` (ICLR 2022, Fig. 3 right): positive when DDL's
    direction ``g2`` is closer to ``g*`` than AM's ``g1``; NaN when ``<g1, g*> = 1``."""
    c1 = cosine(g1, g_star)
    return (cosine(g2, g_star) - c1) / (1 - c1) if c1 < 1 else math.nan


def _method_name(depth: int) -> str:
    return "ddl" if depth == 0 else f"ddl-K{depth}"


def _gradient_study(o: dict, seed: int, device: str) -> list[tuple]:
    problem = make_malezieux(o["m"], o["p"], o["n_gradient"], seed=seed, dtype=torch.float64,
                             device=device)
    X, D, lam = problem.X, problem.D_init, o["lam"]
    g_star = gradients.oracle("hat", X, D, lam=lam)
    star_norm = torch.linalg.vector_norm(g_star)
    grid = log_grid(o["gradient_iterations"], o["n_gradient_points"])
    trace = encoders.fista(X, D, lam=lam, n_layers=grid[-1], trace=True)
    out: list[tuple] = []
    for N in grid:
        g1 = gradients.analytic(X, D, trace[N])
        found = {"am": g1}
        for depth in o["backprop_depths"]:
            found[_method_name(depth)] = gradients.estimate(
                "ae-lasso", X, D, lam=lam, n_layers=N, encoder="fista",
                backprop_depth=None if depth == 0 else depth)
        for method, g in found.items():
            error = float(torch.linalg.vector_norm(g - g_star) / star_norm)
            out += [("fig3", "cosine", method, N, -1, -1, -1, math.nan, cosine(g, g_star)),
                    ("fig3", "relative_gradient_error", method, N, -1, -1, -1, math.nan, error)]
            if method != "am":
                out.append(("fig3", "relative_angle_gain", method, N, -1, -1, -1, math.nan,
                            relative_angle_gain(g, g1, g_star)))
    return out


# ---------------------------------------------------------------------------------------------
# Optimisation dynamics (Figs 4 and 6)
# ---------------------------------------------------------------------------------------------

def approximate_loss(X: torch.Tensor, D: torch.Tensor, *, lam: float, n_layers: int) -> float:
    """``G_N(D) = mean_i F(z_N^i(D), D)`` with N = ``n_layers`` FISTA iterations (ICLR 2022,
    Sec. 2, eq. 3, mean over samples)."""
    with torch.no_grad():
        Z = encoders.fista(X, D, lam=lam, n_layers=n_layers)
        return float(lasso.objective(X, D, Z, lam=lam).mean())


def backtrack(loss: Callable[[torch.Tensor], float], D: torch.Tensor, g: torch.Tensor,
              value: float, eta: float, *, min_step: float = 1e-10
              ) -> tuple[torch.Tensor, float, float] | None:
    """Projected backtracking line search (ICLR 2022, Sec. 3): halve ``eta`` from its given
    value until ``loss(normalize_columns(D - eta g)) < value``; returns ``(D_new, loss, eta)``,
    or None when ``eta`` falls below ``min_step`` (no decrease: converged)."""
    while eta >= min_step:
        candidate = normalize_columns(D - eta * g)
        new = loss(candidate)
        if new < value:
            return candidate, new, eta
        eta /= 2
    return None


def line_search_descent(
    X: torch.Tensor, D0: torch.Tensor, *, lam: float, n_layers: int, method: str,
    max_steps: int, tol: float = 1e-8,
    callback: Callable[[int, torch.Tensor, float, float], None] | None = None,
) -> int:
    """Projected gradient descent on ``G_N`` over unit-norm atoms with a backtracking line search
    (ICLR 2022, Sec. 3, App. A.3).

    The direction is AM's ``g1_N`` (``method="am"``) or DDL's ``g2_N`` (``"ddl"``, full
    back-propagation through N FISTA iterations). Each step doubles the previous step size, then
    halves it until G_N decreases; the run stops after ``max_steps`` accepted steps, when no step
    decreases G_N, or when the relative decrease falls below ``tol``.

    ``callback(step, D, loss, seconds)`` is called at step 0 (the start) and after every
    accepted step, ``seconds`` being the solver time so far (gradients and line search; the
    callback's own time is excluded). Returns the number of accepted steps.
    """
    check_choice("method", method, ("am", "ddl"))
    kind = "ae-lasso" if method == "ddl" else "dec"
    loss = lambda W: approximate_loss(X, W, lam=lam, n_layers=n_layers)  # noqa: E731
    D = normalize_columns(D0)
    value, eta, seconds = loss(D), 1.0, 0.0
    if callback is not None:
        callback(0, D, value, seconds)
    for step in range(1, max_steps + 1):
        start = clock(D.device)
        g = gradients.estimate(kind, X, D, lam=lam, n_layers=n_layers, encoder="fista")
        found = backtrack(loss, D, g, value, 2 * eta)
        seconds += clock(D.device) - start
        if found is None:
            return step - 1
        D, new, eta = found
        decrease, value = (value - new) / abs(value), new
        if callback is not None:
            callback(step, D, value, seconds)
        if decrease < tol:
            return step
    return max_steps


def stochastic_line_search(
    X: torch.Tensor, D0: torch.Tensor, *, lam: float, n_layers: int, batch_size: int,
    epochs: int, iterations_per_epoch: int, generator: torch.Generator,
    callback: Callable[[int, torch.Tensor, float], None] | None = None,
) -> None:
    """Stochastic DDL (ICLR 2022, Sec. 3.2, App. A.5) with the stochastic line search of Vaswani
    et al. (NeurIPS 2019).

    Each iteration draws a minibatch of ``batch_size`` rows of X (with ``generator``), computes
    DDL's gradient ``g2_N`` on it and backtracks (:func:`backtrack`) on the minibatch's G_N from
    twice the previous accepted step (the "reset" of Vaswani et al.'s stochastic line search,
    which lets the step grow again), starting from ``eta = 1``. At the end of every epoch the
    step is halved (the heuristic decrease of the maximal step of App. A.5). A minibatch with no
    decreasing step leaves D unchanged. ``callback(step, D, seconds)`` is called at the start
    and after every iteration, ``seconds`` being the solver time so far.
    """
    D = normalize_columns(D0)
    eta, seconds, step = 1.0, 0.0, 0
    if callback is not None:
        callback(0, D, seconds)
    for _ in range(epochs):
        for _ in range(iterations_per_epoch):
            start = clock(D.device)
            index = torch.randperm(X.shape[0], generator=generator)[:batch_size].to(X.device)
            batch = X[index]
            g, Z = gradients.estimate("ae-lasso", batch, D, lam=lam, n_layers=n_layers,
                                      encoder="fista", return_codes=True)
            value = float(lasso.objective(batch, D, Z, lam=lam).mean())
            found = backtrack(lambda W, b=batch: approximate_loss(b, W, lam=lam,
                                                                  n_layers=n_layers),
                              D, g, value, 2 * eta)
            if found is not None:
                D, _, eta = found
            seconds += clock(D.device) - start
            step += 1
            if callback is not None:
                callback(step, D, seconds)
        eta /= 2


def _learning_study(o: dict, seed: int, dtype: torch.dtype, device: str) -> list[tuple]:
    out: list[tuple] = []
    for k in range(o["n_problems"]):
        problem = make_malezieux(o["m"], o["p"], o["n_learning"], seed=seed * 1000 + k,
                                 dtype=dtype, device=device)
        for N in o["learning_depths"]:
            for method in ("am", "ddl"):
                def record(step, D, value, seconds, N=N, method=method, k=k,
                           A=problem.D_star):
                    score = metrics.recovery_score(D, A)
                    out.extend([("fig4", "loss", method, N, -1, k, step, seconds, value),
                                ("fig4", "recovery_score", method, N, -1, k, step, seconds,
                                 score)])

                steps = line_search_descent(problem.X, problem.D_init, lam=o["lam"],
                                            n_layers=N, method=method,
                                            max_steps=o["max_steps"], callback=record)
                out.append(("fig4", "accepted_steps", method, N, -1, k, -1, math.nan,
                            float(steps)))
    return out


def _stochastic_study(o: dict, seed: int, dtype: torch.dtype, device: str) -> list[tuple]:
    problem = make_malezieux(o["stochastic_m"], o["stochastic_p"], o["n_stochastic"],
                             seed=seed, dtype=dtype, device=device)
    generator = torch.Generator().manual_seed(seed)
    D0 = torch.randn(o["stochastic_m"], o["stochastic_p"], generator=generator,
                     dtype=torch.float64).to(dtype=dtype, device=device)
    out: list[tuple] = []
    for size in o["batch_sizes"]:
        def record(step, D, seconds, size=size):
            out.append(("fig6", "recovery_score", "stochastic-ddl", o["stochastic_layers"],
                        size, -1, step, seconds, metrics.recovery_score(D, problem.D_star)))

        stochastic_line_search(problem.X, D0, lam=o["lam"], n_layers=o["stochastic_layers"],
                               batch_size=size, epochs=o["epochs"],
                               iterations_per_epoch=o["iterations_per_epoch"],
                               generator=torch.Generator().manual_seed(seed + size),
                               callback=record)
    return out


# ---------------------------------------------------------------------------------------------
# The study contract
# ---------------------------------------------------------------------------------------------

def run(options: dict, *, seed: int, dtype: torch.dtype = torch.float64, device: str = "cpu",
        progress: bool = False) -> pd.DataFrame:
    """Figures ``options["figures"]`` of Malezieux et al. (ICLR 2022) for one seed; the tidy
    table of the module docstring. ``progress`` prints one line per figure."""
    check(options)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64; got {dtype}.")
    o, figures = dict(options), list(options["figures"])
    parts = []
    if "fig1" in figures or "fig2" in figures:
        parts.append((_jacobian_study(o, seed, device, figures), "float64"))
    if "fig3" in figures:
        parts.append((_gradient_study(o, seed, device), "float64"))
    if "fig4" in figures:
        parts.append((_learning_study(o, seed, dtype, device), str(dtype).removeprefix("torch.")))
    if "fig6" in figures:
        parts.append((_stochastic_study(o, seed, dtype, device),
                      str(dtype).removeprefix("torch.")))
    tables = []
    for rows, compute in parts:
        table = pd.DataFrame(rows, columns=COLUMNS)
        table["compute_dtype"] = compute
        tables.append(table)
        if progress:
            print(f"malezieux: {table['figure'].iloc[0]} done ({len(table)} rows)", flush=True)
    table = pd.concat(tables, ignore_index=True)
    table["seed"] = seed
    for name in ("N", "batch_size", "instance", "step"):
        table[name] = table[name].astype("int64")
    return table


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (figure, quantity, seed) of the numbers the paper states, measured."""
    rows = []
    for seed, part in results.groupby("seed"):
        def pick(figure, metric, part=part, **where):
            frame = part[(part["figure"] == figure) & (part["metric"] == metric)]
            for key, value in where.items():
                frame = frame[frame[key] == value]
            return frame

        fig2 = pick("fig2", "unstable_fraction")
        if len(fig2):
            low = float(pick("fig2", "ci95_low")["value"].iloc[0])
            high = float(pick("fig2", "ci95_high")["value"].iloc[0])
            count = int(pick("fig2", "unstable_count")["value"].iloc[0])
            total = int(pick("fig2", "included_samples")["value"].iloc[0])
            rows.append((seed, "fig2", "unstable Jacobians (paper: 40 % of 50)",
                         f"{count}/{total} = {count / total:.0%} "
                         f"(95 % CI {low:.0%}-{high:.0%}, N <= {int(fig2['N'].iloc[0])})"))
        fig1 = pick("fig1", "relative_jacobian_error")
        if len(fig1):
            unstable = pick("fig1", "unstable")
            for i in unstable.loc[unstable["value"] == 1, "instance"]:
                curves = fig1[fig1["instance"] == i]
                full = curves[curves["method"] == "ddl"]["value"].max()
                for method, curve in curves.groupby("method"):
                    if method != "ddl":
                        rows.append((seed, "fig1", f"unstable sample {i}: max_N err / err_0, "
                                     f"{method} vs full", f"{curve['value'].max():.3g} vs "
                                     f"{full:.3g}"))
        gain = pick("fig3", "relative_angle_gain")
        if len(gain):
            for method, curve in gain.groupby("method"):
                early = curve[curve["N"] <= 50]
                rows.append((seed, "fig3", f"{method}: relative angle gain > 0 for N <= 50 "
                             "(paper: DDL better early)",
                             f"{int((early['value'] > 0).sum())}/{len(early)} N, max "
                             f"{early['value'].max():.2f}"))
        final = pick("fig4", "recovery_score")
        if len(final):
            last = final.loc[final.groupby(["method", "N", "instance"])["step"].idxmax()]
            table = last.groupby(["N", "method"])["value"].median().unstack()
            steps = pick("fig4", "accepted_steps").groupby(["N", "method"])["value"].median()
            for N, score in table.iterrows():
                rows.append((seed, "fig4", f"N = {N}: median final S(C), AM / DDL (paper: DDL "
                             "better for N < 50)", f"{score['am']:.3f} / {score['ddl']:.3f}; "
                             f"steps {steps[(N, 'am')]:.0f} / {steps[(N, 'ddl')]:.0f}"))
            per_step = last[last["step"] > 0].assign(per=lambda f: f["time_s"] / f["step"])
            ratio = per_step.groupby("method")["per"].median()
            if {"am", "ddl"} <= set(ratio.index):
                rows.append((seed, "fig4", "solver time per step, DDL / AM (paper: 1.5)",
                             f"{ratio['ddl'] / ratio['am']:.2f}"))
        fig6 = pick("fig6", "recovery_score")
        if len(fig6):
            for size, curve in fig6.groupby("batch_size"):
                end = curve.loc[curve["step"].idxmax()]
                rows.append((seed, "fig6", f"batch {size}: final S(C) and solver time",
                             f"{end['value']:.3f} after {end['time_s']:.1f} s"))
    return pd.DataFrame(rows, columns=["seed", "figure", "quantity", "measured"])


def render(results: pd.DataFrame, out_dir: Path) -> str:
    """Figures ``malezieux_fig1`` .. ``malezieux_fig6`` (those present in ``results``), PNG and
    SVG, the table ``malezieux_summary.csv``, and the HTML section with the paper's claims next
    to the measured numbers."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    present = [f for f in FIGURES if (results["figure"] == f).any()]
    drawers = {"fig1": _draw_fig1, "fig2": _draw_fig2, "fig3": _draw_fig3, "fig4": _draw_fig4,
               "fig6": _draw_fig6}
    images = [drawers[f](results[results["figure"] == f], out_dir) for f in present]
    table = summary(results)
    table.to_csv(out_dir / "malezieux_summary.csv", index=False)
    claims = "".join(f"<li>Fig. {f[3:]}: {html.escape(PAPER[f])}.</li>" for f in present)
    pictures = "".join(f"<img src='{name}' alt='{name}'>" for name in images)
    return (
        "<section><h2>Malezieux, Moreau &amp; Kowalski (ICLR 2022): Figs 1-4 and 6</h2>"
        f"<p>The paper states:</p><ul>{claims}</ul>"
        "<p>Here: the synthetic model of App. A (released code's values: noise std 0.1, working "
        "dictionary not re-normalised), float64 certified lasso references instead of 10^4 "
        "ISTA/FISTA iterations, at the sizes of the profile in the table (the quick profile "
        "uses fewer iterations, samples, problems and epochs than the paper, and Fig. 6 uses "
        "far fewer than 10^5 samples). Fig. 6's MEG counterpart (Table 1, Fig. 7) needs data "
        "that are not available offline and is not run. What to compare is the orderings "
        "(DDL against AM, truncated against full back-propagation, batch sizes), not the "
        "absolute values; this is not a reproduction of the paper's numbers.</p>"
        f"{pictures}"
        + table.to_html(index=False, border=0)
        + "<p><a href='malezieux_summary.csv'>malezieux_summary.csv</a></p></section>"
    )


def _colours(methods) -> dict:
    palette = ["#333333", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    return {method: palette[i % len(palette)] for i, method in enumerate(sorted(methods))}


def _draw_fig1(part: pd.DataFrame, out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    seed = part["seed"].min()
    part = part[part["seed"] == seed]
    curves = part[part["metric"] == "relative_jacobian_error"]
    samples = sorted(curves["instance"].unique())
    colour = _colours(curves["method"].unique())
    figure, axes = plt.subplots(1, max(len(samples), 1), figsize=(5 * max(len(samples), 1), 3.8),
                                squeeze=False)
    for axis, i in zip(axes[0], samples, strict=False):
        flag = part[(part["metric"] == "unstable") & (part["instance"] == i)]["value"].iloc[0]
        for method, curve in curves[curves["instance"] == i].groupby("method"):
            curve = curve[curve["N"] > 0]
            axis.loglog(curve["N"], curve["value"], color=colour[method],
                        label="full back-prop." if method == "ddl" else method)
        axis.axhline(1, color="0.5", lw=0.8)
        twin = axis.twinx()
        distance = part[(part["metric"] == "support_distance") & (part["instance"] == i)]
        twin.semilogx(distance["N"].clip(lower=1), distance["value"], color="#d62728", ls=":",
                      lw=1)
        twin.set_ylabel("|supp z_N xor supp z*| (dotted)")
        axis.set(xlabel="ISTA iterations N",
                 ylabel="mean_l ||J_l^N - J_l*||_F / mean_l ||J_l*||_F",
                 title=f"sample {i} ({'unstable' if flag else 'stable'}), seed {seed}")
        axis.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, out_dir, "malezieux_fig1")


def _draw_fig2(part: pd.DataFrame, out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    seed = part["seed"].min()
    part = part[part["seed"] == seed]
    unstable = part[part["metric"] == "unstable"].set_index("instance")["value"]
    curves = part[(part["metric"] == "relative_jacobian_error") & (part["N"] > 0)]
    figure, axis = plt.subplots(figsize=(6, 4))
    for i, curve in curves.groupby("instance"):
        bad = bool(unstable.get(i, 0))
        axis.loglog(curve["N"], curve["value"], color="#d62728" if bad else "0.6", lw=0.7,
                    alpha=0.8 if bad else 0.5)
    axis.axhline(1, color="k", lw=0.8)
    count = int(unstable.sum())
    axis.set(xlabel="ISTA iterations N (full back-propagation)",
             ylabel="mean_l ||J_l^N - J_l*||_F / err_0",
             title=f"Fig. 2: {count}/{len(unstable)} unstable (red), seed {seed}")
    figure.tight_layout()
    return save_figure(figure, out_dir, "malezieux_fig2")


def _draw_fig3(part: pd.DataFrame, out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    colour = _colours(part["method"].unique())
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 3.8))
    for (method, seed), curve in part.groupby(["method", "seed"]):
        label = method if seed == part["seed"].min() else None
        cos = curve[curve["metric"] == "cosine"]
        left.loglog(cos["N"], (1 - cos["value"]).clip(lower=1e-16), color=colour[method],
                    label=label)
        error = curve[curve["metric"] == "relative_gradient_error"]
        middle.loglog(error["N"], error["value"], color=colour[method], label=label)
        gain = curve[curve["metric"] == "relative_angle_gain"]
        if len(gain):
            right.semilogx(gain["N"], gain["value"], color=colour[method], label=label)
    right.axhline(0, color="0.5", lw=0.8)
    left.set(xlabel="FISTA iterations N", ylabel="1 - <g, g*>", title="Fig. 3 left: angle")
    middle.set(xlabel="FISTA iterations N", ylabel="||g - g*||_F / ||g*||_F",
               title="Fig. C: norm")
    right.set(xlabel="FISTA iterations N", ylabel="(<g2,g*> - <g1,g*>) / (1 - <g1,g*>)",
              title="Fig. 3 right: gain of DDL over AM")
    for axis in (left, middle, right):
        axis.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, out_dir, "malezieux_fig3")


def _draw_fig4(part: pd.DataFrame, out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    colour = {"am": "#1f77b4", "ddl": "#ff7f0e"}
    scores = part[part["metric"] == "recovery_score"]
    final = scores.loc[scores.groupby(["seed", "method", "N", "instance"])["step"].idxmax()]
    steps = part[part["metric"] == "accepted_steps"]
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 3.8))
    for method in ("am", "ddl"):
        chosen = steps[steps["method"] == method].groupby("N")["value"]
        left.plot(chosen.median().index, chosen.median(), marker="o", color=colour[method],
                  label=method.upper())
        chosen = final[final["method"] == method].groupby("N")["value"]
        middle.plot(chosen.median().index, chosen.median(), marker="o", color=colour[method],
                    label=method.upper())
        middle.fill_between(chosen.median().index, chosen.quantile(0.1), chosen.quantile(0.9),
                            color=colour[method], alpha=0.2)
    N_plot = int(scores["N"].min())
    losses = part[(part["metric"] == "loss") & (part["N"] == N_plot)]
    for (method, _, _), curve in losses.groupby(["method", "seed", "instance"]):
        right.semilogy(curve["time_s"], curve["value"] - losses["value"].min() + 1e-6,
                       color=colour[method], alpha=0.6, lw=0.8)
    for method in ("am", "ddl"):
        right.plot([], [], color=colour[method], label=method.upper())
    left.set(xscale="log", xlabel="unrolled FISTA iterations N",
             ylabel="accepted line-search steps (median)", title="Fig. 4 left")
    middle.set(xscale="log", xlabel="unrolled FISTA iterations N",
               ylabel="final recovery score S(C)", title="Fig. 4 right (median, 10-90 %)")
    right.set(xlabel="solver time (s)", ylabel="G_N - min G_N + 1e-6",
              title=f"loss against time, N = {N_plot}")
    for axis in (left, middle, right):
        axis.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, out_dir, "malezieux_fig4")


def _draw_fig6(part: pd.DataFrame, out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    colour = _colours(part["batch_size"].astype(str).unique())
    figure, axis = plt.subplots(figsize=(6, 4))
    for (size, seed), curve in part.groupby(["batch_size", "seed"]):
        axis.plot(curve["time_s"], curve["value"], color=colour[str(size)],
                  label=f"batch {size}" if seed == part["seed"].min() else None)
    axis.set(xlabel="solver time (s)", ylabel="recovery score S(C)",
             title="Fig. 6: stochastic DDL (synthetic)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, out_dir, "malezieux_fig6")





__all__ = [
    "FIGURES", "FULL", "QUICK", "approximate_loss", "backtrack", "check",
    "closed_form_row_jacobians", "cosine", "jacobian_errors", "line_search_descent", "log_grid",
    "relative_angle_gain", "render", "row_jacobian_step", "run", "stochastic_line_search",
    "summary",
]
