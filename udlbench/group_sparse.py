"""The shallow group-sparse autoencoder of Theodosis, Tolooshams, Tankala, Tasissa & Ba, *On the
convergence of group-sparse autoencoders*: its closed-form gradients, the approximation the
paper's analysis uses, and the quantities its propositions, lemma and theorems are stated in.

Notation. The paper writes one sample ``y = A* x*`` with ``A`` of shape (n, m) made of ``Gamma``
groups of ``d`` columns; udlbench keeps its own convention (samples are rows): data ``X`` of
shape (N, m) whose rows are the paper's ``y``, a dictionary ``D`` of shape (m, p) (the paper's
``A``, ``p = d Gamma``) and codes ``Z`` of shape (N, p) (the paper's ``x``). Group ``g`` is the
block of columns ``g d .. (g + 1) d - 1``, as in :func:`udlbench.data.make_group_sparse` and
:func:`udlbench.operators.group_soft_threshold`.

The autoencoder (eqs 11-13) encodes with one group soft-threshold, ``z = sigma_lam(D^T x)``,
decodes with ``D z``, and is trained on ``L(D) = 0.5 ||x - D sigma_lam(D^T x)||^2``. With
``udlbench.encoders.ista(X, D, lam=lam, n_layers=1, alpha=1.0, prox="group",
group_size=d, check_step=False)`` the encoder is one ISTA layer from ``z_0 = 0``, so that
``udlbench.gradients.estimate("ae-ls", ...)`` with the same options back-propagates through it;
:func:`gradient` is the closed form that autograd must reproduce, and
:func:`approximate_gradient` is the paper's approximation of it (eq. 24).
"""

from __future__ import annotations

import torch

from udlbench._validation import (
    check_choice,
    check_data,
    check_dictionary,
    check_nonnegative,
    check_positive_int,
    check_tensor,
)
from udlbench.data import _generator
from udlbench.operators import group_soft_threshold

__all__ = [
    "approximate_gradient",
    "block_coherence",
    "gradient",
    "gram_bound",
    "group_norms",
    "group_support",
    "group_support_recovery",
    "orthonormalize_groups",
    "perturb_groups",
    "recovery_range",
    "stiefel_tangent",
]

_GEN_DTYPE = torch.float64


def _n_groups(name: str, size: int, group_size: int) -> int:
    check_positive_int("group_size", group_size)
    if size % group_size:
        raise ValueError(
            f"group_size={group_size} must divide the number of atoms of {name} ({size}); groups "
            "are contiguous blocks of group_size columns."
        )
    return size // group_size


