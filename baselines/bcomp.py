"""BCOMP: binomial convolutional orthogonal matching pursuit (Tolooshams, Song, Temereanca & Ba,
ICML 2020, Appendix Sec. 8, Algorithm 2), the l0 baseline of DCEA for exponential-family
convolutional dictionary learning.

Model. Each of n examples is a row ``y_j`` of counts in ``{0, .., M}^N`` drawn as
``y_j ~ Binomial(M, sigmoid(eta_j))`` entrywise, with linear predictor
``eta_j = a_j + sum_c h_c * x_c^j`` (full 1-D convolution): C filters ``h_c`` of length K, the
non-negative codes ``x_c^j`` of length ``P = N - K + 1`` and an offset ``a_j`` (ICML 2020, Sec. 2
and Table 1; ``udlbench.data.make_conv_expfamily`` draws such data with a constant baseline
logit). BCOMP minimises the negative log-likelihood ``sum_j l(x^j)`` of eq. 2 with the l1 penalty
replaced by the constraint ``||x^j||_0 <= T``, alternating G times

* CSC (Algorithm 2, lines 3-11): per example, ``x = 0`` then T greedy picks; pick t takes the
  (filter, shift) of largest correlation ``(h_c * r)[n]`` with the working observation
  ``r = y / M - sigmoid(eta)`` (Table 1's ``y - M sigmoid(Hx)`` divided by M, which leaves the
  argmax unchanged; no absolute value since the codes are non-negative) among the atoms not yet
  picked, and is followed by a refit: the binomial log-likelihood is maximised over the picked
  coefficients subject to ``x >= 0`` (line 10);
* CDU (lines 12-17): with the codes fixed, the filters minimise the negative log-likelihood.

Choices the paper leaves open, made here:

* Offset. Algorithm 2 has no bias term, but the simulated data of Sec. 5.2.1 need one (a
  baseline firing rate; the neural-data analysis estimates one per neuron, App. Sec. 10).
  ``baseline=None`` (default) fits one unconstrained intercept ``a_j`` per example jointly with
  the codes in every refit (as in binomial greedy pursuit, Lozano et al., 2011); a number is a
  known offset shared by all examples.
* Refit solver. A batched projected Newton method (Bertsekas, SIAM J. Control Optim. 1982) with
  an Armijo search along the projection arc, run on all examples at once; it stops when the KKT
  residual ``max_i |x_i - max(0, x_i - g_i)|`` (``|g_i|`` for the intercept), with ``g`` the
  gradient of the per-trial objective ``l / M``, falls to ``refit_tol``. At that point the
  refit is optimal on the picked atoms: zero gradient where ``x_i > 0``, non-negative gradient
  where ``x_i = 0``. A refit that reaches ``n_refit_iter`` first raises a
  :class:`ConvergenceWarning` (this happens when the maximum likelihood is at infinity, e.g. an
  atom sitting under counts that all equal M).
* CDU constraint. The paper writes ``||h_c|| = 1`` and calls the problem convex; we solve the
  convex relaxation ``||h_c|| <= 1`` by projected gradient with backtracking (stopped when the
  gradient mapping falls to ``cdu_tol``), then rescale every filter to unit norm and its codes by
  the inverse factor. ``H x`` and the likelihood are unchanged by the rescaling, so the filters
  are unit norm and the loss is at most that of the unit-sphere problem (the sphere lies in the
  ball); the next CSC refits the codes from scratch anyway (line 4).

Interface. BCOMP does not fit :class:`udlbench.training.DictionaryLearner`: that loop takes dense
data (n, m) and dictionaries (m, p) whose atoms are as long as the samples, and runs mini-batch
steps; BCOMP takes signals (n, N) longer than its filters (C, K) and makes G full passes, each
one CSC over every example followed by one CDU. It keeps the loop's contract:
``fit(Y, H0, *, H_star=None, callback=None)`` records one row per outer iteration in
``records_`` (``step`` = ``epoch`` = g, row 0 being the initial filters; ``loss`` = the mean over
examples of ``l(x^j) = sum_n M softplus(eta_jn) - y_jn eta_jn``, the negative log-likelihood of
eq. 2 without the constant ``-log binom(M, y)``; ``time`` = cumulative wall time of the CSC and
CDU steps, the clock paused while metrics are evaluated and read after a synchronisation on
CUDA; ``refit_kkt`` and ``cdu_gradient_map``, the convergence measures of both steps; with
``H_star`` the filter errors), ``callback(record, H)`` may stop the loop by returning True, and
``encode(Y)`` gives codes with the learned filters.

Filter error. ``error_filter_c`` is the sine ``sqrt(1 - <h_c, h_hat>^2)`` between true filter c and
the learned filter matched to it (permutation and sign, :func:`udlbench.metrics.atom_sines` on the
filters as (K, C) dictionaries), the paper's ``err(h_c, h_hat_c)`` of Sec. 5.2.1; ``error`` is
their maximum and ``error_median`` their median (THEOREMS.md, E-SIM). Shifts are not aligned,
as in the paper: a learned filter that is a shifted copy of the true one counts as an error. A
local method started near the truth does not drift to shifted copies, and any error below the
sine between a filter and its shift by one sample rules them out.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable
from typing import NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F

from udlbench import metrics
from udlbench._validation import check_positive, check_positive_int, check_same_kind, check_tensor
from udlbench.encoders import working_residual
from udlbench.training import clock

Callback = Callable[[dict, torch.Tensor], bool | None]

# Armijo constant and number of step halvings of the line searches (refit and CDU).
_ARMIJO = 1e-4
_HALVINGS = 40
# Coefficients below this (and below the current KKT residual) with a positive gradient are held
# at zero by the projected Newton step (Bertsekas, 1982, the epsilon-active set).
_EPSILON_ACTIVE = 1e-3


class ConvergenceWarning(UserWarning):
    """A BCOMP refit reached its iteration cap before its KKT residual met the tolerance."""


class Coding(NamedTuple):
    """Output of the CSC step of BCOMP for n examples of length N and C filters of length K.

    Attributes
    ----------
    codes : Tensor of shape (n, C, N - K + 1)
        Non-negative codes, at most T non-zeros per example.
    intercept : Tensor of shape (n,)
        The offsets ``a_j``: fitted per example, or the known baseline repeated.
    support : Tensor of shape (n, T), int64
        The picked atoms in pick order, as flat indices ``c * (N - K + 1) + shift`` into
        ``codes[j].flatten()``; a picked atom may have a zero coefficient.
    kkt : Tensor of shape (n,)
        KKT residual of the last refit of each example (see the module docstring).
    """

    codes: torch.Tensor
    intercept: torch.Tensor
    support: torch.Tensor
    kkt: torch.Tensor


def binomial_nll(Y: torch.Tensor, eta: torch.Tensor, trials: int) -> torch.Tensor:
    """``l = sum_n M softplus(eta_n) - y_n eta_n`` per row: the binomial negative log-likelihood of
    counts ``Y`` (n, N) with logits ``eta`` (n, N), without ``-log binom(M, y)`` (ICML 2020,
    eq. 2 and Table 1, ``B(z) = -1^T log(1 - z)`` with ``z = sigmoid(eta)``). Shape (n,)."""
    return (trials * F.softplus(eta) - Y * eta).sum(dim=-1)


def _per_trial_objective(target: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """``l / M`` with ``target = Y / M``, summed over the last dimension."""
    return (F.softplus(eta) - target * eta).sum(dim=-1)


def _kkt_residual(x: torch.Tensor, grad: torch.Tensor, constrained: torch.Tensor) -> torch.Tensor:
    """``max_i |x_i - max(0, x_i - g_i)|`` (``|g_i|`` for unconstrained coordinates) per row."""
    residual = torch.where(constrained, x - (x - grad).clamp(min=0), grad)
    return residual.abs().amax(dim=-1)


def refit(
    target: torch.Tensor,
    atoms: torch.Tensor,
    x: torch.Tensor,
    constrained: torch.Tensor,
    *,
    offset: float = 0.0,
    n_iter: int = 50,
    tol: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Binomial GLM fit on given atoms, ``x_i >= 0`` where constrained (Algorithm 2, line 10).

    Minimises, for every example j independently, the per-trial negative log-likelihood

        f_j(x) = sum_n softplus(eta_jn) - target_jn eta_jn,   eta_j = offset + atoms_j^T x,

    over ``x`` with ``x_i >= 0`` for the constrained coordinates, by projected Newton steps
    (Bertsekas, SIAM J. Control Optim. 1982): coordinates at (or within ``min(1e-3, KKT)`` of)
    zero with a positive gradient take a scaled gradient step, the others a Newton step on the
    reduced Hessian, and an Armijo search along the projection arc picks the step. Stops when
    every example's KKT residual is at most ``tol`` or after ``n_iter`` Newton steps.

    Parameters
    ----------
    target : Tensor of shape (n, N)
        Counts divided by the number of trials, in [0, 1].
    atoms : Tensor of shape (n, q, N)
        The q regressors of each example as rows (the picked atoms ``H_i``, and a row of ones for
        a fitted intercept).
    x : Tensor of shape (n, q)
        Starting coefficients (feasible: non-negative where constrained).
    constrained : Tensor of shape (q,), bool
        Which coefficients are constrained to be non-negative.
    offset : float
        Known constant added to the linear predictor.
    n_iter : int
        Maximum number of Newton steps.
    tol : float
        KKT tolerance, in units of the per-trial gradient.

    Returns
    -------
    x : Tensor of shape (n, q)
    kkt : Tensor of shape (n,)
        The KKT residuals at the returned ``x``.
    """
    q = x.shape[1]
    eye = torch.eye(q, dtype=x.dtype, device=x.device)
    slack = 10 * torch.finfo(x.dtype).eps
    for iteration in range(n_iter + 1):
        eta = offset + torch.bmm(x.unsqueeze(1), atoms).squeeze(1)
        mu = torch.sigmoid(eta)
        grad = torch.bmm(atoms, (mu - target).unsqueeze(2)).squeeze(2)
        kkt = _kkt_residual(x, grad, constrained)
        running = kkt > tol
        if iteration == n_iter or not bool(running.any()):
            break
        weights = mu * (1 - mu)
        hessian = torch.bmm(atoms * weights.unsqueeze(1), atoms.transpose(1, 2))
        epsilon = kkt.clamp(max=_EPSILON_ACTIVE).unsqueeze(1)
        bound = constrained & (x <= epsilon) & (grad > 0)
        free = ~bound
        diagonal = hessian.diagonal(dim1=1, dim2=2)
        reduced = hessian * (free.unsqueeze(2) & free.unsqueeze(1)) + torch.diag_embed(
            torch.where(bound, diagonal, 0.0)
        )
        jitter = torch.finfo(x.dtype).eps * q * diagonal.amax(dim=1)
        reduced = reduced + jitter.reshape(-1, 1, 1) * eye
        direction = -torch.linalg.solve(reduced, grad)
        f0 = _per_trial_objective(target, eta)
        step = torch.ones_like(f0)
        pending = running
        x_next = x
        for _ in range(_HALVINGS):
            trial = x + step.unsqueeze(1) * direction
            trial = torch.where(constrained, trial.clamp(min=0), trial)
            f = _per_trial_objective(
                target, offset + torch.bmm(trial.unsqueeze(1), atoms).squeeze(1)
            )
            decrease = _ARMIJO * (grad * (trial - x)).sum(dim=1)
            accepted = f <= f0 + decrease + slack * f0.abs()
            x_next = torch.where((pending & accepted).unsqueeze(1), trial, x_next)
            pending = pending & ~accepted
            if not bool(pending.any()):
                break
            step = torch.where(pending, step / 2, step)
        x = x_next
    return x, kkt


