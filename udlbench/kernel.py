"""The dense Gaussian unrolled kernel: the cheaper of two forward forms and a memory-lean backward.

A layer of ISTA / FISTA with a dense dictionary D (m, p) on a batch Y (n, p) of points computes the
pre-activation ``U = Y - alpha (D^T D Y - D^T X)`` (rows as samples) in one of two forms:

* ``direct``: ``U = Y - alpha ((Y D^T - X) D)``, two products of 2nmp FLOPs each per layer;
* ``gram``: ``U = Y - alpha (Y G - C)`` with ``G = D^T D`` (p x p) and ``C = X D`` (n x p) formed
  once (2p^2 m + 2nmp FLOPs), then one product of 2np^2 FLOPs per layer.

Late iterates are sparse: a product with an iterate (or with a masked adjoint) goes through its
support when its density is low (:func:`product`), which beats the dense FLOP count.

:func:`plan` counts both (forward, and forward plus backward when a gradient is needed) and picks
the cheaper; ``unroll(..., form="auto")`` uses it and logs the choice at DEBUG level.

The adjoint backward (:class:`UnrolledAdjoint`, reached through ``unroll(..., backward="adjoint")``)
differentiates ``z_T`` without autograd's per-layer tape. For the element-wise proximal maps
(soft, hard, ReLU_b) the layer Jacobian is ``diag(mask_t)`` with ``mask_t`` the support of
``z_{t+1}`` (the weak derivatives of :mod:`udlbench.operators`), so the backward needs only

* the masks (one byte per entry) and the non-zero values of each iterate (``z_{t+1}[mask_t]``),

from which ``z_t`` (and FISTA's extrapolated ``y_t``) are rebuilt on the way back. With
``Ubar_t = Zbar_{t+1} * mask_t`` the recursion is ``Ybar_t = Ubar_t - alpha Ubar_t G`` and

    Dbar = D (S + S^T) + X^T Cbar,   S = -alpha sum_t Y_t^T Ubar_t,   Cbar = alpha sum_t Ubar_t,

the chain rule through ``G = D^T D`` and ``C = X D`` (Tolooshams & Ba, TMLR 2023, eq. 7 gives the
gradients it serves; Malezieux et al., ICLR 2022, Prop. 2.2 the same back-propagated Jacobian).
It agrees with autograd to rounding (tests: 1e-10 relative in float64, 1e-4 in float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from udlbench import operators

FORMS = ("auto", "direct", "gram")
BACKWARDS = ("auto", "autograd", "adjoint")
ELEMENTWISE_PROXES = ("soft", "hard", "relu")


@dataclass(frozen=True)
class KernelPlan:
    """FLOP counts of the two forms for one call, and the form chosen (the cheaper)."""

    form: str
    flops_direct: int
    flops_gram: int

    @property
    def flops(self) -> int:
        return self.flops_gram if self.form == "gram" else self.flops_direct


def flops(n: int, m: int, p: int, n_layers: int, *, form: str, backward: bool = False) -> int:
    """Multiply-add FLOPs (2 per multiply-add) of ``n_layers`` layers on ``n`` samples.

    Forward: ``direct`` 4nmpT; ``gram`` 2p^2 m + 2nmp + 2np^2 T. The adjoint backward adds, per
    layer, ``Ubar G`` (2np^2, or 4nmp in direct form) and ``Y^T Ubar`` (2np^2), and once
    ``D (S + S^T)`` (2mp^2) and ``X^T Cbar`` (2nmp). Element-wise work is not counted.
    """
    if form == "direct":
        total = 4 * n * m * p * n_layers
        per_layer_back = 4 * n * m * p + 2 * n * p * p
    elif form == "gram":
        total = 2 * p * p * m + 2 * n * m * p + 2 * n * p * p * n_layers
        per_layer_back = 4 * n * p * p
    else:
        raise ValueError(f"form must be 'direct' or 'gram'; got {form!r}.")
    if backward:
        total += per_layer_back * n_layers + 2 * m * p * p + 2 * n * m * p
    return total


def plan(n: int, m: int, p: int, n_layers: int, *, backward: bool = False) -> KernelPlan:
    """Count both forms and choose the cheaper (ties go to ``direct``)."""
    direct = flops(n, m, p, n_layers, form="direct", backward=backward)
    gram = flops(n, m, p, n_layers, form="gram", backward=backward)
    return KernelPlan("gram" if gram < direct else "direct", direct, gram)


def _mask(u: torch.Tensor, b: float, prox: str) -> torch.Tensor:
    """Support of ``prox(u, b)``, which is also where its weak derivative is 1."""
    if prox == "soft":
        return u.abs() > b
    if prox == "hard":
        return u.abs() >= b
    return u > b


def momentum_weights(n_layers: int) -> list[float]:
    """FISTA's extrapolation weights ``beta_t`` in ``y_t = z_t + beta_t (z_t - z_{t-1})`` for
    ``t = 0 .. n_layers - 1`` (``beta_0 = beta_1 = 0``; Beck & Teboulle, 2009)."""
    betas, momentum = [0.0], 1.0
    for _ in range(n_layers - 1):
        following = (1 + (1 + 4 * momentum**2) ** 0.5) / 2
        betas.append((momentum - 1) / following)
        momentum = following
    return betas


def product(a: torch.Tensor, B: torch.Tensor, sparse_below: float) -> torch.Tensor:
    """``a @ B``, through a sparse (COO) ``a`` when its density is below ``sparse_below`` and
    ``B`` has at least :data:`SPARSE_MIN_COLUMNS` columns.

    Late ISTA iterates are s-sparse, so ``Y G`` and ``Y^T Ubar`` cost ``2 nnz p`` instead of
    ``2 n p^2`` on the support. Measured on this CPU (one thread): break-even density 0.15-0.2
    at n = 500, p = 1500, and 6x faster at density 0.012. The conversion costs about one pass
    over ``a``, so narrow products do not pay: forward + adjoint backward at T = 100 took 42 ms
    sparse against 27 ms dense at m = 50, p = 100, but 0.32 s against 0.43 s at m = 200,
    p = 300 and 0.83 s against 2.1 s at m = 1000, p = 1500 (T = 50).
    """
    if (
        sparse_below > 0
        and B.shape[1] >= SPARSE_MIN_COLUMNS
        and torch.count_nonzero(a) < sparse_below * a.numel()
    ):
        return torch.sparse.mm(a.to_sparse(), B)
    return a @ B


def default_sparse_below(device: torch.device) -> float:
    """Density below which :func:`product` goes sparse: 0.1 on CPU (measured, see
    :func:`product`); 0 (never) elsewhere until measured on that device."""
    return SPARSE_BELOW.get(device.type, 0.0)


SPARSE_BELOW = {"cpu": 0.1}
SPARSE_MIN_COLUMNS = 256


def run_layers(X, D, z0, z_prev, thresholds, alpha, prox, betas, form, *, sparse_below=None,
               keep=False):
    """The layers of :class:`UnrolledAdjoint` without autograd: ``(z_T, z_{T-1}, masks,
    values)``, with the supports and non-zero values of every iterate when ``keep`` (empty lists
    otherwise)."""
    if sparse_below is None:
        sparse_below = default_sparse_below(X.device)
    gram = form == "gram"
    if gram:
        G = D.T @ D
        C = X @ D
    masks, values = [], []
    z_before, z = z_prev, z0
    for t, b in enumerate(thresholds):
        y = z + betas[t] * (z - z_before) if betas is not None and betas[t] else z
        if gram:
            u = y - alpha * (product(y, G, sparse_below) - C)
        else:
            u = y - alpha * ((product(y, D.T, sparse_below) - X) @ D)
        z_before, z = z, operators.PROXES[prox](u, b)
        if keep:
            mask = _mask(u, b, prox)
            masks.append(mask)
            values.append(z.masked_select(mask))
    return z, z_before, masks, values


class UnrolledAdjoint(torch.autograd.Function):
    """``z_T`` of layers of ISTA/FISTA with the adjoint backward (see the module docstring).

    ``apply(X, D, z0, z_prev, thresholds, alpha, prox, betas, form, sparse_below)``:
    ``thresholds`` are the per-layer ``b_t = alpha lam_t``; ``betas`` FISTA's extrapolation
    weights of these layers (``y_t = z_t + beta_t (z_t - z_{t-1})``, with ``z_prev`` the iterate
    before ``z0``), or None for ISTA; ``sparse_below`` the density under which products with an
    iterate use its support (:func:`product`; None: the device's default). Gradients flow to X,
    D and z0 (``z_prev`` is held constant, as in truncated back-propagation). Not twice
    differentiable.
    """

    @staticmethod
    def forward(ctx, X, D, z0, z_prev, thresholds, alpha, prox, betas, form, sparse_below):
        if sparse_below is None:
            sparse_below = default_sparse_below(X.device)
        z, _, masks, values = run_layers(X, D, z0, z_prev, thresholds, alpha, prox, betas, form,
                                      sparse_below=sparse_below, keep=True)
        ctx.save_for_backward(X, D, z0, z_prev, *masks, *values)
        ctx.alpha, ctx.gram, ctx.betas, ctx.n_layers = alpha, form == "gram", betas, len(masks)
        ctx.sparse_below = sparse_below
        return z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, z_bar):
        X, D, z0, z_prev, *saved = ctx.saved_tensors
        T, alpha, betas, sparse_below = ctx.n_layers, ctx.alpha, ctx.betas, ctx.sparse_below
        masks, values = saved[:T], saved[T:]

        def iterate(t: int) -> torch.Tensor:
            """z_t rebuilt from its support and values (z_{-1} = z_prev)."""
            if t <= 0:
                return z0 if t == 0 else z_prev
            return torch.zeros_like(z0).masked_scatter_(masks[t - 1], values[t - 1])

        G = D.T @ D if ctx.gram else None
        S = torch.zeros((D.shape[1], D.shape[1]), dtype=D.dtype, device=D.device)
        C_bar = torch.zeros_like(z0)
        grad_next = z_bar.contiguous()  # dL/dz_{t+1}, complete when layer t is reached
        grad_here = torch.zeros_like(z0)  # the part of dL/dz_t that layer t + 1 contributes
        z_t = iterate(T - 1)
        for t in range(T - 1, -1, -1):
            z_before = iterate(t - 1) if betas is not None else None
            y = z_t + betas[t] * (z_t - z_before) if betas is not None and betas[t] else z_t
            u_bar = grad_next * masks[t]
            if ctx.gram:
                y_bar = u_bar - alpha * product(u_bar, G, sparse_below)
            else:
                y_bar = u_bar - alpha * (product(u_bar, D.T, sparse_below) @ D)
            S.sub_(product(y.T, u_bar, sparse_below), alpha=alpha)
            C_bar.add_(u_bar, alpha=alpha)
            if betas is None:
                grad_next = y_bar
                z_t = iterate(t - 1) if t else None
            else:
                grad_next = grad_here.add_(y_bar, alpha=1 + betas[t])
                grad_here = y_bar.mul_(-betas[t])
                z_t = z_before
        X_bar = C_bar @ D.T if ctx.needs_input_grad[0] else None
        D_bar = D @ (S + S.T) + X.T @ C_bar if ctx.needs_input_grad[1] else None
        z0_bar = grad_next if ctx.needs_input_grad[2] else None
        return X_bar, D_bar, z0_bar, None, None, None, None, None, None, None


__all__ = [
    "BACKWARDS",
    "ELEMENTWISE_PROXES",
    "FORMS",
    "KernelPlan",
    "UnrolledAdjoint",
    "flops",
    "default_sparse_below",
    "momentum_weights",
    "plan",
    "product",
    "run_layers",
]
