"""DCEA Figures 3 and 5 as a study (:mod:`udlbench.studies`): binomial convolutional dictionary
learning with DCEA against BCOMP, and model misspecification.

Tolooshams, Song, Temereanca & Ba, *Convolutional dictionary learning based auto-encoders for
natural exponential-family distributions*, ICML 2020, Sec. 5.2.1 (Fig. 3) and Sec. 5.2.3
(Fig. 5); THEOREMS.md E-SIM and E-MIS.

Data (:func:`udlbench.data.make_conv_expfamily`). J signals of N bins,
``y_j ~ Binomial(M, sigmoid(baseline + sum_c h_c * x_c^j))`` with C unit-norm filters ``h_c`` of
K taps, each occurring ``n_events`` times per signal with amplitudes ``U(amplitude)``. The paper
gives J = 1000, N = 500, C = 3, K = 50, 5 events, M = 25 but not the amplitudes nor the baseline;
the study takes THEOREMS.md E-SIM's choice, a baseline logit of -2 and amplitudes U(8, 16) (with
U(2, 4) the l1 shrinkage at lam = 0.38 removes most events; see theorems/test_e_dcea_conv.py).

Methods (all learn ``H`` of shape (C, K); error ``err(h_c, h_hat_c) = sqrt(1 - <h_c, h_hat_c>^2)``
under the best permutation, Sec. 5.2.1, :func:`udlbench.metrics.atom_sines`):

* ``DCEA`` (DCEA-C, Sec. 3.1): T unrolled FISTA layers of :func:`udlbench.encoders.expfamily`
  (binomial working residual, ReLU_b with b = alpha lam) through
  :class:`udlbench.dictionaries.Convolutional`, Adam on the filters with the negative binomial
  log-likelihood of the decoder output ``baseline + H x_T`` as the loss (no l1 term), unit-norm
  filters after every step. Started from the paper's random filters (N(0, 1), unit norm; start
  "random") and from a close start ``normalize(h_c + close_tau N(0, I/K))`` (start "close").
* ``BCOMP`` (App. Sec. 8, Algorithm 2, :class:`baselines.bcomp.BCOMP`) from the close start, with
  the known baseline: BCOMP is a local method (from random filters it stays near error 1).
* Fig. 5: ``DCEA-b`` (the binomial DCEA above) and ``DCEA-g`` (identity link, Gaussian likelihood
  of ``y / M`` with offset sigmoid(baseline), step alpha / 4 since the Gaussian curvature bound
  is four times the binomial one, Table 1), each on data with M trials for M in ``mis_trials``,
  from ``mis_start``.

Fig. 3d times inference (the CSC step: DCEA's encoder and BCOMP's ``code``) with the learned
filters on the first J signals for J in ``timing_signals``, after one untimed warm-up, with a
device synchronisation before each clock read.

The table has one row per recorded point, with columns ``part`` ("fig3" / "fig5"), ``method``,
``start``, ``trials`` (M), ``epoch`` (BCOMP: the alternation round g; -1 when not a curve point),
``signals`` (J of a timing, else -1), ``filter`` (c, or -1 for a summary over filters),
``index`` (tap of a filter or bin of a rate function, else -1), ``metric``, ``value``, ``seed``,
``dtype``. Metrics: ``error`` (per filter) and ``error_median`` against epochs; ``shift_error``
(per filter, the error minimised also over shifts of the learned filter by |s| < K, at the first
and last epoch: a random start often learns shifted copies, which the paper's error counts as
wrong); ``train_seconds`` (cumulative training time, clock paused during metrics);
``inference_seconds``; ``filter_true`` / ``filter_start`` / ``filter_learned`` (taps, the learned
ones matched and sign-aligned to the true ones) and ``rate`` (``mu_j`` of signals 0 and 1,
Fig. 3a). All values but the seconds are deterministic for a seed.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from baselines.bcomp import BCOMP
from udlbench import data, encoders, metrics
from udlbench._validation import (
    check_choice,
    check_nonnegative,
    check_option_keys,
    check_positive,
    check_positive_int,
)
from udlbench.dictionaries import Convolutional
from udlbench.figures import save_figure
from udlbench.training import clock

PARTS = ("fig3", "fig5")
STARTS = ("close", "random")

#: Quick profile (one CPU core, about three minutes per seed): J = 128 of the paper's 1000
#: signals, T = 50 of its 250 FISTA layers, batches of 32 (256), 30 epochs from the close start and
#: 60 from the random start (1000), Adam lr 3e-3 and 1e-2 (not given in the paper), Fig. 5 at
#: M in {5, 30, 200} (of eight values) from the close start, one trial per seed (20).
QUICK: dict = {
    "parts": ["fig3", "fig5"],
    "n_signals": 128,
    "length": 500,
    "n_filters": 3,
    "filter_length": 50,
    "n_events": 5,
    "trials": 25,
    "amplitude": [8.0, 16.0],
    "baseline": -2.0,
    "lam": 0.38,
    "alpha": 0.2,
    "n_layers": 50,
    "batch_size": 32,
    "close_tau": 0.6,
    "epochs_close": 30,
    "lr_close": 3e-3,
    "epochs_random": 60,
    "lr_random": 1e-2,
    "bcomp_nonzero": 15,
    "bcomp_rounds": 5,
    "timing_signals": [32, 64, 128],
    "mis_trials": [5, 30, 200],
    "mis_start": "close",
}
#: Full profile: the paper's sizes (J = 1000, T = 250, batch 256, 1000 epochs from the random
#: start, Adam lr 1e-3, M in {5, 10, 15, 20, 30, 50, 100, 200}); meant for a GPU (hours).
FULL: dict = {
    **QUICK,
    "n_signals": 1000,
    "n_layers": 250,
    "batch_size": 256,
    "epochs_close": 100,
    "lr_close": 1e-3,
    "epochs_random": 1000,
    "lr_random": 1e-3,
    "timing_signals": [100, 250, 500, 1000],
    "mis_trials": [5, 10, 15, 20, 30, 50, 100, 200],
    "mis_start": "random",
}
#: The paper's published values (ICML 2020, Sec. 5.2.1 and 5.2.3; Fig. 3 plots no stated number).
PAPER = {
    "fig3": "DCEA learns the three filters from random filters over 1000 epochs (Fig. 3b-c); "
            "CSC inference by DCEA on a GPU is much faster than BCOMP on a CPU, for J up to 1000 "
            "(Fig. 3d)",
    "fig5_binomial_30": 0.09,
    "fig5_gaussian_200": 0.4,
    "fig5": "DCEA-b recovers the filters for M > 15 and its error falls with M; DCEA-g reaches "
            "about 0.4 at M = 200 against 0.09 for DCEA-b at M = 30 (medians of 20 trials)",
}
COLUMNS = ["part", "method", "start", "trials", "epoch", "signals", "filter", "index", "metric",
           "value"]


def check(options: dict) -> None:
    """Every key of :data:`QUICK` is required; sizes positive integers, ``filter_length <=
    length``, ``n_events <= length - filter_length + 1``, rates and steps positive,
    ``parts`` a non-empty subset of :data:`PARTS`, ``timing_signals`` and ``mis_trials``
    non-empty lists of positive integers, timing sizes at most ``n_signals``."""
    check_option_keys(options, QUICK)
    for name in ("n_signals", "length", "n_filters", "filter_length", "n_events", "trials",
                 "n_layers", "batch_size", "epochs_close", "epochs_random", "bcomp_nonzero",
                 "bcomp_rounds"):
        check_positive_int(name, options[name])
    if options["filter_length"] > options["length"]:
        raise ValueError(f"filter_length must be <= length = {options['length']}; "
                         f"got {options['filter_length']}.")
    positions = options["length"] - options["filter_length"] + 1
    if options["n_events"] > positions:
        raise ValueError(f"n_events must be <= length - filter_length + 1 = {positions}; "
                         f"got {options['n_events']}.")
    for name in ("lam", "alpha", "lr_close", "lr_random"):
        check_positive(name, options[name])
    check_nonnegative("close_tau", options["close_tau"])
    baseline = options["baseline"]
    if isinstance(baseline, bool) or not isinstance(baseline, int | float) or not math.isfinite(
            baseline):
        raise ValueError(f"baseline must be a finite number; got {baseline!r}.")
    amplitude = options["amplitude"]
    if (not isinstance(amplitude, list | tuple) or len(amplitude) != 2
            or not 0 <= amplitude[0] <= amplitude[1]):
        raise ValueError(f"amplitude must be a pair [a, b] with 0 <= a <= b; got {amplitude!r}.")
    parts = options["parts"]
    if not isinstance(parts, list | tuple) or not parts:
        raise ValueError(f"parts must be a non-empty list drawn from {list(PARTS)}; got {parts!r}.")
    for part in parts:
        check_choice("parts", part, PARTS)
    for name in ("timing_signals", "mis_trials"):
        values = options[name]
        if not isinstance(values, list | tuple) or not values:
            raise ValueError(f"{name} must be a non-empty list of positive integers; "
                             f"got {values!r}.")
        for value in values:
            check_positive_int(name, value)
    if max(options["timing_signals"]) > options["n_signals"]:
        raise ValueError(f"timing_signals must be <= n_signals = {options['n_signals']}; "
                         f"got {options['timing_signals']!r}.")
    check_choice("mis_start", options["mis_start"], STARTS)


class WithOffset(Convolutional):
    """1-D filters (C, 1, K) whose ``decode`` adds a known constant to the linear predictor,
    ``eta = offset + H x``: the baseline term ``a^j`` of ICML 2020, App. Sec. 10, eq. 108, which
    the encoder's residual and the loss must both see. ``adjoint`` and ``lipschitz`` are those
    of ``H``."""

    def __init__(self, filters: torch.Tensor, *, offset: float) -> None:
        super().__init__(filters)
        self.offset = float(offset)

    def decode(self, Z: torch.Tensor, signal_size=None) -> torch.Tensor:
        return super().decode(Z, signal_size) + self.offset


def binomial_nll(Y: torch.Tensor, eta: torch.Tensor, trials: float) -> torch.Tensor:
    """Negative binomial log-likelihood per trial, ``sum_n softplus(eta_n) - (y_n / M) eta_n``,
    averaged over signals (ICML 2020, eq. 2 and Table 1, without the constant); ``Y`` and
    ``eta`` of shape (J, 1, N)."""
    return (F.softplus(eta) - Y / trials * eta).sum((1, 2)).mean()


def gaussian_nll(Y: torch.Tensor, eta: torch.Tensor, trials: float) -> torch.Tensor:
    """Gaussian negative log-likelihood ``||y / M - eta||^2 / 2`` per signal (DCEA-g, Sec.
    5.2.3); shapes as :func:`binomial_nll`."""
    return 0.5 * (Y / trials - eta).square().sum((1, 2)).mean()


def family_terms(family: str, *, trials: int, baseline: float, alpha: float) -> dict:
    """DCEA-b or DCEA-g (Sec. 5.2.3): encoder input scale, encoder arguments, offset of the
    linear predictor (the logit ``baseline``, or ``sigmoid(baseline)`` under the identity link)
    and the loss. DCEA-g's step is alpha / 4: the Gaussian curvature bound is four times the
    binomial one (Table 1), so the step is the same fraction of 1 / L."""
    check_choice("family", family, ("binomial", "gaussian"))
    if family == "binomial":
        return dict(scale=1.0, offset=baseline, loss=binomial_nll,
                    encoder=dict(family="binomial", trials=float(trials), alpha=alpha))
    return dict(scale=1.0 / trials, offset=1.0 / (1.0 + math.exp(-baseline)), loss=gaussian_nll,
                encoder=dict(family="gaussian", alpha=alpha / 4))


def filter_errors(H: torch.Tensor, H_star: torch.Tensor) -> np.ndarray:
    """``err(h_c, h_hat_c)`` (Sec. 5.2.1) under the best permutation; ``H`` and ``H_star`` of
    shape (C, K), shape (C,)."""
    return metrics.atom_sines(H.detach().T, H_star.T).cpu().numpy()


def shift_errors(H: torch.Tensor, H_star: torch.Tensor) -> np.ndarray:
    """``min_s err(h_c, S_s h_hat)`` under the best permutation, with ``S_s`` the shift by
    ``|s| < K`` taps (zero fill): a learned filter that is a shifted copy of a true one counts
    as found. At most :func:`filter_errors`; shapes as there."""
    K = H_star.shape[1]
    learned = F.normalize(H.detach(), dim=1).unsqueeze(1)
    true = F.normalize(H_star, dim=1).unsqueeze(1)
    lagged = F.conv1d(F.pad(learned, (K - 1, K - 1)), true)  # (C learned, C true, 2K - 1)
    cosines = lagged.abs().amax(-1).T.cpu().numpy()
    rows, cols = linear_sum_assignment(cosines, maximize=True)
    best = np.empty(H_star.shape[0])
    best[rows] = cosines[rows, cols]
    return np.sqrt(np.clip(1 - best**2, 0, None))


def close_start(H_star: torch.Tensor, tau: float, *, seed: int) -> torch.Tensor:
    """``normalize(h_c + tau N(0, I/K))`` for every true filter (C, K) (a q-close start)."""
    return data.perturb(H_star.T.contiguous(), tau, seed=seed).T.contiguous()


def random_start(n_filters: int, filter_length: int, *, seed: int, dtype: torch.dtype,
                 device: str) -> torch.Tensor:
    """Filters N(0, 1) with unit norm (Sec. 5.2.1), shape (C, K)."""
    generator = torch.Generator().manual_seed(seed)
    H = torch.randn(n_filters, filter_length, generator=generator, dtype=torch.float64)
    return F.normalize(H, dim=1).to(dtype=dtype, device=device)


def encode(Y: torch.Tensor, H: torch.Tensor, terms: dict, o: dict) -> torch.Tensor:
    """Codes (J, C, N - K + 1) of counts ``Y`` (J, N) by DCEA's unrolled encoder (ICML 2020,
    App. Algorithm 3, FISTA) with filters ``H`` (C, K)."""
    dictionary = WithOffset(H.unsqueeze(1), offset=terms["offset"])
    return encoders.expfamily(terms["scale"] * Y.unsqueeze(1), dictionary, lam=o["lam"],
                              n_layers=o["n_layers"], accelerate=True, check_step=False,
                              **terms["encoder"])


def train_dcea(Y: torch.Tensor, H_star: torch.Tensor, H0: torch.Tensor, o: dict, *,
               epochs: int, lr: float, seed: int, trials: int,
               family: str = "binomial") -> tuple[torch.Tensor, list[tuple]]:
    """DCEA by back-propagation through the unrolled encoder (ICML 2020, Sec. 3.1): Adam on the
    filters (C, K), loss the negative log-likelihood of ``offset + H x_T`` (no l1 term), unit-norm
    filters after every step, mini-batches in a seeded order. Returns the learned filters and the
    rows (epoch, filter, metric, value) of the curves; the clock excludes the metrics."""
    terms = family_terms(family, trials=trials, baseline=o["baseline"], alpha=o["alpha"])
    H = torch.nn.Parameter(H0.clone())
    optimizer = torch.optim.Adam([H], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    rows: list[tuple] = []
    seconds = 0.0

    def record(epoch: int) -> None:
        errors = filter_errors(H, H_star)
        rows.extend((epoch, c, "error", float(e)) for c, e in enumerate(errors))
        rows.append((epoch, -1, "error_median", float(np.median(errors))))
        rows.append((epoch, -1, "train_seconds", seconds))
        if epoch in (0, epochs):
            rows.extend((epoch, c, "shift_error", float(e))
                        for c, e in enumerate(shift_errors(H, H_star)))

    record(0)
    n = Y.shape[0]
    for epoch in range(1, epochs + 1):
        tic = clock(Y.device)
        order = torch.randperm(n, generator=generator).to(Y.device)
        for first in range(0, n, o["batch_size"]):
            batch = Y[order[first:first + o["batch_size"]]]
            codes = encode(batch, H, terms, o)
            eta = WithOffset(H.unsqueeze(1), offset=terms["offset"]).decode(codes, (Y.shape[1],))
            loss = terms["loss"](batch.unsqueeze(1), eta, float(trials))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                H.div_(torch.linalg.vector_norm(H, dim=-1, keepdim=True))
        seconds += clock(Y.device) - tic
        record(epoch)
    return H.detach(), rows


def _simulate(o: dict, *, trials: int, seed: int, dtype: torch.dtype, device: str):
    return data.make_conv_expfamily(o["n_signals"], o["length"], o["n_filters"],
                                    o["filter_length"], trials=trials, n_events=o["n_events"],
                                    amplitude=tuple(o["amplitude"]), baseline=o["baseline"],
                                    seed=seed, dtype=dtype, device=device)


def _taps(metric: str, H: torch.Tensor, H_star: torch.Tensor, method: str, start: str) -> list:
    """Rows of the taps of ``H`` (C, K), matched and sign-aligned to ``H_star``."""
    aligned = metrics.align(H.T, H_star.T).D.T.cpu().numpy()
    return [("fig3", method, start, -1, -1, -1, c, k, metric, float(aligned[c, k]))
            for c in range(aligned.shape[0]) for k in range(aligned.shape[1])]


def _timed(function, *args) -> float:
    device = args[0].device
    function(*args)
    tic = clock(device)
    function(*args)
    return clock(device) - tic


def _fig3(o: dict, *, seed: int, dtype: torch.dtype, device: str) -> list[tuple]:
    sim = _simulate(o, trials=o["trials"], seed=seed, dtype=dtype, device=device)
    H_star, M = sim.H_star, o["trials"]
    rows = []
    for j in range(min(2, o["n_signals"])):
        rows += [("fig3", "data", "-", M, -1, -1, j, b, "rate", float(v))
                 for b, v in enumerate(sim.mu[j].cpu().tolist())]
    starts = {"close": close_start(H_star, o["close_tau"], seed=seed + 1),
              "random": random_start(o["n_filters"], o["filter_length"], seed=seed + 1,
                                     dtype=dtype, device=device)}
    learned = {}
    for start, H0 in starts.items():
        H, curve = train_dcea(sim.Y, H_star, H0, o, epochs=o[f"epochs_{start}"],
                              lr=o[f"lr_{start}"], seed=seed + 2, trials=M)
        learned[start] = H
        rows += [("fig3", "DCEA", start, M, e, -1, c, -1, metric, v) for e, c, metric, v in curve]
    rows += _taps("filter_true", H_star, H_star, "truth", "-")
    rows += _taps("filter_start", starts["close"], H_star, "DCEA", "close")
    rows += _taps("filter_learned", learned["close"], H_star, "DCEA", "close")
    bcomp = BCOMP(n_nonzero=o["bcomp_nonzero"], trials=M, n_iter=o["bcomp_rounds"],
                  baseline=o["baseline"]).fit(sim.Y, starts["close"], H_star=H_star)
    for record in bcomp.records_.itertuples():
        rows += [("fig3", "BCOMP", "close", M, record.step, -1, c, -1, "error",
                  float(getattr(record, f"error_filter_{c}"))) for c in range(o["n_filters"])]
        rows += [("fig3", "BCOMP", "close", M, record.step, -1, -1, -1, "error_median",
                  float(record.error_median)),
                 ("fig3", "BCOMP", "close", M, record.step, -1, -1, -1, "train_seconds",
                  float(record.time))]
    rows += _taps("filter_learned", bcomp.filters_, H_star, "BCOMP", "close")
    terms = family_terms("binomial", trials=M, baseline=o["baseline"], alpha=o["alpha"])
    with torch.no_grad():
        for J in o["timing_signals"]:
            Y = sim.Y[:J]
            rows.append(("fig3", "DCEA", "close", M, -1, J, -1, -1, "inference_seconds",
                         _timed(lambda Y, H: encode(Y, H, terms, o), Y, learned["close"])))
            rows.append(("fig3", "BCOMP", "close", M, -1, J, -1, -1, "inference_seconds",
                         _timed(bcomp.code, Y, bcomp.filters_)))
    return rows


def _fig5(o: dict, *, seed: int, dtype: torch.dtype, device: str) -> list[tuple]:
    rows = []
    start, epochs = o["mis_start"], o[f"epochs_{o['mis_start']}"]
    for M in o["mis_trials"]:
        sim = _simulate(o, trials=M, seed=seed, dtype=dtype, device=device)
        if start == "close":
            H0 = close_start(sim.H_star, o["close_tau"], seed=seed + 1)
        else:
            H0 = random_start(o["n_filters"], o["filter_length"], seed=seed + 1, dtype=dtype,
                              device=device)
        for method, family in (("DCEA-b", "binomial"), ("DCEA-g", "gaussian")):
            _, curve = train_dcea(sim.Y, sim.H_star, H0, o, epochs=epochs, lr=o[f"lr_{start}"],
                                  seed=seed + 2, trials=M, family=family)
            rows += [("fig5", method, start, M, e, -1, c, -1, metric, v)
                     for e, c, metric, v in curve if e == epochs or metric == "error_median"]
    return rows


def run(options: dict, *, seed: int, dtype: torch.dtype = torch.float32, device: str = "cpu",
        progress: bool = False) -> pd.DataFrame:
    """DCEA Figs 3 and 5 (the ``parts`` asked for) for one seed; the tidy table of the module
    docstring. ``progress`` prints one line per part."""
    check(options)
    o = dict(options)
    rows: list[tuple] = []
    for part, build in (("fig3", _fig3), ("fig5", _fig5)):
        if part in o["parts"]:
            if progress:
                print(f"dcea_figures: {part}, seed {seed}", flush=True)
            rows += build(o, seed=seed, dtype=dtype, device=device)
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["seed"] = seed
    table["dtype"] = str(dtype).removeprefix("torch.")
    return table


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per (part, method, start, M): the median filter error at the start and at the last
    epoch (the mean over seeds, with the seed count), the shift-tolerant median at the end, the
    training time, and the paper's value where it states one."""
    curves = results[results["metric"] == "error_median"]
    rows = []
    for (part, method, start, M), part_rows in curves.groupby(["part", "method", "start",
                                                               "trials"]):
        first = part_rows[part_rows["epoch"] == part_rows["epoch"].min()]
        last_epoch = part_rows["epoch"].max()
        last = part_rows[part_rows["epoch"] == last_epoch]
        same = ((results["part"] == part) & (results["method"] == method)
                & (results["start"] == start) & (results["trials"] == M)
                & (results["epoch"] == last_epoch))
        shift = results[same & (results["metric"] == "shift_error")]
        seconds = results[same & (results["metric"] == "train_seconds")]
        paper = {("fig5", "DCEA-b", 30): PAPER["fig5_binomial_30"],
                 ("fig5", "DCEA-g", 200): PAPER["fig5_gaussian_200"]}.get((part, method, M))
        rows.append({
            "figure": part, "method": method, "start": start, "M": int(M),
            "epochs / rounds": int(last_epoch), "seeds": last["seed"].nunique(),
            "median err, start": float(first["value"].mean()),
            "median err, end": float(last["value"].mean()),
            "shift-tolerant median err, end": (
                float(shift.groupby("seed")["value"].median().mean()) if len(shift) else math.nan),
            "training seconds": float(seconds["value"].mean()),
            "paper": paper if paper is not None else math.nan,
        })
    return pd.DataFrame(rows)


