"""Online dictionary learning (Mairal, Bach, Ponce & Sapiro, ICML 2009, Algorithms 1-2), checked
against scikit-learn's MiniBatchDictionaryLearning and Lasso and against SPAMS's trainDL.

Conventions of the libraries, wrapped here: scikit-learn stores the atoms as the ROWS of
``components_`` (p, m) and solves ``0.5 ||x - z V||^2 + alpha ||z||_1`` per sample with the same
online updates (its ``_update_inner_stats`` and ``_update_dict``), so ``alpha = lam``; its
``Lasso`` divides the data term by the number of rows of the design, here m, so
``alpha = lam / m``. SPAMS wants Fortran-ordered float64 arrays with samples as COLUMNS.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import MiniBatchDictionaryLearning
from sklearn.linear_model import Lasso

from baselines.online import OnlineDictionaryLearning
from udlbench import lasso
from udlbench.data import make_sparse, normalize_columns, perturb
from udlbench.metrics import atom_sines, dictionary_error

pytestmark = pytest.mark.fast

M, P, S, LAM = 20, 30, 3, 0.1


def _problem(n: int = 2000, *, dtype: torch.dtype = torch.float64, tau: float = 0.5):
    """The standard sparse problem m=20, p=30, s=3 and a start ``perturb(D*, tau)``."""
    data = make_sparse(M, P, n, S, seed=0, dtype=dtype)
    return data, perturb(data.D_star, tau, seed=1)


def _sklearn(X: torch.Tensor, D0: torch.Tensor, **options) -> torch.Tensor:
    """MiniBatchDictionaryLearning from D0 (m, p); returns its dictionary as columns (m, p)."""
    model = MiniBatchDictionaryLearning(
        n_components=D0.shape[1],
        alpha=LAM,
        dict_init=D0.T.numpy().copy(),  # rows are atoms; sklearn updates it in place
        tol=0.0,
        max_no_improvement=None,
        random_state=0,
        **options,
    ).fit(X.numpy())
    return torch.from_numpy(model.components_.T.copy())


def _spams_train(X: torch.Tensor, D0: torch.Tensor, *, n_iter: int, batch_size: int):
    """``spams.trainDL`` on X (n, m) from D0 (m, p); the dictionary as a tensor (m, p)."""
    spams = pytest.importorskip("spams", reason="spams (package spams-bin) is not installed")
    try:
        D = spams.trainDL(
            np.asfortranarray(X.numpy().T, dtype=np.float64),
            D=np.asfortranarray(D0.numpy(), dtype=np.float64),
            lambda1=LAM,
            mode=2,  # 0.5 ||x - D z||^2 + lambda1 ||z||_1 (+ lambda2 = 1e-9 ridge)
            iter=n_iter,
            batchsize=batch_size,
            numThreads=1,
            verbose=False,
        )
    except Exception as error:  # noqa: BLE001 - the skip reason carries the exact message
        pytest.skip(f"spams.trainDL failed to run: {type(error).__name__}: {error}")
    return torch.from_numpy(np.ascontiguousarray(D))


class _RecordingODL(OnlineDictionaryLearning):
    """Keeps the batches in the order the base loop fed them, to replay them in scikit-learn."""

    def update(self, X, D, step):
        self.batches.append(X.clone())
        return super().update(X, D, step)


def test_lasso_codes_equal_sklearn_lasso():
    """``0.5 ||x - D z||^2 + lam ||z||_1`` is sklearn's ``Lasso`` objective times m with
    ``alpha = lam / m``: the certified codes agree to 1.8e-11 (measured), asserted 1e-6."""
    data, D0 = _problem(20)
    Z = OnlineDictionaryLearning(lam=LAM).code(data.X, D0, 0)
    reference = np.stack(
        [
            Lasso(alpha=LAM / M, fit_intercept=False, tol=1e-12, max_iter=100_000)
            .fit(D0.numpy(), x)
            .coef_
            for x in data.X.numpy()
        ]
    )
    assert np.abs(Z.numpy() - reference).max() < 1e-6
    assert (Z != 0).any(dim=1).all()  # not a vacuous comparison of zero codes


def test_full_batch_steps_equal_sklearn():
    """Five full-batch steps (shuffle off, exact LARS codes) reproduce sklearn's dictionary to
    6.7e-16 (measured): Algorithm 1's statistics with the ICML 2009 factor for t < eta, and
    Algorithm 2 with the unit-ball projection."""
    data, D0 = _problem(300)
    ours = OnlineDictionaryLearning(lam=LAM, n_epochs=5).fit(data.X, D0)
    theirs = _sklearn(data.X, D0, batch_size=300, max_iter=5, shuffle=False, fit_algorithm="lars")
    assert ours.n_updates_ == 5
    assert (ours.dictionary_ - theirs).abs().max() < 1e-10
    assert (ours.dictionary_ - D0).abs().max() > 0.1  # the steps moved the dictionary


def test_mini_batch_steps_equal_sklearn():
    """30 steps of 10 samples (so ``t >= eta`` from step 10, the second branch of the ICML 2009
    factor) replayed in sklearn in the same order agree to 1.0e-14 (measured)."""
    data, D0 = _problem(300)
    model = _RecordingODL(lam=LAM, batch_size=10, n_epochs=1)
    model.batches = []
    model.fit(data.X, D0)
    replay = torch.cat(model.batches)
    theirs = _sklearn(replay, D0, batch_size=10, max_iter=1, shuffle=False, fit_algorithm="lars")
    assert model.n_updates_ == 30 and model.n_resampled_ == 0
    assert (model.dictionary_ - theirs).abs().max() < 1e-10


def test_recovers_dictionary_like_sklearn():
    """Shuffled mini-batches (200 samples, 10 epochs) from ``perturb(D*, 0.5)`` (Fro error
    0.426): ours reaches 0.0143 and sklearn 0.0138 (measured; the orders differ). Both must
    fall below 0.02 and agree within 25 %."""
    data, D0 = _problem()
    ours = OnlineDictionaryLearning(lam=LAM, batch_size=200, n_epochs=10).fit(
        data.X, D0, D_star=data.D_star
    )
    theirs = _sklearn(data.X, D0, batch_size=200, max_iter=10, fit_algorithm="cd")
    error_ours = ours.records_["error_fro"].iloc[-1]
    error_theirs = dictionary_error(theirs, data.D_star, norm="fro")
    assert ours.records_["error_fro"].iloc[0] > 0.4
    assert error_ours < 0.02 and error_theirs < 0.02
    assert 0.8 < error_ours / error_theirs < 1.25


def test_recovers_dictionary_like_spams():
    """Same problem, 20 epochs of 200 samples: ours 0.0116, SPAMS 0.0109 (measured). SPAMS keeps
    only the statistics of the current and previous epochs (ICML 2009, Sec. 3.4.1) and gets
    there sooner; both reach the lasso-bias floor of lam = 0.1. Asserted: both below 0.015 and
    within 25 %."""
    data, D0 = _problem()
    ours = OnlineDictionaryLearning(lam=LAM, batch_size=200, n_epochs=20).fit(
        data.X, D0, D_star=data.D_star
    )
    theirs = _spams_train(data.X, D0, n_iter=200, batch_size=200)
    error_ours = ours.records_["error_fro"].iloc[-1]
    error_theirs = dictionary_error(theirs, data.D_star, norm="fro")
    assert error_ours < 0.015 and error_theirs < 0.015
    assert 0.8 < error_ours / error_theirs < 1.25


def test_converges_from_perturbed_start():
    """Error per epoch 0.426, 0.111, 0.059, 0.039, 0.029, 0.024 (measured): strictly
    decreasing; the codes of the learned dictionary are certified lasso solutions."""
    data, D0 = _problem()
    model = OnlineDictionaryLearning(lam=LAM, batch_size=200, n_epochs=5, record_every=10).fit(
        data.X, D0, D_star=data.D_star
    )
    errors = model.records_["error_fro"].to_numpy()
    assert len(errors) == 6
    assert np.all(np.diff(errors) < 0)
    assert errors[-1] < 0.03
    _, info = lasso.solve(data.X, model.dictionary_, lam=LAM, return_info=True)
    assert bool(info.certified.all())
    assert torch.equal(model.encode(data.X), lasso.solve(data.X, model.dictionary_, lam=LAM))


def test_converges_from_random_start():
    """From a random Gaussian dictionary (Fro error 1.03, no atom within sine 0.2 of D*), lam=0.5
    and 5 epochs of 100 samples bring the error to 0.33 and 26 of 30 atoms within sine 0.2
    (measured); asserted: error below 0.45 and at least 20 atoms recovered. The mean batch loss
    falls from 2.19 (first epoch) to 1.87 (last epoch), a factor 0.86; asserted below 0.92."""
    data, _ = _problem()
    generator = torch.Generator().manual_seed(5)
    D0 = normalize_columns(torch.randn(M, P, generator=generator, dtype=torch.float64))
    model = OnlineDictionaryLearning(lam=0.5, batch_size=100, n_epochs=5).fit(
        data.X, D0, D_star=data.D_star
    )
    records = model.records_
    assert records["error_fro"].iloc[0] > 1.0
    assert records["error_fro"].iloc[-1] < 0.45
    assert int((atom_sines(model.dictionary_, data.D_star) < 0.2).sum()) >= 20
    loss = records["loss"].to_numpy()[1:]
    assert loss[-20:].mean() < 0.92 * loss[:20].mean()


def test_forgetting_factor_speeds_up_and_icml_factor_is_rho_one():
    """After 3 epochs (30 updates of 200): rho=4 reaches 0.011 and rho=0 (no forgetting) 0.105
    (measured). The ICML 2009 factor ``1 - eta/(t eta + 1)`` is ``1 - 1/t`` to O(1/(t^2 eta))
    while t < eta, so it tracks rho=1 (0.0393 and 0.0392)."""
    data, D0 = _problem()

    def error(rho):
        model = OnlineDictionaryLearning(lam=LAM, batch_size=200, n_epochs=3, forget_rho=rho)
        return model.fit(data.X, D0, D_star=data.D_star).records_["error_fro"].iloc[-1]

    assert error(4.0) < 0.25 * error(0.0)
    assert abs(error(None) - error(1.0)) < 0.02 * error(1.0)


def test_forgetting_factor_closed_forms():
    """``beta_t = (1 - 1/t)^rho`` (JMLR 2010) and ``(theta + 1 - eta)/(theta + 1)`` with
    ``theta = t eta`` for t < eta and ``eta^2 + t - eta`` after (ICML 2009, Sec. 3.4.2)."""
    assert OnlineDictionaryLearning(forget_rho=0.0).forgetting_factor(1, 10) == 1.0
    powered = OnlineDictionaryLearning(forget_rho=2.0)
    assert powered.forgetting_factor(1, 10) == 0.0
    assert powered.forgetting_factor(4, 10) == pytest.approx(0.5625, abs=1e-15)
    icml = OnlineDictionaryLearning()
    assert icml.forgetting_factor(1, 10) == pytest.approx(1 / 11, abs=1e-15)
    assert icml.forgetting_factor(10, 10) == pytest.approx(91 / 101, abs=1e-15)
    assert icml.forgetting_factor(20, 10) == pytest.approx(101 / 111, abs=1e-15)


def test_t0_anchors_the_first_step_to_the_start():
    """``A_0 = t0 I``, ``B_0 = t0 D_0`` add ``(t0/2) ||D - D_0||^2`` to the surrogate: one
    full-batch step moves D by 0.94 with t0 = 0 and by 6.4e-4 with t0 = 1e5 (measured)."""
    data, D0 = _problem(300)

    def move(t0):
        model = OnlineDictionaryLearning(lam=LAM, n_epochs=1, forget_rho=0.0, t0=t0)
        return float(torch.linalg.matrix_norm(model.fit(data.X, D0).dictionary_ - D0))

    free, anchored = move(0.0), move(1e5)
    assert free > 0.5
    assert anchored < 1e-2 * free


def test_block_coordinate_descent_minimises_the_surrogate():
    """One full-batch step with rho=0 and t0=0 has ``A = Z^T Z``, ``B = X^T Z`` (Z the lasso codes
    at D0). The surrogate ``0.5 tr(D^T D A) - tr(D^T B)`` does not increase with more passes of
    Algorithm 2, and 30 passes reach its minimiser over the unit ball: D is a fixed point of
    the projected gradient step with step ``1/||A||_2`` (residual 1.8e-14, measured)."""
    data, D0 = _problem(300)
    Z = lasso.solve(data.X, D0, lam=LAM)
    A, B = Z.T @ Z, data.X.T @ Z

    def learned(n_passes):
        model = OnlineDictionaryLearning(lam=LAM, n_epochs=1, forget_rho=0.0, n_passes=n_passes)
        return model.fit(data.X, D0).dictionary_

    def surrogate(D):
        return float(0.5 * torch.trace(D.T @ D @ A) - torch.trace(D.T @ B))

    values = [surrogate(learned(k)) for k in (1, 3, 30)]
    assert surrogate(D0) > values[0] >= values[1] >= values[2]
    D = learned(30)
    step = D - (D @ A - B) / torch.linalg.matrix_norm(A, ord=2)
    projected = step / torch.linalg.vector_norm(step, dim=0).clamp_min(1.0)
    assert (projected - D).abs().max() < 1e-10
    assert (learned(1) - D).abs().max() > 1e-3  # one pass is not yet the minimiser


@pytest.mark.parametrize("resample_dead", [True, False])
def test_unused_atom_is_resampled_or_kept(resample_dead):
    """An atom orthogonal to every sample gets the lasso code 0, so ``A_jj = 0``: it is replaced
    by a unit-norm sample of the batch (ICML 2009, Sec. 3.4.3) or left as it is."""
    inner = make_sparse(M - 1, P - 1, 300, S, seed=0)
    X = torch.cat([inner.X, torch.zeros(300, 1, dtype=torch.float64)], dim=1)
    unused = torch.zeros(M, 1, dtype=torch.float64)
    unused[-1] = 1.0
    D_inner = perturb(inner.D_star, 0.3, seed=1)
    D0 = torch.cat([torch.cat([D_inner, torch.zeros(1, P - 1, dtype=torch.float64)]), unused], 1)
    model = OnlineDictionaryLearning(lam=LAM, n_epochs=1, resample_dead=resample_dead).fit(X, D0)
    atom = model.dictionary_[:, -1]
    if resample_dead:
        assert model.n_resampled_ == 1
        assert float(torch.linalg.vector_norm(atom)) == pytest.approx(1.0, abs=1e-12)
        cosines = normalize_columns(X.T).T @ atom
        assert float(cosines.abs().max()) == pytest.approx(1.0, abs=1e-12)
    else:
        assert model.n_resampled_ == 0
        assert torch.equal(atom, unused[:, 0])


def test_same_seed_same_numbers():
    data, D0 = _problem(400)

    def fit(seed):
        return OnlineDictionaryLearning(lam=LAM, batch_size=100, n_epochs=2, seed=seed).fit(
            data.X, D0
        )

    first, second, other = fit(3), fit(3), fit(4)
    assert torch.equal(first.dictionary_, second.dictionary_)
    assert first.records_["loss"].equals(second.records_["loss"])
    assert not torch.equal(first.dictionary_, other.dictionary_)  # the seed orders the batches


def test_float32_matches_float64():
    """3 epochs in float32 stay within 1.9e-7 of float64 (measured; asserted 1e-5)."""
    data64, D0 = _problem()
    data32, _ = _problem(dtype=torch.float32)
    fits = [
        OnlineDictionaryLearning(lam=LAM, batch_size=200, n_epochs=3).fit(X, D0.to(X.dtype))
        for X in (data64.X, data32.X)
    ]
    assert fits[1].dictionary_.dtype == torch.float32
    assert (fits[1].dictionary_.double() - fits[0].dictionary_).abs().max() < 1e-5


@pytest.mark.parametrize("constraint", ["ball", "sphere"])
def test_constraint_and_device(constraint, device):
    data, D0 = _problem(400)
    X, D0 = data.X.to(device), D0.to(device)
    model = OnlineDictionaryLearning(
        lam=LAM, batch_size=100, n_epochs=2, constraint=constraint
    ).fit(X, D0, D_star=data.D_star.to(device))
    norms = torch.linalg.vector_norm(model.dictionary_, dim=0)
    assert model.dictionary_.device.type == device.type
    if constraint == "sphere":
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-12)
    else:
        assert bool((norms <= 1 + 1e-12).all())
    assert model.records_["error_fro"].iloc[-1] < 0.5 * model.records_["error_fro"].iloc[0]


@pytest.mark.parametrize(
    "option",
    [
        {"lam": 0.0},
        {"lam": -1.0},
        {"forget_rho": -0.5},
        {"t0": -1.0},
        {"n_passes": 0},
        {"dead_tol": -1e-3},
        {"resample_dead": "yes"},
        {"lasso_tol": 0.0},
        {"lr": 1e-3},
        {"optimizer": "adam"},
        {"constraint": "box"},
        {"batch_size": 0},
    ],
)
def test_options_are_validated_by_name(option):
    (name,) = option
    with pytest.raises(ValueError, match=name):
        OnlineDictionaryLearning(**option)
