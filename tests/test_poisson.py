"""Poisson image denoising of DCEA (Tolooshams, Song, Temereanca & Ba, ICML 2020, Sec. 5.1,
Table 2) and the Anscombe baseline (Makitalo & Foi, IEEE TIP 2011): every building block against
its definition, then the study contract (check, run, render)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from udlbench import encoders, poisson
from udlbench.dictionaries import Convolutional

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------
# Anscombe transform and its inverses
# ------------------------------------------------------------------------------------------


@pytest.mark.fast
def test_expected_anscombe_matches_the_pmf_sum_and_monte_carlo():
    """E[A(y)] at lam = 0 is A(0) = sqrt(3/2); at lam = 2.5 it equals a direct sum over
    k = 0..80 with math.factorial to 1e-12, and a Monte-Carlo mean of 200,000 draws to within
    5 standard errors."""
    lam = torch.tensor([0.0, 2.5], dtype=F64)
    mean = poisson.expected_anscombe(lam)
    assert mean[0].item() == pytest.approx(math.sqrt(1.5), abs=1e-15)
    direct = sum(math.exp(-2.5) * 2.5**k / math.factorial(k) * 2 * math.sqrt(k + 0.375)
                 for k in range(81))
    assert mean[1].item() == pytest.approx(direct, abs=1e-12)
    draws = poisson.anscombe(torch.poisson(torch.full((200_000,), 2.5, dtype=F64),
                                           generator=gen(0)))
    standard_error = draws.std().item() / math.sqrt(draws.numel())
    assert abs(draws.mean().item() - mean[1].item()) < 5 * standard_error


@pytest.mark.fast
def test_exact_unbiased_inverse_maps_the_mean_back_to_the_rate():
    """Makitalo & Foi's closed form I(z) applied to E[A(Poisson(lam))] returns lam: absolute
    error <= 0.02 for all 80 rates in [1e-3, 316] (measured max 0.0182 near lam = 18) and
    relative error <= 1 % (measured max 0.88 % at lam = 1e-3). Negative control: the algebraic
    inverse (z/2)^2 - 3/8 is off by >= 0.1 at every lam >= 0.5 (measured min 0.12)."""
    lam = torch.logspace(-3, 2.5, 80, dtype=F64)
    mean = poisson.expected_anscombe(lam)
    error = poisson.inverse_anscombe_exact(mean) - lam
    assert error.abs().max().item() <= 0.02
    assert (error / lam).abs().max().item() <= 0.01
    algebraic = poisson.inverse_anscombe_algebraic(mean) - lam
    assert algebraic[lam >= 0.5].abs().min().item() >= 0.1
    assert (algebraic[lam >= 0.5] < 0).all()  # biased low


@pytest.mark.fast
def test_exact_inverse_closed_form_values_zero_and_monotonicity():
    """I(3) equals the printed formula; I(sqrt(3/2)) = 0 (the image of lam = 0), I = 0 below it,
    and I is increasing above it."""
    z = torch.tensor([3.0], dtype=F64)
    s = math.sqrt(1.5)
    by_hand = 9 / 4 + s / 4 / 3 - 11 / 8 / 9 + 5 / 8 * s / 27 - 1 / 8
    assert poisson.inverse_anscombe_exact(z).item() == pytest.approx(by_hand, abs=1e-14)
    at_zero = poisson.inverse_anscombe_exact(torch.tensor([s], dtype=F64)).item()
    assert abs(at_zero) <= 1e-14
    below = poisson.inverse_anscombe_exact(torch.linspace(0.0, s - 1e-9, 50, dtype=F64))
    assert (below == 0).all()
    grid = poisson.inverse_anscombe_exact(torch.linspace(s, 30.0, 20_000, dtype=F64))
    assert (grid.diff() > 0).all()


@pytest.mark.fast
def test_anscombe_stabilises_the_variance_to_one_at_moderate_counts():
    """Var[A(y)] = 4 (lam + 3/8) - E[A(y)]^2 is within 0.01 of 1 for lam in [8, 300] (the
    sigma = 1 given to the Gaussian denoiser) and below 0.8 at lam = 1, where the VST is
    imperfect."""
    lam = torch.tensor([1.0, 8.0, 30.0, 300.0], dtype=F64)
    variance = 4 * (lam + 0.375) - poisson.expected_anscombe(lam).square()
    assert variance[0].item() < 0.8
    assert (variance[1:] - 1).abs().max().item() <= 0.01


@pytest.mark.fast
def test_anscombe_rejects_negative_counts():
    with pytest.raises(ValueError, match="non-negative"):
        poisson.anscombe(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="inverse must be one of"):
        poisson.vst_denoise(torch.zeros(8, 8), inverse="asymptotic")


@pytest.mark.fast
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vst_denoise_exact_inverse_is_nearly_unbiased_on_a_flat_image(dtype):
    """VST + non-local means on a flat 64 x 64 image of rate lam: with the exact unbiased
    inverse the mean estimate is within 3 % of lam (measured: +0.3 % at lam = 0.5, +1.4 % at 2);
    the algebraic inverse is at least 5 % low (measured -23 %, -9 %). dtype and shape kept."""
    for lam in (0.5, 2.0):
        counts = torch.poisson(torch.full((64, 64), lam, dtype=F64), generator=gen(0)).to(dtype)
        exact = poisson.vst_denoise(counts, inverse="exact")
        algebraic = poisson.vst_denoise(counts, inverse="algebraic")
        assert exact.dtype == dtype and exact.shape == counts.shape
        assert abs(exact.mean().item() - lam) <= 0.03 * lam
        assert algebraic.mean().item() <= 0.95 * lam


# ------------------------------------------------------------------------------------------
# Peak scaling
# ------------------------------------------------------------------------------------------


@pytest.mark.fast
def test_peak_scaling_puts_the_brightest_rate_at_the_peak():
    """Q = max(y_clean) / peak per image, so that y_clean / Q has maximum peak (Sec. 5.1); an
    all-zero image gives zero counts; the counts are integers >= 0."""
    clean = torch.rand(3, 1, 16, 16, generator=gen(1), dtype=F64) * torch.tensor(
        [1.0, 0.3, 0.0], dtype=F64).reshape(3, 1, 1, 1)
    Q = poisson.peak_scale(clean, 4.0)
    assert Q.shape == (3, 1, 1, 1)
    rates = clean / Q
    assert rates[:2].amax(dim=(1, 2, 3)).tolist() == pytest.approx([4.0, 4.0], abs=1e-12)
    counts, Q2 = poisson.poisson_observation(clean, peak=4.0, generator=gen(2))
    assert torch.equal(Q, Q2)
    assert (counts[2] == 0).all()
    assert (counts >= 0).all() and torch.equal(counts, counts.round())
    with pytest.raises(ValueError, match="peak must be a finite number > 0"):
        poisson.peak_scale(clean, 0.0)


# ------------------------------------------------------------------------------------------
# Polyphase strided convolutions
# ------------------------------------------------------------------------------------------

# ------------------------------------------------------------------------------------------
# All shifts of the stride
# ------------------------------------------------------------------------------------------


@pytest.mark.fast
def test_shifted_copies_hold_the_image_at_every_offset_and_average_back_exactly():
    """Copy (i, j) holds Y at offset (P + i, P + j), P = kernel - 1, with reflect padding;
    average_shifts of the copies themselves returns Y (to rounding, 1e-15)."""
    kernel, stride = 5, 3
    Y = torch.randn(2, 1, 13, 11, generator=gen(10), dtype=F64)
    copies = poisson.shifted_copies(Y, kernel=kernel, stride=stride)
    P = kernel - 1
    assert copies.shape == (stride**2 * 2, 1, 13 + 2 * P + stride - 1, 11 + 2 * P + stride - 1)
    for m in range(stride**2):
        i, j = divmod(m, stride)
        block = copies[2 * m : 2 * m + 2]
        assert torch.equal(block[:, :, P + i : P + i + 13, P + j : P + j + 11], Y)
        assert torch.equal(block[:, :, P + i, P + j - 1], Y[:, :, 0, 1])  # reflection
    back = poisson.average_shifts(copies, size=(13, 11), kernel=kernel, stride=stride)
    assert (back - Y).abs().max().item() <= 1e-15 * Y.abs().max().item()


@pytest.mark.fast
def test_shift_average_of_strided_decodes_is_one_stride_one_dictionary():
    """The claim of average_shifts: the mean over the stride^2 copies of the strided decodes
    H x^(i,j), cropped to the image, equals conv_transpose(Z, H, stride=1) / stride^2 where Z
    places the code of copy (i, j) at grid index q on the image position stride q - P - (i, j):
    every shift of the stride grid is used exactly once (float64, 1e-12)."""
    kernel, stride, h, w = 4, 3, 9, 10
    P = kernel - 1
    filters = torch.randn(2, 1, kernel, kernel, generator=gen(11), dtype=F64)
    H = Convolutional(filters, stride=stride)
    size = (h + 2 * P + stride - 1, w + 2 * P + stride - 1)
    probe = torch.zeros(stride**2, 1, *size, dtype=F64)
    codes = torch.randn(H.code_shape(probe), generator=gen(12), dtype=F64)
    averaged = poisson.average_shifts(H.decode(codes, size), size=(h, w), kernel=kernel,
                                      stride=stride)
    offset = P + stride - 1  # image position -offset is index 0 of the stride-1 grid
    grid = torch.zeros(1, 2, h + offset + 1, w + offset + 1, dtype=F64)
    for m in range(stride**2):
        i, j = divmod(m, stride)
        for qa in range(codes.shape[2]):
            for qb in range(codes.shape[3]):
                r, c = stride * qa - P - i + offset, stride * qb - P - j + offset
                if r < grid.shape[2] and c < grid.shape[3]:
                    assert grid[0, :, r, c].abs().sum() == 0  # each shift used once
                    grid[0, :, r, c] = codes[m, :, qa, qb]
    full = F.conv_transpose2d(grid, filters) / stride**2
    expected = full[:, :, offset : offset + h, offset : offset + w]
    assert (averaged - expected).abs().max().item() <= 1e-12


@pytest.mark.fast
def test_shift_helpers_reject_bad_geometry():
    Y = torch.zeros(1, 1, 12, 12)
    with pytest.raises(ValueError, match="stride must be <= kernel"):
        poisson.shifted_copies(Y, kernel=3, stride=4)
    with pytest.raises(ValueError, match="needs both sizes > 16"):
        poisson.shifted_copies(Y, kernel=11, stride=7)
    with pytest.raises(ValueError, match="not a multiple of stride"):
        poisson.average_shifts(torch.zeros(5, 1, 20, 20), size=(12, 12), kernel=5, stride=2)


# ------------------------------------------------------------------------------------------
# DCEA
# ------------------------------------------------------------------------------------------


def small_model(untied: bool, dtype=F64, seed: int = 13, **kwargs) -> poisson.DCEA:
    options = dict(n_filters=6, kernel=5, stride=3, n_layers=4, bias=0.05, init_size=24)
    return poisson.DCEA(untied=untied, generator=gen(seed), dtype=dtype, **{**options, **kwargs})


@pytest.mark.fast
@pytest.mark.parametrize("untied", [False, True])
def test_dcea_codes_are_the_expfamily_encoder(untied):
    """With a uniform bias b the layer equals encoders.expfamily(family="poisson", prox="relu",
    lam=b/alpha, alpha) on plain Convolutional dictionaries (tied, and untied after perturbing
    W_e and W_d), float64 to 1e-12, with active codes; negative control: changing the bias of one
    filter moves the codes by > 1e-6."""
    model = small_model(untied, alpha=0.7)
    with torch.no_grad():
        if untied:
            model.W_e.add_(0.05 * torch.randn(model.W_e.shape, generator=gen(14), dtype=F64))
            model.W_d.add_(0.05 * torch.randn(model.W_d.shape, generator=gen(15), dtype=F64))
    Y = torch.poisson(2.0 * torch.rand(2, 1, 23, 20, generator=gen(16), dtype=F64))
    plain = {name: Convolutional(weight.detach(), stride=3)
             for name, weight in (("H", model.H), ("W_e", model.W_e), ("W_d", model.W_d))
             if weight is not None}
    untied_args = {"W_e": plain["W_e"], "W_d": plain["W_d"]} if untied else {}
    with torch.no_grad():
        ours = model.codes(Y)
        reference = encoders.expfamily(Y, plain["H"], family="poisson", lam=0.05 / 0.7,
                                       n_layers=4, alpha=0.7, prox="relu", **untied_args)
        model.bias[2] += 0.5
        moved = model.codes(Y)
    assert (ours > 0).sum() > 0
    assert (ours - reference).abs().max().item() <= 1e-12
    assert (moved - ours).abs().max().item() > 1e-6


@pytest.mark.fast
def test_dcea_parameter_counts_of_table_2():
    """Built at the paper's size (169 filters 11 x 11, stride 7): DCEA-C has
    169 * 121 + 169 = 20,618 trained parameters and DCEA-UC 3 * 169 * 121 + 169 = 61,516."""
    counts = {untied: poisson.DCEA(untied=untied, generator=gen(0), init_size=32).n_parameters()
              for untied in (False, True)}
    assert counts == {False: 20_618, True: 61_516}
    assert poisson.PAPER_PARAMETERS["DCEA-C"] == 20_618
    assert poisson.PAPER_PARAMETERS["DCEA-UC"] == 61_516


@pytest.mark.fast
def test_dcea_initial_filters_have_unit_spectral_norm_and_untied_starts_as_tied():
    """The filters are scaled to sigma_max(H)^2 = 1 on a copy of an init_size image (1e-3, the
    Lanczos tolerance of an initial scale); W_e = W_d = H at the start, so DCEA-UC and DCEA-C with
    the same generator give the same output."""
    tied, untied = small_model(False), small_model(True)
    copy = 24 + 2 * 4 + 2
    L = Convolutional(tied.H.detach(), stride=3).lipschitz((copy, copy))
    assert L == pytest.approx(1.0, rel=1e-3)
    assert torch.equal(tied.H, untied.H) and torch.equal(untied.W_e, untied.H)
    Y = torch.poisson(3.0 * torch.rand(1, 1, 20, 20, generator=gen(17), dtype=F64))
    with torch.no_grad():
        assert torch.equal(tied(Y), untied(Y))


@pytest.mark.fast
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dcea_forward_is_a_positive_rate_and_every_parameter_gets_a_gradient(dtype):
    """exp(H x_T) has the image's shape, dtype, and positive entries; the supervised loss
    reaches H and b (tied) and H, W_e, W_d and b (untied)."""
    for untied in (False, True):
        model = small_model(untied, dtype=dtype)
        Y = torch.poisson(2.0 * torch.rand(2, 1, 18, 21, generator=gen(18))).to(dtype)
        rate = model(Y)
        assert rate.shape == Y.shape and rate.dtype == dtype and (rate > 0).all()
        (rate - 0.5).square().mean().backward()
        names = {name for name, p in model.named_parameters() if p.grad is not None
                 and p.grad.abs().sum() > 0}
        assert names == ({"H", "W_e", "W_d", "bias"} if untied else {"H", "bias"})


@pytest.mark.fast
def test_dcea_rejects_negative_counts_and_bad_sizes():
    model = small_model(False)
    with pytest.raises(ValueError, match="non-negative Poisson counts"):
        model(-torch.ones(1, 1, 20, 20, dtype=F64))
    with pytest.raises(ValueError, match="stride must be <= kernel"):
        poisson.DCEA(untied=False, kernel=3, stride=5, generator=gen(0))
    with pytest.raises(ValueError, match="n_layers must be an integer >= 1"):
        poisson.DCEA(untied=False, n_layers=0, generator=gen(0))


@pytest.mark.fast
def test_train_dcea_lowers_the_loss_and_is_deterministic():
    """Two runs of 6 steps with the same generator give identical losses and parameters; the
    mean loss of the last epoch is below that of the first (measured: 0.0729 -> 0.0662)."""
    images = [torch.rand(40, 40, generator=gen(19), dtype=F64) for _ in range(2)]
    results = []
    for _ in range(2):
        model = small_model(True)
        losses = []
        poisson.train_dcea(model, images, peak=2.0, epochs=3, crops_per_epoch=4, batch_size=2,
                           crop=20, lr=1e-2, lr_step=1, lr_gamma=0.8, generator=gen(20),
                           after_epoch=lambda epoch, loss, seconds, out=losses: out.append(loss))
        results.append((losses, [p.detach().clone() for p in model.parameters()]))
    (losses, params), (losses2, params2) = results
    assert losses == losses2 and all(torch.equal(a, b) for a, b in zip(params, params2,
                                                                        strict=True))
    assert losses[-1] < losses[0]


# ------------------------------------------------------------------------------------------
# The study contract
# ------------------------------------------------------------------------------------------

TINY = {
    **poisson.QUICK,
    "peaks": [1],
    "n_filters": 3,
    "n_layers": 2,
    "crop": 20,
    "batch_size": 2,
    "epochs": 2,
    "crops_per_epoch": 2,
    "test_size": 20,
    "eval_every": 1,
    "inverse_rates": [0.5, 4.0],
}


@pytest.mark.fast
def test_check_accepts_the_profiles_and_names_bad_options():
    poisson.check(poisson.QUICK)
    poisson.check(poisson.FULL)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['lr_decay'\]; the valid"):
        poisson.check({**poisson.QUICK, "lr_decay": 0.5})
    with pytest.raises(ValueError, match=r"missing option\(s\) \['lr'\]"):
        poisson.check({k: v for k, v in poisson.QUICK.items() if k != "lr"})
    bad = [
        ({"stride": 12}, "stride must be <= kernel"),
        ({"crop": 10}, "crop must be >= kernel \\+ stride - 1 = 17"),
        ({"crop": 1000}, "crop must be <= 172"),
        ({"test_size": 301}, "test_size must be None .* got 301"),
        ({"lr_gamma": 1.5}, "lr_gamma must be a number in \\(0, 1\\]; got 1.5"),
        ({"peaks": []}, "peaks must be a non-empty list"),
        ({"peaks": [1, 1]}, "peaks must be distinct"),
        ({"peaks": [1, -2]}, "peaks\\[1\\] must be a finite number > 0; got -2"),
        ({"epochs": 0}, "epochs must be an integer >= 1; got 0"),
        ({"bias": -0.1}, "bias must be a finite number >= 0"),
    ]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            poisson.check({**poisson.QUICK, **change})


@pytest.mark.fast
def test_run_is_deterministic_tidy_and_renders(tmp_path):
    """run on tiny options: the same seed gives the same table (timings aside), another seed
    another; the table is long-format with every method, the documented metrics and columns;
    parameter counts are C K^2 + C and 3 C K^2 + C; render writes the CSV and the PNG/SVG
    figures and returns a <section> with the paper's Table 2 numbers next to the measured."""
    first = poisson.run(TINY, seed=3, dtype=torch.float32, device="cpu")
    again = poisson.run(TINY, seed=3, dtype=torch.float32, device="cpu")
    other = poisson.run(TINY, seed=4, dtype=torch.float32, device="cpu")
    timed = first["metric"].str.endswith("seconds")
    pd.testing.assert_frame_equal(first[~timed], again[~timed])
    scores = first["metric"] == "psnr_db"
    assert not first.loc[scores, "value"].equals(other.loc[other["metric"] == "psnr_db", "value"])
    assert {"seed", "method", "peak", "epoch", "image", "rate", "metric", "value"} <= set(first)
    assert set(first["method"]) == {*poisson.METHODS, "exact_inverse", "algebraic_inverse"}
    assert set(first["metric"]) == {"psnr_db", "train_mse", "parameters", "train_seconds",
                                    "test_seconds", "inverse_error"}
    psnr = first[scores]
    assert set(psnr["image"]) == {"camera", "astronaut", "coins", "chelsea"}
    dcea_epochs = psnr[psnr["method"] == "dcea_c"]["epoch"]
    assert sorted(dcea_epochs.unique().tolist()) == [0, 1, 2]
    assert psnr[psnr["method"] == "noisy"]["epoch"].isna().all()
    params = first[first["metric"] == "parameters"].set_index("method")["value"]
    assert params.to_dict() == {"dcea_c": 3 * 121 + 3, "dcea_uc": 3 * 3 * 121 + 3}

    fragment = poisson.render(pd.concat([first, other]), tmp_path)
    for stem in ("poisson_psnr_vs_peak", "poisson_learning_curves", "poisson_vst_inverse"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 0
        assert (tmp_path / f"{stem}.svg").stat().st_size > 0
        assert f'<img src="{stem}.png"' in fragment
    table = pd.read_csv(tmp_path / "poisson_table2.csv")
    assert set(table["method"]) == set(poisson.METHODS)
    assert (table["seeds"] == 2).all()
    assert fragment.startswith("<section>") and "<h2>" in fragment
    for printed in ("21.84", "21.27", "21.01", "20,618", "61,516"):
        assert printed in fragment
    assert "not a reproduction" in fragment


@pytest.mark.fast
def test_the_results_of_a_peak_do_not_depend_on_the_other_peaks():
    """Each peak has its own random streams: the peak-1 rows of peaks [2, 1] equal those of
    peaks [1]."""
    options = {**TINY, "epochs": 1}
    alone = poisson.run(options, seed=5, dtype=torch.float32, device="cpu")
    both = poisson.run({**options, "peaks": [2, 1]}, seed=5, dtype=torch.float32, device="cpu")
    pick = lambda t: t[(t["peak"] == 1) & (t["metric"] == "psnr_db")].reset_index(drop=True)
    assert len(pick(alone)) > 0
    pd.testing.assert_frame_equal(pick(alone), pick(both))


@pytest.mark.fast
def test_run_in_float64_gives_finite_scores_and_rejects_other_dtypes():
    table = poisson.run({**TINY, "epochs": 1}, seed=0, dtype=torch.float64, device="cpu")
    assert table["value"].notna().all() and (table["value"].abs() < math.inf).all()
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float64"):
        poisson.run(TINY, seed=0, dtype=torch.float16, device="cpu")


@pytest.mark.fast
def test_summary_table_uses_the_last_epoch_and_the_paper_rows():
    """summary_table keeps the last evaluated epoch of DCEA (not epoch 0) and puts the Table 2
    BSD68 and Camera numbers of the matching row next to it."""
    rows = []
    for epoch, value in ((0, 5.0), (4, 20.0)):
        for image in ("camera", "coins"):
            rows.append({"seed": 0, "method": "dcea_uc", "peak": 2.0, "epoch": epoch,
                         "image": image, "rate": math.nan, "metric": "psnr_db",
                         "value": value + (image == "coins")})
    rows.append({"seed": 0, "method": "noisy", "peak": 2.0, "epoch": None, "image": "camera",
                 "rate": math.nan, "metric": "psnr_db", "value": 3.0})
    frame = pd.DataFrame(rows)
    frame["epoch"] = frame["epoch"].astype("Int64")
    table = poisson.summary_table(frame).set_index("method")
    assert table.loc["dcea_uc", "mean"] == pytest.approx(20.5)
    assert table.loc["dcea_uc", "paper_bsd68"] == 22.92
    assert table.loc["dcea_uc", "paper_camera"] == 22.94
    assert table.loc["noisy", "mean"] == 3.0 and math.isnan(table.loc["noisy", "paper_bsd68"])


@pytest.mark.slow
def test_quick_profile_orderings(tmp_path):
    """The QUICK profile (seed 0, float32, CPU; about 3.7 CPU minutes) and what holds there.

    Measured over seeds 0 and 1 (mean test PSNR in dB over the four 96 x 96 test crops,
    peaks 1 / 2 / 4):

    ==============  =====================  =====================
    method          seed 0                 seed 1
    ==============  =====================  =====================
    noisy Q y       4.94 / 7.94 / 10.92    4.91 / 7.99 / 11.02
    VST algebraic   16.01 / 16.85 / 19.23  15.96 / 17.05 / 19.14
    VST exact       18.26 / 18.85 / 20.63  18.28 / 18.96 / 20.54
    DCEA-C          18.84 / 20.52 / 21.21  18.78 / 20.37 / 21.39
    DCEA-UC         18.68 / 20.31 / 20.04  18.69 / 20.61 / 19.87
    ==============  =====================  =====================

    Asserted (held for both seeds): DCEA-C beats VST + NL-means with the exact unbiased inverse
    at every peak (margins >= 0.50 dB) and DCEA-UC does at peaks 1 and 2 (>= 0.41 dB); the exact
    inverse beats the algebraic one by >= 1 dB at every peak (>= 1.40); training raises DCEA's
    PSNR by >= 3 dB over its untrained start (>= 6.6); PSNR grows with the peak for DCEA-C and
    the VST baseline. Not asserted, because it does not hold at this size: the paper's
    DCEA-UC > DCEA-C (Table 2). Here UC - C is -0.16 / -0.21 / -1.16 dB (seed 0) and
    -0.09 / +0.24 / -1.52 dB (seed 1): with three times the parameters DCEA-UC is still behind
    after 120 Adam steps, most at peak 4, where it is also below the VST baseline (-0.59, -0.67).
    """
    results = poisson.run(poisson.QUICK, seed=0, dtype=torch.float32, device="cpu")
    table = poisson.summary_table(results)
    mean = table.set_index(["peak", "method"])["mean"]
    for peak in (1.0, 2.0, 4.0):
        assert mean[(peak, "dcea_c")] > mean[(peak, "vst_exact")]
        assert mean[(peak, "vst_exact")] >= mean[(peak, "vst_algebraic")] + 1.0
    for peak in (1.0, 2.0):
        assert mean[(peak, "dcea_uc")] > mean[(peak, "vst_exact")]
    scores = results[(results["metric"] == "psnr_db") & results["method"].str.startswith("dcea")]
    by_epoch = scores.groupby(["peak", "method", "epoch"])["value"].mean()
    for (peak, method), curve in by_epoch.groupby(level=[0, 1]):
        assert curve.iloc[-1] >= curve.iloc[0] + 3.0, (peak, method)
    for method in ("dcea_c", "vst_exact"):
        assert mean[(1.0, method)] < mean[(2.0, method)] < mean[(4.0, method)]
    fragment = poisson.render(results, tmp_path)
    assert "DCEA-C &gt; VST + NL-means, exact unbiased inverse at every peak" in fragment
