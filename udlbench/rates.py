"""Fitting convergence rates and support-identification times, the way THEOREMS.md Sec. 0.7 does.

A linear rate is the slope of ``log(error)`` against ``t`` over a window; an ``O(t rho^t)`` rate is
the same fit with a ``log t`` regressor added. The per-sample window starts at ``B_i + 5``, where
``B_i`` is the last iterate whose support differs from the limit's, and ends where the error falls
to ``floor`` (errors below it are rounding noise); at least ``min_points`` points are required.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class RateFit:
    """Least-squares fit ``log e_t = intercept + slope t (+ log_t_coef log t)`` over a window."""

    slope: float
    intercept: float
    r2: float
    n_points: int
    t_first: int
    t_last: int
    log_t_coef: float = 0.0

    @property
    def rate(self) -> float:
        """The fitted per-iteration contraction ``rho_hat = exp(slope)``."""
        return math.exp(self.slope)


def fit_log_linear(
    t: np.ndarray | torch.Tensor,
    errors: np.ndarray | torch.Tensor,
    *,
    with_log_t: bool = False,
    min_points: int = 8,
) -> RateFit:
    """Fit ``log(errors)`` against ``t`` (and ``log t`` if ``with_log_t``) by least squares."""
    t = np.asarray(t, dtype=np.float64).ravel()
    errors = np.asarray(errors, dtype=np.float64).ravel()
    if t.shape != errors.shape:
        raise ValueError(f"t and errors must have the same length; got {t.size} and {errors.size}.")
    if t.size < min_points:
        raise ValueError(
            f"a rate fit needs at least min_points={min_points} points; got {t.size}. Widen the "
            "window or run more iterations."
        )
    if not np.all(errors > 0):
        raise ValueError("errors must be positive to take logarithms; drop exact zeros first.")
    y = np.log(errors)
    columns = [np.ones_like(t), t] + ([np.log(t)] if with_log_t else [])
    design = np.stack(columns, axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    total = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - float(residual @ residual) / total if total > 0 else 1.0
    return RateFit(
        slope=float(coef[1]),
        intercept=float(coef[0]),
        r2=r2,
        n_points=int(t.size),
        t_first=int(t[0]),
        t_last=int(t[-1]),
        log_t_coef=float(coef[2]) if with_log_t else 0.0,
    )


def settle_times(
    iterates: torch.Tensor, limit: torch.Tensor, *, signed: bool = True
) -> torch.Tensor:
    """``B_i``: the last t at which ``supp(z_t^i)`` (with signs if ``signed``) differs from the
    limit's (TMLR 2023, Prop. 4.1). ``iterates`` is (T + 1, n, p) from ``trace=True``; a sample
    whose support never differs gets ``B_i = -1``; one still differing at ``T`` gets ``T``."""
    if signed:
        differs = (torch.sign(iterates) != torch.sign(limit)).any(-1)
    else:
        differs = ((iterates != 0) != (limit != 0)).any(-1)
    steps = torch.arange(iterates.shape[0], device=iterates.device)[:, None].expand_as(differs)
    return torch.where(differs, steps, torch.full_like(steps, -1)).amax(0)


def local_rate(D: torch.Tensor, Z_hat: torch.Tensor, alpha: float) -> np.ndarray:
    """Per sample ``rho_S = max |1 - alpha eig(D_S^T D_S)|`` on ``S = supp(z_hat_i)``: the norm of
    ISTA's exact local map ``z_{t+1} - z_hat = (I - alpha D_S^T D_S)(z_t - z_hat)`` once the
    support is identified (Tolooshams & Ba, TMLR 2023, Thm 4.3). ``Z_hat`` is (n, p)."""
    gram = D.detach().to(torch.float64).T @ D.detach().to(torch.float64)
    out = []
    for z in Z_hat:
        support = torch.nonzero(z).ravel()
        if support.numel() == 0:  # z_t = z_hat = 0 exactly once the support is identified
            out.append(0.0)
            continue
        values = torch.linalg.eigvalsh(gram[support][:, support])
        out.append(float((1 - alpha * values).abs().max()))
    return np.array(out)


def window(
    errors: np.ndarray | torch.Tensor,
    *,
    start: int,
    floor: float,
    min_points: int = 8,
) -> np.ndarray | None:
    """Indices ``t >= start`` with ``errors[t] > floor`` up to the first drop below ``floor``
    (THEOREMS.md Sec. 0.7: ``t >= B_i + 5``, error above ``1e-12`` times the reference norm).
    Returns None when fewer than ``min_points`` remain."""
    errors = np.asarray(errors, dtype=np.float64).ravel()
    below = np.nonzero(errors[start:] <= floor)[0]
    stop = start + (int(below[0]) if below.size else errors.size - start)
    index = np.arange(max(start, 0), stop)
    return index if index.size >= min_points else None


def fit_window(
    errors: np.ndarray | torch.Tensor,
    *,
    start: int,
    floor: float,
    min_points: int = 8,
    with_log_t: bool = False,
) -> RateFit | None:
    """:func:`fit_log_linear` of ``errors[t]`` against ``t`` over :func:`window`; None when the
    window is too short."""
    index = window(errors, start=start, floor=floor, min_points=min_points)
    if index is None:
        return None
    errors = np.asarray(errors, dtype=np.float64).ravel()
    t = index.astype(np.float64)
    if with_log_t and t[0] == 0:
        t, index = t[1:], index[1:]
    return fit_log_linear(t, errors[index], with_log_t=with_log_t, min_points=min_points)


def loglog_slope(x: np.ndarray | list[float], y: np.ndarray | list[float]) -> RateFit:
    """Slope of ``log y`` against ``log x`` (an order of growth, e.g. ``delta_hat* ~ lam``)."""
    return fit_log_linear(np.log(np.asarray(x, dtype=np.float64)), y, min_points=2)