def _unit_rows(H: torch.Tensor) -> torch.Tensor:
    return H / torch.linalg.vector_norm(H, dim=1, keepdim=True)


def _project_ball(H: torch.Tensor) -> torch.Tensor:
    """Each filter (row) onto the unit ball."""
    return H / torch.linalg.vector_norm(H, dim=1, keepdim=True).clamp(min=1.0)


def _correlate(residual: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """``H^T r``: correlations ``(h_c * r)[shift]`` of signals (n, N) with filters (C, K), as
    (n, C, N - K + 1). The same map as :meth:`udlbench.dictionaries.Convolutional.adjoint`, as a
    matrix product of sliding windows, several times faster than ``conv1d`` in float64 on CPU."""
    return (residual.unfold(1, H.shape[1], 1) @ H.T).transpose(1, 2)


class _SparseCodes:
    """Codes (n, C, P) kept as their non-zeros, for the linear predictor and its filter gradient
    in O(nnz K) operations (the locality of the filters, ICML 2020, App. Sec. 8)."""

    def __init__(self, codes: torch.Tensor, intercept: torch.Tensor, length: int, K: int) -> None:
        rows, self.filters, shifts = codes.nonzero(as_tuple=True)
        self.values = codes[rows, self.filters, shifts].unsqueeze(1)
        self.columns = shifts.unsqueeze(1) + torch.arange(K, device=codes.device)
        self.rows = rows.unsqueeze(1).expand_as(self.columns)
        self.offset = intercept.unsqueeze(1).expand(-1, length)

    def predictor(self, H: torch.Tensor) -> torch.Tensor:
        """``eta = a + sum_c h_c * x_c``, shape (n, N)."""
        eta = self.offset.clone()
        return eta.index_put_((self.rows, self.columns), self.values * H[self.filters], True)

    def filter_gradient(self, weights: torch.Tensor, C: int) -> torch.Tensor:
        """``sum_j sum_c`` of the correlations of ``weights`` (n, N) with the codes, (C, K): the
        gradient over the filters of ``sum_jn weights_jn eta_jn``."""
        windows = self.values * weights[self.rows, self.columns]
        return windows.new_zeros(C, windows.shape[1]).index_add_(0, self.filters, windows)


class BCOMP:
    """Binomial convolutional orthogonal matching pursuit (Tolooshams, Song, Temereanca & Ba,
    ICML 2020, Appendix Sec. 8, Algorithm 2).

    Learns C unit-norm filters ``H`` (C, K) and non-negative codes with at most T non-zeros per
    example from binomial counts ``Y`` (n, N) by G rounds of CSC (greedy picks, each followed by a
    non-negative binomial GLM refit) and CDU (binomial likelihood over the filters); see the module
    docstring for the model, the choices the paper leaves open and the records.

    Parameters
    ----------
    n_nonzero : int
        T, the number of greedy picks per example, ``1 <= T <= C (N - K + 1)`` (the number of
        (filter, shift) atoms); the paper's simulation has 15 events per example, its neural data
        analysis uses 16.
    trials : int
        M, the number of binomial trials; counts must be integers in [0, M] (default 25, the
        paper's simulation).
    n_iter : int
        G, the number of CSC/CDU rounds (5 in the paper's simulation, 10 on neural data).
    baseline : float or None
        Known offset of the linear predictor shared by all examples, or None to fit one
        intercept per example in every refit.
    n_refit_iter : int
        Maximum number of projected Newton steps per refit.
    refit_tol : float or None
        KKT tolerance of the refits, in units of the per-trial gradient ``H_i^T (mu - y / M)``;
        default ``sqrt(eps)`` of the data's dtype.
    n_cdu_iter : int
        Maximum number of projected gradient steps per CDU.
    cdu_tol : float
        Tolerance on the norm of the CDU gradient mapping ``||H - P(H - s grad)|| / s`` of the
        per-trial objective averaged over examples.
    cdu_step : float
        First trial step of the CDU backtracking search; later searches start from twice the
        previous accepted step.

    Attributes
    ----------
    filters_ : Tensor of shape (C, K)
        Learned unit-norm filters.
    codes_, intercept_ : Tensor
        Codes (n, C, N - K + 1) and offsets (n,) of the training data at the last round,
        rescaled with the filters (``H x`` is that of the last CDU).
    records_ : pandas.DataFrame
        One row per round, see the module docstring.
    n_iter_ : int
        Number of rounds run (fewer than G when the callback stopped the loop).

    References
    ----------
    B. Tolooshams, A. H. Song, S. Temereanca and D. Ba, *Convolutional dictionary learning based
    auto-encoders for natural exponential-family distributions*, ICML 2020, Appendix Sec. 8,
    Algorithm 2. A. C. Lozano, G. Swirszcz and N. Abe, *Group orthogonal matching pursuit for
    logistic regression*, AISTATS 2011. D. P. Bertsekas, *Projected Newton methods for
    optimization problems with simple constraints*, SIAM J. Control Optim. 20(2), 1982.

    Examples
    --------
    >>> from udlbench.data import make_conv_expfamily
    >>> data = make_conv_expfamily(40, 120, 2, 20, n_events=2, seed=0)
    >>> model = BCOMP(n_nonzero=4, n_iter=2).fit(data.Y, data.H_star, H_star=data.H_star)
    >>> model.encode(data.Y).shape
    torch.Size([40, 2, 101])
    """

    def __init__(
        self,
        *,
        n_nonzero: int,
        trials: int = 25,
        n_iter: int = 5,
        baseline: float | None = None,
        n_refit_iter: int = 50,
        refit_tol: float | None = None,
        n_cdu_iter: int = 200,
        cdu_tol: float = 1e-5,
        cdu_step: float = 1.0,
    ) -> None:
        self.n_nonzero = check_positive_int("n_nonzero", n_nonzero)
        self.trials = check_positive_int("trials", trials)
        self.n_iter = check_positive_int("n_iter", n_iter)
        if baseline is not None:
            number = isinstance(baseline, int | float) and not isinstance(baseline, bool)
            if not (number and math.isfinite(baseline)):
                raise ValueError(f"baseline must be None or a finite number; got {baseline!r}.")
            baseline = float(baseline)
        self.baseline = baseline
        self.n_refit_iter = check_positive_int("n_refit_iter", n_refit_iter)
        self.refit_tol = None if refit_tol is None else check_positive("refit_tol", refit_tol)
        self.n_cdu_iter = check_positive_int("n_cdu_iter", n_cdu_iter)
        self.cdu_tol = check_positive("cdu_tol", cdu_tol)
        self.cdu_step = check_positive("cdu_step", cdu_step)

    def _check_counts(self, Y: object) -> torch.Tensor:
        check_tensor("Y", Y, ndim=2)
        M = self.trials
        valid = (Y >= 0) & (Y <= M) & (Y == torch.round(Y))
        if not bool(valid.all()):
            bad = int((~valid).sum())
            raise ValueError(
                f"Y must hold integer counts in [0, trials] = [0, {M}]; {bad} entries are not "
                f"integers in that range (min {float(Y.min()):.6g}, max {float(Y.max()):.6g})."
            )
        if self.baseline is None:
            totals = Y.sum(dim=1)
            degenerate = torch.nonzero((totals == 0) | (totals == M * Y.shape[1])).flatten()
            if degenerate.numel():
                raise ValueError(
                    f"Y has {degenerate.numel()} rows whose counts are all 0 or all trials = {M} "
                    f"(rows {degenerate[:10].tolist()}): their fitted intercept would be infinite. "
                    "Drop them or pass a known baseline."
                )
        return Y  # type: ignore[return-value]

    def _check_filters(self, name: str, H: object, Y: torch.Tensor) -> torch.Tensor:
        check_tensor(name, H, ndim=2)
        check_same_kind(Y=Y, **{name: H})
        C, K = H.shape  # type: ignore[union-attr]
        N = Y.shape[1]
        if K > N:
            raise ValueError(
                f"{name} has filter length K = {K} (shape {tuple(H.shape)}), longer than the "
                f"signals of Y (length N = {N}); the filter length must be at most N."
            )
        norms = torch.linalg.vector_norm(H, dim=1)
        zero = torch.nonzero(norms <= torch.finfo(H.dtype).tiny).flatten()
        if zero.numel():
            raise ValueError(
                f"{name} has {zero.numel()} zero filters (rows {zero[:10].tolist()}); every "
                "filter must have a positive norm."
            )
        n_atoms = C * (N - K + 1)
        if self.n_nonzero > n_atoms:
            raise ValueError(
                f"n_nonzero must be at most the number of (filter, shift) atoms C (N - K + 1) = "
                f"{C} * {N - K + 1} = {n_atoms}; got n_nonzero={self.n_nonzero}."
            )
        return H  # type: ignore[return-value]

    def _tol(self, dtype: torch.dtype) -> float:
        return math.sqrt(torch.finfo(dtype).eps) if self.refit_tol is None else self.refit_tol

    def code(self, Y: torch.Tensor, H: torch.Tensor) -> Coding:
        """CSC step (Algorithm 2, lines 3-11): T greedy picks per example, each followed by the
        non-negative binomial GLM refit on the picked atoms.

        Parameters
        ----------
        Y : Tensor of shape (n, N)
            Integer counts in [0, M].
        H : Tensor of shape (C, K)
            Filters (any positive norms), dtype and device of Y.

        Returns
        -------
        Coding
            Codes (n, C, N - K + 1), offsets (n,), picked atoms (n, T) and refit KKT residuals.
        """
        Y = self._check_counts(Y)
        H = self._check_filters("H", H, Y)
        coding = self._code(Y, H)
        tol = self._tol(Y.dtype)
        if bool((coding.kkt > tol).any()):
            warnings.warn(
                f"{int((coding.kkt > tol).sum())} of {Y.shape[0]} refits stopped after "
                f"n_refit_iter={self.n_refit_iter} Newton steps with a KKT residual up to "
                f"{float(coding.kkt.max()):.3g} > refit_tol={tol:.3g}; the maximum likelihood may "
                "be at infinity (counts all equal to 0 or trials under an atom).",
                ConvergenceWarning,
                stacklevel=2,
            )
        return coding

    @torch.no_grad()
    def _code(self, Y: torch.Tensor, H: torch.Tensor) -> Coding:
        n, N = Y.shape
        C, K = H.shape
        P = N - K + 1
        target = Y / self.trials
        fit_intercept = self.baseline is None
        offset = 0.0 if fit_intercept else self.baseline
        if fit_intercept:
            atoms = torch.ones(n, 1, N, dtype=Y.dtype, device=Y.device)
            x = torch.logit(target.mean(dim=1, keepdim=True))
        else:
            atoms = Y.new_zeros(n, 0, N)
            x = Y.new_zeros(n, 0)
        constrained = torch.zeros(x.shape[1], dtype=torch.bool, device=Y.device)
        support = torch.zeros(n, 0, dtype=torch.long, device=Y.device)
        window = torch.arange(K, device=Y.device)
        eta = offset + torch.bmm(x.unsqueeze(1), atoms).squeeze(1)
        kkt = Y.new_zeros(n)
        for _ in range(self.n_nonzero):
            residual = working_residual("binomial", Y, eta, self.trials)
            correlation = _correlate(residual, H).flatten(1)
            correlation.scatter_(1, support, -torch.inf)
            pick = correlation.argmax(dim=1)
            support = torch.cat([support, pick.unsqueeze(1)], dim=1)
            filters, shifts = pick // P, pick % P
            atom = Y.new_zeros(n, N).scatter_(1, shifts.unsqueeze(1) + window, H[filters])
            atoms = torch.cat([atoms, atom.unsqueeze(1)], dim=1)
            x = torch.cat([x, Y.new_zeros(n, 1)], dim=1)
            constrained = torch.cat([constrained, constrained.new_ones(1)])
            x, kkt = refit(
                target,
                atoms,
                x,
                constrained,
                offset=offset,
                n_iter=self.n_refit_iter,
                tol=self._tol(Y.dtype),
            )
            eta = offset + torch.bmm(x.unsqueeze(1), atoms).squeeze(1)
        coefficients = x[:, 1:] if fit_intercept else x
        codes = Y.new_zeros(n, C * P).scatter_(1, support, coefficients).reshape(n, C, P)
        intercept = x[:, 0] if fit_intercept else Y.new_full((n,), offset)
        return Coding(codes=codes, intercept=intercept, support=support, kkt=kkt)

    @torch.no_grad()
    def update_filters(
        self, Y: torch.Tensor, H: torch.Tensor, codes: torch.Tensor, intercept: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """CDU step (Algorithm 2, lines 12-17) with the codes fixed.

        Minimises the per-trial negative log-likelihood averaged over examples,
        ``(1 / n) sum_j l(x^j) / M``, over filters with ``||h_c|| <= 1`` by projected gradient
        with backtracking, then rescales every filter to unit norm and its codes by the inverse
        factor (the linear predictor is unchanged).

        Parameters
        ----------
        Y : Tensor of shape (n, N)
        H : Tensor of shape (C, K)
            Starting filters.
        codes : Tensor of shape (n, C, N - K + 1)
        intercept : Tensor of shape (n,)

        Returns
        -------
        H : Tensor of shape (C, K)
            Unit-norm filters.
        codes : Tensor of shape (n, C, N - K + 1)
            The codes rescaled with the filters.
        gradient_map : float
            ``||H_k - P(H_k - s grad)|| / s`` at the last step, the convergence measure.
        """
        n, N = Y.shape
        C, K = H.shape
        target = Y / self.trials
        sparse = _SparseCodes(codes, intercept, N, K)

        def objective(filters: torch.Tensor) -> torch.Tensor:
            return _per_trial_objective(target, sparse.predictor(filters)).mean()

        slack = 10 * torch.finfo(Y.dtype).eps
        H = _project_ball(H)
        step = self.cdu_step
        gradient_map = math.inf
        for _ in range(self.n_cdu_iter):
            eta = sparse.predictor(H)
            value = _per_trial_objective(target, eta).mean()
            grad = sparse.filter_gradient(torch.sigmoid(eta) - target, C) / n
            for _ in range(_HALVINGS):
                trial = _project_ball(H - step * grad)
                change = trial - H
                model = value + (grad * change).sum() + change.square().sum() / (2 * step)
                if objective(trial) <= model + slack * value.abs():
                    break
                step /= 2
            gradient_map = float(torch.linalg.vector_norm(change)) / step
            H = trial
            if gradient_map <= self.cdu_tol:
                break
            step *= 2
        norms = torch.linalg.vector_norm(H, dim=1)
        return H / norms.unsqueeze(1), codes * norms.reshape(1, -1, 1), gradient_map

    def fit(
        self,
        Y: torch.Tensor,
        H0: torch.Tensor,
        *,
        H_star: torch.Tensor | None = None,
        callback: Callback | None = None,
    ) -> BCOMP:
        """Learn filters from counts Y (n, N) starting at H0 (C, K) (normalised to unit norm).

        ``H_star`` (C, K), the true filters, adds the filter errors to the records;
        ``callback(record, H)`` is called with each recorded row and the current filters and may
        stop the loop by returning True.
        """
        Y = self._check_counts(Y)
        H0 = self._check_filters("H0", H0, Y)
        if H_star is not None:
            self._check_filters("H_star", H_star, Y)
            if H_star.shape != H0.shape:
                raise ValueError(
                    f"H_star has shape {tuple(H_star.shape)} but H0 has {tuple(H0.shape)}."
                )
        tol = self._tol(Y.dtype)
        H = _unit_rows(H0.detach().clone())
        records: list[dict] = []
        elapsed = 0.0

        def record(step: int, loss: float, refit_kkt: float, gradient_map: float) -> bool:
            row = {
                "step": step,
                "epoch": step,
                "loss": loss,
                "time": elapsed,
                "refit_kkt": refit_kkt,
                "cdu_gradient_map": gradient_map,
            }
            if H_star is not None:
                sines = metrics.atom_sines(H.T, H_star.T).tolist()
                row["error"] = max(sines)
                row["error_median"] = statistics.median(sines)
                row.update({f"error_filter_{c}": s for c, s in enumerate(sines)})
            records.append(row)
            return bool(callback(row, H)) if callback is not None else False

        stop = record(0, math.nan, math.nan, math.nan)
        rounds = 0
        codes = intercept = None
        worst_kkt = 0.0
        with torch.no_grad():
            while not stop and rounds < self.n_iter:
                tic = clock(Y.device)
                coding = self._code(Y, H)
                H, codes, gradient_map = self.update_filters(Y, H, coding.codes, coding.intercept)
                elapsed += clock(Y.device) - tic
                intercept = coding.intercept
                rounds += 1
                eta = _SparseCodes(codes, intercept, Y.shape[1], H.shape[1]).predictor(H)
                loss = float(binomial_nll(Y, eta, self.trials).mean())
                kkt = float(coding.kkt.max())
                worst_kkt = max(worst_kkt, kkt)
                stop = record(rounds, loss, kkt, gradient_map)
        if worst_kkt > tol:
            warnings.warn(
                f"some refits stopped after n_refit_iter={self.n_refit_iter} Newton steps with a "
                f"KKT residual up to {worst_kkt:.3g} > refit_tol={tol:.3g} (see the refit_kkt "
                "column of records_).",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.filters_ = H
        self.codes_ = codes
        self.intercept_ = intercept
        self.n_iter_ = rounds
        self.records_ = pd.DataFrame.from_records(records)
        return self

    def encode(self, Y: torch.Tensor) -> torch.Tensor:
        """Codes (n, C, N - K + 1) of counts Y (n, N) by the CSC step with the learned filters."""
        if not hasattr(self, "filters_"):
            raise RuntimeError("BCOMP is not fitted; call fit(Y, H0) first.")
        return self.code(Y, self.filters_).codes


__all__ = ["BCOMP", "Coding", "ConvergenceWarning", "binomial_nll", "refit"]
