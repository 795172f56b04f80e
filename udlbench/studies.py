"""Studies: experiments that are not one dictionary learner on synthetic data.

The real-data results of the papers (image denoising, Poisson denoising, interpretability,
clustering) train and evaluate their own models and report their own metrics. Each lives in a
module with the same contract, so the runner stores them and the report shows them like any other
experiment:

* ``QUICK`` and ``FULL``: the options of the two profiles (plain values);
* ``check(options)``: raises ValueError naming a bad option;
* ``run(options, *, seed, dtype, device, progress=False) -> DataFrame``: the whole study for one
  seed, as a tidy table (one row per recorded point), deterministic for the seed;
* ``render(results, out_dir) -> str``: figures (PNG and SVG) and tables (CSV) of the concatenated
  seeds into ``out_dir``, and an HTML ``<section>`` that links to them by bare file names and sets
  the paper's published numbers next to the measured ones.

An experiment of ``kind="study"`` names the study as each method's ``method`` (see
:data:`STUDIES`) and holds its options next to it.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

import pandas as pd
import torch

#: study name -> (module, one-line description).
STUDIES: dict[str, tuple[str, str]] = {
    "encoder-probes": (
        "udlbench.probes",
        "code and gradient errors against depth at a fixed D (TMLR 2023, Figs 2 and 3)",
    ),
    "malezieux-figs": (
        "udlbench.malezieux",
        "unstable Jacobians, gradient directions, AM vs DDL (Malezieux et al., Figs 1-4, 6)",
    ),
    "group-fig3": (
        "udlbench.group_figures",
        "group-sparse against sparse shallow autoencoder, error against epochs (Theodosis, Fig. 3)",
    ),
    "dcea-fig3": (
        "udlbench.dcea_figures",
        "binomial convolutional dictionary learning, DCEA against BCOMP (ICML 2020, Fig. 3)",
    ),
    "dcea-fig5": (
        "udlbench.dcea_figures",
        "model misspecification, DCEA-g against DCEA-b (ICML 2020, Fig. 5)",
    ),
    "gaussian-denoising": (
        "udlbench.denoising",
        "convolutional unrolled denoising of skimage photographs (TMLR 2023, Sec. 4.3, Table 1)",
    ),
    "poisson-denoising": (
        "udlbench.poisson",
        "DCEA Poisson denoising against Anscombe + wavelet (ICML 2020, Sec. 5.1, Table 2)",
    ),
    "digits-interpretability": (
        "udlbench.digits_interpretability",
        "stationary dictionary and sample contributions on digits (TMLR 2023, Thm 5.1, Figs 8-10)",
    ),
    "digits-clustering": (
        "udlbench.clustering",
        "group-sparse codes to cluster digits, k-means and spectral (Theodosis et al., Table 1)",
    ),
}


def module(name: str) -> ModuleType:
    """The module implementing study ``name``."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; choose from {sorted(STUDIES)}.")
    return importlib.import_module(STUDIES[name][0])


def check(name: str, options: dict) -> None:
    """Validate a study's options (ValueError naming the option)."""
    module(name).check(options)


def run(name: str, options: dict, *, seed: int, dtype: str, device: str) -> pd.DataFrame:
    """Run study ``name`` for one seed; its tidy table."""
    return module(name).run(options, seed=seed, dtype=getattr(torch, dtype), device=device)


_RELATIVE_LINK = re.compile(r"""(src|href)=(['"])(?![a-z]+:|/|#)([^'"]+)\2""")


def render(name: str, results: pd.DataFrame, output: Path, folder: str) -> str:
    """Render study ``name`` into ``output / folder`` and return its HTML fragment with the links
    rewritten relative to ``output`` (where the report's index.html lives)."""
    target = Path(output) / folder
    target.mkdir(parents=True, exist_ok=True)
    return relink(module(name).render(results, target), folder)


def relink(fragment: str, folder: str) -> str:
    """Prefix ``folder/`` to the relative ``src`` / ``href`` links of an HTML fragment (absolute
    paths, URLs and in-page anchors are left alone)."""
    return _RELATIVE_LINK.sub(lambda m: f"{m[1]}={m[2]}{folder}/{m[3]}{m[2]}", fragment)


__all__ = ["STUDIES", "check", "module", "relink", "render", "run"]
