"""Alternating minimisation on the lasso in the manner of SPORCO's ``BPDNDictLearn``
(Wohlberg, SciPy 2017), on the :class:`DictionaryLearner` interface: the classical
alternating-minimisation baseline of PUDLE (Tolooshams & Ba, TMLR 2023, Algorithm 1).

Each step is a coding step, the lasso of every sample of the batch, and a dictionary step with
unit-norm atoms. The coding step is exact (:func:`udlbench.lasso.solve`) or ADMM as SPORCO's
``sporco.admm.bpdn.BPDN`` runs it (:class:`LassoADMM`); the dictionary step is a projected
gradient step (Algorithm 1) or the constrained method of optimal directions solved by ADMM as
SPORCO's ``sporco.admm.cmod.CnstrMOD`` runs it (:class:`ConstrainedMOD`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from udlbench import gradients, lasso
from udlbench._validation import (
    check_choice,
    check_data,
    check_dictionary,
    check_nonnegative,
    check_positive,
    check_positive_int,
)
from udlbench.operators import soft_threshold
from udlbench.training import CONSTRAINTS, DictionaryLearner

CODERS = ("admm", "exact")
DICTIONARY_STEPS = ("mod", "pgd")


def _check_relax(name: str, value: float) -> float:
    """Over-relaxation factor of ADMM, in (0, 2) (Boyd et al., FnT ML 2011, Sec. 3.4.3)."""
    value = check_positive(name, value)
    if value >= 2:
        raise ValueError(f"{name} must lie in (0, 2); got {value!r}.")
    return value


def _shifted_gram_solver(A: torch.Tensor, rho: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """``B -> B (A^T A + rho I)^{-1}`` for rows B of length M, with A of shape (N, M).

    One Cholesky factorisation of the smaller of ``A^T A + rho I_M`` and ``A A^T + rho I_N``,
    the latter through the matrix inversion lemma
    ``(A^T A + rho I)^{-1} = (I - A^T (A A^T + rho I)^{-1} A) / rho``, the choice SPORCO's
    ``sporco.linalg.cho_factor`` makes.
    """
    N, M = A.shape
    if N >= M:
        factor = torch.linalg.cholesky(A.T @ A + rho * torch.eye(M, dtype=A.dtype, device=A.device))
        return lambda B: torch.cholesky_solve(B.T, factor).T
    factor = torch.linalg.cholesky(A @ A.T + rho * torch.eye(N, dtype=A.dtype, device=A.device))
    return lambda B: (B - torch.cholesky_solve(A @ B.T, factor).T @ A) / rho


class LassoADMM:
    """Scaled-form ADMM for the lasso of every row of X, SPORCO's ``BPDN`` in PyTorch.

    Solves ``min_z 0.5 ||x - D z||^2 + lam ||z||_1`` for every sample x (a row of X, shape
    (n, m); codes Z of shape (n, p)) as ``min 0.5 ||x - D v||^2 + lam ||y||_1`` s.t. ``v = y``
    (Boyd, Parikh, Chu, Peleato & Eckstein, FnT ML 2011, Sec. 6.4), batched over rows:

        V = (X D + rho (Y - U)) (D^T D + rho I)^{-1}
        A = relax V + (1 - relax) Y                 (over-relaxation, Sec. 3.4.3)
        Y = ST_{lam / rho}(A + U)
        U = U + A - Y

    The codes are Y (exactly sparse). ``(D^T D + rho I)`` is factorised once per dictionary
    (:meth:`set_dictionary`). Y and U persist across calls of :meth:`solve`, the warm start of
    SPORCO's dictionary learning; they start at zero, as ``BPDN`` does without ``Y0``. The
    penalty rho is fixed: SPORCO's adaptive rule (``AutoRho``) is not implemented.

    Parameters
    ----------
    lam : float
        Regularisation weight, ``>= 0``.
    rho : float or None
        ADMM penalty, ``> 0``; None gives SPORCO's default ``50 lam + 1``.
    relax : float
        Over-relaxation factor in (0, 2); SPORCO's default ``RelaxParam`` is 1.8.

    References
    ----------
    B. Wohlberg, *SPORCO: A Python package for standard and convolutional sparse
    representations*, Proc. SciPy 2017 (``sporco.admm.bpdn.BPDN``).
    """

    def __init__(self, *, lam: float, rho: float | None = None, relax: float = 1.8) -> None:
        self.lam = check_nonnegative("lam", lam)
        self.rho = 50.0 * self.lam + 1.0 if rho is None else check_positive("rho", rho)
        self.relax = _check_relax("relax", relax)
        self.Y: torch.Tensor | None = None
        self.U: torch.Tensor | None = None

    def reset(self) -> None:
        """Restart from ``Y = U = 0`` at the next :meth:`solve`."""
        self.Y = self.U = None

    def set_dictionary(self, D: torch.Tensor) -> None:
        """Use the dictionary D (m, p) from now on; factorises ``D^T D + rho I``."""
        check_dictionary(D)
        self._D = D.detach().clone()
        self._solve = _shifted_gram_solver(self._D, self.rho)

    def solve(self, X: torch.Tensor, n_iter: int) -> torch.Tensor:
        """Run ``n_iter`` iterations on the samples X (n, m) and return the codes Y (n, p)."""
        if not hasattr(self, "_D"):
            raise RuntimeError("LassoADMM has no dictionary; call set_dictionary(D) first.")
        check_data(X, self._D)
        check_positive_int("n_iter", n_iter)
        shape = (X.shape[0], self._D.shape[1])
        if self.Y is None:
            self.Y = torch.zeros(shape, dtype=X.dtype, device=X.device)
            self.U = torch.zeros_like(self.Y)
        elif tuple(self.Y.shape) != shape:
            raise ValueError(
                f"X has {shape[0]} samples but the warm-started ADMM variables hold "
                f"{self.Y.shape[0]}; call reset() before coding other samples."
            )
        XD = X @ self._D
        Y, U = self.Y, self.U
        for _ in range(n_iter):
            V = self._solve(XD + self.rho * (Y - U))
            A = self.relax * V + (1.0 - self.relax) * Y
            Y = soft_threshold(A + U, self.lam / self.rho)
            U = U + A - Y
        self.Y, self.U = Y, U
        return Y


class ConstrainedMOD:
    """Scaled-form ADMM for the constrained method of optimal directions, SPORCO's ``CnstrMOD``.

    With samples X (n, m) and fixed codes Z (n, p), solves
    ``min_D 0.5 ||X - Z D^T||_F^2`` s.t. every atom (column of D, shape (m, p)) lies on the unit
    sphere (``constraint="sphere"``, SPORCO's set) or in the unit ball (``"ball"``), as
    ``min 0.5 ||X - Z V^T||^2 + iota(G)`` s.t. ``V = G``:

        V = (X^T Z + rho (G - U)) (Z^T Z + rho I)^{-1}
        A = relax V + (1 - relax) G
        G = P(A + U)                                (column-wise projection)
        U = U + A - G

    starting from ``G = D``, the current dictionary, and returning G. The scaled dual U persists
    across calls (SPORCO's warm start) and starts at zero. The least-squares problem is the MOD
    of Engan, Aase & Husoy (ICASSP 1999). On the sphere a zero column of ``A + U`` raises
    (:func:`udlbench.data.normalize_columns`), where SPORCO's ``normalise`` leaves it at zero.

    Parameters
    ----------
    rho : float
        ADMM penalty, ``> 0``. SPORCO 0.2.2 runs ``CnstrMOD`` with rho = 1 by default: its
        initialiser's ``n / 500`` (n samples) never takes effect, because the base class has
        already set rho to 1 and ``set_attr`` does not overwrite a value.
    relax : float
        Over-relaxation factor in (0, 2); SPORCO's default is 1.8.
    constraint : {"sphere", "ball"}

    References
    ----------
    B. Wohlberg, *SPORCO: A Python package for standard and convolutional sparse
    representations*, Proc. SciPy 2017 (``sporco.admm.cmod.CnstrMOD``).
    """

    def __init__(self, *, rho: float, relax: float = 1.8, constraint: str = "sphere") -> None:
        self.rho = check_positive("rho", rho)
        self.relax = _check_relax("relax", relax)
        self.constraint = check_choice("constraint", constraint, list(CONSTRAINTS))
        self.U: torch.Tensor | None = None

    def reset(self) -> None:
        """Restart from ``U = 0`` at the next :meth:`solve`."""
        self.U = None

    def solve(self, X: torch.Tensor, Z: torch.Tensor, D: torch.Tensor, n_iter: int) -> torch.Tensor:
        """Run ``n_iter`` iterations from the dictionary D (m, p) with codes Z (n, p) of X (n, m)
        and return the new dictionary (m, p)."""
        check_dictionary(D)
        check_data(X, D)
        check_positive_int("n_iter", n_iter)
        project = CONSTRAINTS[self.constraint]
        solve = _shifted_gram_solver(Z, self.rho)
        XZ = X.T @ Z
        G = D
        U = torch.zeros_like(D) if self.U is None else self.U
        for _ in range(n_iter):
            V = solve(XZ + self.rho * (G - U))
            A = self.relax * V + (1.0 - self.relax) * G
            G = project(A + U)
            U = U + A - G
        self.U = U
        return G


class SporcoAM(DictionaryLearner):
    """Alternating minimisation on the lasso (Tolooshams & Ba, TMLR 2023, Algorithm 1), with the
    ADMM steps of SPORCO's ``BPDNDictLearn`` (Wohlberg, SciPy 2017).

    For the batch X (n, m) and the dictionary D (m, p), one update (SPORCO's outer iteration) is

    1. coding: ``Z = argmin_Z 0.5 ||X - Z D^T||_F^2 + lam ||Z||_1`` (every row), exactly
       (``coder="exact"``, :func:`udlbench.lasso.solve`, certified) or by ``n_coding_iter``
       iterations of :class:`LassoADMM` (``coder="admm"``);
    2. dictionary: ``min_D 0.5 ||X - Z D^T||_F^2`` over unit-norm atoms, by ``n_dict_iter``
       iterations of :class:`ConstrainedMOD` (``dictionary_step="mod"``) or by ``n_dict_iter``
       projected gradient steps ``D <- P(D - lr (Z D^T - X)^T Z / n)`` (``"pgd"``, the update of
       Algorithm 1 followed by the atom constraint).

    After :meth:`fit`, ``lasso_admm_`` (:class:`LassoADMM`, whose ``Y`` holds the codes of the
    last ADMM coding step) and ``mod_admm_`` (:class:`ConstrainedMOD`) hold the ADMM states.
    With ``warm_start`` the ADMM variables (the codes' Y and U, the dictionary step's dual U)
    carry over from one update to the next, as SPORCO's ``DictLearn`` does; this needs the same
    samples at every update, so ``coder="admm"`` with ``warm_start=True`` requires full batches.
    The recorded loss is the batch mean of the lasso objective
    ``0.5 ||x - D_new z||^2 + lam ||z||_1`` at the codes of the update's coding step and the
    dictionary after it: SPORCO's ``ObjFun`` with ``AccurateDFid=True``, divided by n (SPORCO's
    default ``AccurateDFid=False`` reports the coding step's objective, with the dictionary
    before the update).

    ``SporcoAM(coder="admm", dictionary_step="mod")`` with its defaults is ``BPDNDictLearn``
    with its defaults except for the adaptive penalties (``AutoRho``, on by default in SPORCO,
    fixed rho here) and the residual-based early stop of the inner loops (``RelStopTol``; here
    the inner loops always run ``n_coding_iter`` and ``n_dict_iter`` iterations).

    Parameters
    ----------
    lam : float
        Regularisation weight, ``>= 0`` (``> 0`` with ``coder="exact"``).
    coder : {"admm", "exact"}
    dictionary_step : {"mod", "pgd"}
    n_coding_iter : int
        ADMM iterations of the coding step per update (SPORCO's ``BPDN.MaxMainIter``, 1).
    rho : float or None
        Penalty of the coding ADMM; None gives ``50 lam + 1`` (SPORCO's default).
    relax : float
        Over-relaxation of the coding ADMM, in (0, 2) (SPORCO's ``RelaxParam``, 1.8).
    n_dict_iter : int
        Iterations of the dictionary step per update (SPORCO's ``CMOD.MaxMainIter``, 1).
    dict_rho : float
        Penalty of the MOD ADMM, ``> 0`` (1, the value SPORCO 0.2.2 uses by default; see
        :class:`ConstrainedMOD`).
    dict_relax : float
        Over-relaxation of the MOD ADMM, in (0, 2) (1.8).
    warm_start : bool
        Keep the ADMM variables across updates (default True, as SPORCO).
    n_encode_iter : int
        ADMM iterations, from zero, of :meth:`code` with ``coder="admm"`` (``encode`` and the
        code-error records), which has no warm state for arbitrary samples.
    lr : float
        Step of ``dictionary_step="pgd"``; unused by ``"mod"``.
    **loop_options
        ``n_epochs``, ``batch_size``, ``max_steps``, ``record_every``, ``seed``, ``constraint``
        of :class:`udlbench.training.DictionaryLearner` (no optimiser is used).

    References
    ----------
    B. Tolooshams and D. Ba, *Stable and Interpretable Unrolled Dictionary Learning*, TMLR 2023,
    Algorithm 1. B. Wohlberg, *SPORCO: A Python package for standard and convolutional sparse
    representations*, Proc. SciPy 2017 (``sporco.dictlrn.bpdndl.BPDNDictLearn``).
    """

    def __init__(
        self,
        *,
        lam: float = 0.2,
        coder: str = "admm",
        dictionary_step: str = "mod",
        n_coding_iter: int = 1,
        rho: float | None = None,
        relax: float = 1.8,
        n_dict_iter: int = 1,
        dict_rho: float = 1.0,
        dict_relax: float = 1.8,
        warm_start: bool = True,
        n_encode_iter: int = 1000,
        lr: float = 1.0,
        **loop_options,
    ) -> None:
        for fixed in ("optimizer", "adam_eps"):
            if fixed in loop_options:
                raise ValueError(
                    f"SporcoAM uses no optimiser; got {fixed}={loop_options[fixed]!r}. Its "
                    "dictionary step is dictionary_step='mod' or 'pgd' (step lr)."
                )
        super().__init__(lr=check_positive("lr", lr), **loop_options)
        self.lam = check_nonnegative("lam", lam)
        self.coder = check_choice("coder", coder, CODERS)
        if self.coder == "exact" and self.lam == 0:
            raise ValueError(
                "coder='exact' needs lam > 0 (the lasso has no unique solution at lam = 0); "
                f"got lam={lam!r}."
            )
        self.dictionary_step = check_choice("dictionary_step", dictionary_step, DICTIONARY_STEPS)
        self.n_coding_iter = check_positive_int("n_coding_iter", n_coding_iter)
        self.rho = None if rho is None else check_positive("rho", rho)
        self.relax = _check_relax("relax", relax)
        self.n_dict_iter = check_positive_int("n_dict_iter", n_dict_iter)
        self.dict_rho = check_positive("dict_rho", dict_rho)
        self.dict_relax = _check_relax("dict_relax", dict_relax)
        if not isinstance(warm_start, bool):
            raise ValueError(f"warm_start must be True or False; got {warm_start!r}.")
        self.warm_start = warm_start
        self.n_encode_iter = check_positive_int("n_encode_iter", n_encode_iter)

    def check_start(self, X: torch.Tensor, D0: torch.Tensor) -> None:
        """Warm-started ADMM codes need the same samples at every update."""
        n = X.shape[0]
        if (
            self.coder == "admm"
            and self.warm_start
            and self.batch_size is not None
            and self.batch_size < n
        ):
            raise ValueError(
                f"warm_start=True with coder='admm' keeps per-sample ADMM variables and needs "
                f"full batches; got batch_size={self.batch_size} for n={n} samples. Use "
                "batch_size=None or warm_start=False."
            )

    def start(self, X: torch.Tensor, D: torch.nn.Parameter) -> None:
        """Fresh ADMM variables for a new fit."""
        self.lasso_admm_ = LassoADMM(lam=self.lam, rho=self.rho, relax=self.relax)
        self.mod_admm_ = ConstrainedMOD(
            rho=self.dict_rho, relax=self.dict_relax, constraint=self.constraint
        )

    def code(self, X: torch.Tensor, D: torch.Tensor, step: int) -> torch.Tensor:
        """Lasso codes of X under D: certified (``coder="exact"``) or ``n_encode_iter`` ADMM
        iterations from zero (``coder="admm"``)."""
        if self.coder == "exact":
            return lasso.solve(X, D, lam=self.lam)
        coding = LassoADMM(lam=self.lam, rho=self.rho, relax=self.relax)
        coding.set_dictionary(D)
        with torch.no_grad():
            return coding.solve(X, self.n_encode_iter)

    def update(self, X: torch.Tensor, D: torch.nn.Parameter, step: int) -> float:
        """One coding step and one dictionary step; returns the batch mean of the lasso
        objective at the new codes and the new dictionary."""
        with torch.no_grad():
            D_old = D.detach()
            if self.coder == "exact":
                Z = lasso.solve(X, D_old, lam=self.lam)
            else:
                if not self.warm_start:
                    self.lasso_admm_.reset()
                self.lasso_admm_.set_dictionary(D_old)
                Z = self.lasso_admm_.solve(X, self.n_coding_iter)
            if self.dictionary_step == "mod":
                if not self.warm_start:
                    self.mod_admm_.reset()
                D_new = self.mod_admm_.solve(X, Z, D_old, self.n_dict_iter)
            else:
                project = CONSTRAINTS[self.constraint]
                D_new = D_old
                for _ in range(self.n_dict_iter):
                    D_new = project(D_new - self.lr * gradients.analytic(X, D_new, Z))
            D.copy_(D_new)
            return float(lasso.objective(X, D, Z, lam=self.lam).mean())
