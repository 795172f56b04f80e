"""Proximal operators and regularisation schedules of the unrolled encoders.

Every operator takes the pre-activation ``v`` and a threshold ``b`` (a float, or a tensor that
broadcasts against ``v``). In an encoder layer ``b = alpha * lam_t`` for every operator, so that
soft-thresholding is the proximal map of ``alpha * lam_t * ||.||_1``.

Subgradient conventions (what autograd returns, and what the theorem checks rely on):

* ``soft_threshold``: ``ST_b(v) = sign(v) relu(|v| - b)`` with derivative ``1{|v| > b}``, the weak
  derivative of Malezieux et al. (ICLR 2022, Lemma C.1); ``abs'(0) = 0`` so ``d||z||_1 = sign(z)``
  with ``sign(0) = 0``, the subgradient of Tolooshams & Ba (TMLR 2023, eq. 7).
* ``hard_threshold``: ``HT_b(v) = v 1{|v| >= b}`` (TMLR 2023, Sec. 4.3), derivative ``1{|v| >= b}``.
* ``relu_threshold``: ``ReLU_b(v) = (v - b) 1{v >= b}`` (Tolooshams et al., ICML 2020, eq. 4),
  the prox of ``b ||z||_1 + indicator(z >= 0)``; derivative ``1{v > b}``.
* ``group_soft_threshold``: ``sigma_b(v_g) = (1 - b / ||v_g||)_+ v_g`` on contiguous groups of
  ``group_size`` entries (Theodosis et al., eq. 7); its Jacobian on an active group is the exact
  non-diagonal ``(1 - b/||v||) I + b v v^T / ||v||^3``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from udlbench._validation import check_choice, check_nonnegative, check_positive_int

Prox = Callable[[torch.Tensor, torch.Tensor | float], torch.Tensor]


def soft_threshold(v: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """``ST_b(v) = sign(v) max(|v| - b, 0)``, the prox of ``b ||.||_1`` (TMLR 2023, Sec. 3)."""
    return torch.sign(v) * torch.relu(torch.abs(v) - b)


def hard_threshold(v: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """``HT_b(v) = v 1{|v| >= b}`` (TMLR 2023, Sec. 4.3; NOODL's coding step)."""
    return v * (torch.abs(v) >= b).to(v.dtype)


def relu_threshold(v: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """``ReLU_b(v) = (v - b) 1{v >= b}``, non-negative sparse coding (ICML 2020, eq. 4)."""
    return torch.relu(v - b)


def group_soft_threshold(
    v: torch.Tensor, b: torch.Tensor | float, *, group_size: int
) -> torch.Tensor:
    """Group soft-threshold ``(1 - b/||v_g||)_+ v_g`` on contiguous groups of the last axis.

    Theodosis, Tolooshams, Tankala, Tasissa & Ba, *On the convergence of group-sparse
    autoencoders*, eq. 7 (the prox of ``b sum_g ||v_g||_2``). ``v`` has shape (..., p) with p a
    multiple of ``group_size``; a group of zero norm maps to zero.
    """
    check_positive_int("group_size", group_size)
    p = v.shape[-1]
    if p % group_size:
        raise ValueError(
            f"group_size={group_size} must divide the code length p={p} "
            "(groups are contiguous blocks of the last axis)."
        )
    groups = v.reshape(*v.shape[:-1], p // group_size, group_size)
    norms = torch.linalg.vector_norm(groups, dim=-1, keepdim=True)
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    scale = torch.relu(1 - b / safe) * (norms > 0).to(v.dtype)
    return (scale * groups).reshape(v.shape)


PROXES: dict[str, Prox] = {
    "soft": soft_threshold,
    "hard": hard_threshold,
    "relu": relu_threshold,
    "group": group_soft_threshold,  # needs group_size, bound by get_prox
}


def get_prox(name: str, *, group_size: int | None = None) -> Prox:
    """The operator registered under ``name`` in {"soft", "hard", "relu", "group"}."""
    check_choice("prox", name, list(PROXES))
    if name == "group":
        if group_size is None:
            raise ValueError('prox="group" needs group_size (the number of entries per group).')
        return lambda v, b: group_soft_threshold(v, b, group_size=group_size)
    if group_size is not None:
        raise ValueError(f'group_size is only used with prox="group"; got prox={name!r}.')
    return PROXES[name]


def lam_schedule(
    lam: float | Sequence[float] | torch.Tensor,
    n_layers: int,
    *,
    lam_decay: float | None = None,
) -> list[float]:
    """Per-layer regularisation ``[lam_0, ..., lam_{T-1}]`` used by layers ``t = 0 .. T-1``.

    * fixed: ``lam`` a number, ``lam_decay=None`` -> ``lam_t = lam``;
    * geometric: ``lam_t = lam * nu**t`` with ``nu = lam_decay`` in (0, 1]
      (Tolooshams & Ba, TMLR 2023, Sec. 4.3, "g^{ae-ls, decay}");
    * explicit: ``lam`` a sequence of length ``n_layers``.
    """
    check_positive_int("n_layers", n_layers)
    if isinstance(lam, torch.Tensor):
        if lam.ndim:
            raise ValueError(
                f"lam is a tensor of shape {tuple(lam.shape)}; lam must be a number or a per-layer "
                "list of n_layers numbers here; the encoders (udlbench.encoders.unroll) also take "
                "a per-sample lam of shape (n,)."
            )
        lam = float(lam)
    if isinstance(lam, int | float):
        lam = check_nonnegative("lam", lam)
        if lam_decay is None:
            return [lam] * n_layers
        nu = float(lam_decay)
        if not 0 < nu <= 1:
            raise ValueError(f"lam_decay must lie in (0, 1]; got {lam_decay!r}.")
        return [lam * nu**t for t in range(n_layers)]
    if lam_decay is not None:
        raise ValueError("lam_decay applies to a scalar lam; got a per-layer sequence as well.")
    values = [float(v) for v in lam]
    if len(values) != n_layers:
        raise ValueError(f"a per-layer lam needs n_layers={n_layers} values; got {len(values)}.")
    for t, v in enumerate(values):
        check_nonnegative(f"lam[{t}]", v)
    return values


def nu_at_step(
    step: int, *, nu0: float = 1.0, decrement: float = 0.005, every: int = 100, nu_min: float = 0.5
) -> float:
    """Training schedule of the decay factor: ``nu = nu0 - decrement * floor(step / every)``.

    Tolooshams & Ba (TMLR 2023), App. C.1: "nu is decreased in value by 0.005 every 100 update
    iterations"; the released code starts at ``nu0 = 1``. Clipped below at ``nu_min`` so that a long
    run never reaches a non-positive factor.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0; got {step}.")
    check_positive_int("every", every)
    if not 0 < nu_min <= nu0 <= 1:
        raise ValueError(f"need 0 < nu_min <= nu0 <= 1; got nu_min={nu_min}, nu0={nu0}.")
    return max(nu_min, nu0 - decrement * (step // every))
