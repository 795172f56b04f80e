"""PUDLE (P) Table 1 and Fig. 6: supervised Gaussian denoising (sigma = 25) with a convolutional
unrolled dictionary trained by g^dec, g^ae-ls, g^ae-ls with hard thresholding and g^ae-lasso
(Tolooshams & Ba, TMLR 2023, Sec. 4.3, App. C.3, Table 1, Fig. 6). THEOREMS.md Sec. 1 "P-Tab1"
and Sec. 7.1.

The model, the three gradients, the training loop and the PSNR are those of
:mod:`udlbench.denoising` (its own tests pin the gradients against their definitions); these
checks only run the study and compare its final test PSNR with the paper's claims. The final test
PSNR of a run is the PSNR of its last evaluation averaged over the test images and noise draws.
"""

import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from udlbench import denoising, images

BSD_ENV = "UDLBENCH_BSD_DIR"
TABLE1_TOLERANCE_DB = 0.3  # THEOREMS.md P-Tab1: "Values within +-0.3 dB of the table"
FAILED_DENOISING_DB = 20.0  # P-Tab1: g^ae-lasso "below 20 dB for more than half of the epochs"
PROXY_MARGIN_DB = 0.5  # CPU proxy: g^ae-ls above g^dec by this much (measured 0.70-2.38, seeds 0-4)
PROXY_METHODS = ["g_dec", "g_ae-ls"]


def _key(method: str, setting: float) -> str:
    return f"{method}@{setting:g}"


def psnr_by_epoch(table: pd.DataFrame) -> pd.Series:
    """Test PSNR per (method, setting, epoch), averaged over the test images and noise draws
    (:func:`udlbench.denoising.curves`); the setting is lam for soft-thresholding and b for HT."""
    curves = denoising.curves(denoising.scores(table))
    return curves.set_index(["method", "setting", "epoch"])["psnr"]


def final_psnr(table: pd.DataFrame) -> dict[tuple[str, float], float]:
    """The last evaluated PSNR of every (method, setting) run (:func:`udlbench.denoising.final`)."""
    final = denoising.final(denoising.scores(table))
    return {(m, float(s)): float(v)
            for m, s, v in zip(final["method"], final["setting"], final["psnr"], strict=True)}


def curve_of(curves: pd.Series, method: str, setting: float) -> dict[int, float]:
    """The epoch -> PSNR curve of one run."""
    curve = curves.xs((method, setting), level=[0, 1])
    return {int(epoch): float(value) for epoch, value in curve.items()}


