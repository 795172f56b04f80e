"""The static HTML comparison report: one folder with index.html, figures (PNG and SVG) and tables
(CSV) that opens without a server.

Sections: per experiment, the dictionary error against updates and against wall time for every
method (median over seeds with the interquartile band), a table of final error floors, the time
to reach target errors, the per-update time and the peak memory, and the paper's reported numbers
next to the measured ones (with paired gaps and their 95 % confidence intervals where the
experiment names pairs); the theorem verification table from ``pytest theorems/`` evidence; the
environment (hardware, versions, commit, seeds). One colour per method label, kept across
figures.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from udlbench import evidence as evidence_records
from udlbench import experiments, studies
from udlbench.figures import save_figure
from udlbench.results import ResultsStore, grid_columns, point_label

TARGETS = (1e-1, 1e-2, 1e-3, 1e-5)
ERROR = "error_fro"
PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
           "#666666", "#1f78b4", "#b2df8a"]


def colours(labels: list[str]) -> dict[str, str]:
    """A fixed colour per method label (sorted, so the same label keeps its colour)."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(set(labels)))}


def _groups(table: pd.DataFrame):
    columns = grid_columns(table)
    if not columns:
        yield (), columns, table
        return
    for point, part in table.groupby(columns, dropna=False, sort=True):
        yield (point if isinstance(point, tuple) else (point,)), columns, part


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and grid point: final and minimum error (median and IQR over seeds), time to the
    target errors, per-update time and peak memory."""
    rows = []
    for point, columns, part in _groups(table):
        for method, runs in part.groupby("method", sort=True):
            last = runs.sort_values("step").groupby("seed").tail(1)
            best = runs.groupby("seed")[ERROR].min()
            per_step = []
            for _, run in runs.groupby("seed"):
                run = run.sort_values("step")
                steps, times = run["step"].diff(), run["time"].diff()
                valid = steps > 0
                per_step += list((times[valid] / steps[valid]).to_numpy())
            row = {
                "point": point_label(point, columns),
                "method": method,
                "seeds": int(last["seed"].nunique()),
                "updates": int(last["step"].median()),
                "final_error_median": float(last[ERROR].median()),
                "final_error_q25": float(last[ERROR].quantile(0.25)),
                "final_error_q75": float(last[ERROR].quantile(0.75)),
                "min_error_median": float(best.median()),
                "ms_per_update_median": 1e3 * float(np.median(per_step)) if per_step else math.nan,
                "ms_per_update_iqr": 1e3 * float(np.subtract(*np.percentile(per_step, [75, 25])))
                if per_step else math.nan,
                "peak_rss_mb": float(runs["peak_rss_mb"].max()),
                "peak_cuda_mb": float(runs["peak_cuda_mb"].max()),
            }
            for target in TARGETS:
                reached = runs[runs[ERROR] <= target].groupby("seed")["time"].min()
                row[f"time_to_{target:g}_s"] = (
                    float(reached.median()) if len(reached) == row["seeds"] else math.nan
                )
            rows.append(row)
    return pd.DataFrame(rows)


def paired_gap(table: pd.DataFrame, first: str, second: str) -> dict | None:
    """Relative gap of final errors ``(e_second - e_first) / e_first`` paired by seed and grid
    point, with its mean and a 95 % t confidence interval."""
    last = table.sort_values("step").groupby(["method", "seed", *(grid_columns(table))],
                                             dropna=False).tail(1)
    keys = ["seed", *grid_columns(table)]
    a = last[last["method"] == first].set_index(keys)[ERROR]
    b = last[last["method"] == second].set_index(keys)[ERROR]
    joined = pd.concat([a.rename("a"), b.rename("b")], axis=1).dropna()
    if len(joined) < 2:
        return None
    gaps = ((joined["b"] - joined["a"]) / joined["a"]).to_numpy()
    mean, sem = float(gaps.mean()), float(stats.sem(gaps))
    half = float(stats.t.ppf(0.975, len(gaps) - 1) * sem) if sem > 0 else 0.0
    return {"first": first, "second": second, "pairs": len(gaps), "mean": mean,
            "ci_low": mean - half, "ci_high": mean + half}


def figure_curves(table: pd.DataFrame, colour: dict[str, str], x: str, title: str):
    """The dictionary error of every method of a sweep against updates (``x="step"``) or wall
    time (``x="time"``), one panel per grid point: the median over seeds with the interquartile
    band, log scale. ``colour`` maps method labels to colours (:func:`colours`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(_groups(table))
    figure, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 3.6), squeeze=False,
                                sharey=True)
    for ax, (point, columns, part) in zip(axes[0], groups, strict=True):
        for method, runs in part.groupby("method", sort=True):
            wide = runs.pivot_table(index="step", columns="seed", values=ERROR)
            xs = (wide.index.to_numpy(dtype=float) if x == "step" else
                  runs.pivot_table(index="step", columns="seed", values="time").median(axis=1)
                  .to_numpy())
            keep = xs > 0 if x == "time" else np.ones(len(xs), dtype=bool)  # log axis
            ax.plot(xs[keep], wide.median(axis=1)[keep], color=colour[method], label=method,
                    lw=1.6)
            if wide.shape[1] > 1:
                ax.fill_between(xs[keep], wide.quantile(0.25, axis=1)[keep],
                                wide.quantile(0.75, axis=1)[keep], color=colour[method],
                                alpha=0.2, lw=0)
        ax.set_yscale("log")
        if x == "time":
            ax.set_xscale("log")
        ax.set_xlabel("updates" if x == "step" else "wall time of the updates [s]")
        ax.set_title(point_label(point, columns), fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("relative dictionary error ||D - D*||_F / ||D*||_F")
    axes[0][-1].legend(fontsize=8, loc="best")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def table_html(frame: pd.DataFrame, floats: str = "{:.3g}") -> str:
    formatters = {c: floats.format for c in frame.columns if frame[c].dtype.kind == "f"}
    table = frame.to_html(index=False, border=0, classes="data", formatters=formatters,
                          na_rep="–", escape=True)
    return f"<div class='scroll'>{table}</div>"


def theorem_table(directory: str | os.PathLike) -> pd.DataFrame:
    """One row per evidence record: claim, paper, statement, measured, predicted, verdict."""
    directory = Path(directory)
    if not directory.is_dir():
        return pd.DataFrame()
    rows = []
    for record in evidence_records.load(directory):
        rows.append({
            "claim": record.claim,
            "statement": record.statement,
            "paper": record.paper,
            "measured": _short(record.measured),
            "predicted": _short(record.predicted),
            "verdict": record.verdict,
            "tier": record.tier,
            "test": record.test,
        })
    return pd.DataFrame(rows).sort_values(["claim", "test"]) if rows else pd.DataFrame()


def _short(values: dict, limit: int = 4) -> str:
    parts = []
    for key, value in list(values.items())[:limit]:
        if isinstance(value, float):
            value = f"{value:.3g}"
        elif isinstance(value, list):
            value = "[" + ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v)
                                    for v in value[:4]) + (", …]" if len(value) > 4 else "]")
        parts.append(f"{key}={value}")
    return "; ".join(parts) + (" …" if len(values) > limit else "")


CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table.data{border-collapse:collapse;font-size:.85em;margin:.6em 0}
table.data th,table.data td{padding:.25em .6em;border-bottom:1px solid #e4e4e4;text-align:right}
table.data th{background:#f3f3f3}
table.data td:first-child,table.data th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}.ref{background:#f7f7ff;padding:.5em 1em;font-size:.9em}
.holds{color:#1b7e2b}.failed{color:#b00020;font-weight:bold}.deviation{color:#a05a00}
code{background:#f3f3f3;padding:0 .2em}.scroll{overflow-x:auto}
"""


def _verdict_class(verdict: str) -> str:
    return {"holds": "holds", "failed": "failed"}.get(verdict, "deviation")


def write_report(
    results: list[str | os.PathLike],
    output: Path,
    *,
    evidence_dir: str | os.PathLike | None = None,
    only: list[str] | None = None,
) -> Path:
    """Write the report of the results directories into ``output`` (of the experiments ``only``
    if given); returns the path of index.html."""
    frames, failures = [], []
    for directory in results:
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"results directory {directory} does not exist.")
        store = ResultsStore(directory)
        frames.append(store.load())
        failures += store.failures()
    table = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(
        not f.empty for f in frames) else pd.DataFrame()
    if table.empty and not failures:
        raise ValueError(
            f"no stored runs in {[str(r) for r in results]}; run `udlbench run` first."
        )
    output = Path(output)
    (output / "figures").mkdir(parents=True, exist_ok=True)
    (output / "tables").mkdir(parents=True, exist_ok=True)
    learning = table[table["experiment"].map(_kind) == "learning"] if not table.empty else table
    colour = colours(learning["method"].tolist() if not learning.empty else [])
    names = sorted(table["experiment"].unique()) if not table.empty else []
    if only is not None:
        names = [n for n in names if n in only]
    n_runs = table["run_id"].nunique() if not table.empty else 0
    sources = ", ".join(html.escape(str(r)) for r in results)
    body = [f"<h1>udlbench comparison report</h1><p>{n_runs} runs from {sources}; "
            f"{len(failures)} failed runs.</p>"]
    body.append("<p>Sections: " + " · ".join(
        f"<a href='#{n}'>{n}</a>" for n in names) + " · <a href='#theorems'>theorems</a> · "
        "<a href='#environment'>environment</a></p>")
    for name in names:
        rows = table[table["experiment"] == name]
        if _kind(name) == "study":
            body += _study_section(name, rows, output)
        else:
            body += _experiment_section(name, rows, colour, output)
    body += _theorem_section(evidence_dir, output)
    body += _failure_section(failures)
    body += _environment_section(table)
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>udlbench report</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>")
    index = output / "index.html"
    tmp = output / ".index.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, index)
    return index


def _kind(name: str) -> str:
    experiment = experiments.REGISTRY.get(name)
    return experiment.kind if experiment else "learning"


def _study_section(name: str, table: pd.DataFrame, output: Path) -> list[str]:
    """A study's own figures and tables (:func:`udlbench.studies.render`), per study it ran."""
    experiment = experiments.REGISTRY[name]
    out = [f"<h2 id='{html.escape(name)}'>{html.escape(name)}: {html.escape(experiment.title)}"
           "</h2>",
           f"<p>profile {html.escape(', '.join(sorted(table['profile'].unique())))}; seeds "
           f"{sorted(int(s) for s in table['seed'].unique())}; device "
           f"{html.escape(', '.join(table['device_name'].unique()))}, "
           f"{html.escape(', '.join(table['dtype'].unique()))}.</p>"]
    for label in sorted(table["run_label"].unique()):
        rows = table[table["run_label"] == label]
        study = rows["method_name"].iloc[0]
        frame = rows.dropna(axis=1, how="all")
        out.append(studies.render(study, frame, output, f"studies/{name}/{label}"))
    return out


def _experiment_section(name: str, table: pd.DataFrame, colour, output: Path) -> list[str]:
    experiment = experiments.REGISTRY.get(name)
    title = experiment.title if experiment else name
    profiles = ", ".join(sorted(table["profile"].unique()))
    out = [f"<h2 id='{html.escape(name)}'>{html.escape(name)}: {html.escape(title)}</h2>",
           f"<p>profile {html.escape(profiles)}; seeds "
           f"{sorted(int(s) for s in table['seed'].unique())}; device "
           f"{html.escape(', '.join(table['device_name'].unique()))}, "
           f"{html.escape(', '.join(table['dtype'].unique()))}.</p>"]
    stem = name.replace("/", "_")
    for x, label in (("step", "updates"), ("time", "wall time")):
        figure = figure_curves(table, colour, x, f"{title} — error against {label}")
        image = save_figure(figure, output / "figures", f"{stem}_{x}")
        out.append(f"<img src='figures/{image}' "
                   f"alt='{html.escape(name)} error against {label}'>")
    summary = summary_table(table)
    summary.to_csv(output / "tables" / f"{stem}_summary.csv", index=False)
    shown = summary.drop(columns=["point"]) if summary["point"].nunique() == 1 else summary
    out.append(f"<h3>Floors, time to target and cost</h3>{table_html(shown)}"
               f"<p><a href='tables/{stem}_summary.csv'>CSV</a>. Errors are "
               "||D − D*||<sub>F</sub>/||D*||<sub>F</sub> after aligning atoms (order and sign); "
               "median [q25, q75] over seeds; time to a target is the median over seeds of the "
               "wall time of the updates (metric evaluation excluded), blank if a seed never "
               "reached it.</p>")
    reference = experiment.reference if experiment else {}
    if reference:
        out.append("<div class='ref'><b>Paper</b>: " + html.escape(reference.get("source", ""))
                   + "<br><b>Claim</b>: " + html.escape(reference.get("claim", "")))
        for key, values in reference.items():
            if isinstance(values, dict):
                measured = summary.groupby("method")["final_error_median"].min()
                rows = pd.DataFrame([
                    {"method": m, f"paper ({key})": v,
                     "measured final error (median over seeds; best grid point)":
                     measured.get(m, math.nan)}
                    for m, v in values.items()
                ])
                out.append(f"<br><b>{html.escape(key)}</b>{table_html(rows)}")
        for first, second in reference.get("paired", []):
            gap = paired_gap(table, first, second)
            if gap is not None:
                out.append(
                    f"<br>Final error of <code>{second}</code> relative to <code>{first}</code>: "
                    f"{100 * gap['mean']:+.2f} % (95 % CI {100 * gap['ci_low']:+.2f} % to "
                    f"{100 * gap['ci_high']:+.2f} %, {gap['pairs']} paired runs)."
                )
        out.append("</div>")
    return out


def _theorem_section(evidence_dir, output: Path) -> list[str]:
    out = ["<h2 id='theorems'>Theorem verification</h2>"]
    theorems = theorem_table(evidence_dir) if evidence_dir is not None else pd.DataFrame()
    if theorems.empty:
        out.append(f"<p>No evidence records in <code>{html.escape(str(evidence_dir))}</code>; run "
                   "<code>udlbench verify</code> (or <code>pytest theorems/</code>) first.</p>")
        return out
    theorems.to_csv(output / "tables" / "theorems.csv", index=False)
    counts = theorems["verdict"].value_counts().to_dict()
    out.append("<p>" + ", ".join(f"{v}: {c}" for v, c in counts.items())
               + ". <a href='tables/theorems.csv'>CSV</a></p>")
    rows = []
    for row in theorems.itertuples():
        rows.append(
            f"<tr><td>{html.escape(row.claim)}</td><td>{html.escape(row.statement)}</td>"
            f"<td>{html.escape(row.measured)}</td><td>{html.escape(row.predicted)}</td>"
            f"<td class='{_verdict_class(row.verdict)}'>{html.escape(row.verdict)}</td>"
            f"<td>{html.escape(row.tier)}</td></tr>"
        )
    out.append("<table class='data'><tr><th>claim</th><th>statement</th><th>measured</th>"
               "<th>predicted</th><th>verdict</th><th>tier</th></tr>" + "".join(rows)
               + "</table>")
    return out


def _failure_section(failures: list[dict]) -> list[str]:
    if not failures:
        return []
    rows = "".join(
        f"<tr><td>{html.escape(f['spec']['experiment'])}</td><td>{html.escape(f['spec']['method'])}"
        f"</td><td>{f['spec']['seed']}</td><td>{html.escape(f['error'])}</td></tr>"
        for f in failures
    )
    return ["<h2>Failed runs</h2><table class='data'><tr><th>experiment</th><th>method</th>"
            f"<th>seed</th><th>error</th></tr>{rows}</table>"]


def _environment_section(table: pd.DataFrame) -> list[str]:
    from udlbench.cli import collect_info

    out = ["<h2 id='environment'>Environment</h2>"]
    columns = ["udlbench_version", "git_commit", "torch_version", "numpy_version", "device_name",
               "cuda_version", "timing", "dtype"]
    if not table.empty:
        recorded = {c: sorted(str(v) for v in table[c].unique()) for c in columns if c in table}
        out.append("<h3>Recorded with the results</h3>"
                   + table_html(pd.DataFrame([{"key": k, "values": ", ".join(v)}
                                               for k, v in recorded.items()])))
    info = collect_info()
    out.append("<h3>Machine that wrote this report</h3><pre>"
               + html.escape(json.dumps(info, indent=1, default=str)) + "</pre>")
    return out
