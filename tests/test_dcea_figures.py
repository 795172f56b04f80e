"""DCEA Figs 3 and 5 study (udlbench.dcea_figures; Tolooshams, Song, Temereanca & Ba, ICML 2020,
Sec. 5.2.1 and 5.2.3)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from udlbench import data, dcea_figures
from udlbench.dictionaries import Convolutional

TINY = {**dcea_figures.QUICK, "n_signals": 8, "length": 80, "filter_length": 10, "n_events": 2,
        "n_layers": 5, "batch_size": 4, "epochs_close": 2, "epochs_random": 2,
        "bcomp_nonzero": 4, "bcomp_rounds": 1, "timing_signals": [4, 8], "mis_trials": [5, 30]}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_offset_dictionary_adds_the_baseline_and_keeps_the_adjoint(dtype):
    """decode = offset + H x; the adjoint is that of H, so <H x, y> = <x, H^T y>."""
    g = torch.Generator().manual_seed(0)
    H = torch.randn(3, 1, 7, generator=g, dtype=dtype)
    x = torch.randn(2, 3, 14, generator=g, dtype=dtype)
    y = torch.randn(2, 1, 20, generator=g, dtype=dtype)
    shifted = dcea_figures.WithOffset(H, offset=-2.0)
    plain = Convolutional(H)
    torch.testing.assert_close(shifted.decode(x, (20,)), plain.decode(x, (20,)) - 2.0)
    lhs = (plain.decode(x, (20,)) * y).sum()
    rhs = (x * shifted.adjoint(y)).sum()
    torch.testing.assert_close(lhs, rhs)


def test_likelihoods_match_their_definitions():
    """Binomial: sum log(1 + e^eta) - (y / M) eta; Gaussian: ||y / M - eta||^2 / 2; per
    signal mean."""
    g = torch.Generator().manual_seed(1)
    Y = torch.randint(0, 26, (4, 1, 9), generator=g).double()
    eta = torch.randn(4, 1, 9, generator=g, dtype=torch.float64)
    binomial = sum(float(torch.log1p(torch.exp(eta[j])).sum() - (Y[j] / 25 * eta[j]).sum())
                   for j in range(4)) / 4
    gaussian = sum(0.5 * float(((Y[j] / 25 - eta[j]) ** 2).sum()) for j in range(4)) / 4
    assert math.isclose(float(dcea_figures.binomial_nll(Y, eta, 25.0)), binomial, rel_tol=1e-12)
    assert math.isclose(float(dcea_figures.gaussian_nll(Y, eta, 25.0)), gaussian, rel_tol=1e-12)


def test_family_terms_offsets_and_steps():
    """DCEA-b: logit offset, step alpha; DCEA-g: sigmoid(baseline) offset, input y / M, alpha/4."""
    b = dcea_figures.family_terms("binomial", trials=25, baseline=-2.0, alpha=0.2)
    gauss = dcea_figures.family_terms("gaussian", trials=25, baseline=-2.0, alpha=0.2)
    assert b["offset"] == -2.0 and b["scale"] == 1.0 and b["encoder"]["alpha"] == 0.2
    assert math.isclose(gauss["offset"], 1 / (1 + math.exp(2.0)))
    assert gauss["scale"] == 1 / 25 and math.isclose(gauss["encoder"]["alpha"], 0.05)
    with pytest.raises(ValueError, match="family"):
        dcea_figures.family_terms("poisson", trials=25, baseline=-2.0, alpha=0.2)


def test_filter_errors_and_shift_errors():
    """err = 0 for a permuted, sign-flipped copy; an exact shifted copy (filters whose last taps
    are zero, moved by 3 taps) has a large paper error and a zero shift-tolerant one; the
    shift-tolerant error never exceeds the paper error."""
    g = torch.Generator().manual_seed(2)
    H_star = F.normalize(F.pad(torch.randn(3, 17, generator=g, dtype=torch.float64), (0, 3)),
                         dim=1)
    permuted = -H_star[[2, 0, 1]]
    np.testing.assert_allclose(dcea_figures.filter_errors(permuted, H_star), 0, atol=1e-7)
    shifted = F.pad(H_star[:, :-3], (3, 0))
    paper = dcea_figures.filter_errors(shifted, H_star)
    tolerant = dcea_figures.shift_errors(shifted, H_star)
    assert np.median(paper) > 0.5
    np.testing.assert_allclose(tolerant, 0, atol=1e-6)
    noisy = F.normalize(shifted + 0.3 * torch.randn(3, 20, generator=g, dtype=torch.float64),
                        dim=1)
    assert np.all(dcea_figures.shift_errors(noisy, H_star)
                  <= dcea_figures.filter_errors(noisy, H_star) + 1e-12)


def test_starts_are_unit_norm_and_seeded():
    H_star = data.make_conv_expfamily(2, 60, 3, 10, seed=0).H_star
    close = dcea_figures.close_start(H_star, 0.6, seed=1)
    random = dcea_figures.random_start(3, 10, seed=1, dtype=torch.float64, device="cpu")
    for H in (close, random):
        torch.testing.assert_close(torch.linalg.vector_norm(H, dim=1), torch.ones(3,
                                                                                  dtype=H.dtype))
    torch.testing.assert_close(close, dcea_figures.close_start(H_star, 0.6, seed=1))
    assert 0.2 < np.median(dcea_figures.filter_errors(close, H_star)) < 0.8


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [("n_layers", 0, "n_layers"), ("parts", ["fig4"], "parts"), ("parts", [], "parts"),
     ("mis_start", "far", "mis_start"), ("timing_signals", [1000], "timing_signals"),
     ("amplitude", [3.0, 1.0], "amplitude"), ("filter_length", 600, "filter_length"),
     ("lam", -1.0, "lam"), ("baseline", float("nan"), "baseline")],
)
def test_check_names_the_bad_option(key, value, match):
    with pytest.raises(ValueError, match=match):
        dcea_figures.check({**dcea_figures.QUICK, key: value})


def test_check_rejects_unknown_and_missing_options():
    with pytest.raises(ValueError, match="unknown option"):
        dcea_figures.check({**dcea_figures.QUICK, "epochs": 3})
    partial = dict(dcea_figures.QUICK)
    partial.pop("lam")
    with pytest.raises(ValueError, match="missing option"):
        dcea_figures.check(partial)
    dcea_figures.check(dcea_figures.FULL)


def test_run_is_deterministic_and_renders(tmp_path):
    """Smoke test on tiny options: the table has the documented columns, both figures' rows,
    the same numbers for the same seed (timings excepted) and other numbers for another seed;
    render writes PNG, SVG and CSV and an HTML section with the paper's values."""
    first = dcea_figures.run(TINY, seed=0, dtype=torch.float64)
    again = dcea_figures.run(TINY, seed=0, dtype=torch.float64)
    other = dcea_figures.run(TINY, seed=1, dtype=torch.float64)
    assert list(first.columns) == [*dcea_figures.COLUMNS, "seed", "dtype"]
    assert set(first["part"]) == {"fig3", "fig5"}
    assert {"DCEA", "BCOMP"} <= set(first["method"]) and {"DCEA-b", "DCEA-g"} <= set(
        first["method"])
    timed = first["metric"].isin(["train_seconds", "inference_seconds"])
    np.testing.assert_array_equal(first.loc[~timed, "value"], again.loc[~timed, "value"])
    errors = first["metric"] == "error_median"
    assert not np.array_equal(first.loc[errors, "value"], other.loc[errors, "value"])
    assert first.loc[first["metric"] == "error", "value"].between(0, 1).all()
    html = dcea_figures.render(first, tmp_path)
    for name in ("dcea_fig3.png", "dcea_fig3.svg", "dcea_fig5.png", "dcea_fig5.svg",
                 "dcea_summary.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert html.startswith("<section><h2>") and "<img src='dcea_fig3.png'" in html
    assert "0.09" in html and "0.4" in html and "<table" in html


def test_run_float32_single_part():
    table = dcea_figures.run({**TINY, "parts": ["fig5"], "mis_trials": [30]}, seed=0,
                             dtype=torch.float32)
    assert set(table["part"]) == {"fig5"} and set(table["dtype"]) == {"float32"}
    assert np.isfinite(table["value"]).all()


@pytest.mark.slow
def test_quick_profile_orders_the_models_and_learns_from_the_close_start():
    """QUICK profile, one seed (about 4 CPU minutes on one idle core). The same configurations
    measured in theorems/test_e_dcea_conv.py (base seeds 0, 1): DCEA from the close start
    0.51 -> 0.115 and 0.47 -> 0.088; random start, shift-tolerant 0.95 -> 0.27 and 0.94 -> 0.22;
    err_b(30) = 0.113 and 0.087 against err_g(200) = 0.388 and 0.405; BCOMP from the close
    start (G = 5 rounds, J = 128, float32, seed 0) 0.51 -> 0.030. Asserted: DCEA and BCOMP from
    the close start end below half their start error, the random start's shift-tolerant error
    ends below its start, and DCEA-g at M = 200 ends above DCEA-b at M = 30 (Fig. 5's
    ordering)."""
    table = dcea_figures.run(dcea_figures.QUICK, seed=0, dtype=torch.float32)
    summary = dcea_figures.summary(table).set_index(["figure", "method", "start", "M"])
    for method in ("DCEA", "BCOMP"):
        row = summary.loc[("fig3", method, "close", 25)]
        assert row["median err, end"] < 0.5 * row["median err, start"], (method, row)
    random = table[(table["method"] == "DCEA") & (table["start"] == "random")
                   & (table["metric"] == "shift_error")]
    first, last = random["epoch"].min(), random["epoch"].max()
    assert (random[random["epoch"] == last]["value"].median()
            < random[random["epoch"] == first]["value"].median())
    err_b30 = summary.loc[("fig5", "DCEA-b", "close", 30), "median err, end"]
    err_g200 = summary.loc[("fig5", "DCEA-g", "close", 200), "median err, end"]
    assert err_g200 > err_b30
