"""Encoder probes: PUDLE Figures 2 and 3 as a study (:mod:`udlbench.studies`).

At a dictionary D close to D* (``D = perturb(D*, tau)``), with ``z_hat`` the certified lasso code
(:func:`udlbench.lasso.solve`) and ``g_hat`` the oracle gradient at it (TMLR 2023, eq. 4):

* Figure 2: the code error ``||z_t - z_hat||`` of T unrolled ISTA layers against t, and per sample
  the fitted linear rate against the local rate ``rho_S`` of Thm 4.3 (:func:`udlbench.rates.
  local_rate`), fitted over the window of THEOREMS.md Sec. 0.7 (from the support-identification
  time B_i + 5 down to the rounding floor);
* Figure 3: the gradient error ``||g_t - g_hat||_F`` (batch-mean gradients) of g_dec, g_ae-lasso
  and g_ae-ls against the depth t (Thms 4.9-4.12): g_dec and g_ae-lasso converge to g_hat,
  g_ae-lasso about twice as fast; g_ae-ls stops at a plateau of size O(lam).

Probes run in float64 whatever dtype the runner passes (errors fall to 1e-12, below float32's
resolution); the table records ``compute_dtype``.

The table has one row per recorded point: ``figure`` ("fig2" / "fig3"), ``quantity``,
``method`` (the gradient for Fig. 3, "ista" for Fig. 2), ``t``, ``sample`` (-1 for batch
quantities), ``value``, ``seed``, ``compute_dtype``.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from udlbench import gradients, lasso, rates
from udlbench._validation import (
    check_nonnegative,
    check_option_keys,
    check_positive,
    check_positive_int,
)
from udlbench.data import make_sparse, perturb
from udlbench.encoders import ista
from udlbench.figures import save_figure
from udlbench.linalg import lipschitz_constant

QUICK: dict = {
    "m": 50,
    "p": 100,
    "s": 5,
    "n": 100,
    "n_gradient": 30,
    "tau": 0.1406,
    "lam": 0.2,
    "n_layers": 300,
    "n_depths": 16,
    "sign": "shared",
}
FULL: dict = {**QUICK, "n": 1000, "n_gradient": 200, "n_depths": 30}
ESTIMATORS = ("dec", "ae-lasso", "ae-ls")
PAPER = {
    "fig2": "||z_t - z_hat|| falls from about 1 to 1e-2 over t <= 100 (W Fig. 2 axis)",
    "fig3": "||g - g_hat|| axis 1e-3 to 1e-1; g_ae-lasso converges about twice as fast as g_dec; "
            "g_ae-ls plateaus (Thms 4.9-4.12)",
}


def check(options: dict) -> None:
    """Every key of :data:`QUICK` is required; sizes positive, ``s <= p``, ``tau >= 0``."""
    check_option_keys(options, QUICK)
    for name in ("m", "p", "s", "n", "n_gradient", "n_layers", "n_depths"):
        check_positive_int(name, options[name])
    if options["s"] > options["p"]:
        raise ValueError(f"s must be <= p = {options['p']}; got {options['s']}.")
    if options["n_gradient"] > options["n"]:
        raise ValueError(f"n_gradient must be <= n = {options['n']}; got {options['n_gradient']}.")
    check_nonnegative("tau", options["tau"])
    check_positive("lam", options["lam"])
    if options["sign"] not in ("iid", "shared"):
        raise ValueError(f"sign must be 'iid' or 'shared'; got {options['sign']!r}.")


def depths(n_layers: int, count: int) -> list[int]:
    """``count`` depths spread geometrically over [1, n_layers] (distinct integers)."""
    return sorted({int(round(v)) for v in np.geomspace(1, n_layers, count)})


def run(options: dict, *, seed: int, dtype: torch.dtype = torch.float64, device: str = "cpu",
        progress: bool = False) -> pd.DataFrame:
    """Figures 2 and 3 of TMLR 2023 for one seed (see the module docstring for the table)."""
    check(options)
    o = dict(options)
    compute = torch.float64
    problem = make_sparse(o["m"], o["p"], o["n"], o["s"], seed=seed, sign=o["sign"],
                          dtype=compute, device=device)
    D = perturb(problem.D_star, o["tau"], seed=seed + 10_000)
    X, lam, T = problem.X, o["lam"], o["n_layers"]
    alpha = 1.0 / lipschitz_constant(D)
    Z_hat = lasso.solve(X, D, lam=lam)
    iterates = ista(X, D, lam=lam, n_layers=T, alpha=alpha, trace=True)
    errors = torch.linalg.vector_norm(iterates - Z_hat, dim=-1).cpu().numpy()  # (T + 1, n)
    settle = rates.settle_times(iterates, Z_hat).cpu().numpy()
    rho_S = rates.local_rate(D, Z_hat, alpha)
    z_norm = torch.linalg.vector_norm(Z_hat, dim=-1).cpu().numpy()
    rows = [("fig2", "code_error_mean", "ista", t, -1, float(errors[t].mean()))
            for t in range(T + 1)]
    for i in range(o["n"]):
        fit = rates.fit_window(errors[:, i], start=int(settle[i]) + 5,
                               floor=max(1e-12 * z_norm[i], 1e-300))
        rows += [("fig2", "rho_S", "ista", -1, i, float(rho_S[i])),
                 ("fig2", "settle_time", "ista", -1, i, float(settle[i])),
                 ("fig2", "fitted_rate", "ista", -1, i, fit.rate if fit else math.nan)]
    batch = X[: o["n_gradient"]]
    g_hat = gradients.oracle("hat", batch, D, lam=lam)
    scale = float(torch.linalg.matrix_norm(g_hat))
    for t in depths(T, o["n_depths"]):
        for kind in ESTIMATORS:
            g = gradients.estimate(kind, batch, D, lam=lam, n_layers=t, alpha=alpha)
            rows.append(("fig3", "gradient_error", kind, t, -1,
                         float(torch.linalg.matrix_norm(g - g_hat))))
    rows.append(("fig3", "g_hat_norm", "oracle", -1, -1, scale))
    table = pd.DataFrame(rows, columns=["figure", "quantity", "method", "t", "sample", "value"])
    table["seed"] = seed
    table["compute_dtype"] = "float64"
    return table


ASYMPTOTIC = (1e-11, 1e-2)


def _slope(frame: pd.DataFrame) -> float:
    """Slope of log(error) against t over the asymptotic regime: errors in :data:`ASYMPTOTIC`
    (below 1e-2 the supports are identified; above 1e-11 rounding does not show)."""
    low, high = ASYMPTOTIC
    part = frame[(frame["value"] > low) & (frame["value"] < high)]
    if len(part) < 3:
        return math.nan
    return float(np.polyfit(part["t"], np.log(part["value"]), 1)[0])


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per seed: the median fitted rate over rho_S (Thm 4.3 predicts 1), the slope ratio
    g_ae-lasso / g_dec over the late depths (Thm 4.10 predicts about 2), and the g_ae-ls plateau
    relative to ||g_hat|| (Thm 4.12: O(lam), not 0)."""
    rows = []
    for seed, part in results.groupby("seed"):
        per_sample = part[(part["figure"] == "fig2") & (part["sample"] >= 0)].pivot_table(
            index="sample", columns="quantity", values="value")
        ratio = (per_sample["fitted_rate"] / per_sample["rho_S"]).dropna()
        grads = part[part["quantity"] == "gradient_error"]
        t_max = int(grads["t"].max())
        dec = _slope(grads[grads["method"] == "dec"])
        ae_lasso = _slope(grads[grads["method"] == "ae-lasso"])
        g_hat = float(part.loc[part["quantity"] == "g_hat_norm", "value"].iloc[0])
        plateau = float(grads[(grads["method"] == "ae-ls") & (grads["t"] == t_max)]["value"]
                        .iloc[0])
        rows.append({
            "seed": seed,
            "median fitted rate / rho_S (Thm 4.3: 1)": float(ratio.median()),
            "samples with a fit": f"{len(ratio)} / {len(per_sample)}",
            "slope ae-lasso / dec, errors in [1e-11, 1e-2] (Thm 4.10: ~2)": ae_lasso / dec,
            "ae-ls plateau / ||g_hat|| (Thm 4.12: O(lam))": plateau / g_hat,
        })
    return pd.DataFrame(rows)


