"""Small linear-algebra utilities: the Lipschitz constant of the least-squares gradient."""

from __future__ import annotations

from collections.abc import Callable

import torch


def power_iteration(
    gram: Callable[[torch.Tensor], torch.Tensor],
    shape: tuple[int, ...],
    *,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    n_iter: int = 1000,
    tol: float = 1e-10,
    seed: int = 0,
) -> float:
    """Largest eigenvalue of the positive semi-definite map ``v -> gram(v)``.

    For ``gram(v) = D^T D v`` this is ``sigma_max(D)^2``, the Lipschitz constant ``L`` of the
    gradient of ``0.5 ||x - D z||^2`` (Daubechies et al., 2004; the step of ISTA is ``1/L``).
    Runs without autograd (Malezieux et al., ICLR 2022, Alg. 1: L is computed outside the graph)
    from a fixed random start, so that the same operator always gives the same number.
    """
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
    v = v / torch.linalg.vector_norm(v)
    estimate = 0.0
    with torch.no_grad():
        for _ in range(n_iter):
            w = gram(v)
            new = float(torch.linalg.vector_norm(w))
            if new == 0.0:
                return 0.0
            v = w / new
            if abs(new - estimate) <= tol * new:
                return new
            estimate = new
    return estimate


def lipschitz_constant(D: torch.Tensor, **kwargs) -> float:
    """``sigma_max(D)^2`` of a dense dictionary D of shape (m, p), by power iteration."""
    D = D.detach()
    return power_iteration(
        lambda v: D.T @ (D @ v), (D.shape[1],), dtype=D.dtype, device=D.device, **kwargs
    )