def draw_curves(curves: pd.Series, runs: list[tuple[str, float]], noisy_psnr: float, title: str):
    """Test PSNR against epochs for ``runs`` (the layout of Fig. 6), with the noisy input."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for method, setting in runs:
        curve = curve_of(curves, method, setting)
        axis.plot(list(curve), list(curve.values()), marker="o", ms=3,
                  label=_key(method, setting))
    axis.axhline(noisy_psnr, color="grey", lw=1, ls=":", label="noisy input")
    axis.set_xlabel("epoch")
    axis.set_ylabel("test PSNR [dB]")
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def bsd_directory() -> Path:
    """The BSD432 / BSD68 directory named by UDLBENCH_BSD_DIR; skips when it is unset or lacks
    train/ and test/ sub-directories of images."""
    root = os.environ.get(BSD_ENV)
    if not root:
        pytest.skip(f"P-Tab1 needs the BSD432 / BSD68 images, which no installed package ships "
                    f"and which cannot be downloaded here; set {BSD_ENV} to a directory with "
                    "train/ (BSD432) and test/ (BSD68) sub-directories of image files.")
    for split in denoising.IMAGE_SPLITS:
        folder = Path(root) / split
        if not folder.is_dir() or not images.image_files(folder):
            pytest.skip(f"{BSD_ENV}={root} has no {split}/ sub-directory holding image files "
                        f"({', '.join(images.IMAGE_SUFFIXES)}).")
    return Path(root)


@pytest.mark.full
@pytest.mark.claim("P-Tab1", statement="Table 1, Fig. 6 (BSD68 denoising, sigma = 25)")
def test_P_Tab1_supervised_denoising(evidence, seed, device, figures):
    """THEOREMS.md P-Tab1, full scale: "Convolutional dictionary, 64 filters of 9x9, stride 4,
    T = 15, alpha = 0.1. Adam lr 1e-4, eps = 1e-3, 250 epochs [...] Random 129x129 crops, noise
    sigma = 25, flips. Train on BSD432, test on BSD68. g^ae-ls and g^dec at lam in {0.08, 0.12,
    0.16, 0.2}; ae-ls with HT at b in {0.02, 0.05, 0.08, 0.1}; filters initialized N(0,1)" -- the
    FULL profile of :mod:`udlbench.denoising` with ``image_dir`` = $UDLBENCH_BSD_DIR (train/ =
    BSD432, test/ = BSD68, whole test images, 3 noise draws, one seed). Skipped with the reason
    when the variable is unset or the directory lacks train/ or test/ images.

    Pass (full), asserted on the final test PSNR: (i) "g^ae-ls > g^dec at every lam"; (ii) "the
    best ae-ls (lam = 0.16) beats the best HT (b = 0.05)" (best over lam against best over b; the
    argmaxes are recorded); (iii) "values within +-0.3 dB of the table" for the 12 cells of
    Table 1 (PAPER_TABLE1: g_dec 24.21 / 24.93 / 25.25 / 24.88, g_ae-ls 24.79 / 25.43 / 25.63 /
    25.46 at lam = 0.08 / 0.12 / 0.16 / 0.2; g_ae-ls, HT 22.92 / 25.26 / 24.76 / 23.94 at b =
    0.02 / 0.05 / 0.08 / 0.1); (iv) "g^ae-lasso training is unstable at lam = 0.16 (Fig. 6a): its
    test PSNR is below 20 dB for more than half of the epochs" -- epochs 1-250, an epoch left
    unevaluated because the run diverged (non-finite loss or gradient) counting as failed to
    denoise. The paper: "the training with g^ae-lasso is not stable and unstable to perform
    denoising where the noisy PSNR is approximately 20 dB" and "we have excluded the results for
    g^ae-lasso from Table 1 as the network failed to denoise (see Figure 6a)".

    float64 per THEOREMS.md Sec. 0.1 (float32 gives the same PSNR to 0.01 dB on the CPU proxy).
    The 13 runs of 250 x 432 updates take days even on a GPU (catalogue, tier "full"), so this
    check has not been run here; there is no BSD copy on these machines. Evidence: the measured
    Table 1 next to the paper's, the deviations, the per-epoch curves of every run."""
    root = bsd_directory()
    options = {**denoising.FULL, "image_dir": str(root)}
    started = time.perf_counter()
    table = denoising.run(options, seed=seed(0), dtype=torch.float64, device=str(device),
                          progress=True)
    evidence.timings["study_s"] = round(time.perf_counter() - started, 1)
    curves = psnr_by_epoch(table)
    final = final_psnr(table)
    noisy = float(table.loc[table["metric"] == "psnr_noisy", "value"].mean())

    gaps = {lam: final[("g_ae-ls", lam)] - final[("g_dec", lam)] for lam in options["lam"]}
    best_ls = max(options["lam"], key=lambda lam: final[("g_ae-ls", lam)])
    best_ht = max(options["b"], key=lambda b: final[("g_ae-ls-ht", b)])
    deviations = {
        _key(method, setting): final[(method, setting)] - value
        for method, row in denoising.PAPER_TABLE1.items()
        for setting, (value, _) in row.items()
    }
    epochs = range(1, options["epochs"] + 1)
    lasso = curve_of(curves, "g_ae-lasso", denoising.FIG6_LAM)
    failed = [e for e in epochs if lasso.get(e, -math.inf) < FAILED_DENOISING_DB]
    diverged = table[(table["metric"] == "diverged")]
    if figures.enabled:
        runs = [("g_dec", denoising.FIG6_LAM), ("g_ae-ls", denoising.FIG6_LAM),
                ("g_ae-ls-ht", denoising.FIG6_B), ("g_ae-lasso", denoising.FIG6_LAM)]
        figures(evidence, draw_curves(curves, runs, noisy, "Fig. 6a analogue (BSD68)"), "fig6a")
    evidence.seeds = [seed(0)]
    evidence.measure(
        image_dir=str(root), noisy_psnr=noisy,
        final_psnr={_key(*run): value for run, value in final.items()},
        ae_ls_minus_dec=gaps, best_ae_ls=(best_ls, final[("g_ae-ls", best_ls)]),
        best_ht=(best_ht, final[("g_ae-ls-ht", best_ht)]), minus_table1=deviations,
        ae_lasso_epochs_below_20_db=len(failed),
        diverged_runs=sorted({_key(m, s) for m, s in
                              zip(diverged["method"], diverged["lam"].fillna(diverged["b"]),
                                  strict=True)}),
        curves={_key(*run): curve_of(curves, *run) for run in final},
    )
    evidence.predict(
        noisy_psnr=denoising.PAPER_NOISY_PSNR, ae_ls_minus_dec="> 0 at every lam",
        best_ae_ls=(denoising.FIG6_LAM, denoising.PAPER_TABLE1["g_ae-ls"][0.16][0]),
        best_ht=(denoising.FIG6_B, denoising.PAPER_TABLE1["g_ae-ls-ht"][0.05][0]),
        minus_table1=f"|.| <= {TABLE1_TOLERANCE_DB}",
        ae_lasso_epochs_below_20_db=f"> {len(epochs) / 2:g}",
    )
    assert all(gap > 0 for gap in gaps.values()), gaps
    assert final[("g_ae-ls", best_ls)] > final[("g_ae-ls-ht", best_ht)], (best_ls, best_ht)
    far = {k: v for k, v in deviations.items() if abs(v) > TABLE1_TOLERANCE_DB}
    assert not far, f"Table 1 cells off by more than {TABLE1_TOLERANCE_DB} dB: {far}"
    assert len(failed) > len(epochs) / 2, (len(failed), len(epochs))


