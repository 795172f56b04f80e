"""The code Jacobian ``J_t = d z_t / d D`` three ways, as products with directions.

``J_t`` maps a dictionary direction ``E`` (m, p) to a code direction (n, p) (a JVP) and a code
direction ``V`` (n, p) to a dictionary direction (a VJP). Computed

* by autograd through the unrolled encoder (``jvp_autograd``, ``vjp_autograd``);
* by the forward recursion of Malezieux, Moreau & Kowalski (ICLR 2022, Thm 2.4; Tolooshams & Ba,
  TMLR 2023, proof of Thm 4.7): ``J_{t+1}[E] = prox'(u_t) [J_t[E] - alpha (D^T D J_t[E]
  + E^T (D z_t - x) + D^T E z_t)]`` (``jvp_recursion``);
* in closed form at the lasso solution by implicit differentiation on the support S
  (``jvp_closed_form``, ``vjp_closed_form``; THEOREMS.md Sec. 0.5):
  ``J[E]_S = -(D_S^T D_S)^{-1} (E_S^T (D z - x) + D_S^T E z)``, ``J[E]_{S^c} = 0``, and
  ``J^T[v] = -(D z - x) w^T - D w z^T`` with ``w = (D_S^T D_S)^{-1} v_S`` (zero off S).

VJPs follow the gradient convention: ``reduction="mean"`` averages over samples (m, p),
``"none"`` returns one (m, p) block per sample.
"""

from __future__ import annotations

import torch

from udlbench._validation import check_choice, check_codes, check_data, check_dictionary
from udlbench.encoders import unroll
from udlbench.linalg import lipschitz_constant
from udlbench.operators import get_prox, lam_schedule

_SOLVE_CHUNK_ENTRIES = 2**24


def _resolve_alpha(D: torch.Tensor, alpha: float | None) -> float:
    return 1.0 / lipschitz_constant(D) if alpha is None else float(alpha)


def jvp_autograd(
    X: torch.Tensor,
    D: torch.Tensor,
    E: torch.Tensor,
    *,
    lam,
    n_layers: int,
    alpha: float | None = None,
    trace: bool = False,
    **encoder_options,
) -> torch.Tensor:
    """``J_T[E]`` (n, p) by forward-mode autograd through the unrolled encoder; with
    ``trace=True`` every ``J_t[E]``, t = 0..T, stacked as (T + 1, n, p)."""
    check_data(X, check_dictionary(D))
    _check_direction(E, D)
    alpha = _resolve_alpha(D, alpha)
    options = dict(lam=lam, n_layers=n_layers, alpha=alpha, trace=trace, **encoder_options)
    _, tangent = torch.func.jvp(lambda W: unroll(X, W, **options), (D.detach(),), (E,))
    return tangent


