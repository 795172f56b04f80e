"""The pass criteria of the dictionary-learning figures, evaluated on a results table.

THEOREMS.md states for PUDLE's learning experiments (Tolooshams & Ba, TMLR 2023, Figs 4b-c,
5, 12-16) a criterion on the *final* dictionary errors of the methods of one run. These
functions apply them to the tidy table of a sweep (:func:`udlbench.runner.run_sweep`, read back
with :meth:`udlbench.results.ResultsStore.load`), so that the `full` theorem checks, the report
and a user with a new estimator share one definition:

* :func:`final_errors`: the error each (setting, method, seed) ends at, and where it started;
* :func:`dl4`: THEOREMS.md P-DL4 "Pass (full)" (Figs 4b-c, 12, 13, 14), also P-F15's
  criterion (i) (Fig. 15);
* :func:`dl5`: THEOREMS.md P-DL5 "Pass (full)" (Figs 5 and 16).

Each criterion returns one row per asserted comparison (``check``, ``setting``, ``seed``, the
measured ``value``, the ``bound`` it is held to and ``passed``), so a failure names the setting
and seed it came from. A run whose error is not finite (a diverged run) counts as infinitely
far from D*: it cannot pass a bound, and it loses every comparison.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from udlbench.results import point_labels

#: Method labels of the registered PUDLE experiments (``udlbench.experiments``).
LS, LASSO, DEC = "ae-ls", "ae-lasso", "dec"
DECAY, HT, AM, SPORCO_AM = "ae-ls-decay", "ae-ls-ht", "am", "sporco-am"

_COLUMNS = ["check", "setting", "seed", "value", "bound", "passed"]


def final_errors(
    table: pd.DataFrame,
    *,
    window: int | None = None,
    unit: str = "epoch",
    metric: str = "error_fro",
) -> pd.DataFrame:
    """The final error of every run of a learning sweep.

    Parameters
    ----------
    table : pandas.DataFrame
        A sweep's records: columns ``method``, ``seed``, ``epoch``, ``step``, ``metric`` and any
        ``grid.*`` columns, one row per recorded step.
    window : int or None
        Average the error over the records of the last ``window`` epochs (epochs
        ``> last - window``), as P-DL4's "mean error over the last 100 epochs"; None takes the
        last record (P-DL5's one-epoch runs).
    unit : {"epoch", "step"}
        The unit of ``window``: epochs, or updates (for mini-batch runs with an update budget).
    metric : str
        The error column, ``error_fro`` (relative Frobenius error after alignment, THEOREMS.md
        Sec. 0.7) by default.

    Returns
    -------
    pandas.DataFrame
        One row per (``setting``, ``method``, ``seed``) with ``initial`` (the first record) and
        ``final``; ``setting`` is the run's grid point (:func:`udlbench.results.point_label`,
        e.g. ``"n_layers=25"``); a run with a non-finite error anywhere in the window has
        ``final = inf``.
    """
    missing = {"method", "seed", "epoch", "step", metric} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks the column(s) {sorted(missing)} of a learning sweep.")
    if window is not None and window < 1:
        raise ValueError(f"window must be a positive number of {unit}s or None; got {window!r}.")
    if unit not in ("epoch", "step"):
        raise ValueError(f"unit must be 'epoch' or 'step'; got {unit!r}.")
    frame = table.assign(setting=point_labels(table)).sort_values("step", kind="stable")
    rows = []
    for (setting, method, seed), run in frame.groupby(["setting", "method", "seed"], sort=True):
        errors = run[metric].to_numpy(dtype=float)
        if window is None:
            tail = errors[-1:]
        else:
            tail = errors[run[unit].to_numpy() > run[unit].max() - window]
        final = float(tail.mean()) if np.all(np.isfinite(tail)) else math.inf
        rows.append(dict(setting=setting, method=method, seed=int(seed),
                         initial=float(errors[0]), final=final))
    return pd.DataFrame(rows, columns=["setting", "method", "seed", "initial", "final"])


def _by_method(finals: pd.DataFrame, methods: tuple[str, ...]) -> pd.DataFrame:
    """Final errors pivoted to one row per (setting, seed), one column per method."""
    absent = sorted(set(methods) - set(finals["method"]))
    if absent:
        raise ValueError(f"the table has no run of method(s) {absent}; it has "
                         f"{sorted(finals['method'].unique())}.")
    wide = finals.pivot_table(index=["setting", "seed"], columns="method", values="final",
                              aggfunc="first")
    initial = finals[finals["method"] == methods[0]].set_index(["setting", "seed"])["initial"]
    return wide.assign(initial=initial).reset_index()


def _row(check: str, setting: str, seed, value: float, bound: float, passed: bool) -> dict:
    return dict(check=check, setting=setting, seed=seed, value=float(value), bound=float(bound),
                passed=bool(passed))


def _ratio(a: float, b: float) -> float:
    """a / b with diverged runs ordered: inf / inf is inf (no pass), x / inf is 0, x / 0 is inf."""
    if math.isinf(a):
        return math.inf
    if math.isinf(b):
        return 0.0
    return a / b if b > 0 else math.inf


def dl4(finals: pd.DataFrame, *, n_layers_column: str = "n_layers",
        initial_fraction: float = 0.25) -> pd.DataFrame:
    """THEOREMS.md P-DL4, "Pass (full)" (PUDLE Figs 4b-c, 12, 13, 14).

    For every setting (grid point) and seed, with ``e_X`` the final error of gradient X:

    * ``ls_vs_others``: (i) ``e_ls / min(e_dec, e_lasso) <= 0.5``;
    * ``ls_vs_initial``: (ii) ``e_ls / initial < initial_fraction`` (0.25 in the catalogue).

    For every setting whose label has ``n_layers=25`` (the paper's "implicit acceleration"),
    over the seeds: ``lasso_beats_dec_T25``, the median of ``e_lasso / e_dec`` is ``< 1``; with
    ``n_layers=100``: ``lasso_like_dec_T100``, ``|median(e_lasso / e_dec) - 1| < 0.15``.

    Parameters
    ----------
    finals : pandas.DataFrame
        The output of :func:`final_errors` with methods ``ae-ls``, ``ae-lasso`` and ``dec``.
    n_layers_column : str
        The name under which the depth T appears in the setting label.
    initial_fraction : float
        The bound of (ii).

    Returns
    -------
    pandas.DataFrame
        Columns ``check``, ``setting``, ``seed`` (``"median"`` for the over-seed checks),
        ``value``, ``bound``, ``passed``.
    """
    wide = _by_method(finals, (LS, LASSO, DEC))
    rows = []
    for _, r in wide.iterrows():
        best_other = min(r[DEC], r[LASSO])
        rows.append(_row("ls_vs_others", r["setting"], int(r["seed"]),
                         _ratio(r[LS], best_other), 0.5, _ratio(r[LS], best_other) <= 0.5))
        fraction = _ratio(r[LS], r["initial"])
        rows.append(_row("ls_vs_initial", r["setting"], int(r["seed"]), fraction,
                         initial_fraction, fraction < initial_fraction))
    for setting, group in wide.groupby("setting", sort=True):
        ratios = [_ratio(a, b) for a, b in zip(group[LASSO], group[DEC], strict=True)]
        median = float(np.median(ratios))
        if f"{n_layers_column}=25" in setting.split(", "):
            rows.append(_row("lasso_beats_dec_T25", setting, "median", median, 1.0, median < 1))
        if f"{n_layers_column}=100" in setting.split(", "):
            gap = abs(median - 1) if math.isfinite(median) else math.inf
            rows.append(_row("lasso_like_dec_T100", setting, "median", gap, 0.15, gap < 0.15))
    return pd.DataFrame(rows, columns=_COLUMNS)


def dl5(
    finals: pd.DataFrame, *, asserted: str = "dataset.s=20", floor: float = 1e-3
) -> pd.DataFrame:
    """THEOREMS.md P-DL5, "Pass (full)" (PUDLE Figs 5 and 16).

    For every seed of the settings whose label contains ``asserted`` (the catalogue asserts
    s = 20 of s in {10, 20, 40}, the grid axis ``dataset.s`` of the experiment pudle-fig5):

    * ``decay_vs_ls`` and ``ht_vs_ls``: (i), (ii) ``e_decay / e_ls < 0.5``, ``e_HT / e_ls < 0.5``;
    * ``ls_vs_sporco_am`` and ``ls_vs_am``: (iii) ``e_ls / e_AM < 1`` for SPORCO-style and
      Algorithm-1 alternating minimisation at the same lam (``am`` only when it was run);
    * ``decay_floor`` and ``ht_floor``: the decay and HT runs end below ``floor`` (1e-3).

    The other settings are returned with the same checks and ``passed`` computed but are meant
    to be reported, not asserted (see the ``asserted`` column).
    """
    wide = _by_method(finals, (LS, DECAY, HT, SPORCO_AM))
    rows = []
    for _, r in wide.iterrows():
        setting, seed = r["setting"], int(r["seed"])
        base = dict(setting=setting, seed=seed)
        pairs = [("decay_vs_ls", r[DECAY], r[LS], 0.5), ("ht_vs_ls", r[HT], r[LS], 0.5),
                 ("ls_vs_sporco_am", r[LS], r[SPORCO_AM], 1.0)]
        if AM in wide.columns:
            pairs.append(("ls_vs_am", r[LS], r[AM], 1.0))
        for check, a, b, bound in pairs:
            value = _ratio(a, b)
            rows.append(_row(check, **base, value=value, bound=bound, passed=value < bound))
        for check, value in (("decay_floor", r[DECAY]), ("ht_floor", r[HT])):
            rows.append(_row(check, **base, value=value, bound=floor, passed=value < floor))
    frame = pd.DataFrame(rows, columns=_COLUMNS)
    return frame.assign(asserted=frame["setting"].map(lambda s: asserted in s.split(", ")))
