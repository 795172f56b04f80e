"""What every module of the asv suite shares: the profile, the problem sizes, the methods' settings,
thread pinning, the device and the synchronised clock boundary.

The profile is read from the environment variable ``UDLBENCH_ASV_PROFILE``:

* ``quick`` (the default): the small case only, the P-small configuration of THEOREMS.md
  (``m = 50``, ``p = 100``, ``s = 5``, ``tau_B = 0.55 / ln 50``) on ``n = 200`` samples; a quick asv
  run of the whole suite (``scripts/asv_quick.sh``) takes under a minute on two cores;
* ``full``: adds the case of Tolooshams & Ba (TMLR 2023, App. C.2), ``m = 1000``, ``p = 1500``,
  20-sparse codes, ``tau_B = 1 / ln m``, on ``n = 100`` samples (two of the paper's batches of
  50), for a dedicated machine.

Both use the papers' ``lam = 0.2``, ``alpha = 0.2`` and ``T = 100``.

A case is named by its sizes (``"m50-p100-n200"``), so that a number in the asv history always
refers to one problem, whichever profile produced it. ``UDLBENCH_ASV_DEVICE`` (default ``cpu``)
picks the torch device; timings on a GPU synchronise before the clock stops.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

# torch.optim builds its first optimiser by importing torch._dynamo (about 2 s); importing it here,
# once in asv's forkserver, keeps that cost out of the setup of every forked benchmark.
import torch._dynamo  # noqa: F401

from baselines.noodl import NOODL
from baselines.online import OnlineDictionaryLearning
from baselines.sporco_am import SporcoAM
from udlbench._validation import check_choice
from udlbench.data import make_sparse, perturb
from udlbench.training import (
    CONSTRAINTS,
    PUDLE,
    AlternatingMinimization,
    DictionaryLearner,
)

PROFILES = ("quick", "full")
LAM = 0.2
ALPHA = 0.2
N_LAYERS = 100
METHODS = ("pudle", "am", "noodl", "sporco-am", "online")


@dataclass(frozen=True)
class Case:
    """A sparse-model problem: ``n`` samples of dimension ``m``, ``p`` atoms, ``s``-sparse codes,
    learning started at ``perturb(D*, tau)``."""

    m: int
    p: int
    s: int
    n: int
    tau: float

    @property
    def label(self) -> str:
        return f"m{self.m}-p{self.p}-n{self.n}"


SMALL = Case(m=50, p=100, s=5, n=200, tau=0.55 / math.log(50))
PAPER = Case(m=1000, p=1500, s=20, n=100, tau=1.0 / math.log(1000))


def profile() -> str:
    """The profile named by ``UDLBENCH_ASV_PROFILE``: ``"quick"`` (default) or ``"full"``."""
    return check_choice(
        "UDLBENCH_ASV_PROFILE", os.environ.get("UDLBENCH_ASV_PROFILE", "quick"), PROFILES
    )


def cases() -> list[Case]:
    """The cases of the profile: the small one, plus the paper's size in ``full``."""
    return [SMALL] if profile() == "quick" else [SMALL, PAPER]


CASE_LABELS = [case.label for case in cases()]
TIMEOUT = 120.0 if profile() == "quick" else 1800.0


def case(label: str) -> Case:
    """The case whose label is ``label`` (an asv parameter value)."""
    by_label = {c.label: c for c in (SMALL, PAPER)}
    return by_label[check_choice("case", label, list(by_label))]


def device() -> torch.device:
    """The device named by ``UDLBENCH_ASV_DEVICE`` (default ``cpu``)."""
    name = os.environ.get("UDLBENCH_ASV_DEVICE", "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(
            f"UDLBENCH_ASV_DEVICE must name a torch device such as 'cpu', 'cuda' or 'cuda:1'; "
            f"got {name!r}."
        ) from None


def pin_threads() -> None:
    """One intra-op and one inter-op thread, so that timings do not depend on the core count."""
    torch.set_num_threads(1)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # settable once per process, before any inter-op work
            pass


def synchronize(dev: torch.device) -> None:
    """Wait for the queued kernels of ``dev`` (a GPU) so that the clock sees their whole cost."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@dataclass(frozen=True)
class Problem:
    """Data ``X`` (n, m) of the sparse model, its true dictionary ``D_star`` (m, p) and the
    starting dictionary ``D0`` (m, p)."""

    X: torch.Tensor
    D_star: torch.Tensor
    D0: torch.Tensor


def problem(label: str, *, dtype: torch.dtype, n: int | None = None, seed: int = 0) -> Problem:
    """The case's data (``n`` samples instead of the case's when given), on :func:`device`.

    ``D0 = perturb(D_star, tau)``: the close initialisation of Tolooshams & Ba (TMLR 2023,
    App. C.2, ``tau_B ~ 1 / log m``).
    """
    c = case(label)
    data = make_sparse(c.m, c.p, c.n if n is None else n, c.s, seed=seed, dtype=dtype,
                       device=device())
    return Problem(data.X, data.D_star, perturb(data.D_star, c.tau, seed=seed + 1))


def learner(method: str, *, max_steps: int | None = None) -> DictionaryLearner:
    """The method's learner with the settings the suite tracks (full batches, one epoch per step).

    * ``pudle``: PUDLE with g_ae-ls, ``lam = 0.2``, ``alpha = 0.2``, ``T = 100``, Adam (eps 1e-3)
      with ``lr = 1e-2`` (Tolooshams & Ba, TMLR 2023, Alg. 2 and App. C.2, whose 1e-3 barely
      moves in 20 steps);
    * ``am``: alternating minimisation with certified lasso codes and plain gradient steps of
      size 1 along g_hat (TMLR 2023, Alg. 1);
    * ``noodl``: NOODL (Rambhatla, Li & Haupt, ICLR 2019, Alg. 1) with ``eta_A = 0.3`` and
      ``tau = 0.3`` (with the authors' ``eta_A = 15`` the error grows at the small size);
    * ``sporco-am``: SPORCO's ``BPDNDictLearn`` defaults (Wohlberg, SciPy 2017), ``lam = 0.2``
      (at the paper's size, with fewer samples than atoms, its MOD step is underdetermined and
      the error grows: a number to keep, not a quality);
    * ``online``: online dictionary learning (Mairal et al., ICML 2009) with its defaults.
    """
    check_choice("method", method, METHODS)
    loop = dict(n_epochs=max_steps or 1, max_steps=max_steps)
    if method == "pudle":
        return PUDLE(lam=LAM, n_layers=N_LAYERS, alpha=ALPHA, lr=1e-2, **loop)
    if method == "am":
        return AlternatingMinimization(lam=LAM, lr=1.0, optimizer="sgd", **loop)
    if method == "noodl":
        return NOODL(eta_A=0.3, tau=0.3, **loop)
    if method == "sporco-am":
        return SporcoAM(lam=LAM, **loop)
    return OnlineDictionaryLearning(**loop)


def started(method: str, data: Problem) -> tuple[DictionaryLearner, torch.nn.Parameter]:
    """A learner ready for its first ``update(data.X, D, 0)``: options checked, state reset, and
    the dictionary parameter ``D`` at ``data.D0`` under the learner's atom constraint."""
    model = learner(method)
    D = torch.nn.Parameter(CONSTRAINTS[model.constraint](data.D0.clone()))
    model.check_start(data.X, D.detach())
    model.start(data.X, D)
    return model, D
