"""Experiments, the results store, the sweep runner and its executors, and the report."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from udlbench import cli, experiments, report, results, runner
from udlbench.evidence import Evidence

pytestmark = pytest.mark.fast

TINY = {
    "name": "tiny",
    "title": "a tiny sweep for the tests",
    "dataset": {"generator": "sparse", "m": 10, "p": 15, "s": 2, "n": 120, "init": "close"},
    "methods": {
        "ls": {"method": "pudle", "estimator": "ae-ls", "lam": 0.1, "n_layers": 5, "lr": 1e-2},
        "am": {"method": "am", "lam": 0.1, "lr": 1e-2},
    },
    "budget": {"batch_size": 40, "n_epochs": 2, "record_every": 2},
    "grid": {"dataset.s": [1, 2]},
    "seeds": [0, 1],
}


@pytest.fixture
def tiny():
    return experiments.register(experiments.Experiment(**TINY))


def _runs(experiment, overrides=(), seeds=None):
    config = experiments.resolve(experiment, "quick", overrides, seeds=seeds)
    return experiments.plan(experiment, config)


def test_plan_is_grid_times_methods_times_seeds_with_stable_ids(tiny):
    runs = _runs(tiny)
    assert len(runs) == 2 * 2 * 2
    assert len({r.run_id for r in runs}) == 8
    assert [r.run_id for r in runs] == [r.run_id for r in _runs(tiny)]
    assert {r.dataset["s"] for r in runs} == {1, 2}
    assert all(r.options["batch_size"] == 40 for r in runs)  # the budget reaches every method


def test_set_overrides_are_checked_by_key_and_type(tiny):
    runs = _runs(tiny, [("methods.ls.lr", 0.5), ("dataset.s", 2), ("budget.n_epochs", 1.0)])
    assert len(runs) == 4 and {r.dataset["s"] for r in runs} == {2}
    assert {r.options["lr"] for r in runs if r.method == "ls"} == {0.5}
    with pytest.raises(ValueError, match=r"unknown key 'mm'; valid keys here are \[.*'m'"):
        _runs(tiny, [("dataset.mm", 3)])
    with pytest.raises(ValueError, match="expected a number"):
        _runs(tiny, [("dataset.m", "ten")])
    with pytest.raises(ValueError, match="expected an integer"):
        _runs(tiny, [("budget.n_epochs", 1.5)])
    with pytest.raises(ValueError, match="unknown method label; labels are"):
        _runs(tiny, [("methods.nope.lr", 1.0)])
    with pytest.raises(ValueError, match="unknown profile"):
        experiments.resolve(tiny, "huge")
    with pytest.raises(ValueError, match="unknown experiment 'nope'; choose from"):
        experiments.get("nope")


def test_method_options_and_values_are_validated_before_any_run(tiny):
    with pytest.raises(ValueError, match="unknown key 'layers'; valid keys here are.*'n_layers'"):
        _runs(tiny, [("methods.ls.layers", 3)])
    typo = experiments.Experiment(**{**TINY, "methods": {"ls": {"method": "pudle", "layers": 3}}})
    with pytest.raises(ValueError, match="has no option.*'layers'.*'n_layers'"):
        runner.check(_runs(typo)[0])
    bad_value = _runs(tiny, [("methods.ls.n_layers", 0)], seeds=[0])[0]
    with pytest.raises(ValueError, match="n_layers"):
        runner.check(bad_value)
    typo = experiments.Experiment(**{**TINY, "dataset": {**TINY["dataset"], "snr": 3.0}})
    with pytest.raises(ValueError, match=r"dataset 'sparse' has no option\(s\) \['snr'\].*snr_db"):
        runner.check(_runs(typo)[0])
    bad_data = _runs(tiny, [("dataset.init", "sideways")], seeds=[0])[0]
    # a dataset value error surfaces when the run draws its data: a failed run, named
    assert "init" in runner._guarded(bad_data, {})[1]["error"]


def test_sweep_stores_skips_resumes_and_records_failures(tiny, tmp_path):
    store = results.ResultsStore(tmp_path / "res")
    runs = _runs(tiny, [("dataset.s", [1, 20])], seeds=[0])  # s = 20 > p = 15 fails
    summary = runner.run_sweep(runs[:1], store, executor="serial", progress=False)
    assert (summary.finished, summary.failed) == (1, 0)
    summary = runner.run_sweep(runs, store, executor="serial", progress=False)  # resume
    assert (summary.skipped, summary.finished, summary.failed) == (1, 1, 2)
    assert all("s" in e for e in summary.errors)
    table = store.load("tiny")
    assert table["run_id"].nunique() == 2 and not table.duplicated(["run_id", "step"]).any()
    assert len(store.failures("tiny")) == 2
    assert not list((tmp_path / "res").rglob(".tmp-*"))
    again = runner.run_sweep(runs, store, executor="serial", progress=False)
    assert (again.skipped, again.finished) == (2, 0)
    forced = runner.run_sweep(runs[:1], store, executor="serial", force=True, progress=False)
    assert forced.finished == 1 and store.load("tiny")["run_id"].nunique() == 2


def test_rows_carry_parameters_records_and_provenance(tiny, tmp_path):
    store = results.ResultsStore(tmp_path)
    run = _runs(tiny, seeds=[0])[0]
    runner.run_sweep([run], store, executor="serial", progress=False)
    table = store.load()
    for column in ("experiment", "method", "method_name", "seed", "step", "loss", "time",
                   "error_fro", "error_spectral", "opt.lam", "data.m", "grid.dataset.s",
                   "git_commit", "torch_version", "device_name", "timing", "dtype"):
        assert column in table, column
    assert table["step"].tolist() == [0, 2, 4, 6]
    assert table["error_fro"].notna().all() and table["dtype"].eq("float32").all()


@pytest.mark.medium  # starts a process pool and a Dask cluster
def test_executors_give_identical_numbers(tiny, tmp_path):
    runs = _runs(tiny, [("dataset.s", 2)], seeds=[3])
    tables = {}
    for executor in ("serial", "process", "dask"):
        store = results.ResultsStore(tmp_path / executor)
        summary = runner.run_sweep(runs, store, executor=executor, workers=2, progress=False)
        assert summary.finished == 2, summary.errors
        tables[executor] = store.load().sort_values(["run_id", "step"])[
            ["run_id", "step", "loss", "error_fro"]
        ].reset_index(drop=True)
    pd.testing.assert_frame_equal(tables["serial"], tables["process"])
    pd.testing.assert_frame_equal(tables["serial"], tables["dask"])


def test_a_killed_write_leaves_no_file(tmp_path, monkeypatch):
    store = results.ResultsStore(tmp_path)

    def crash(self, path, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"PAR1 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write_run("e", "abc", pd.DataFrame({"step": [0]}))
    assert not store.is_finished("e", "abc")
    assert not list(tmp_path.rglob("*.parquet"))


def test_an_incompatible_results_directory_is_refused(tmp_path):
    (tmp_path / "STORE.json").write_text(json.dumps({"format": 99, "udlbench": "9.0"}))
    with pytest.raises(results.IncompatibleStoreError, match="format 99.*udlbench 9.0"):
        results.ResultsStore(tmp_path)
    foreign = tmp_path / "other"
    (foreign / "exp" / "runs").mkdir(parents=True)
    (foreign / "exp" / "runs" / "x.parquet").write_bytes(b"")
    with pytest.raises(results.IncompatibleStoreError, match="no STORE.json"):
        results.ResultsStore(foreign)


def test_experiments_load_from_yaml_toml_and_python(tmp_path):
    import yaml

    (tmp_path / "a.yaml").write_text(yaml.safe_dump({**TINY, "name": "from-yaml"}))
    toml = ('name = "from-toml"\ntitle = "t"\nseeds = [4]\n[dataset]\ngenerator = "sparse"\n'
            'm = 8\np = 8\ns = 1\nn = 50\n[methods.am]\nmethod = "am"\nlam = 0.1\n')
    (tmp_path / "b.toml").write_text(toml)
    (tmp_path / "c.py").write_text(
        "from udlbench.experiments import Experiment, register\n"
        "register(Experiment(name='from-py', title='t', dataset={'m': 8, 'p': 8, 's': 1, "
        "'n': 40}, methods={'am': {'method': 'am'}}))\n"
    )
    names = [e.name for f in ("a.yaml", "b.toml", "c.py")
             for e in experiments.load_file(tmp_path / f)]
    assert names == ["from-yaml", "from-toml", "from-py"]
    assert experiments.get("from-toml").seeds == [4]
    with pytest.raises(ValueError, match="needs a 'method' key"):
        experiments.Experiment(name="x", title="", dataset={}, methods={"a": {}})


def test_registry_holds_the_papers_experiments_and_they_resolve():
    for name in ("pudle-fig4", "pudle-fig5", "pudle-fig12", "pudle-fig13", "pudle-fig14",
                 "pudle-fig15"):
        experiment = experiments.get(name)
        for profile in experiments.PROFILES:
            for spec in experiments.plan(experiment, experiments.resolve(experiment, profile)):
                runner.check(spec)
    fig5 = experiments.get("pudle-fig5")
    quick = experiments.plan(fig5, experiments.resolve(fig5, "quick"))
    assert len(quick) == 2 * 6 * 3  # a grid of two problem sizes (merged dataset sections)
    assert {(r.dataset["m"], r.dataset["s"], r.dataset["n"]) for r in quick} == {
        (50, 5, 5000), (100, 3, 5000)}
    full = experiments.resolve(experiments.get("pudle-fig5"), "full")
    assert (full["dataset"]["m"], full["dataset"]["p"], full["grid"]) == (
        1000, 1500, {"dataset.s": [10, 20, 40]})


def test_report_has_figures_tables_theorems_and_environment(tiny, tmp_path):
    store = results.ResultsStore(tmp_path / "res")
    runner.run_sweep(_runs(tiny), store, executor="serial", progress=False)
    evidence_dir = tmp_path / "evidence"
    record = Evidence(claim="P-T4.3", test="test_x", statement="Thm 4.3", verdict="holds")
    record.measure(rate=0.81)
    record.write(evidence_dir)
    index = report.write_report([tmp_path / "res"], tmp_path / "out", evidence_dir=evidence_dir)
    page = index.read_text()
    assert "tiny" in page and "P-T4.3" in page and "rate=0.81" in page and "Environment" in page
    for name in ("tiny_step.png", "tiny_step.svg", "tiny_time.png"):
        assert (tmp_path / "out" / "figures" / name).stat().st_size > 1000
    summary = pd.read_csv(tmp_path / "out" / "tables" / "tiny_summary.csv")
    assert len(summary) == 4 and set(summary["method"]) == {"ls", "am"}
    table = store.load()
    last = table.sort_values("step").groupby("run_id").tail(1)
    expected = last[(last["method"] == "am") & (last["grid.dataset.s"] == 1)]["error_fro"].median()
    got = summary[(summary["method"] == "am") & (summary["point"] == "dataset.s=1")]
    assert got["final_error_median"].item() == pytest.approx(expected)


def test_paired_gap_matches_a_hand_computation():
    rows = []
    for seed, (a, b) in enumerate([(1.0, 1.1), (2.0, 2.1), (4.0, 4.4)]):
        rows += [{"method": "a", "seed": seed, "step": 5, "error_fro": a},
                 {"method": "b", "seed": seed, "step": 5, "error_fro": b}]
    gap = report.paired_gap(pd.DataFrame(rows), "a", "b")
    gaps = [0.1, 0.05, 0.1]
    assert gap["mean"] == pytest.approx(sum(gaps) / 3)
    half = 4.302652729911275 * pd.Series(gaps).std() / math.sqrt(3)  # t_{0.975, 2}
    assert (gap["ci_low"], gap["ci_high"]) == pytest.approx((gap["mean"] - half,
                                                             gap["mean"] + half))


def test_cli_run_list_and_report(tmp_path, capsys):
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "name": "tiny-cli", "seeds": [0]}))
    out = tmp_path / "report"
    argv = ["run", "tiny-cli", "--experiments-file", str(path), "--results",
            str(tmp_path / "res"), "--report", str(out), "--executor", "serial", "--quiet",
            "--set", "dataset.s=1"]
    assert cli.main(argv) == 0
    assert (out / "index.html").is_file()
    assert cli.main(["report", str(tmp_path / "res"), "-o", str(tmp_path / "r2")]) == 0
    assert cli.main(["run", "nope", "--results", str(tmp_path / "res")]) == 2
    assert "unknown experiment 'nope'; choose from" in capsys.readouterr().err
    assert cli.main([*argv[:-1], "budget.max_step=3"]) == 2
    assert "unknown key 'max_step'" in capsys.readouterr().err
    assert cli.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "pudle-fig5" in listing and "noodl" in listing


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_run_on_cuda_without_device_fails(capsys):
    assert cli.main(["run", "--device", "cuda", "--no-report"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
