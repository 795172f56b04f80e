"""Unrolled proximal-gradient encoders: ISTA, FISTA and the exponential-family encoder.

One loop serves every variant. Layer ``t = 0 .. T-1`` computes

    z_{t+1} = prox_{b_t}( z_t + alpha * D^T r(x, D z_t) ),    b_t = alpha * lam_t,

with the working residual ``r`` of the family (Tolooshams, Song, Temereanca & Ba, ICML 2020,
Table 1 and eq. 5):

* Gaussian: ``r = x - D z`` — this is ISTA, ``z - alpha D^T (D z - x)`` (Tolooshams & Ba, TMLR 2023,
  Alg. 2, eq. 6);
* binomial with ``M`` trials: ``r = x / M - sigmoid(D z)``;
* Poisson: ``r = Elu(x - exp(D z))``, the Elu-clamped residual of ICML 2020, Sec. 3.2.

FISTA (Beck & Teboulle, 2009) adds the momentum step and returns the last prox iterate (not the
extrapolated point; Malezieux et al., ICLR 2022, Sec. 2). The step defaults to ``1/L`` with
``L = sigma_max(D)^2`` computed outside the autograd graph (``4/L`` for the
binomial family, ICML 2020 Sec. 3.2). Autograd runs through every use of ``D``.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from udlbench import kernel
from udlbench._validation import check_choice, check_positive_int, check_same_kind, check_tensor
from udlbench.dictionaries import Convolutional, Dense, Dictionary, as_dictionary
from udlbench.operators import Prox, get_prox, lam_schedule

FAMILIES = ("gaussian", "binomial", "poisson")
logger = logging.getLogger(__name__)

# The largest stable step is 2 / (curvature bound); the curvature of the binomial negative
# log-likelihood is at most sigma_max^2 / 4 (ICML 2020, Sec. 3.2). Poisson has no global bound.
_CURVATURE = {"gaussian": 1.0, "binomial": 0.25}


class ZeroCodeWarning(UserWarning):
    """lam >= lam_max = max_i ||D^T x_i||_inf: every lasso code is identically zero."""


def working_residual(
    family: str, X: torch.Tensor, prediction: torch.Tensor, trials: torch.Tensor | float | None
) -> torch.Tensor:
    """The residual ``r`` whose correlation ``D^T r`` is the descent direction
    (ICML 2020, Table 1)."""
    if family == "gaussian":
        return X - prediction
    if family == "binomial":
        return X / trials - torch.sigmoid(prediction)
    return F.elu(X - torch.exp(prediction))


def default_step(dictionary: Dictionary, X: torch.Tensor, family: str = "gaussian") -> float:
    """``1/L`` (Gaussian) or ``4/L`` (binomial), ``L = sigma_max(D)^2`` (float64, no autograd)."""
    if family == "poisson":
        raise ValueError(
            "alpha is required for the Poisson family: its log-likelihood gradient is not "
            "Lipschitz, so no step is safe a priori (ICML 2020, Sec. 3.2). DCEA uses alpha=1."
        )
    return 1.0 / (_CURVATURE[family] * dictionary.lipschitz(tuple(X.shape[2:])))


def _check_step(alpha: float, dictionary: Dictionary, X: torch.Tensor, family: str) -> None:
    if family == "poisson":
        return
    lipschitz = _CURVATURE[family] * dictionary.lipschitz(tuple(X.shape[2:]))
    if alpha >= 2.0 / lipschitz:
        raise ValueError(
            f"alpha={alpha:.6g} is at or above 2/L = {2.0 / lipschitz:.6g} (L = "
            f"{lipschitz:.6g} is the gradient's Lipschitz constant): the iteration diverges. "
            f"Use 0 < alpha < 2/L (1/L is the default), or pass check_step=False on purpose."
        )


def _schedule(
    lam: float | Sequence[float] | torch.Tensor, n_layers: int, lam_decay: float | None,
    X: torch.Tensor,
) -> list[float] | list[torch.Tensor]:
    """Per-layer lam (:func:`udlbench.operators.lam_schedule`); a 1-D tensor ``lam`` of shape (n,)
    is one lam per sample, returned per layer as a column broadcasting against the codes."""
    if not (isinstance(lam, torch.Tensor) and lam.ndim == 1):
        return lam_schedule(lam, n_layers, lam_decay=lam_decay)
    check_tensor("lam", lam)
    if lam.shape[0] != X.shape[0]:
        raise ValueError(
            f"a per-sample lam needs one value per sample: shape ({X.shape[0]},); got "
            f"{tuple(lam.shape)}."
        )
    if lam.requires_grad or lam.dtype != X.dtype or lam.device != X.device:
        raise ValueError(
            f"a per-sample lam must be a constant {X.dtype} tensor on {X.device} like X; got "
            f"{lam.dtype} on {lam.device} (requires_grad={lam.requires_grad})."
        )
    if bool((lam < 0).any()):
        raise ValueError("a per-sample lam must be >= 0 for every sample.")
    column = lam.reshape(-1, *[1] * (X.ndim - 1))
    return [column * factor for factor in lam_schedule(1.0, n_layers, lam_decay=lam_decay)]


def _warn_if_zero(
    X: torch.Tensor, dictionary: Dictionary, lams: list, prox: str, family: str
) -> None:
    if prox != "soft" or family != "gaussian" or not isinstance(dictionary, Dense):
        return
    smallest = min(float(torch.as_tensor(lam_t).min()) for lam_t in lams)
    with torch.no_grad():
        lam_max = torch.abs(dictionary.adjoint(X)).amax(dim=1)
    if X.shape[0] and smallest >= float(lam_max.max()):
        warnings.warn(
            f"lam={smallest:.6g} >= lam_max = max_i ||D^T x_i||_inf = {float(lam_max.max()):.6g}: "
            "the lasso code of every sample is identically zero. Choose lam below lam_max.",
            ZeroCodeWarning,
            stacklevel=3,
        )


def unroll(
    X: torch.Tensor,
    D: torch.Tensor | Dictionary,
    *,
    lam: float | Sequence[float],
    n_layers: int,
    alpha: float | None = None,
    prox: str = "soft",
    lam_decay: float | None = None,
    z0: torch.Tensor | None = None,
    trace: bool = False,
    group_size: int | None = None,
    accelerate: bool = False,
    family: str = "gaussian",
    trials: torch.Tensor | float | None = None,
    W_e: torch.Tensor | Dictionary | None = None,
    W_d: torch.Tensor | Dictionary | None = None,
    backprop_depth: int | None = None,
    check_step: bool = True,
    form: str = "auto",
    backward: str = "autograd",
) -> torch.Tensor:
    """Run ``n_layers`` proximal-gradient layers; the engine behind :func:`ista`, :func:`fista`
    and :func:`expfamily` (see the module docstring for the recursion).

    Returns the codes ``z_T`` (for a dense D, shape (n, p)), or with ``trace=True`` the stack of
    all iterates ``z_0 .. z_T`` of shape (T + 1, *code_shape). With ``backprop_depth=K`` only the
    last K layers are recorded by autograd (truncated back-propagation; Malezieux et al.,
    ICLR 2022, Prop. 2.5); the first T - K run without a graph.

    For a dense, tied, Gaussian encoder (:mod:`udlbench.kernel`): ``form`` in {"auto", "direct",
    "gram"} picks two products with D per layer or one with ``D^T D`` ("auto": the fewer FLOPs,
    logged at DEBUG level); ``backward="adjoint"`` differentiates z_T by the memory-lean adjoint
    recursion instead of autograd's tape (element-wise prox, no ``trace``; not twice
    differentiable), and ``"auto"`` uses it whenever it applies and a gradient is needed.
    """
    check_choice("family", family, FAMILIES)
    check_choice("form", form, kernel.FORMS)
    check_choice("backward", backward, kernel.BACKWARDS)
    check_positive_int("n_layers", n_layers)
    dictionary = as_dictionary(D)
    dictionary.check_signal(X)
    check_same_kind(D=dictionary.weight, X=X)
    prox_fn: Prox = get_prox(prox, group_size=group_size)
    lams = _schedule(lam, n_layers, lam_decay, X)
    if family == "binomial":
        if trials is None:
            raise ValueError("family='binomial' needs trials (the number of trials M per entry).")
        if isinstance(trials, torch.Tensor):
            check_tensor("trials", trials)
            try:
                torch.broadcast_shapes(trials.shape, X.shape)
            except RuntimeError:
                raise ValueError(
                    f"trials has shape {tuple(trials.shape)}, which does not broadcast against X "
                    f"of shape {tuple(X.shape)}; use a number or e.g. shape (n, 1, ..., 1)."
                ) from None
            if bool((trials <= 0).any()):
                raise ValueError("trials must be positive.")
        elif not float(trials) > 0:
            raise ValueError(f"trials must be positive; got {trials!r}.")
        if bool(((X < 0) | (X > trials)).any()):
            raise ValueError("binomial counts X must lie in [0, trials].")
    elif trials is not None:
        raise ValueError(f"trials is only used with family='binomial'; got family={family!r}.")
    if family == "poisson" and bool((X < 0).any()):
        raise ValueError("Poisson counts X must be non-negative.")

    tied = W_e is None and W_d is None
    encode_with = dictionary if W_e is None else as_dictionary(W_e, name="W_e")
    predict_with = dictionary if W_d is None else as_dictionary(W_d, name="W_d")
    for name, weights in (("W_e", encode_with), ("W_d", predict_with)):
        weights.check_signal(X)
        check_same_kind(D=dictionary.weight, **{name: weights.weight})
    if alpha is None:
        if not tied:
            raise ValueError("alpha is required with untied weights W_e / W_d (ICML 2020, eq. 6).")
        alpha = default_step(dictionary, X, family)
    elif not float(alpha) > 0:
        raise ValueError(f"alpha must be > 0; got {alpha!r}.")
    elif check_step and tied:
        _check_step(float(alpha), dictionary, X, family)
    alpha = float(alpha)
    _warn_if_zero(X, dictionary, lams, prox, family)

    dense_gaussian = tied and family == "gaussian" and isinstance(dictionary, Dense)
    if form == "gram" and not dense_gaussian:
        raise ValueError(
            'form="gram" needs a dense, tied, Gaussian encoder (D^T D replaces the two products '
            'with D); use form="direct" or "auto" here.'
        )

    code_shape = encode_with.code_shape(X)
    if z0 is None:
        z = torch.zeros(code_shape, dtype=X.dtype, device=X.device)
    else:
        check_tensor("z0", z0)
        if tuple(z0.shape) != tuple(code_shape):
            raise ValueError(f"z0 must have shape {tuple(code_shape)}; got {tuple(z0.shape)}.")
        z = z0
    if backprop_depth is not None:
        check_positive_int("backprop_depth", backprop_depth)
    first_graph_layer = 0 if backprop_depth is None else max(0, n_layers - backprop_depth)
    signal_size = tuple(X.shape[2:]) or None

    adjoint = _use_adjoint(backward, dense_gaussian, prox, trace, X, dictionary, z)
    lean = dense_gaussian and prox in kernel.ELEMENTWISE_PROXES and not trace and (
        adjoint or not torch.is_grad_enabled()
    )
    if dense_gaussian:
        plan = kernel.plan(X.shape[0], *dictionary.weight.shape, n_layers, backward=adjoint)
        form = plan.form if form == "auto" else form
        logger.debug("unroll: %s form, %s (%s)", form, "adjoint backward" if adjoint else
                     "no backward" if lean else "autograd backward", plan)
    if lean:
        return _lean_layers(X, dictionary.weight, z, lams, alpha, prox, accelerate, form,
                            first_graph_layer if adjoint else n_layers)

    gram = form == "gram"
    if gram:
        G = dictionary.weight.T @ dictionary.weight
        C = X @ dictionary.weight
    iterates = [z] if trace else None
    y, momentum = z, 1.0
    for t in range(n_layers):
        graph = contextlib.nullcontext() if t >= first_graph_layer else torch.no_grad()
        with graph:
            if gram:
                u = y - alpha * (y @ G - C)
            else:
                residual = working_residual(family, X, predict_with.decode(y, signal_size), trials)
                u = y + alpha * encode_with.adjoint(residual)
            z_next = prox_fn(u, alpha * lams[t])
            if accelerate:
                momentum_next = (1 + (1 + 4 * momentum**2) ** 0.5) / 2
                y = z_next + ((momentum - 1) / momentum_next) * (z_next - z)
                momentum = momentum_next
            else:
                y = z_next
            z = z_next
        if trace:
            iterates.append(z)
    return torch.stack(iterates) if trace else z


def _lean_layers(X, D, z0, lams, alpha, prox, accelerate, form, free_layers):
    """The layers through :mod:`udlbench.kernel`: the first ``free_layers`` without any graph,
    the rest (if any) with the adjoint backward."""
    betas = kernel.momentum_weights(len(lams)) if accelerate else None
    thresholds = [alpha * lam_t for lam_t in lams]

    def part(values, start, stop):
        return None if values is None else values[start:stop]

    z_prev, z = z0, z0
    if free_layers:
        with torch.no_grad():
            z, z_prev = kernel.run_layers(
                X, D, z0, z0, thresholds[:free_layers], alpha, prox, part(betas, 0, free_layers),
                form,
            )[:2]
    if free_layers == len(lams):
        return z
    return kernel.UnrolledAdjoint.apply(
        X, D, z, z_prev, thresholds[free_layers:], alpha, prox, part(betas, free_layers, None),
        form, None,
    )


def _use_adjoint(backward, dense_gaussian, prox, trace, X, dictionary, z0) -> bool:
    """Whether ``unroll`` differentiates with :class:`udlbench.kernel.UnrolledAdjoint`."""
    applies = dense_gaussian and prox in kernel.ELEMENTWISE_PROXES and not trace
    if backward == "adjoint" and not applies:
        raise ValueError(
            'backward="adjoint" needs a dense, tied, Gaussian encoder with an element-wise prox '
            f'{kernel.ELEMENTWISE_PROXES} and trace=False; use backward="autograd" or "auto".'
        )
    wanted = torch.is_grad_enabled() and any(
        t.requires_grad for t in (X, dictionary.weight, z0)
    )
    return applies and wanted and backward in ("adjoint", "auto")


def ista(
    X: torch.Tensor,
    D: torch.Tensor | Dictionary,
    *,
    lam: float | Sequence[float],
    n_layers: int,
    alpha: float | None = None,
    prox: str = "soft",
    lam_decay: float | None = None,
    z0: torch.Tensor | None = None,
    trace: bool = False,
    group_size: int | None = None,
    backprop_depth: int | None = None,
    check_step: bool = True,
) -> torch.Tensor:
    """Unrolled ISTA: ``z_{t+1} = prox_{alpha lam_t}(z_t - alpha D^T (D z_t - x))``, ``z_0 = 0``.

    Tolooshams & Ba (TMLR 2023), Algorithm 2, eq. 6.

    Parameters
    ----------
    X : Tensor of shape (n, m)
        Samples as rows (or signals (n, channels, *size) with a Convolutional D).
    D : Tensor of shape (m, p), or a :class:`udlbench.dictionaries.Convolutional`
        Dictionary, atoms as columns.
    lam : float, sequence of n_layers floats, or Tensor of shape (n,)
        Regularisation; ``lam_t = lam * lam_decay**t`` when ``lam_decay`` is given. A 1-D
        tensor gives each sample its own lam (e.g. an oracle schedule per sample).
    n_layers : int
        Number of unrolled layers T >= 1.
    alpha : float, optional
        Step; default ``1/sigma_max(D)^2``. A step >= 2/L raises unless ``check_step=False``.
    prox : {"soft", "hard", "relu", "group"}
        Proximal operator, applied with threshold ``alpha * lam_t`` (``group`` needs
        ``group_size``).
    z0 : Tensor of shape (n, p), optional
        Initial code (zero by default).
    trace : bool
        Return every iterate ``z_0 .. z_T`` stacked as (T + 1, n, p) instead of ``z_T``.
    backprop_depth : int, optional
        Record only the last K layers for autograd (truncated back-propagation).

    Returns
    -------
    Tensor of shape (n, p), or (T + 1, n, p) with ``trace=True``.
    """
    return unroll(
        X,
        D,
        lam=lam,
        n_layers=n_layers,
        alpha=alpha,
        prox=prox,
        lam_decay=lam_decay,
        z0=z0,
        trace=trace,
        group_size=group_size,
        backprop_depth=backprop_depth,
        check_step=check_step,
    )


def fista(
    X: torch.Tensor,
    D: torch.Tensor | Dictionary,
    *,
    lam: float | Sequence[float],
    n_layers: int,
    alpha: float | None = None,
    prox: str = "soft",
    lam_decay: float | None = None,
    z0: torch.Tensor | None = None,
    trace: bool = False,
    group_size: int | None = None,
    backprop_depth: int | None = None,
    check_step: bool = True,
) -> torch.Tensor:
    """Unrolled FISTA (Beck & Teboulle, 2009) with the arguments of :func:`ista`.

    ``z_{t+1} = prox(y_t - alpha D^T (D y_t - x))``, ``y_{t+1} = z_{t+1} + ((m_t - 1)/m_{t+1})
    (z_{t+1} - z_t)``, ``m_{t+1} = (1 + sqrt(1 + 4 m_t^2)) / 2``, ``m_0 = 1``; returns the prox
    iterate ``z_T`` (Malezieux et al., ICLR 2022, Sec. 2; their public code returns ``y_T``
    instead).
    """
    return unroll(
        X,
        D,
        lam=lam,
        n_layers=n_layers,
        alpha=alpha,
        prox=prox,
        lam_decay=lam_decay,
        z0=z0,
        trace=trace,
        group_size=group_size,
        backprop_depth=backprop_depth,
        check_step=check_step,
        accelerate=True,
    )


def expfamily(
    Y: torch.Tensor,
    H: torch.Tensor | Dictionary,
    *,
    family: str,
    lam: float | Sequence[float],
    n_layers: int,
    alpha: float | None = None,
    trials: torch.Tensor | float | None = None,
    prox: str = "relu",
    lam_decay: float | None = None,
    z0: torch.Tensor | None = None,
    trace: bool = False,
    accelerate: bool = False,
    W_e: torch.Tensor | Dictionary | None = None,
    W_d: torch.Tensor | Dictionary | None = None,
    backprop_depth: int | None = None,
    check_step: bool = True,
) -> torch.Tensor:
    """Exponential-family encoder of DCEA (Tolooshams, Song, Temereanca & Ba, ICML 2020).

    ``x_t = S_b(x_{t-1} + alpha W_e^T r(y, W_d x_{t-1}))`` with the working residual of Table 1
    (``family`` in {"gaussian", "binomial", "poisson"}; binomial needs ``trials`` M, a number or a
    tensor broadcasting against Y). Tied weights (``W_e = W_d = H``, eq. 5) by default; passing
    ``W_e`` and/or ``W_d`` unties them (eq. 6, where ``H`` stays the decoder). ``prox`` defaults
    to ReLU_b for non-negative codes; ``b = alpha * lam_t``. Other arguments as :func:`ista`.
    """
    return unroll(
        Y,
        H,
        lam=lam,
        n_layers=n_layers,
        alpha=alpha,
        prox=prox,
        lam_decay=lam_decay,
        z0=z0,
        trace=trace,
        accelerate=accelerate,
        family=family,
        trials=trials,
        W_e=W_e,
        W_d=W_d,
        backprop_depth=backprop_depth,
        check_step=check_step,
    )


def proximal_gradient_map(
    Z: torch.Tensor,
    X: torch.Tensor,
    D: torch.Tensor,
    *,
    lam: float,
    alpha: float,
    prox: str = "soft",
) -> torch.Tensor:
    """One ISTA map ``Phi(z) = prox_{alpha lam}(z - alpha D^T (D z - x))`` for any alpha > 0.

    The lasso solution is its fixed point for every alpha (Tolooshams & Ba, TMLR 2023, Lemma 3.2).
    """
    dictionary = Dense(D)
    return get_prox(prox)(Z - alpha * dictionary.adjoint(dictionary.decode(Z) - X), alpha * lam)


__all__ = [
    "FAMILIES",
    "Convolutional",
    "ZeroCodeWarning",
    "default_step",
    "expfamily",
    "fista",
    "ista",
    "proximal_gradient_map",
    "unroll",
    "working_residual",
]
