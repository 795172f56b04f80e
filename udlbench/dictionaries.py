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


def _polyphase_kernel(weight: torch.Tensor, stride: int) -> torch.Tensor:
    """``weight`` (C, ch, kh, kw) zero-padded to multiples of ``stride`` and split into its
    phases: shape (C, ch, stride, stride, m_h, m_w) with ``[..., a, b, i, j] = weight[..., a +
    stride i, b + stride j]``, ``m = ceil(k / stride)``."""
    C, ch, kh, kw = weight.shape
    m_h, m_w = -(-kh // stride), -(-kw // stride)
    padded = F.pad(weight, (0, stride * m_w - kw, 0, stride * m_h - kh))
    return padded.reshape(C, ch, m_h, stride, m_w, stride).permute(0, 1, 3, 5, 2, 4)


def polyphase_conv2d(X: torch.Tensor, weight: torch.Tensor, *, stride: int) -> torch.Tensor:
    """``F.conv2d(X, weight, stride=stride)`` computed as a stride-1 convolution of the
    ``stride^2`` polyphase components of ``X`` (``pixel_unshuffle``) with those of ``weight``.

    Same map (to rounding), but neither it nor its backward needs a strided transposed
    convolution, which PyTorch's CPU backend runs tens of times slower than a plain convolution
    (measured: 21 ms against 0.4 ms for 196 signals of 56 x 56 and 32 filters of 11 x 11 at
    stride 7).
    ``X`` (n, ch, H, W), ``weight`` (C, ch, kh, kw) -> (n, C, (H - kh) // stride + 1, ...).
    """
    C, ch, kh, kw = weight.shape
    phases = _polyphase_kernel(weight, stride)
    m_h, m_w = phases.shape[-2:]
    out_h, out_w = (X.shape[2] - kh) // stride + 1, (X.shape[3] - kw) // stride + 1
    need_h, need_w = stride * (out_h + m_h - 1), stride * (out_w + m_w - 1)
    X = X[..., :need_h, :need_w]
    X = F.pad(X, (0, need_w - X.shape[3], 0, need_h - X.shape[2]))
    kernel = phases.reshape(C, ch * stride * stride, m_h, m_w)
    return F.conv2d(F.pixel_unshuffle(X, stride), kernel)


def polyphase_conv_transpose2d(
    Z: torch.Tensor,
    weight: torch.Tensor,
    *,
    stride: int,
    output_padding: int | tuple[int, int] = 0,
) -> torch.Tensor:
    """``F.conv_transpose2d(Z, weight, stride=stride, output_padding=output_padding)`` computed
    as one stride-1 convolution giving the ``stride^2`` output phases, interleaved by
    ``pixel_shuffle`` (the adjoint of :func:`polyphase_conv2d`; same map to rounding, several
    times faster on the CPU). ``Z`` (n, C, a, b), ``weight`` (C, ch, kh, kw) ->
    (n, ch, (a - 1) stride + kh + output_padding, ...)."""
    C, ch, kh, kw = weight.shape
    pad_h, pad_w = (output_padding, output_padding) if isinstance(output_padding, int) else (
        output_padding
    )
    phases = _polyphase_kernel(weight, stride)
    m_h, m_w = phases.shape[-2:]
    kernel = phases.permute(1, 2, 3, 0, 4, 5).flip(-2, -1)
    kernel = kernel.reshape(ch * stride * stride, C, m_h, m_w)
    out = F.pixel_shuffle(F.conv2d(Z, kernel, padding=(m_h - 1, m_w - 1)), stride)
    size_h = (Z.shape[2] - 1) * stride + kh + pad_h
    size_w = (Z.shape[3] - 1) * stride + kw + pad_w
    out = out[..., :size_h, :size_w]
    return F.pad(out, (0, size_w - out.shape[3], 0, size_h - out.shape[2]))


class Convolutional:
    """A convolutional dictionary with filters of shape (n_filters, channels, *kernel).

    ``decode`` is the transposed convolution (sum over filters of ``h_c * z_c``) and ``adjoint``
    the correlation ``H^T x``, both with the given stride, so that ``<H z, x> = <z, H^T x>``
    exactly. One spatial dimension gives a 1-D dictionary, two a 2-D one; strided 2-D maps run
    through :func:`polyphase_conv2d` and :func:`polyphase_conv_transpose2d`.

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
        if self.spatial_dims == 2 and stride > 1:  # the same maps without strided conv_t
            self._conv, self._conv_t = polyphase_conv2d, polyphase_conv_transpose2d

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


__all__ = [
    "Convolutional",
    "Dense",
    "Dictionary",
    "as_dictionary",
    "polyphase_conv2d",
    "polyphase_conv_transpose2d",
]
