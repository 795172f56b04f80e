"""Dictionary gradients of PUDLE (Tolooshams & Ba, TMLR 2023, Algorithm 2, eq. 7) and the oracle
directions ``g_hat`` (eq. 4) and ``g_star`` (eq. 5).

With ``L = 0.5 ||x - D z||^2``, ``h = lam ||z||_1`` and ``z_T`` the output of T unrolled layers:

* ``dec``: the analytic gradient, ``z_T`` held constant: ``mean_i (D z_T^i - x^i) z_T^i^T``;
* ``ae-lasso``: back-propagation of ``mean_i [L + h](z_T^i)`` through the encoder;
* ``ae-ls``: back-propagation of ``mean_i L(z_T^i)`` only.

Gradients are averaged over samples (the 1/n of Alg. 2); ``h`` uses the base ``lam`` (the
encoder's schedule ``lam_t`` only sets the thresholds). The subgradient of ``|z|`` at 0 is 0.
"""

from __future__ import annotations

import torch

from udlbench import kernel, lasso
from udlbench._validation import check_choice, check_codes, check_data, check_dictionary
from udlbench.encoders import unroll
from udlbench.linalg import lipschitz_constant

ESTIMATORS = ("dec", "ae-lasso", "ae-ls")
ORACLES = ("hat", "star")
ENCODERS = ("ista", "fista")


def analytic(X: torch.Tensor, D: torch.Tensor, Z: torch.Tensor, *, reduction: str = "mean"):
    """``nabla_2 L = (D z - x) z^T`` for fixed codes: mean over samples (m, p), or per sample
    (n, m, p) with ``reduction="none"`` (TMLR 2023, eqs. 4, 5 and the g_dec of eq. 7)."""
    check_choice("reduction", reduction, ("mean", "none"))
    residual = Z @ D.T - X
    if reduction == "none":
        return torch.einsum("nm,np->nmp", residual, Z)
    return residual.T @ Z / X.shape[0]


def estimate(
    kind: str,
    X: torch.Tensor,
    D: torch.Tensor,
    *,
    lam: float | torch.Tensor,
    n_layers: int,
    alpha: float | None = None,
    encoder: str = "ista",
    reduction: str = "mean",
    return_codes: bool = False,
    backward: str = "auto",
    **encoder_options,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """One of the three gradients of Algorithm 2 (TMLR 2023, eq. 7) at dictionary ``D``.

    Parameters
    ----------
    kind : {"dec", "ae-lasso", "ae-ls"}
    X : Tensor of shape (n, m)
    D : Tensor of shape (m, p)
    lam, n_layers, alpha
        Encoder settings (:func:`udlbench.encoders.ista`; ``lam`` may be a tensor of shape (n,),
        one per sample); ``alpha`` defaults to ``1/L`` with L computed outside the graph.
    encoder : {"ista", "fista"}
    reduction : {"mean", "none"}
        ``"mean"`` returns the (m, p) average; ``"none"`` the per-sample gradients (n, m, p).
    return_codes : bool
        Also return the codes ``z_T`` (n, p) the gradient was computed with.
    backward : {"auto", "autograd", "adjoint"}
        How ae-lasso / ae-ls differentiate the encoder: autograd's tape, or the memory-lean
        adjoint recursion of :mod:`udlbench.kernel` (equal to rounding); ``"auto"`` takes the
        adjoint whenever it applies (element-wise prox).
    **encoder_options
        ``prox``, ``lam_decay``, ``z0``, ``group_size``, ``backprop_depth`` (truncated
        back-propagation of depth K, Malezieux et al., ICLR 2022, Prop. 2.5), ``form``
        (:mod:`udlbench.kernel`).

    Returns
    -------
    Tensor shaped like D (or (n, m, p)), detached from any graph; with ``return_codes`` the pair
    ``(gradient, z_T)``.
    """
    check_choice("kind", kind, ESTIMATORS)
    check_choice("encoder", encoder, ENCODERS)
    check_choice("reduction", reduction, ("mean", "none"))
    check_choice("backward", backward, kernel.BACKWARDS)
    check_dictionary(D)
    check_data(X, D)
    options = dict(lam=lam, n_layers=n_layers, accelerate=encoder == "fista", **encoder_options)
    if kind != "dec":
        options["backward"] = backward
    if alpha is None:
        alpha = 1.0 / lipschitz_constant(D)
    options["alpha"] = alpha
    if kind == "dec":
        with torch.no_grad():
            Z = unroll(X, D.detach(), **options)
        grad = analytic(X, D.detach(), Z, reduction=reduction)
    elif reduction == "mean":
        grad, Z = _backpropagate(kind, X, D, lam, options)
    else:
        z0 = options.pop("z0", None)
        per_sample = [
            _backpropagate(kind, X[i : i + 1], D, _row(lam, i),
                           {**options, "lam": _row(lam, i), "z0": _row(z0, i)})
            for i in range(X.shape[0])
        ]
        grad = torch.stack([g for g, _ in per_sample])
        Z = torch.cat([z for _, z in per_sample])
    return (grad, Z) if return_codes else grad


def _row(value, i: int):
    """Sample i of a per-sample tensor (kept 2-D or 1-D), anything else unchanged."""
    return value[i : i + 1] if isinstance(value, torch.Tensor) else value


def _backpropagate(kind: str, X: torch.Tensor, D: torch.Tensor, lam: float, options: dict):
    """Autograd of the mean lasso (ae-lasso) or least-squares (ae-ls) loss through the encoder;
    returns the gradient and the (detached) codes."""
    with torch.enable_grad():
        leaf = D.detach().requires_grad_(True)
        Z = unroll(X, leaf, **options)
        loss = 0.5 * ((X - Z @ leaf.T) ** 2).sum()
        if kind == "ae-lasso":
            weight = lam.reshape(-1, 1) if isinstance(lam, torch.Tensor) else lam
            loss = loss + (weight * Z.abs()).sum()
        (grad,) = torch.autograd.grad(loss / X.shape[0], leaf)
    return grad, Z.detach()


def oracle(
    kind: str,
    X: torch.Tensor,
    D: torch.Tensor,
    *,
    lam: float | None = None,
    Z_star: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """The oracle directions of TMLR 2023: ``"hat"``, eq. 4, ``g_hat = mean (D z_hat - x) z_hat^T``
    at the certified lasso solution ``z_hat`` (:func:`udlbench.lasso.solve`, needs ``lam``);
    ``"star"``, eq. 5, ``g_star = mean (D z* - x) z*^T`` at the true codes ``Z_star``."""
    check_choice("kind", kind, ORACLES)
    check_dictionary(D)
    check_data(X, D)
    if kind == "hat":
        if lam is None:
            raise ValueError('oracle("hat") needs lam (the lasso regularisation).')
        Z = lasso.solve(X, D.detach(), lam=lam)
    else:
        if Z_star is None:
            raise ValueError('oracle("star") needs Z_star (the true codes, shape (n, p)).')
        check_codes(Z_star, X, D, name="Z_star")
        Z = Z_star
    return analytic(X, D.detach(), Z, reduction=reduction)
