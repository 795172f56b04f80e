"""The generative models a sweep draws its data from, by name, with the initial dictionary.

``build(options, seed, dtype=..., device=...)`` returns a :class:`Problem`: data ``X`` (n, m),
the true dictionary ``D_star`` (m, p) and codes ``Z_star`` (n, p), and the start ``D0``. The data
use ``seed``, the initialisation ``seed + 1`` (as ``udlbench run``'s quick start does).

Initialisations (option ``init``):

* ``close``: ``perturb(D*, tau)``, PUDLE's close start (Tolooshams & Ba, TMLR 2023, App. C.1), with
  ``tau`` defaulting to ``0.55 / ln m``;
* ``random``: a Gaussian dictionary with unit atoms;
* ``arora``: the pairwise initialisation of Arora, Ge, Ma & Moitra (COLT 2015) computed from X
  (``baselines.arora.arora_init``), used by PUDLE's Fig. 15.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch

from udlbench import data

INITS = ("close", "random", "arora")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Problem:
    X: torch.Tensor
    D_star: torch.Tensor
    Z_star: torch.Tensor
    D0: torch.Tensor


def _initial_dictionary(X, D_star, init: str, tau: float | None, seed: int) -> torch.Tensor:
    if init == "close":
        m = D_star.shape[0]
        return data.perturb(D_star, 0.55 / math.log(m) if tau is None else tau, seed=seed)
    if init == "random":
        g = torch.Generator().manual_seed(seed)
        D0 = torch.randn(D_star.shape, generator=g, dtype=torch.float64)
        return data.normalize_columns(D0).to(D_star)
    from baselines.arora import arora_init

    return arora_init(X, D_star.shape[1], seed=seed).to(D_star)


def sparse(
    *,
    m: int,
    p: int,
    n: int,
    s: int,
    dictionary: str = "gaussian",
    amplitude: list[float] | str = (1.0, 2.0),
    sign: str = "iid",
    snr_db: float | None = None,
    init: str = "close",
    tau: float | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> Problem:
    """The sparse linear model of PUDLE (:func:`udlbench.data.make_sparse`) and a start."""
    if init not in INITS:
        raise ValueError(f"dataset option init={init!r} is unknown; choose from {list(INITS)}.")
    amplitude = tuple(amplitude) if isinstance(amplitude, list | tuple) else amplitude
    problem = data.make_sparse(
        m, p, n, s, dictionary=dictionary, amplitude=amplitude, sign=sign, snr_db=snr_db,
        seed=seed, dtype=dtype, device=device,
    )
    D0 = _initial_dictionary(problem.X, problem.D_star, init, tau, seed + 1)
    return Problem(problem.X, problem.D_star, problem.Z_star, D0)


GENERATORS = {"sparse": sparse}


def check(options: dict) -> tuple[str, dict]:
    """The generator named by an experiment's ``dataset`` section and its options; raises
    ValueError naming an unknown generator or option (with the valid ones)."""
    options = dict(options)
    generator = options.pop("generator", "sparse")
    if generator not in GENERATORS:
        raise ValueError(
            f"dataset generator {generator!r} is unknown; choose from {sorted(GENERATORS)}."
        )
    allowed = [
        name for name in inspect.signature(GENERATORS[generator]).parameters
        if name not in ("seed", "dtype", "device")
    ]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"dataset {generator!r} has no option(s) {unknown}; its options are {sorted(allowed)}."
        )
    return generator, options


def build(options: dict, seed: int, *, dtype: str = "float32", device: str = "cpu") -> Problem:
    """The problem an experiment's ``dataset`` section describes, drawn with ``seed``."""
    generator, options = check(options)
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is unknown; choose from {sorted(DTYPES)}.")
    return GENERATORS[generator](**options, seed=seed, dtype=DTYPES[dtype], device=device)