def _blocks(D: torch.Tensor, group_size: int) -> torch.Tensor:
    """The groups of D (m, p) as a (Gamma, m, d) stack."""
    m, p = D.shape
    return D.reshape(m, p // group_size, group_size).permute(1, 0, 2)


def _unblocks(blocks: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_blocks`: (Gamma, m, d) back to (m, Gamma d)."""
    n_groups, m, d = blocks.shape
    return blocks.permute(1, 0, 2).reshape(m, n_groups * d)


def group_norms(V: torch.Tensor, *, group_size: int) -> torch.Tensor:
    """Euclidean norms ``||v_g||`` of the contiguous groups of the last axis.

    Parameters
    ----------
    V : Tensor of shape (..., p)
        ``p`` a multiple of ``group_size``.
    group_size : int

    Returns
    -------
    Tensor of shape (..., p // group_size)
    """
    check_tensor("V", V, finite=False)
    n_groups = _n_groups("V", V.shape[-1], group_size)
    return torch.linalg.vector_norm(V.reshape(*V.shape[:-1], n_groups, group_size), dim=-1)


def group_support(Z: torch.Tensor, *, group_size: int, tol: float = 0.0) -> torch.Tensor:
    """The active groups ``||z_g|| > tol`` of codes Z (the group support S of eq. 2).

    Parameters
    ----------
    Z : Tensor of shape (N, p)
    group_size : int
    tol : float
        ``tol >= 0``.

    Returns
    -------
    BoolTensor of shape (N, p // group_size)
    """
    tol = check_nonnegative("tol", tol)
    return group_norms(Z, group_size=group_size) > tol


def group_support_recovery(Z: torch.Tensor, Z_star: torch.Tensor, *, group_size: int) -> float:
    """Fraction of samples whose estimated group support equals the true one exactly.

    The event of Lemma 1 (one-step group-support recovery): ``||z_g|| > 0`` exactly for the
    groups ``g in S`` of the generating code.

    Parameters
    ----------
    Z, Z_star : Tensor of shape (N, p)
        Estimated and generating codes, on one device.
    group_size : int

    Returns
    -------
    float
        In [0, 1].
    """
    check_tensor("Z", Z, ndim=2)
    check_tensor("Z_star", Z_star, ndim=2)
    if Z.shape != Z_star.shape:
        raise ValueError(
            f"Z and Z_star must have the same shape; got {tuple(Z.shape)} and "
            f"{tuple(Z_star.shape)}."
        )
    same = group_support(Z, group_size=group_size) == group_support(Z_star, group_size=group_size)
    return float(same.all(dim=1).to(torch.float64).mean())


def block_coherence(D: torch.Tensor, *, group_size: int, raw: bool = False) -> float:
    """Block coherence of a dictionary with groups of ``group_size`` columns.

    Eq. 3: ``mu_B = max_{g != h} (1/d) ||D_g^T D_h||_2``. With ``raw=True`` the factor 1/d is
    dropped, ``mu_B^raw = max_{g != h} ||D_g^T D_h||_2 = d mu_B``: this is the quantity the proof
    of Prop. 2 (eq. 39) bounds ``||D*_v^T D*_h||_2`` by, so Prop. 2 and Lemma 1 hold with
    ``mu_B^raw`` and not with eq. 3's ``mu_B`` (THEOREMS.md G-P2; Sec. 8 item 31). The columns
    are used as given (the paper assumes normalised groups).

    Parameters
    ----------
    D : Tensor of shape (m, p)
        At least two groups.
    group_size : int
    raw : bool

    Returns
    -------
    float
    """
    check_dictionary(D)
    n_groups = _n_groups("D", D.shape[1], group_size)
    if n_groups < 2:
        raise ValueError(f"D needs at least 2 groups for a block coherence; got {n_groups}.")
    gram = D.detach().to(torch.float64).T @ D.detach().to(torch.float64)
    blocks = gram.reshape(n_groups, group_size, n_groups, group_size).permute(0, 2, 1, 3)
    norms = torch.linalg.matrix_norm(blocks, ord=2)
    norms.fill_diagonal_(0.0)
    largest = float(norms.max())
    return largest if raw else largest / group_size


def orthonormalize_groups(D: torch.Tensor, *, group_size: int) -> torch.Tensor:
    """Replace every group by its polar factor, the nearest matrix with orthonormal columns.

    ``D_g = U V^T`` for the thin SVD ``D_g = U S V^T``: the premise ``A_g^T A_g = I`` of the
    model conditions (Theodosis et al., Sec. 3.2, Assumption 4) and the re-orthonormalisation
    used by the convergence check of Thm 2 (THEOREMS.md G-T2).

    Parameters
    ----------
    D : Tensor of shape (m, p)
        Every group of full column rank; ``group_size <= m``.
    group_size : int

    Returns
    -------
    Tensor of shape (m, p)
        Same dtype and device; ``D_g^T D_g = I`` for every group.
    """
    check_dictionary(D)
    _n_groups("D", D.shape[1], group_size)
    if group_size > D.shape[0]:
        raise ValueError(
            f"group_size={group_size} exceeds the dimension m={D.shape[0]}: a group cannot have "
            "orthonormal columns."
        )
    U, _, Vh = torch.linalg.svd(_blocks(D, group_size), full_matrices=False)
    return _unblocks(U @ Vh)


def perturb_groups(
    D_star: torch.Tensor, delta: float, *, group_size: int, seed: int = 0
) -> torch.Tensor:
    """A dictionary with orthonormal groups, each at Frobenius distance exactly ``delta`` from
    the corresponding group of ``D_star``.

    ``D_g = polar(D*_g + t_g E_g)`` with ``E_g`` Gaussian and ``t_g`` found by bisection so that
    ``||D_g - D*_g||_F = delta``: the model condition (17) with equality for every group, as the
    checks of Lemma 1 and Thms 1-2 need (Theodosis et al., Sec. 3.2; THEOREMS.md G-L1, G-T1).
    Computed in float64 on the CPU, so that CPU and CUDA give the same dictionary.

    Parameters
    ----------
    D_star : Tensor of shape (m, p)
        Orthonormal groups (``D*_g^T D*_g = I`` to the square root of its dtype's machine epsilon),
        e.g. from :func:`orthonormalize_groups`.
    delta : float
        ``0 <= delta < 1`` (a distance the polar map reaches for every direction).
    group_size : int
    seed : int

    Returns
    -------
    Tensor of shape (m, p)
        Same dtype and device as ``D_star``.
    """
    check_dictionary(D_star, name="D_star")
    _n_groups("D_star", D_star.shape[1], group_size)
    delta = check_nonnegative("delta", delta)
    if delta >= 1:
        raise ValueError(f"delta must lie in [0, 1); got {delta!r}.")
    blocks = _blocks(D_star.detach().to(device="cpu", dtype=_GEN_DTYPE), group_size)
    eye = torch.eye(group_size, dtype=_GEN_DTYPE)
    departure = float((blocks.transpose(1, 2) @ blocks - eye).abs().max())
    if departure > torch.finfo(D_star.dtype).eps ** 0.5:
        raise ValueError(
            f"D_star must have orthonormal groups (D*_g^T D*_g = I); the largest departure is "
            f"{departure:.3g}. Use orthonormalize_groups(D_star, group_size={group_size}) first."
        )
    g = _generator(seed, "perturb_groups")
    E = torch.randn(blocks.shape, generator=g, dtype=_GEN_DTYPE)
    E = E / torch.linalg.matrix_norm(E, keepdim=True)

    def moved(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        U, _, Vh = torch.linalg.svd(blocks + t[:, None, None] * E, full_matrices=False)
        polar = U @ Vh
        return polar, torch.linalg.matrix_norm(polar - blocks)

    low = torch.zeros(blocks.shape[0], dtype=_GEN_DTYPE)
    high = torch.full_like(low, 2 * delta + 1e-3)
    for _ in range(50):
        middle = (low + high) / 2
        far = moved(middle)[1] > delta
        high = torch.where(far, middle, high)
        low = torch.where(far, low, middle)
    polar, _ = moved((low + high) / 2)
    return _unblocks(polar).to(device=D_star.device, dtype=D_star.dtype)


def recovery_range(
    *, n_active: int, b_min: float, b_max: float, mu_B: float, delta: float
) -> tuple[float, float]:
    """The thresholds of Lemma 1 (eq. 22): ``[gamma B_max (mu_B + delta),
    B_min (1 - delta) - gamma B_max (mu_B + delta)]``.

    When the interval is non-empty, any ``lam`` in it recovers the group support in one step,
    provided ``mu_B`` bounds ``||D*_v^T D*_h||_2`` for every pair of groups (use
    ``block_coherence(..., raw=True)``; THEOREMS.md G-P2) and ``delta`` bounds
    ``||D_g - D*_g||_F`` for every group, inside the support or not (Sec. 8 item 32).

    Parameters
    ----------
    n_active : int
        ``gamma``, the number of active groups.
    b_min, b_max : float
        ``0 <= b_min <= b_max``, the range of the group norms (15).
    mu_B, delta : float
        Non-negative.

    Returns
    -------
    (float, float)
        ``(low, high)``; empty when ``low > high``.
    """
    check_positive_int("n_active", n_active)
    b_min, b_max = check_nonnegative("b_min", b_min), check_nonnegative("b_max", b_max)
    if b_min > b_max:
        raise ValueError(f"need b_min <= b_max; got b_min={b_min!r}, b_max={b_max!r}.")
    mu_B, delta = check_nonnegative("mu_B", mu_B), check_nonnegative("delta", delta)
    low = n_active * b_max * (mu_B + delta)
    return low, b_min * (1 - delta) - low


def gram_bound(tau: float | torch.Tensor, *, delta: float, size: int) -> float | torch.Tensor:
    """The right side of the hypothesis of Thm 2 (eq. 69):
    ``(1/tau^2) [3 (2 - tau)(tau - 2/3) size + (1 - tau)(2 - tau) delta^2]``, an upper bound
    required of ``||A_g^T A*_g||_F^2``.

    The paper prints ``size = n`` (the signal dimension), from ``||I||_F^2 = n`` in eq. 66;
    ``A_g^T A*_g`` is d x d, so ``size = d`` is the corrected form (THEOREMS.md G-T2 (a),
    Sec. 8 item 33).

    Parameters
    ----------
    tau : float or Tensor
        ``tau_g = 1 - lam / ||A_g^T y||`` in (0, 1].
    delta : float
        The closeness bound of (17), ``delta >= 0``.
    size : int
        ``n`` (as printed) or ``d`` (corrected).

    Returns
    -------
    float or Tensor, like ``tau``.
    """
    delta = check_nonnegative("delta", delta)
    check_positive_int("size", size)
    values = torch.as_tensor(tau, dtype=torch.float64)
    if not bool(((values > 0) & (values <= 1)).all()):
        raise ValueError("tau must lie in (0, 1] (tau_g = 1 - lam / ||A_g^T y|| on active groups).")
    bound = (3 * (2 - tau) * (tau - 2 / 3) * size + (1 - tau) * (2 - tau) * delta**2) / tau**2
    return float(bound) if isinstance(tau, int | float) else bound


def _encode(X: torch.Tensor, D: torch.Tensor, lam: float, group_size: int):
    """Pre-activations ``U = X D`` (the rows are ``D^T x``), codes ``Z = sigma_lam(U)``,
    residuals ``R = X - Z D^T`` and back-projected residuals ``W = R D`` (eq. 11)."""
    check_dictionary(D)
    check_data(X, D)
    _n_groups("D", D.shape[1], group_size)
    lam = check_nonnegative("lam", lam)
    U = X @ D
    Z = group_soft_threshold(U, lam, group_size=group_size)
    R = X - Z @ D.T
    return U, Z, R, R @ D, lam


def _assemble(X, R, Z, V, reduction):
    """``-(r z^T + x v^T)`` per sample (eq. 47), averaged or stacked."""
    check_choice("reduction", reduction, ("mean", "none"))
    if reduction == "none":
        return -(torch.einsum("nm,np->nmp", R, Z) + torch.einsum("nm,np->nmp", X, V))
    return -(R.T @ Z + X.T @ V) / X.shape[0]


def gradient(
    X: torch.Tensor, D: torch.Tensor, *, lam: float, group_size: int, reduction: str = "mean"
) -> torch.Tensor:
    """Exact gradient of ``L(D) = 0.5 ||x - D sigma_lam(D^T x)||^2`` (eq. 40), averaged over the
    samples (eq. 13).

    Eqs 41 / 47 give, per group, ``-(y - A sigma) sigma_lam(A_g^T y)^T
    - y (y - A sigma)^T A_g J_g`` where the paper writes ``diag(sigma'_lam(A_g^T y))`` for the
    Jacobian ``J_g`` of the group soft-threshold. That Jacobian is not diagonal: on an active
    group (``u = A_g^T y``, ``||u|| > lam``) it is ``tau_g I + lam u u^T / ||u||^3`` with
    ``tau_g = 1 - lam / ||u||``, and 0 on an inactive one. This function uses the exact ``J_g``,
    so it equals back-propagation through the encoder (THEOREMS.md G-GRAD (a)). In udlbench's
    layout, with ``r = x - D z``, ``z = sigma_lam(D^T x)`` and ``v = J (D^T r)``, the per-sample
    gradient is ``-(r z^T + x v^T)``.

    Parameters
    ----------
    X : Tensor of shape (N, m)
        Samples as rows (the paper's y).
    D : Tensor of shape (m, p)
        The weights (the paper's A), ``p`` a multiple of ``group_size``.
    lam : float
        Threshold ``lam >= 0`` (the paper's bias).
    group_size : int
        ``d``.
    reduction : {"mean", "none"}
        The (m, p) average, or the per-sample gradients (N, m, p).

    Returns
    -------
    Tensor of shape (m, p) or (N, m, p)
    """
    U, Z, R, W, lam = _encode(X, D, lam, group_size)
    N, p = U.shape
    shape = (N, p // group_size, group_size)
    u, w = U.reshape(shape), W.reshape(shape)
    norms = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
    active = norms > lam
    safe = torch.where(active, norms, torch.ones_like(norms))
    tau = torch.where(active, 1 - lam / safe, torch.zeros_like(norms))
    rank_one = torch.where(active, lam * u * (u * w).sum(-1, keepdim=True) / safe**3, 0.0)
    V = (tau * w + rank_one).reshape(N, p)
    return _assemble(X, R, Z, V, reduction)


def approximate_gradient(
    X: torch.Tensor, D: torch.Tensor, *, lam: float, group_size: int, reduction: str = "mean"
) -> torch.Tensor:
    """The approximate gradient of the paper's analysis (eqs 24, 26, 49, 51), averaged over the
    samples.

    Eq. 24 (= eq. 48) substitutes ``sigma'_lam(A_g^T y) = 1{x_g != 0} tau_g 1`` in eq. 23, i.e.
    replaces the group soft-threshold's Jacobian ``tau_g I + lam u u^T / ||u||^3`` by
    ``tau_g I``, dropping the rank-one term (THEOREMS.md G-GRAD, Sec. 8 item 34). The result is
    eq. 49 / 51: ``-1{x_g != 0} tau_g [(I - A_S diag(tau) A_S^T) y y^T + y y^T (I - A_S diag(tau)
    A_S^T)^T] A_g``. (Eq. 26 prints ``... y y^T y y^T ...`` where eq. 51 has the sum of the two
    products; eq. 51 is what eq. 49 gives.) Per sample, in udlbench's layout: ``-(r z^T +
    x v^T)`` with ``v_g = tau_g D_g^T r`` on the groups the encoder keeps and 0 elsewhere.

    Parameters
    ----------
    X : Tensor of shape (N, m)
    D : Tensor of shape (m, p)
    lam : float
    group_size : int
    reduction : {"mean", "none"}

    Returns
    -------
    Tensor of shape (m, p) or (N, m, p)
    """
    U, Z, R, W, lam = _encode(X, D, lam, group_size)
    N, p = U.shape
    shape = (N, p // group_size, group_size)
    norms = torch.linalg.vector_norm(U.reshape(shape), dim=-1, keepdim=True)
    active = norms > lam
    safe = torch.where(active, norms, torch.ones_like(norms))
    tau = torch.where(active, 1 - lam / safe, torch.zeros_like(norms))
    V = (tau * W.reshape(shape)).reshape(N, p)
    return _assemble(X, R, Z, V, reduction)


def stiefel_tangent(D: torch.Tensor, G: torch.Tensor, *, group_size: int) -> torch.Tensor:
    """Project a gradient onto the tangent space of the orthonormal-group constraint:
    ``P_T(G_g) = G_g - D_g sym(D_g^T G_g)`` with ``sym(M) = (M + M^T) / 2``.

    Under ``A_g^T A_g = I`` (Theodosis et al., Assumption 4) the radial part of the gradient is
    removed by the re-orthonormalisation, so the alignment of Thm 1 is measured on this part
    (THEOREMS.md G-T1).

    Parameters
    ----------
    D : Tensor of shape (m, p)
        Orthonormal groups.
    G : Tensor of shape (m, p)
    group_size : int

    Returns
    -------
    Tensor of shape (m, p)
    """
    check_dictionary(D)
    check_tensor("G", G, ndim=2)
    if G.shape != D.shape:
        raise ValueError(f"G must have the shape of D {tuple(D.shape)}; got {tuple(G.shape)}.")
    _n_groups("D", D.shape[1], group_size)
    blocks, grads = _blocks(D, group_size), _blocks(G, group_size)
    inner = blocks.transpose(1, 2) @ grads
    return _unblocks(grads - blocks @ (inner + inner.transpose(1, 2)) / 2)

