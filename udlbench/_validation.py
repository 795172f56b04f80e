"""Argument checks shared by every public function.

Each check raises ``ValueError`` (or ``TypeError`` for a wrong type) whose message names the
argument, the value that was given and what is allowed, so that bad input never turns into a
silent NaN further down.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)


def check_tensor(
    name: str,
    value: object,
    *,
    ndim: int | Sequence[int] | None = None,
    finite: bool = True,
) -> torch.Tensor:
    """Return ``value`` if it is a floating-point tensor of an allowed rank with finite entries."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor; got {type(value).__name__}. "
            f"Convert it with torch.as_tensor({name}, dtype=torch.float64)."
        )
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must have dtype float32 or float64; got {value.dtype}. "
            f"Use {name}.double() or {name}.float()."
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, allowed))} dimensions; "
                f"got shape {tuple(value.shape)}."
            )
    if finite and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{name} has {bad} non-finite entries (NaN or inf); all must be finite.")
    return value


def check_same_kind(**tensors: torch.Tensor) -> None:
    """Require every tensor to share the first one's dtype and device."""
    (first_name, first), *rest = tensors.items()
    for name, t in rest:
        if t.dtype != first.dtype:
            raise TypeError(
                f"{name} has dtype {t.dtype} but {first_name} has {first.dtype}; "
                "cast them to one dtype."
            )
        if t.device != first.device:
            raise ValueError(
                f"{name} is on {t.device} but {first_name} is on {first.device}; "
                "move them to one device."
            )


def check_dictionary(D: torch.Tensor, *, name: str = "D") -> torch.Tensor:
    """A dense dictionary of shape (m, p), finite, with no zero atom (column)."""
    check_tensor(name, D, ndim=2)
    norms = torch.linalg.vector_norm(D, dim=0)
    zero = torch.nonzero(norms <= torch.finfo(D.dtype).tiny).flatten()
    if zero.numel():
        raise ValueError(
            f"{name} has {zero.numel()} zero atoms (columns {zero[:10].tolist()}); "
            "every atom must have a positive norm."
        )
    return D


def check_data(X: torch.Tensor, D: torch.Tensor, *, name: str = "X") -> torch.Tensor:
    """Samples as rows: X of shape (n, m) matching a dictionary D of shape (m, p)."""
    check_tensor(name, X, ndim=2)
    check_same_kind(D=D, **{name: X})
    if X.shape[1] != D.shape[0]:
        raise ValueError(
            f"{name} has shape {tuple(X.shape)} but D has shape {tuple(D.shape)}: "
            "samples are rows, "
            f"so {name}.shape[1] must equal D.shape[0] = {D.shape[0]}."
        )
    return X


def check_codes(Z: torch.Tensor, X: torch.Tensor, D: torch.Tensor, *, name: str = "Z") -> None:
    """Codes of shape (n, p) for X of shape (n, m) and D of shape (m, p)."""
    check_tensor(name, Z, ndim=2)
    check_same_kind(D=D, **{name: Z})
    expected = (X.shape[0], D.shape[1])
    if tuple(Z.shape) != expected:
        raise ValueError(f"{name} must have shape (n, p) = {expected}; got {tuple(Z.shape)}.")


def check_positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return value


def check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number > 0; got {value!r}.")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")
    return value


def check_nonnegative(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}.")
    return value


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}; got {value!r}.")
    return value  # type: ignore[return-value]


def check_option_keys(options: object, names: Iterable[str], *, required: bool = True) -> None:
    """``options`` is a dict whose keys are among ``names`` (all of them when ``required``)."""
    names = list(names)
    if not isinstance(options, dict):
        raise ValueError(f"options must be a dict with keys {names}; got {options!r}.")
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; the valid options are {names}.")
    missing = [name for name in names if name not in options]
    if required and missing:
        raise ValueError(f"missing option(s) {missing}; the options are {names}.")
