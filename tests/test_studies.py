"""Studies (udlbench.studies) as experiments of the registry: contract, planning, run and report."""

import re

import pytest

from udlbench import experiments, report, runner, studies
from udlbench.results import ResultsStore

pytestmark = pytest.mark.fast

STUDY_EXPERIMENTS = [e for e in experiments.REGISTRY.values() if e.kind == "study"]


@pytest.mark.parametrize("name", sorted(studies.STUDIES))
def test_every_study_meets_the_contract(name):
    module = studies.module(name)
    for attribute in ("QUICK", "FULL", "check", "run", "render"):
        assert hasattr(module, attribute), attribute
    module.check(dict(module.QUICK))
    module.check(dict(module.FULL))
    with pytest.raises(ValueError, match="no_such_option"):
        module.check({**module.QUICK, "no_such_option": 1})


def test_unknown_study_lists_the_valid_ones():
    with pytest.raises(ValueError, match="gaussian-denoising"):
        studies.module("denoise")


@pytest.mark.parametrize("experiment", STUDY_EXPERIMENTS, ids=lambda e: e.name)
def test_study_experiments_plan_both_profiles(experiment):
    for profile in experiments.PROFILES:
        config = experiments.resolve(experiment, profile)
        runs = experiments.plan(experiment, config, profile=profile)
        assert runs and all(spec.kind == "study" for spec in runs)
        for spec in runs:
            runner.check(spec)


def test_set_on_a_study_option_is_checked():
    experiment = experiments.get("pudle-digits")
    config = experiments.resolve(
        experiment, "quick", [("methods.digits-interpretability.n_epochs", 2)]
    )
    assert config["methods"]["digits-interpretability"]["n_epochs"] == 2
    with pytest.raises(ValueError, match="valid keys here"):
        experiments.resolve(experiment, "quick", [("methods.digits-interpretability.epochz", 2)])
    with pytest.raises(ValueError, match="integer"):
        experiments.resolve(
            experiment, "quick", [("methods.digits-interpretability.n_epochs", 2.5)]
        )


def test_links_of_a_fragment_are_rewritten_into_its_folder():
    fragment = ("<img src='a.png'><a href=\"t.csv\">t</a><a href='#x'>x</a>"
                "<a href='https://doi.org/1'>d</a><img src='/abs.png'>")
    rewritten = studies.relink(fragment, "f")
    assert "src='f/a.png'" in rewritten and 'href="f/t.csv"' in rewritten
    assert "href='#x'" in rewritten and "href='https://doi.org/1'" in rewritten
    assert "src='/abs.png'" in rewritten


def test_a_study_runs_through_the_runner_and_the_report(tmp_path):
    """One seed of the digits study (one epoch) is stored with provenance, its own columns kept,
    skipped when re-run, and rendered into the report with working links."""
    experiment = experiments.get("pudle-digits")
    config = experiments.resolve(
        experiment, "quick", [("methods.digits-interpretability.n_epochs", 1)], seeds=[0]
    )
    runs = experiments.plan(experiment, config, dtype="float64")
    store = ResultsStore(tmp_path / "results")
    summary = runner.run_sweep(runs, store, executor="serial", progress=False)
    assert (summary.finished, summary.failed) == (1, 0), summary.errors
    table = store.load()
    assert {"run_label", "git_commit", "study_seconds", "peak_rss_mb"} <= set(table.columns)
    assert (table["run_label"] == "digits-interpretability").all()
    assert (table["experiment"] == "pudle-digits").all()
    assert runner.run_sweep(runs, store, executor="serial", progress=False).skipped == 1
    index = report.write_report([tmp_path / "results"], tmp_path / "report")
    page = index.read_text()
    links = re.findall(r"src='(studies/[^']+)'", page)
    assert links and all((tmp_path / "report" / link).is_file() for link in links)
