"""Dictionaries as linear operators: dense matrices and 1-D / 2-D convolutions.

An encoder only needs two maps of a dictionary: ``decode`` (codes -> signals, ``D z``) and
``adjoint`` (signals -> codes, ``D^T x``). Dense dictionaries follow the project convention (samples
are rows: ``X`` (n, m), ``Z`` (n, p), ``D`` (m, p)); convolutional dictionaries act on batches of
signals ``(n, channels, *size)`` with codes ``(n, n_filters, *code_size)`` (Tolooshams, Song,
Temereanca & Ba, ICML 2020, Sec. 3: ``H`` is a convolutional matrix built from filters ``h_c``).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from udlbench._validation import check_dictionary, check_positive_int, check_tensor
from udlbench.linalg import largest_eigenvalue, lipschitz_constant


def _check_operand(name: str, value: object, ndim: int) -> torch.Tensor:
    """Type and rank of an operand of ``decode`` / ``adjoint``.

    Cheap on purpose (no finiteness scan, no device synchronisation): it runs at every layer.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}.")
    if value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions; got shape {tuple(value.shape)}.")
    return value


class Dense:
    """A dense dictionary ``D`` of shape (m, p), atoms as columns."""

    def __init__(self, D: torch.Tensor, *, name: str = "D") -> None:
        self.weight = check_dictionary(D, name=name)
        self.name = name

    @property
    def dtype(self) -> torch.dtype:
        return self.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.weight.device

    def check_signal(self, X: torch.Tensor, name: str = "X") -> None:
        check_tensor(name, X, ndim=2)
        if X.shape[1] != self.weight.shape[0]:
            raise ValueError(
                f"{name} has shape {tuple(X.shape)} but {self.name} has shape "
                f"{tuple(self.weight.shape)}: samples are rows, so {name}.shape[1] must equal "
                f"{self.name}.shape[0] = {self.weight.shape[0]}."
            )

    def code_shape(self, X: torch.Tensor) -> tuple[int, ...]:
        return (X.shape[0], self.weight.shape[1])

    def decode(self, Z: torch.Tensor, signal_size: tuple[int, ...] | None = None) -> torch.Tensor:
        """Rows ``D z_i``: (n, p) -> (n, m). ``signal_size`` is ignored (it is implied by D)."""
        _check_operand("Z", Z, 2)
        if Z.shape[1] != self.weight.shape[1]:
            raise ValueError(
                f"Z has shape {tuple(Z.shape)} but {self.name} has {self.weight.shape[1]} atoms: "
                f"Z.shape[1] must equal {self.name}.shape[1]."
            )
        return Z @ self.weight.T

    def adjoint(self, X: torch.Tensor) -> torch.Tensor:
        """Rows ``D^T x_i``: (n, m) -> (n, p)."""
        _check_operand("X", X, 2)
        if X.shape[1] != self.weight.shape[0]:
            raise ValueError(
                f"X has shape {tuple(X.shape)} but {self.name} has shape "
                f"{tuple(self.weight.shape)}: X.shape[1] must equal {self.name}.shape[0]."
            )
        return X @ self.weight

    def lipschitz(self, signal_size: tuple[int, ...] | None = None) -> float:
        """``sigma_max(D)^2`` in float64 outside the autograd graph (``lipschitz_constant``)."""
        return lipschitz_constant(self.weight)