@pytest.mark.slow
@pytest.mark.claim("P-Tab1", statement="Table 1 ordering (CPU proxy on skimage images)")
def test_P_Tab1_ae_ls_denoises_better_than_dec_cpu_proxy(evidence, seed, device, figures):
    """THEOREMS.md P-Tab1, "CPU proxy (medium, report-only). skimage sample images, 64x64 crops,
    sigma = 25, 20 epochs: check only the g^ae-ls >= g^dec ordering" -- Table 1's g_ae-ls row
    above its g_dec row at every lam (+0.38 to +0.58 dB in the paper).

    Size: the QUICK profile of :mod:`udlbench.denoising` (the paper's model: 64 filters of 9x9,
    stride 4, T = 15, alpha = 0.1, sigma = 25, clean target, unit-norm filters; 65x65 crops with
    flips of the 12 skimage training photographs, 6 epochs of 12 Adam updates at lr 1e-3, 96x96
    centre crops of the 4 test photographs, 2 noise draws) restricted to g_dec and g_ae-ls at
    lam = 0.12 and 0.16, float64, 3 seeds. 6 epochs of 12 updates instead of the catalogue's 20
    epochs keep the check under 10 CPU minutes (measured: 539 s on one core shared with other
    jobs, i.e. 189 / 155 / 149 s for the three seeds and 46 s for the control); the ordering is
    already clear after 72 updates.

    Calibrated before asserting (THEOREMS.md Sec. 0.1), seeds 0 / 1 / 2, final test PSNR in dB
    (noisy input 19.08), g_ae-ls against g_dec: lam = 0.12: 22.62 / 22.80 / 22.78 against
    20.70 / 21.75 / 21.63 (margins +1.92 / +1.05 / +1.15); lam = 0.16: 22.20 / 22.44 / 22.49
    against 19.83 / 21.40 / 21.50 (+2.37 / +1.04 / +0.99). Every seed and lam has g_ae-ls above
    g_dec by about 1 dB or more, so the ordering is asserted per seed and lam with a margin of
    0.5 dB. Base seed 2 (seeds 2 / 3 / 4): margins +1.15 / +1.20 / +0.73 at lam = 0.12 and
    +0.99 / +2.00 / +0.70 at lam = 0.16, control -10.5 dB; seed 4 is the closest to the band.

    Negative control (first seed, lam = 0.16): g_ae-ls with the threshold bug -- lam / alpha
    handed to the encoder as lam, so the soft threshold is lam instead of alpha lam (10x too
    large) -- must fail the same criterion against g_dec at that lam. Measured on seed 0: 10.95 dB
    at lam = 0.16 (12.61 dB at lam = 0.12) against g_dec's 19.83 (20.70): the bug denoises far
    worse than g_dec (below the noisy input), so the criterion rejects it. Evidence: per-seed
    final PSNRs, margins, the control, per-seed runtimes, and (with --figures) the per-epoch
    curves of the first seed."""
    options = {**denoising.QUICK, "methods": PROXY_METHODS}
    seeds = [seed(k) for k in range(3)]
    tables, finals, margins = {}, {}, {}
    for s in seeds:
        started = time.perf_counter()
        tables[s] = denoising.run(options, seed=s, dtype=torch.float64, device=str(device))
        evidence.timings[f"seed_{s}_s"] = round(time.perf_counter() - started, 1)
        final = final_psnr(tables[s])
        finals[s] = {_key(*run): value for run, value in final.items()}
        margins[s] = {lam: final[("g_ae-ls", lam)] - final[("g_dec", lam)]
                      for lam in options["lam"]}
    first = tables[seeds[0]]
    curves, first_final = psnr_by_epoch(first), final_psnr(first)
    noisy = float(first.loc[first["metric"] == "psnr_noisy", "value"].mean())

    lam = denoising.FIG6_LAM
    bug = {**options, "methods": ["g_ae-ls"], "lam": [lam / options["alpha"]]}
    started = time.perf_counter()
    control_table = denoising.run(bug, seed=seeds[0], dtype=torch.float64, device=str(device))
    evidence.timings["control_s"] = round(time.perf_counter() - started, 1)
    control = float(np.mean(list(final_psnr(control_table).values())))
    control_margin = control - first_final[("g_dec", lam)]

    if figures.enabled:
        runs = [(m, value) for m in PROXY_METHODS for value in options["lam"]]
        figures(evidence, draw_curves(curves, runs, noisy,
                                      f"CPU proxy, seed {seeds[0]} (skimage photographs)"),
                "proxy_curves")
    evidence.seeds = seeds
    evidence.measure(noisy_psnr=noisy, final_psnr=finals, ae_ls_minus_dec=margins,
                     control_threshold_bug_psnr=control,
                     control_threshold_bug_minus_dec=control_margin,
                     curves_first_seed={_key(*run): curve_of(curves, *run) for run in first_final})
    evidence.predict(ae_ls_minus_dec=f"> {PROXY_MARGIN_DB} dB for every seed and lam",
                     control_threshold_bug_minus_dec=f"<= {PROXY_MARGIN_DB} dB")
    for s in seeds:
        for value, margin in margins[s].items():
            assert margin > PROXY_MARGIN_DB, (s, value, margins[s])
    assert not control_margin > PROXY_MARGIN_DB, (control, first_final[("g_dec", lam)])