def render(results: pd.DataFrame, out_dir: Path) -> str:
    """Figures ``dcea_fig3`` (rate functions, filters, error against epochs, inference time)
    and ``dcea_fig5`` (error against M), PNG and SVG, and ``dcea_summary.csv``; the parts
    absent from ``results`` are skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = []
    first_seed = results["seed"].min()
    if (results["part"] == "fig3").any():
        fig3 = results[results["part"] == "fig3"]
        figure, axes = plt.subplots(1, 4, figsize=(17, 3.8))
        rate = fig3[(fig3["metric"] == "rate") & (fig3["seed"] == first_seed)]
        for j, part in rate.groupby("filter"):
            axes[0].plot(part["index"], part["value"], lw=0.8, label=f"signal {j}")
        axes[0].set(xlabel="time bin n", ylabel="mu_j[n] (spike probability)",
                    title="(a) rate functions")
        axes[0].legend(fontsize=8)
        styles = {("filter_true", "truth"): ("tab:orange", "-", "true"),
                  ("filter_start", "DCEA"): ("tab:blue", ":", "start (close)"),
                  ("filter_learned", "DCEA"): ("tab:green", "--", "DCEA"),
                  ("filter_learned", "BCOMP"): ("tab:red", "-.", "BCOMP")}
        for (metric, method), (colour, style, label) in styles.items():
            taps = fig3[(fig3["metric"] == metric) & (fig3["method"] == method)
                        & (fig3["seed"] == first_seed)]
            for c, part in taps.groupby("filter"):
                axes[1].plot(part["index"], part["value"] + 0.8 * c, color=colour, ls=style,
                             lw=1, label=label if c == 0 else None)
        axes[1].set(xlabel="tap k", ylabel="h_c[k] (offset 0.8 per filter)",
                    title=f"(b) filters, seed {first_seed}")
        axes[1].legend(fontsize=7)
        curves = fig3[fig3["metric"] == "error_median"]
        colours = {("DCEA", "close"): "tab:green", ("DCEA", "random"): "tab:purple",
                   ("BCOMP", "close"): "tab:red"}
        for (method, start, seed), part in curves.groupby(["method", "start", "seed"]):
            axes[2].plot(part["epoch"], part["value"], color=colours[(method, start)],
                         marker="o" if method == "BCOMP" else None, ms=3, alpha=0.8,
                         label=f"{method}, {start} start" if seed == first_seed else None)
        axes[2].set(xlabel="epoch (BCOMP: alternation round)",
                    ylabel="median_c err(h_c, h_hat_c)", ylim=(0, 1.05),
                    title="(c) filter error")
        axes[2].legend(fontsize=7)
        timing = fig3[fig3["metric"] == "inference_seconds"]
        for method, part in timing.groupby("method"):
            means = part.groupby("signals")["value"].mean()
            axes[3].plot(means.index, means.values, marker="o",
                         color="tab:green" if method == "DCEA" else "tab:red", label=method)
        axes[3].set(xlabel="number of signals J", ylabel="CSC inference time (s)",
                    yscale="log", title="(d) inference time, same device")
        axes[3].legend(fontsize=8)
        figure.tight_layout()
        images.append(save_figure(figure, out_dir, "dcea_fig3"))
    if (results["part"] == "fig5").any():
        fig5 = results[(results["part"] == "fig5") & (results["metric"] == "error_median")]
        last = fig5[fig5["epoch"] == fig5.groupby(["method", "trials", "seed"])["epoch"]
                    .transform("max")]
        figure, axis = plt.subplots(figsize=(5.5, 3.8))
        for method, colour in (("DCEA-b", "tab:green"), ("DCEA-g", "tab:blue")):
            part = last[last["method"] == method]
            medians = part.groupby("trials")["value"].median()
            axis.scatter(part["trials"], part["value"], color=colour, s=10, alpha=0.5)
            axis.plot(medians.index, medians.values, "o-", color=colour,
                      label=f"{method} (median over seeds)")
        axis.plot([30], [PAPER["fig5_binomial_30"]], "*", ms=12, color="tab:green",
                  label="paper DCEA-b, M = 30")
        axis.plot([200], [PAPER["fig5_gaussian_200"]], "*", ms=12, color="tab:blue",
                  label="paper DCEA-g, M = 200")
        axis.set(xscale="log", xlabel="trials per signal M", ylabel="median_c err(h_c, h_hat_c)",
                 ylim=(0, 1.05), title="Fig. 5: model misspecification")
        axis.legend(fontsize=7)
        figure.tight_layout()
        images.append(save_figure(figure, out_dir, "dcea_fig5"))
    table = summary(results)
    table.to_csv(out_dir / "dcea_summary.csv", index=False)
    sizes = _sizes_sentence(results)
    return (
        "<section><h2>DCEA Figs 3 and 5: binomial convolutional dictionary learning</h2>"
        f"<p>Paper, Fig. 3: {html.escape(PAPER['fig3'])}. Fig. 5: {html.escape(PAPER['fig5'])}."
        "</p><p>Here: simulated spike trains of the paper's model with a baseline logit of -2 "
        f"and amplitudes U(8, 16), which the paper does not give; {html.escape(sizes)} The "
        "data and sizes differ, so the numbers are not a reproduction; what can agree is the "
        "ordering: DCEA-b below DCEA-g at large M, DCEA and BCOMP both recovering the filters "
        "from a close start, a random start learning shifted copies that only the "
        "shift-tolerant error counts as found. Inference times are measured on one device for "
        "both methods (the paper ran DCEA on a GPU and BCOMP on a CPU).</p>"
        + "".join(f"<img src='{name}' alt='{name}'>" for name in images)
        + table.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0, na_rep="-")
        + "<p><a href='dcea_summary.csv'>dcea_summary.csv</a></p></section>"
    )


def _sizes_sentence(results: pd.DataFrame) -> str:
    curves = results[results["metric"] == "error_median"]
    epochs = {f"{m} ({s})": int(p["epoch"].max())
              for (m, s), p in curves.groupby(["method", "start"])}
    listed = ", ".join(f"{k}: {v}" for k, v in sorted(epochs.items()))
    return (f"{results['seed'].nunique()} seed(s); epochs (BCOMP rounds) per method: {listed} "
            "(the paper: 1000 epochs from random filters, J = 1000, 20 trials per point).")





__all__ = ["FULL", "PAPER", "PARTS", "QUICK", "WithOffset", "binomial_nll", "check",
           "close_start", "encode", "family_terms", "filter_errors", "gaussian_nll",
           "random_start", "render", "run", "shift_errors", "summary", "train_dcea"]