def render(results: pd.DataFrame, out_dir: Path) -> str:
    """Figures ``probes_fig2`` (code error against t; fitted rate against rho_S) and
    ``probes_fig3`` (gradient errors against depth), PNG and SVG, and ``probes_summary.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    colour = {"dec": "#1f77b4", "ae-lasso": "#ff7f0e", "ae-ls": "#2ca02c", "ista": "#333333"}
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    curves = results[results["quantity"] == "code_error_mean"]
    for seed, part in curves.groupby("seed"):
        left.semilogy(part["t"], part["value"], color=colour["ista"], alpha=0.7,
                      label=f"seed {seed}")
    left.set(xlabel="layer t", ylabel="mean_i ||z_t - z_hat_i||", title="Fig. 2: code error")
    left.legend(fontsize=8)
    per_sample = results[(results["figure"] == "fig2") & (results["sample"] >= 0)].pivot_table(
        index=["seed", "sample"], columns="quantity", values="value")
    right.scatter(per_sample["rho_S"], per_sample["fitted_rate"], s=8, color=colour["ista"])
    bounds = [per_sample["rho_S"].min(), per_sample["rho_S"].max()]
    right.plot(bounds, bounds, color="#d62728", lw=1, label="fitted = rho_S")
    right.set(xlabel="local rate rho_S (Thm 4.3)", ylabel="fitted rate (window fit)",
              title="per sample")
    right.legend(fontsize=8)
    figure.tight_layout()
    fig2 = save_figure(figure, out_dir, "probes_fig2")
    figure, axis = plt.subplots(figsize=(6, 3.8))
    grads = results[results["quantity"] == "gradient_error"]
    for (method, seed), part in grads.groupby(["method", "seed"]):
        axis.semilogy(part["t"], part["value"], color=colour[method], marker=".",
                      label=method if seed == grads["seed"].min() else None)
    axis.set(xlabel="depth t (layers)", ylabel="||g_t - g_hat||_F (batch mean)",
             title="Fig. 3: gradient error")
    axis.legend(fontsize=8)
    figure.tight_layout()
    fig3 = save_figure(figure, out_dir, "probes_fig3")
    table = summary(results)
    table.to_csv(out_dir / "probes_summary.csv", index=False)
    return (
        "<section><h2>Encoder probes: PUDLE Figs 2 and 3</h2>"
        f"<p>Paper, Fig. 2: {html.escape(PAPER['fig2'])}. Fig. 3: {html.escape(PAPER['fig3'])}."
        " Here: the catalogue's P-small problem (m = 50, p = 100, s = 5, D = perturb(D*, tau)),"
        " float64, certified lasso codes; the theorem checks in <code>theorems/</code> assert "
        "the rates, this section shows them.</p>"
        f"<img src='{fig2}' alt='code error against t'><img src='{fig3}' alt='gradient errors'>"
        + table.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0)
        + "<p><a href='probes_summary.csv'>probes_summary.csv</a></p></section>"
    )


__all__ = ["ESTIMATORS", "FULL", "QUICK", "check", "depths", "render", "run", "summary"]
