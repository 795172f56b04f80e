"""Certified reference lasso solver: the "exact" codes that the theorem checks compare against.

For every sample (a row ``x`` of ``X``) the problem is

    z_hat = argmin_z  0.5 ||x - D z||_2^2 + lam ||z||_1,

with no ``1/n`` scaling (Tolooshams & Ba, TMLR 2023, eq. 1). :func:`solve` runs FISTA (Beck &
Teboulle, SIAM J. Imaging Sci. 2009) and periodically *polishes* each iterate on its signed
support, accepting the polished point only when it passes the lasso KKT conditions of Lemma A.3
with a strict off-support margin, which also certifies uniqueness (Assumption 3.6). This is the
procedure of ``THEOREMS.md`` section 0.4; :func:`kkt_certificate` is the checker on its own, for any
codes.

Numerics. Everything is computed in float64 whatever the input dtype; the certificate refers to
the float64 problem ``(X.double(), D.double())``. The support of ``z`` is the set
``S = {j : |z_j| > support_tol * max(1, ||z||_inf)}`` (``support_tol = 1e-10``, as in
``THEOREMS.md``): the relative part keeps the rule scale-free for large codes, and ``max(1, .)``
keeps codes near zero from promoting rounding noise into the support. The equality residual on
``S`` is evaluated honestly, as ``D_S^T (x - D z) - lam s`` from ``X`` and ``D``, and must be
``<= tol * lam`` (default ``tol = 1e-12``, the criterion of ``THEOREMS.md``). Its float64 floor
is absolute, not relative to lam: measured on unit-norm Gaussian dictionaries with 5-sparse
(m = 50, p = 100) and 20-sparse (m = 1000, p = 1500) codes of amplitude in [1, 2], the polished
and refined solution reaches ``|D_S^T r - lam s|_inf <= 1e-15`` (without the refinement step,
``1e-14`` at m = 1000). So ``1e-12 lam`` is attainable, and kept unscaled, for ``lam >= 1e-3``
at these sizes; for smaller ``lam`` or much larger data raise ``tol`` (the solver warns with
:class:`UncertifiedWarning` rather than returning uncertified codes silently).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from udlbench._validation import (
    check_codes,
    check_data,
    check_dictionary,
    check_positive,
    check_positive_int,
)
from udlbench.linalg import lipschitz_constant
from udlbench.operators import soft_threshold

SUPPORT_TOL = 1e-10
MARGIN = 1e-9


class UncertifiedWarning(UserWarning):
    """Some samples did not pass the KKT certificate within ``max_iter`` FISTA iterations."""


@dataclass(frozen=True)
class LassoInfo:
    """Per-sample KKT certificate of lasso codes (Tolooshams & Ba, TMLR 2023, Lemma A.3).

    With ``r = x - D z``, ``S`` the support of ``z`` and ``s = sign(z_S)``:

    Attributes
    ----------
    certified : BoolTensor of shape (n,)
        ``kkt_residual <= tol`` and ``slack > margin * lam``: ``z`` is the unique lasso solution
        (to rounding), Assumption 3.6 holding with a margin.
    kkt_residual : Tensor of shape (n,)
        ``||D_S^T r - lam s||_inf / lam``, the equality residual on the support, relative to lam
        (0 for an empty support).
    slack : Tensor of shape (n,)
        ``lam - max_{j not in S} |D_j^T r|``, absolute; ``> 0`` means strict complementarity, hence
        uniqueness. The max over an empty set is taken as 0.
    support_size : LongTensor of shape (n,)
        ``|S|``.
    n_iter : int
        FISTA iterations run by :func:`solve` (0 from :func:`kkt_certificate`).
    """

    certified: torch.Tensor
    kkt_residual: torch.Tensor
    slack: torch.Tensor
    support_size: torch.Tensor
    n_iter: int


def _check_lam(lam: float) -> float:
    value = float(lam)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"lam must be a finite number > 0; got {lam!r}. lam = 0 is least squares, whose "
            "solution is not unique when p > m (Tolooshams & Ba, TMLR 2023, Assumption 3.6)."
        )
    return value


def _signed_support(Z: torch.Tensor, support_tol: float) -> torch.Tensor:
    """``sign(z_j)`` on ``S = {|z_j| > support_tol max(1, ||z||_inf)}``, 0 elsewhere, per row."""
    scale = Z.abs().amax(dim=1, keepdim=True).clamp(min=1.0)
    return torch.sign(Z) * (Z.abs() > support_tol * scale)


def _certificate(
    X: torch.Tensor,
    D: torch.Tensor,
    Z: torch.Tensor,
    signs: torch.Tensor,
    *,
    lam: float,
    tol: float,
    margin: float,
) -> LassoInfo:
    """KKT certificate of float64 codes ``Z`` whose signed support is ``signs``."""
    correlation = (X - Z @ D.T) @ D
    on_support = signs != 0
    zero = torch.zeros((), dtype=Z.dtype, device=Z.device)
    equality = torch.where(on_support, (correlation - lam * signs).abs(), zero).amax(dim=1)
    off_support = torch.where(on_support, zero, correlation.abs()).amax(dim=1)
    kkt_residual = equality / lam
    slack = lam - off_support
    return LassoInfo(
        certified=(kkt_residual <= tol) & (slack > margin * lam),
        kkt_residual=kkt_residual,
        slack=slack,
        support_size=on_support.sum(dim=1),
        n_iter=0,
    )


def _polish(
    X: torch.Tensor,
    D: torch.Tensor,
    G: torch.Tensor,
    signs: torch.Tensor,
    *,
    lam: float,
    support_tol: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve the lasso restricted to each row's signed support ``(S, s)``.

    ``z_S = (D_S^T D_S)^{-1} (D_S^T x - lam s)``, ``z = 0`` off S: the unique point satisfying the
    KKT equalities of Lemma A.3 (Tolooshams & Ba, TMLR 2023) on S. Rows are grouped by ``|S|``
    and each group is solved with one batched Cholesky factorisation of ``D_S^T D_S``, followed by
    one step of iterative refinement on the residual ``D_S^T (x - D z) - lam s`` evaluated from
    ``X`` and ``D`` (not from the rounded Gram matrix): the refinement takes the equality residual
    from about ``1e-14`` to ``5e-16`` at m = 1000 (Skeel, Math. Comp. 1980). Returns the polished
    codes and a mask of the rows whose polish is valid: ``D_S^T D_S`` positive definite and the
    signed support preserved (``sign(z_S) = s``, no entry falling below the support threshold).
    """
    n, p = X.shape[0], D.shape[1]
    polished = torch.zeros(n, p, dtype=X.dtype, device=X.device)
    valid = torch.zeros(n, dtype=torch.bool, device=X.device)
    sizes = (signs != 0).sum(dim=1)
    for k in torch.unique(sizes).tolist():
        rows = torch.nonzero(sizes == k).flatten()
        if k == 0:
            valid[rows] = True
            continue
        if k > D.shape[0]:  # rank(D_S^T D_S) <= m < k: no unique solution has this support
            continue
        index = torch.nonzero(signs[rows]).select(1, 1).reshape(-1, k)
        s = signs[rows].gather(1, index)
        gram = G[index.unsqueeze(2), index.unsqueeze(1)]
        factor, info = torch.linalg.cholesky_ex(gram)
        x = X[rows]
        z = torch.zeros(len(rows), p, dtype=X.dtype, device=X.device)
        for _ in range(2):  # the polish from z_S = 0, then one step of iterative refinement
            equality = ((x - z @ D.T) @ D).gather(1, index) - lam * s
            step = torch.cholesky_solve(equality.unsqueeze(2), factor).squeeze(2)
            z = z.scatter(1, index, z.gather(1, index) + step)
        polished[rows] = z
        valid[rows] = info == 0
    valid &= (_signed_support(polished, support_tol) == signs).all(dim=1)
    return polished, valid


