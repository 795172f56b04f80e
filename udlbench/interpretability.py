"""The interpretable stationary dictionary of PUDLE (Tolooshams & Ba, TMLR 2023, Thm 5.1,
eqs 17-19).

For ``min_{Z, D} 0.5 ||X - D Z||_F^2 + lam ||Z||_1 + (omega / 2) ||D||_F^2`` with the codes fixed
at ``Z~``, the stationary dictionary is ``D~ = X G^{-1} Z~^T`` with ``G = Z~^T Z~ + omega I``
(n x n). In udlbench's row convention (X of shape (n, m), Z of shape (n, p)) the same objects read
``G = Z Z^T + omega I`` and ``D~ = X^T G^{-1} Z`` (m, p):

* eq. 17: atom j interpolates the training samples, ``D~_j = X^T (G^{-1} w_j)`` with
  ``w_j = Z[:, j]``; ``(G^{-1} w_j)_k`` is the contribution of training sample k to atom j;
* eq. 18: a code ``z_hat`` reconstructs ``x_hat = D~ z_hat = X^T beta`` with
  ``beta = G^{-1} Z z_hat``;
* eq. 19: ``x_hat = sum_k (X^T G^{-1})_k <z~^k, z_hat>``: samples with similar codes contribute
  most.
"""

from __future__ import annotations

import torch

from udlbench._validation import check_nonnegative, check_same_kind, check_tensor

MAX_CONDITION = 1e12


def code_gram(Z: torch.Tensor, *, omega: float) -> torch.Tensor:
    """``G = Z Z^T + omega I`` (n, n) for training codes Z (n, p); raises if G is numerically
    singular (condition number above 1e12), e.g. omega = 0 with more samples than atoms."""
    check_tensor("Z", Z, ndim=2)
    omega = check_nonnegative("omega", omega)
    G = Z @ Z.T + omega * torch.eye(Z.shape[0], dtype=Z.dtype, device=Z.device)
    eigenvalues = torch.linalg.eigvalsh(G)  # G is symmetric positive semi-definite
    condition = float(eigenvalues[-1] / eigenvalues[0]) if eigenvalues[0] > 0 else float("inf")
    if not condition <= MAX_CONDITION:
        raise ValueError(
            f"G = Z Z^T + omega I is singular to working precision (condition number "
            f"{condition:.3g} > {MAX_CONDITION:.0e}) with omega={omega} and n={Z.shape[0]} samples "
            f"for p={Z.shape[1]} atoms; use omega > 0 (TMLR 2023, Thm 5.1 needs G invertible)."
        )
    return G


def sample_contributions(Z: torch.Tensor, *, omega: float) -> torch.Tensor:
    """``G^{-1} Z`` (n, p): column j holds the weights ``(G^{-1} w_j)_k`` of the training samples
    in atom j (eq. 17; TMLR 2023, Fig. 8)."""
    return torch.linalg.solve(code_gram(Z, omega=omega), Z)


def stationary_dictionary(X: torch.Tensor, Z: torch.Tensor, *, omega: float) -> torch.Tensor:
    """``D~ = X^T G^{-1} Z`` (m, p), the stationary dictionary for the codes Z (Thm 5.1)."""
    _check_pair(X, Z)
    return X.T @ sample_contributions(Z, omega=omega)


def reconstruction_weights(Z: torch.Tensor, z_hat: torch.Tensor, *, omega: float) -> torch.Tensor:
    """``beta = G^{-1} Z z_hat`` for codes ``z_hat`` (k, p): rows of shape (k, n) such that the
    reconstructions are ``beta @ X`` (eq. 18; TMLR 2023, Fig. 9)."""
    check_tensor("z_hat", z_hat, ndim=2)
    if z_hat.shape[1] != Z.shape[1]:
        raise ValueError(
            f"z_hat has {z_hat.shape[1]} atoms per code but Z has {Z.shape[1]}; they must match."
        )
    return torch.linalg.solve(code_gram(Z, omega=omega), Z @ z_hat.T).T


def ridge_dictionary(X: torch.Tensor, Z: torch.Tensor, *, omega: float) -> torch.Tensor:
    """The exact dictionary step for fixed codes: ``argmin_D 0.5 ||X - Z D^T||_F^2 + (omega / 2)
    ||D||_F^2 = X^T Z (Z^T Z + omega I)^{-1}`` (m, p), from the p x p normal equations.

    This is the push-through form of Thm 5.1's ``X^T G^{-1} Z`` (TMLR 2023, App. A.6), solved
    without the n x n Gram matrix G; with ``omega = 0`` it is least squares and needs codes Z
    (n, p) of full column rank.
    """
    _check_pair(X, Z)
    omega = check_nonnegative("omega", omega)
    normal = Z.T @ Z + omega * torch.eye(Z.shape[1], dtype=Z.dtype, device=Z.device)
    factor, info = torch.linalg.cholesky_ex(normal)
    if int(info) != 0:
        raise ValueError(
            f"Z^T Z + omega I is not positive definite with omega={omega}: the codes Z of shape "
            f"{tuple(Z.shape)} are rank deficient; use omega > 0."
        )
    return torch.cholesky_solve(Z.T @ X, factor).T


def ridge_gradient(
    X: torch.Tensor, Z: torch.Tensor, D: torch.Tensor, *, omega: float
) -> torch.Tensor:
    """Gradient in D (m, p) of ``0.5 ||X - Z D^T||_F^2 + (omega / 2) ||D||_F^2``, i.e.
    ``-(X - Z D^T)^T Z + omega D``; it vanishes exactly at the stationary dictionary of Thm 5.1
    (TMLR 2023, App. A.6, with the sign of the first term corrected: THEOREMS.md P-T5.1)."""
    _check_pair(X, Z)
    check_tensor("D", D, ndim=2)
    if tuple(D.shape) != (X.shape[1], Z.shape[1]):
        raise ValueError(
            f"D must have shape (m, p) = {(X.shape[1], Z.shape[1])}; got {tuple(D.shape)}."
        )
    omega = check_nonnegative("omega", omega)
    return -(X - Z @ D.T).T @ Z + omega * D


def code_similarity(Z: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
    """Code similarities ``<z~^k, z_hat^j>`` (k, n) of test codes ``z_hat`` (k, p) to training
    codes Z (n, p): the weights of eq. 19 (TMLR 2023, Fig. 10 histograms them by class)."""
    check_tensor("Z", Z, ndim=2)
    check_tensor("z_hat", z_hat, ndim=2)
    check_same_kind(Z=Z, z_hat=z_hat)
    if z_hat.shape[1] != Z.shape[1]:
        raise ValueError(
            f"z_hat has {z_hat.shape[1]} atoms per code but Z has {Z.shape[1]}; they must match."
        )
    return z_hat @ Z.T


def _check_pair(X: torch.Tensor, Z: torch.Tensor) -> None:
    check_tensor("X", X, ndim=2)
    check_tensor("Z", Z, ndim=2)
    check_same_kind(X=X, Z=Z)
    if X.shape[0] != Z.shape[0]:
        raise ValueError(
            f"X has {X.shape[0]} samples but Z has {Z.shape[0]} codes; samples are rows of both."
        )