class Convolutional:
    """A convolutional dictionary with filters of shape (n_filters, channels, *kernel).

    ``decode`` is the transposed convolution (sum over filters of ``h_c * z_c``) and ``adjoint``
    the correlation ``H^T x``, both with the given stride, so that ``<H z, x> = <z, H^T x>``
    exactly. One spatial dimension gives a 1-D dictionary, two a 2-D one.

    A signal of spatial size ``N`` has codes of size ``(N - K) // stride + 1`` per dimension
    (valid correlation). When ``stride`` does not divide ``N - K`` the last ``(N - K) % stride``
    samples are covered by no shift: ``H^T`` ignores them and ``H z`` is zero there.
    """

    def __init__(self, filters: torch.Tensor, *, stride: int = 1, name: str = "H") -> None:
        check_tensor(name, filters, ndim=(3, 4))
        check_positive_int("stride", stride)
        with torch.no_grad():
            norms = torch.linalg.vector_norm(filters.flatten(1), dim=1)
            zero = torch.nonzero(norms <= torch.finfo(filters.dtype).tiny).flatten().tolist()
        if zero:
            raise ValueError(
                f"{name} has {len(zero)} zero filters (indices {zero[:10]}); every filter must "
                "have a positive norm."
            )
        self.weight = filters
        self.stride = stride
        self.name = name
        self.spatial_dims = filters.ndim - 2
        self._conv = F.conv1d if self.spatial_dims == 1 else F.conv2d
        self._conv_t = F.conv_transpose1d if self.spatial_dims == 1 else F.conv_transpose2d

    @property
    def dtype(self) -> torch.dtype:
        return self.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.weight.device

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return tuple(self.weight.shape[2:])

    def check_signal(self, X: torch.Tensor, name: str = "X") -> None:
        check_tensor(name, X, ndim=self.spatial_dims + 2)
        if X.shape[1] != self.weight.shape[1]:
            raise ValueError(
                f"{name} has {X.shape[1]} channels (shape {tuple(X.shape)}) but the filters "
                f"{self.name} expect {self.weight.shape[1]} (shape {tuple(self.weight.shape)})."
            )
        self._check_size(name, tuple(X.shape[2:]))

    def _check_size(self, name: str, size: Sequence[int]) -> tuple[int, ...]:
        try:
            size = tuple(operator.index(s) for s in size)
        except TypeError:
            size = None
        if size is None or len(size) != self.spatial_dims:
            raise ValueError(
                f"{name} must give {self.spatial_dims} integer spatial sizes for the "
                f"{self.spatial_dims}-D filters {self.name}."
            )
        if any(s < k for s, k in zip(size, self.kernel_size, strict=True)):
            raise ValueError(
                f"{name} has spatial size {size}, smaller than the filters' {self.kernel_size}."
            )
        return size

    def _code_size(self, size: Sequence[int]) -> tuple[int, ...]:
        return tuple(
            (s - k) // self.stride + 1 for s, k in zip(size, self.kernel_size, strict=True)
        )

    def code_shape(self, X: torch.Tensor) -> tuple[int, ...]:
        """``(n, n_filters, *code_size)`` with ``code_size = (size - kernel) // stride + 1``."""
        return (X.shape[0], self.weight.shape[0], *self._code_size(X.shape[2:]))

    def decode(self, Z: torch.Tensor, signal_size: tuple[int, ...] | None = None) -> torch.Tensor:
        """``H z``: (n, n_filters, *code_size) -> (n, channels, *signal_size).

        Without ``signal_size`` the output has the smallest size the codes cover,
        ``(code_size - 1) * stride + kernel``. With it, ``Z`` must have the code size of that signal
        size (so that this map is exactly the adjoint of :meth:`adjoint` on such signals); the
        trailing ``(signal_size - kernel) % stride`` samples, covered by no shift, are zero.
        """
        _check_operand("Z", Z, self.spatial_dims + 2)
        if Z.shape[1] != self.weight.shape[0]:
            raise ValueError(
                f"Z has {Z.shape[1]} code channels (shape {tuple(Z.shape)}) but {self.name} has "
                f"{self.weight.shape[0]} filters."
            )
        code_size = tuple(Z.shape[2:])
        if any(c < 1 for c in code_size):
            raise ValueError(f"Z has an empty spatial size {code_size}.")
        if signal_size is None:
            return self._conv_t(Z, self.weight, stride=self.stride)
        signal_size = self._check_size("signal_size", signal_size)
        expected = self._code_size(signal_size)
        if expected != code_size:
            raise ValueError(
                f"Z has code size {code_size} but signals of size {signal_size} have codes of "
                f"size {expected} (= (size - kernel) // stride + 1 with kernel "
                f"{self.kernel_size} and stride {self.stride}); decode would not be the adjoint of "
                "adjoint. Pass the signal size the codes were computed from."
            )
        natural = tuple(
            (c - 1) * self.stride + k for c, k in zip(code_size, self.kernel_size, strict=True)
        )
        padding = tuple(s - m for s, m in zip(signal_size, natural, strict=True))  # < stride
        return self._conv_t(Z, self.weight, stride=self.stride, output_padding=padding)

    def adjoint(self, X: torch.Tensor) -> torch.Tensor:
        """``H^T x``: (n, channels, *signal_size) -> (n, n_filters, *code_size)."""
        _check_operand("X", X, self.spatial_dims + 2)
        if X.shape[1] != self.weight.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} channels (shape {tuple(X.shape)}) but the filters "
                f"{self.name} expect {self.weight.shape[1]} (shape {tuple(self.weight.shape)})."
            )
        self._check_size("X", X.shape[2:])
        return self._conv(X, self.weight, stride=self.stride)

    def lipschitz(self, signal_size: tuple[int, ...]) -> float:
        """``sigma_max(H)^2`` for signals of the given spatial size, in float64, outside the
        autograd graph (see :func:`largest_eigenvalue`)."""
        signal_size = self._check_size("signal_size", signal_size)
        detached = Convolutional(self.weight.detach().to(torch.float64), stride=self.stride)
        shape = (1, self.weight.shape[0], *self._code_size(signal_size))
        return largest_eigenvalue(
            lambda v: detached.adjoint(detached.decode(v, signal_size)),
            shape,
            device=self.weight.device,
        )


Dictionary = Dense | Convolutional


def as_dictionary(D: torch.Tensor | Dictionary, *, name: str = "D") -> Dictionary:
    """Wrap a 2-D tensor as :class:`Dense`; pass dictionary objects through unchanged."""
    if isinstance(D, Dense | Convolutional):
        return D
    check_tensor(name, D)
    if D.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D dense dictionary (m, p) or a Convolutional dictionary; got a "
            f"tensor of shape {tuple(D.shape)}. Wrap filters with udlbench.dictionaries."
            "Convolutional(filters, stride=...)."
        )
    return Dense(D, name=name)


__all__ = ["Convolutional", "Dense", "Dictionary", "as_dictionary"]