def _objective(X: torch.Tensor, D: torch.Tensor, Z: torch.Tensor, lam: float) -> torch.Tensor:
    residual = X - Z @ D.T
    return 0.5 * (residual * residual).sum(dim=1) + lam * Z.abs().sum(dim=1)


def objective(X: torch.Tensor, D: torch.Tensor, Z: torch.Tensor, *, lam: float) -> torch.Tensor:
    """Per-sample lasso objective ``0.5 ||x - D z||^2 + lam ||z||_1`` (TMLR 2023, eq. 1).

    Parameters
    ----------
    X : Tensor of shape (n, m)
        Samples as rows.
    D : Tensor of shape (m, p)
        Dictionary, atoms as columns.
    Z : Tensor of shape (n, p)
        Codes.
    lam : float
        Regularisation weight, ``>= 0``.

    Returns
    -------
    Tensor of shape (n,), in the dtype of the inputs.
    """
    check_dictionary(D)
    check_data(X, D)
    check_codes(Z, X, D)
    if not math.isfinite(float(lam)) or float(lam) < 0:
        raise ValueError(f"lam must be a finite number >= 0; got {lam!r}.")
    return _objective(X, D, Z, float(lam))


def kkt_certificate(
    X: torch.Tensor,
    D: torch.Tensor,
    Z: torch.Tensor,
    *,
    lam: float,
    tol: float = 1e-12,
    support_tol: float = SUPPORT_TOL,
    margin: float = MARGIN,
) -> LassoInfo:
    """Check the lasso KKT conditions for arbitrary codes (Tolooshams & Ba, TMLR 2023, Lemma A.3).

    ``z`` solves ``min 0.5 ||x - D z||^2 + lam ||z||_1`` iff ``D^T (x - D z) in lam d||z||_1``.
    With ``S = {j : |z_j| > support_tol max(1, ||z||_inf)}``, ``s = sign(z_S)`` and
    ``r = x - D z``, a row is certified when

    * ``||D_S^T r - lam s||_inf <= tol * lam`` (equality on the support), and
    * ``max_{j not in S} |D_j^T r| < lam (1 - margin)`` (strict off-support inequality, which makes
      the solution unique; Assumption 3.6 and ``THEOREMS.md`` section 0.4).

    Entries below the support threshold count as zeros. Computed in float64.

    Parameters
    ----------
    X : Tensor of shape (n, m)
        Samples as rows.
    D : Tensor of shape (m, p)
        Dictionary, atoms as columns, no zero atom.
    Z : Tensor of shape (n, p)
        Codes to check, same dtype and device as ``D``.
    lam : float
        Regularisation weight, ``> 0``.
    tol : float, default 1e-12
        Tolerance of the equality residual, relative to ``lam``.
    support_tol : float, default 1e-10
        Relative threshold defining the support.
    margin : float, default 1e-9
        Relative margin of the strict off-support inequality.

    Returns
    -------
    LassoInfo
        With ``n_iter = 0``.

    Examples
    --------
    >>> import torch
    >>> D = torch.eye(2, dtype=torch.float64)
    >>> X = torch.tensor([[3.0, 0.5]], dtype=torch.float64)
    >>> Z = torch.tensor([[2.0, 0.0]], dtype=torch.float64)  # soft threshold of x at lam = 1
    >>> bool(kkt_certificate(X, D, Z, lam=1.0).certified[0])
    True
    """
    check_dictionary(D)
    check_data(X, D)
    check_codes(Z, X, D)
    lam = _check_lam(lam)
    tol = check_positive("tol", tol)
    support_tol = check_positive("support_tol", support_tol)
    if not 0 <= float(margin) < 1:
        raise ValueError(f"margin must lie in [0, 1); got {margin!r}.")
    Z64 = Z.detach().double()
    return _certificate(
        X.detach().double(),
        D.detach().double(),
        Z64,
        _signed_support(Z64, support_tol),
        lam=lam,
        tol=tol,
        margin=float(margin),
    )


