"""Training loops: PUDLE (TMLR 2023, Alg. 2) and alternating minimisation (Alg. 1) learn D*,
record their steps, stop on request and reproduce from a seed."""

import functools
import math

import pytest
import torch

from udlbench import data, metrics, operators, training

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def problem():
    d = data.make_sparse(20, 30, 400, 3, seed=0)
    return d, data.perturb(d.D_star, 0.55 / math.log(20), seed=1)


@pytest.mark.parametrize("estimator", ["dec", "ae-lasso", "ae-ls"])
def test_pudle_reduces_the_dictionary_error(problem, estimator):
    d, D0 = problem
    learner = training.PUDLE(
        lam=0.1, n_layers=30, estimator=estimator, lr=5e-3, batch_size=50, n_epochs=4
    ).fit(d.X, D0, D_star=d.D_star)
    records = learner.records_
    assert list(records.columns[:4]) == ["step", "epoch", "loss", "time"]
    assert len(records) == 1 + 4 * 8 and records["step"].tolist() == list(range(33))
    assert records["error_spectral"].iloc[-1] < 0.85 * records["error_spectral"].iloc[0]
    assert learner.records_["error_spectral"].iloc[-1] == pytest.approx(
        metrics.dictionary_error(learner.dictionary_, d.D_star)
    )
    assert bool((records["time"].diff().dropna() > 0).all())
    # atoms stay on the unit sphere
    assert torch.allclose(learner.dictionary_.norm(dim=0), torch.ones(30, dtype=torch.float64))


def test_alternating_minimization_reduces_the_error(problem):
    d, D0 = problem
    learner = training.AlternatingMinimization(lam=0.1, lr=3e-3, batch_size=100, n_epochs=3)
    records = learner.fit(d.X, D0, D_star=d.D_star).records_
    assert records["error_fro"].iloc[-1] < 0.7 * records["error_fro"].iloc[0]
    codes = learner.encode(d.X[:5])
    assert codes.shape == (5, 30)


def test_same_seed_same_numbers_and_callback_stops(problem):
    d, D0 = problem
    kw = dict(lam=0.1, n_layers=10, lr=1e-3, batch_size=40, n_epochs=2, seed=7)
    a = training.PUDLE(**kw).fit(d.X, D0, D_star=d.D_star)
    b = training.PUDLE(**kw).fit(d.X, D0, D_star=d.D_star)
    assert torch.equal(a.dictionary_, b.dictionary_)
    c = training.PUDLE(**{**kw, "seed": 8}).fit(d.X, D0)
    assert not torch.equal(a.dictionary_, c.dictionary_)
    stopped = training.PUDLE(**kw).fit(d.X, D0, callback=lambda row, D: row["step"] >= 3)
    assert stopped.records_["step"].tolist() == [0, 1, 2, 3]


def test_record_every_and_callback_sees_the_dictionary(problem):
    d, D0 = problem
    seen = []
    learner = training.PUDLE(lam=0.1, n_layers=5, lr=1e-3, batch_size=100, n_epochs=3,
                             record_every=5)
    learner.fit(d.X, D0, callback=lambda row, D: seen.append((row["step"], D.clone())))
    assert learner.records_["step"].tolist() == [0, 5, 10, 12]
    assert [step for step, _ in seen] == [0, 5, 10, 12]
    assert torch.equal(seen[-1][1], learner.dictionary_)
    assert not torch.equal(seen[0][1], learner.dictionary_)


def test_nu_schedule_is_recorded_and_used(problem):
    d, D0 = problem
    schedule = functools.partial(operators.nu_at_step, every=2, decrement=0.05)
    learner = training.PUDLE(
        lam=0.1, n_layers=10, lam_decay=schedule, lr=1e-3, batch_size=100, n_epochs=2
    ).fit(d.X, D0)
    assert learner.records_["nu"].tolist() == pytest.approx(
        [1.0, 1.0, 1.0, 0.95, 0.95, 0.9, 0.9, 0.85, 0.85]  # row k: the factor of update k
    )


def test_ball_constraint_projects_and_max_steps_caps(problem):
    d, D0 = problem
    learner = training.PUDLE(
        lam=0.1,
        n_layers=5,
        lr=0.05,
        optimizer="sgd",
        constraint="ball",
        max_steps=3,
        n_epochs=5,
        batch_size=50,
    ).fit(d.X, 2 * D0)
    assert len(learner.records_) == 4
    assert bool((learner.dictionary_.norm(dim=0) <= 1 + 1e-12).all())


def test_bad_options_name_the_option(problem):
    d, D0 = problem
    with pytest.raises(ValueError, match="estimator"):
        training.PUDLE(estimator="ae-l1")
    with pytest.raises(ValueError, match="lr"):
        training.PUDLE(lr=0)
    with pytest.raises(ValueError, match="constraint"):
        training.PUDLE(constraint="box")
    with pytest.raises(ValueError, match="2/L"):  # checked once, before the first step
        training.PUDLE(n_layers=2, alpha=5.0).fit(d.X, D0)
    with pytest.raises(ValueError, match="group_size"):
        training.PUDLE(n_layers=2, prox="group").fit(d.X, D0)
    with pytest.raises(ValueError, match="D_star"):
        training.PUDLE(n_layers=2).fit(d.X, D0, D_star=d.D_star[:, :5])


def test_code_error_is_recorded_with_the_alignment_of_the_atoms(problem):
    d, D0 = problem
    # a permuted, sign-flipped start: the code error must undo the atoms' order and signs
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(3))
    signs = torch.where(torch.arange(30) % 2 == 0, 1.0, -1.0).to(D0)
    learner = training.AlternatingMinimization(lam=0.1, lr=1e-3, batch_size=400, max_steps=1)
    records = learner.fit(
        d.X, D0[:, perm] * signs, D_star=d.D_star, Z_star=d.Z_star
    ).records_
    Z0 = learner.code(d.X, d.D_star, 0)  # codes under the true dictionary
    floor = float((Z0 - d.Z_star).norm() / d.Z_star.norm())
    assert 0 < records["error_code"].iloc[0] < 10 * floor + 0.2
    with pytest.raises(ValueError, match="Z_star needs D_star"):
        learner.fit(d.X, D0, Z_star=d.Z_star)
    with pytest.raises(ValueError, match=r"Z_star must have shape \(n, p\)"):
        learner.fit(d.X, D0, D_star=d.D_star, Z_star=d.Z_star[:, :5])


def test_a_learner_without_gradient_or_update_says_so(problem):
    d, D0 = problem

    class Empty(training.DictionaryLearner):
        pass

    with pytest.raises(NotImplementedError, match="neither gradient nor update"):
        Empty(lr=1.0).fit(d.X, D0)
    with pytest.raises(RuntimeError, match="not fitted"):
        training.PUDLE().encode(d.X)
