"""udlbench.criteria: the P-DL4 / P-DL5 / P-F15 pass criteria on results tables. Each criterion is
shown to accept a table that meets it and to reject the same table with one comparison broken
(its negative control); the ``full`` theorem checks that use them run end to end on a shrunken
profile in a subprocess."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from udlbench import criteria


def learning_table(finals: dict, *, initial=0.3, epochs=200, grid=None, seeds=(0, 1, 2)):
    """Records of full-batch runs ending at ``finals[method]`` (a number, or a per-seed list):
    the error falls linearly from ``initial`` over the first half and stays at the final value."""
    rows = []
    for method, value in finals.items():
        for k, seed in enumerate(seeds):
            final = value[k] if isinstance(value, list) else value
            for epoch in range(0, epochs + 1, 5):
                error = initial + (final - initial) * min(1.0, epoch / (epochs / 2))
                rows.append({"method": method, "seed": seed, "epoch": epoch, "step": epoch,
                             "error_fro": error, **(grid or {})})
    return pd.DataFrame(rows)


def dl4_table(dec=0.2, lasso=0.18, ls=0.05, *, n_layers=25, **kw):
    return learning_table({"dec": dec, "ae-lasso": lasso, "ae-ls": ls},
                          grid={"grid.methods.*.n_layers": n_layers}, **kw)


def failing(verdicts: pd.DataFrame) -> set[str]:
    return set(verdicts.loc[~verdicts["passed"], "check"])


def test_final_errors_average_the_window_and_keep_the_start():
    table = learning_table({"ae-ls": 0.05}, epochs=200)
    table.loc[(table["epoch"] == 200) & (table["seed"] == 0), "error_fro"] = 0.09
    finals = criteria.final_errors(table, window=10).set_index("seed")
    assert finals.loc[0, "final"] == pytest.approx((0.05 + 0.09) / 2)  # epochs 195 and 200
    assert finals.loc[1, "final"] == pytest.approx(0.05)
    assert finals.loc[1, "initial"] == pytest.approx(0.3)
    last = criteria.final_errors(table).set_index("seed")
    assert last.loc[0, "final"] == pytest.approx(0.09)
    assert (finals["setting"] == "all runs").all()


def test_final_errors_window_in_updates():
    table = learning_table({"ae-ls": 0.05}, epochs=100)
    table["step"] = table["epoch"] * 10
    table["epoch"] = 1
    finals = criteria.final_errors(table, window=100, unit="step")
    assert finals["final"].tolist() == pytest.approx([0.05] * 3)


def test_a_diverged_run_is_infinitely_far():
    table = learning_table({"dec": 0.2, "ae-lasso": 0.18, "ae-ls": 0.05})
    table.loc[(table["method"] == "dec") & (table["epoch"] == 200), "error_fro"] = np.nan
    finals = criteria.final_errors(table, window=100)
    assert math.isinf(finals.set_index(["method", "seed"]).loc[("dec", 0), "final"])
    verdicts = criteria.dl4(finals)
    assert verdicts[verdicts["check"] == "ls_vs_others"]["passed"].all()  # lasso is the bound
    ls_diverged = table.assign(error_fro=np.where(table["method"] == "ae-ls", np.inf,
                                                  table["error_fro"]))
    assert "ls_vs_others" in failing(criteria.dl4(criteria.final_errors(ls_diverged, window=100)))


def test_final_errors_validate_their_input():
    with pytest.raises(ValueError, match="error_fro"):
        criteria.final_errors(pd.DataFrame({"method": [], "seed": [], "epoch": [], "step": []}))
    with pytest.raises(ValueError, match="window"):
        criteria.final_errors(dl4_table(), window=0)
    with pytest.raises(ValueError, match="unit"):
        criteria.final_errors(dl4_table(), window=5, unit="second")


def test_dl4_accepts_the_papers_ordering_and_rejects_each_broken_part():
    good = pd.concat([dl4_table(n_layers=25), dl4_table(dec=0.2, lasso=0.21, n_layers=100)])
    verdicts = criteria.dl4(criteria.final_errors(good, window=100))
    assert verdicts["passed"].all(), verdicts
    assert set(verdicts["check"]) == {"ls_vs_others", "ls_vs_initial", "lasso_beats_dec_T25",
                                      "lasso_like_dec_T100"}
    assert set(verdicts["setting"]) == {"n_layers=25", "n_layers=100"}

    def broken(**kw):
        return failing(criteria.dl4(criteria.final_errors(dl4_table(**kw), window=100)))

    assert broken(ls=0.07, lasso=0.12) == {"ls_vs_others"}  # 0.07 > 0.5 x 0.12
    assert broken(ls=0.08, dec=0.5, lasso=0.4) == {"ls_vs_initial"}  # 0.08 > 0.25 x 0.3
    assert broken(lasso=[0.25, 0.25, 0.1]) == {"lasso_beats_dec_T25"}  # median 0.25 > 0.2
    assert broken(lasso=0.24, n_layers=100) == {"lasso_like_dec_T100"}  # 20 % apart


def test_dl5_asserts_s20_and_the_floors():
    methods = {"ae-ls": 1.4e-2, "ae-ls-decay": 5.7e-6, "ae-ls-ht": 4.8e-7, "sporco-am": 2e-2,
               "am": 3e-2, "noodl": 1.7e-4}
    table = pd.concat([learning_table(methods, grid={"grid.dataset.s": s}) for s in (10, 20, 40)])
    verdicts = criteria.dl5(criteria.final_errors(table))
    assert verdicts["passed"].all()
    assert verdicts["asserted"].sum() == 6 * 3  # six checks, three seeds, s = 20 only
    worse = learning_table({**methods, "ae-ls-decay": 2e-3, "sporco-am": 1e-2},
                           grid={"grid.dataset.s": 20})
    assert failing(criteria.dl5(criteria.final_errors(worse))) == {"decay_floor",
                                                                   "ls_vs_sporco_am"}
    no_am = learning_table({k: v for k, v in methods.items() if k != "am"},
                           grid={"grid.dataset.s": 20})
    assert "ls_vs_am" not in set(criteria.dl5(criteria.final_errors(no_am))["check"])


def test_criteria_name_a_missing_method():
    with pytest.raises(ValueError, match="ae-ls-ht"):
        criteria.dl5(criteria.final_errors(learning_table({"ae-ls": 0.1, "ae-ls-decay": 0.01,
                                                            "sporco-am": 0.2})))


SHRINK = textwrap.dedent(
    """
    # pytest plugin: the full profiles of the PUDLE experiments at a toy size, run serially
    from udlbench import experiments, runner

    _resolve, _run = experiments.resolve, runner.run_sweep

    def resolve(experiment, profile="quick", overrides=(), seeds=None):
        config = _resolve(experiment, profile, overrides, seeds)
        square = config["dataset"].get("dictionary") == "orthogonal"
        config["dataset"].update(m=12 if square else 10, p=12, n=60, s=2)
        config["seeds"] = config["seeds"][:2]
        axes = config["grid"]
        if "dataset.s" in axes:
            axes["dataset.s"] = [1, 2]
        for options in [config["budget"], *config["methods"].values()]:
            for key, value in dict(n_epochs=6, max_steps=6, record_every=1).items():
                if key in options:
                    options[key] = value
        return config

    experiments.resolve = resolve
    runner.run_sweep = lambda runs, store, **kw: _run(runs, store, **{**kw, "executor": "serial"})
    """
)


def test_full_checks_run_end_to_end_on_a_toy_size(tmp_path):
    """The ``full`` P-DL4 / P-DL5 / P-F15 checks cannot run here (GPU hours), so their plumbing is
    run at a toy size: every check plans, runs and stores its sweep, evaluates its criteria and
    writes its evidence and figure; at this size a criterion may fail, but only by its own
    assertion."""
    (tmp_path / "shrink_full.py").write_text(SHRINK)
    root = Path(__file__).resolve().parents[1]
    evidence = tmp_path / "evidence"
    junit = tmp_path / "junit.xml"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{root}"}
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
         "-p", "shrink_full", "-m", "full", str(root / "theorems" / "test_p_full.py"),
         "--evidence-dir", str(evidence), "--figures", f"--junitxml={junit}"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    report = junit.read_text()
    assert 'tests="6"' in report and 'errors="0"' in report and 'skipped="0"' in report, report
    for message in report.split("<failure message=")[1:]:
        assert message.startswith('"AssertionError'), message[:400]
    records = [json.loads(p.read_text()) for p in evidence.glob("P-*.json")]
    assert len(records) == 6
    for r in records:
        assert r["measured"]["verdicts"], r["test"]
        assert r["verdict"] in ("holds", "failed")
        assert [Path(f).suffix for f in r["figures"]] == [".png", ".svg"], r["test"]
    stored = list((evidence / "full-runs").rglob("*.parquet"))
    assert len(stored) >= 4 * 3 * 2 * 2 + 6 * 2 * 2 + 3 * 2 * 2  # fig4 x 4, fig5, fig15 runs