def solve(
    X: torch.Tensor,
    D: torch.Tensor,
    *,
    lam: float,
    tol: float = 1e-12,
    max_iter: int = 50_000,
    check_every: int = 100,
    return_info: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, LassoInfo]:
    """Certified lasso codes ``argmin_z 0.5 ||x - D z||^2 + lam ||z||_1`` for every row of X.

    FISTA (Beck & Teboulle, SIAM J. Imaging Sci. 2009) with step ``1/L``,
    ``L = sigma_max(D)^2``, in Gram form (one ``(n, p) x (p, p)`` product per iteration), from
    ``z = 0``. Every ``check_every`` iterations each uncertified sample is polished on the signed
    support ``(S, s)`` of its FISTA iterate, ``z_S = (D_S^T D_S)^{-1} (D_S^T x - lam s)``,
    ``z = 0`` off S (a Cholesky solve plus one step of iterative refinement), and the polished
    point is accepted when it keeps the signed support and passes :func:`kkt_certificate`
    (Tolooshams & Ba, TMLR 2023, Lemma A.3 and Assumption 3.6; ``THEOREMS.md`` section 0.4).
    Certified samples are frozen at the polished value and leave the FISTA batch; the others
    continue from their FISTA iterate. A certified code is therefore the unique lasso solution to
    float64 rounding, and a fixed point of ISTA for every step size (Lemma 3.2).

    A sample with ``lam >= lam_max = ||D^T x||_inf`` gets exactly ``z = 0``, a minimizer
    (TMLR 2023, Sec. 3) and no FISTA iterations. It is certified when ``lam_max < lam (1 - 1e-9)``
    (the strict margin that proves uniqueness); in the band ``lam (1 - 1e-9) <= lam_max <= lam``
    it is returned as zero but left uncertified.

    The step is ``1/L`` with ``L = ||D||_2^2`` from :func:`udlbench.linalg.lipschitz_constant`
    (exact to rounding).

    Parameters
    ----------
    X : Tensor of shape (n, m)
        Samples as rows, float32 or float64.
    D : Tensor of shape (m, p)
        Dictionary, atoms as columns, same dtype and device as X, no zero atom.
    lam : float
        Regularisation weight, ``> 0`` (``lam = 0`` has no unique solution when p > m).
    tol : float, default 1e-12
        Equality residual allowed on the support, relative to ``lam``.
    max_iter : int, default 50_000
        Maximum number of FISTA iterations.
    check_every : int, default 100
        Iterations between two polish-and-certify rounds.
    return_info : bool, default False
        Also return the :class:`LassoInfo` of the returned codes.

    Returns
    -------
    Z : Tensor of shape (n, p)
        In the dtype and on the device of X.
    info : LassoInfo
        Only when ``return_info``; its residuals refer to the float64 codes (before any cast).

    Warns
    -----
    UncertifiedWarning
        When some samples are still uncertified after ``max_iter`` iterations; for those, Z holds
        the lower-objective point among the last FISTA iterate and its polish.

    Examples
    --------
    >>> import torch
    >>> D = torch.eye(2, dtype=torch.float64)
    >>> solve(torch.tensor([[3.0, 0.5]], dtype=torch.float64), D, lam=1.0)
    tensor([[2., 0.]], dtype=torch.float64)
    """
    check_dictionary(D)
    check_data(X, D)
    lam = _check_lam(lam)
    tol = check_positive("tol", tol)
    check_positive_int("max_iter", max_iter)
    check_positive_int("check_every", check_every)

    X64 = X.detach().double()
    D64 = D.detach().double()
    n, p = X64.shape[0], D64.shape[1]
    G = D64.T @ D64
    C = X64 @ D64
    step = 1.0 / lipschitz_constant(D64)
    transition = torch.eye(p, dtype=G.dtype, device=G.device) - step * G  # z -> z - step grad

    Z = torch.zeros_like(C)
    zero_info = _certificate(X64, D64, Z, torch.zeros_like(Z), lam=lam, tol=tol, margin=MARGIN)
    certified = zero_info.certified.clone()
    kkt_residual = zero_info.kkt_residual.clone()
    slack = zero_info.slack.clone()
    support_size = zero_info.support_size.clone()

    active = torch.nonzero(C.abs().amax(dim=1) > lam).flatten()
    z = torch.zeros(len(active), p, dtype=C.dtype, device=C.device)
    y = z
    momentum = 1.0
    n_iter = 0
    while len(active) and n_iter < max_iter:
        n_iter += 1
        z_next = soft_threshold(torch.addmm(step * C[active], y, transition), step * lam)
        momentum_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * momentum**2))
        y = torch.add(z_next, z_next - z, alpha=(momentum - 1.0) / momentum_next)
        z, momentum = z_next, momentum_next
        if n_iter % check_every and n_iter < max_iter:
            continue
        x = X64[active]
        signs = _signed_support(z, SUPPORT_TOL)
        polished, valid = _polish(x, D64, G, signs, lam=lam, support_tol=SUPPORT_TOL)
        info = _certificate(x, D64, polished, signs, lam=lam, tol=tol, margin=MARGIN)
        finished = valid & info.certified
        if n_iter == max_iter:  # return the better of the FISTA iterate and its polish
            finished = torch.ones_like(finished)
            use_polish = valid & (_objective(x, D64, polished, lam) <= _objective(x, D64, z, lam))
            polished = torch.where(use_polish.unsqueeze(1), polished, z)
            info = _certificate(
                x,
                D64,
                polished,
                _signed_support(polished, SUPPORT_TOL),
                lam=lam,
                tol=tol,
                margin=MARGIN,
            )
        rows = active[finished]
        Z[rows] = polished[finished]
        certified[rows] = info.certified[finished]
        kkt_residual[rows] = info.kkt_residual[finished]
        slack[rows] = info.slack[finished]
        support_size[rows] = info.support_size[finished]
        active, z, y = active[~finished], z[~finished], y[~finished]

    failed = ~certified
    if failed.any():
        warnings.warn(
            f"{int(failed.sum())} of {n} samples are not certified by the lasso KKT conditions "
            f"after {n_iter} FISTA iterations (max_iter={max_iter}, lam={lam}, tol={tol}): "
            f"largest equality residual {float(kkt_residual[failed].max()) * lam:.1e} "
            f"(allowed {tol * lam:.1e}), smallest slack {float(slack[failed].min()):.1e} "
            "(must be > 0). An equality residual near 1e-15 is the float64 floor: raise tol; "
            "a small or negative slack needs more iterations (max_iter).",
            UncertifiedWarning,
            stacklevel=2,
        )
    Z = Z.to(X.dtype)
    if not return_info:
        return Z
    return Z, LassoInfo(
        certified=certified,
        kkt_residual=kkt_residual,
        slack=slack,
        support_size=support_size,
        n_iter=n_iter,
    )