def vjp_autograd(
    X: torch.Tensor,
    D: torch.Tensor,
    V: torch.Tensor,
    *,
    lam,
    n_layers: int,
    alpha: float | None = None,
    reduction: str = "mean",
    **encoder_options,
) -> torch.Tensor:
    """``J_T^T[V]`` by reverse-mode autograd: mean over samples of ``J_T^i^T v_i`` (m, p), or
    per sample (n, m, p) with ``reduction="none"``."""
    check_data(X, check_dictionary(D))
    check_codes(V, X, D, name="V")
    check_choice("reduction", reduction, ("mean", "none"))
    alpha = _resolve_alpha(D, alpha)
    options = dict(lam=lam, n_layers=n_layers, alpha=alpha, **encoder_options)

    def pullback(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            leaf = D.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad((unroll(x, leaf, **options) * v).sum(), leaf)
        return grad

    if reduction == "mean":
        return pullback(X, V) / X.shape[0]
    return torch.stack([pullback(X[i : i + 1], V[i : i + 1]) for i in range(X.shape[0])])


def jvp_recursion(
    X: torch.Tensor,
    D: torch.Tensor,
    E: torch.Tensor,
    *,
    lam,
    n_layers: int,
    alpha: float | None = None,
    prox: str = "soft",
    lam_decay: float | None = None,
    group_size: int | None = None,
    trace: bool = False,
) -> torch.Tensor:
    """``J_T[E]`` by the forward recursion of Malezieux et al. (ICLR 2022, Thm 2.4) for unrolled
    ISTA from ``z_0 = 0`` (so ``J_0 = 0``); ``prox'`` is the derivative of the chosen operator
    (the mask ``1{|u_t| > alpha lam_t}`` for soft-thresholding, the exact non-diagonal Jacobian
    for the group operator). With ``trace=True`` returns (T + 1, n, p)."""
    check_data(X, check_dictionary(D))
    _check_direction(E, D)
    alpha = _resolve_alpha(D, alpha)
    prox_fn = get_prox(prox, group_size=group_size)
    lams = lam_schedule(lam, n_layers, lam_decay=lam_decay)
    D, E = D.detach(), E.detach()
    z = torch.zeros(X.shape[0], D.shape[1], dtype=X.dtype, device=X.device)
    jac = torch.zeros_like(z)
    history = [jac]
    with torch.no_grad():
        for t in range(n_layers):
            residual = z @ D.T - X
            u = z - alpha * residual @ D
            du = jac - alpha * ((jac @ D.T) @ D + residual @ E + (z @ E.T) @ D)
            z, jac = torch.func.jvp(lambda v, b=alpha * lams[t]: prox_fn(v, b), (u,), (du,))
            if trace:
                history.append(jac)
    return torch.stack(history) if trace else jac


def support_solve(D: torch.Tensor, Z: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Per sample, ``w_S = (D_S^T D_S)^{-1} rhs_S`` on ``S = supp(z)``, ``w = 0`` off S.

    Batched by embedding each restricted Gram matrix in a (p, p) one with the identity off S.
    """
    gram = D.T @ D
    mask = (Z != 0).to(D.dtype)
    out = torch.empty_like(rhs)
    p = D.shape[1]
    chunk = max(1, _SOLVE_CHUNK_ENTRIES // (p * p))
    for start in range(0, Z.shape[0], chunk):
        m = mask[start : start + chunk]
        system = m[:, :, None] * gram * m[:, None, :] + torch.diag_embed(1 - m)
        rhs_chunk = (rhs[start : start + chunk] * m).unsqueeze(-1)
        out[start : start + chunk] = torch.linalg.solve(system, rhs_chunk).squeeze(-1) * m
    return out


def jvp_closed_form(
    X: torch.Tensor, D: torch.Tensor, E: torch.Tensor, Z_hat: torch.Tensor
) -> torch.Tensor:
    """``J_hat[E]`` (n, p) at the lasso solution ``Z_hat`` by implicit differentiation on the
    support (TMLR 2023, eq. 127; ICLR 2022, Thm 2.4): ``-(D_S^T D_S)^{-1}(E_S^T r + D_S^T E z)``,
    ``r = D z - x``."""
    check_data(X, check_dictionary(D))
    _check_direction(E, D)
    check_codes(Z_hat, X, D, name="Z_hat")
    residual = Z_hat @ D.T - X
    return -support_solve(D, Z_hat, residual @ E + (Z_hat @ E.T) @ D)


def vjp_closed_form(
    X: torch.Tensor,
    D: torch.Tensor,
    V: torch.Tensor,
    Z_hat: torch.Tensor,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """``J_hat^T[V]`` at the lasso solution: per sample ``-(D z - x) w^T - D w z^T`` with
    ``w = (D_S^T D_S)^{-1} v_S``; mean over samples (m, p) or per sample (n, m, p)."""
    check_data(X, check_dictionary(D))
    check_codes(V, X, D, name="V")
    check_codes(Z_hat, X, D, name="Z_hat")
    check_choice("reduction", reduction, ("mean", "none"))
    residual = Z_hat @ D.T - X
    W = support_solve(D, Z_hat, V)
    if reduction == "none":
        return -(
            torch.einsum("nm,np->nmp", residual, W) + torch.einsum("nm,np->nmp", W @ D.T, Z_hat)
        )
    return -(residual.T @ W + D @ (W.T @ Z_hat)) / X.shape[0]


def _check_direction(E: torch.Tensor, D: torch.Tensor) -> None:
    if not isinstance(E, torch.Tensor) or tuple(E.shape) != tuple(D.shape):
        shape = tuple(E.shape) if isinstance(E, torch.Tensor) else type(E).__name__
        raise ValueError(f"E must be a tensor shaped like D {tuple(D.shape)}; got {shape}.")
    if E.dtype != D.dtype or E.device != D.device:
        raise TypeError(f"E must match D's dtype {D.dtype} and device {D.device}.")
