"""Dense and convolutional dictionaries as linear operators: adjointness, shapes, sigma_max^2.

``decode`` (``H z``) must be the exact adjoint of ``adjoint`` (``H^T x``) for every stride and
signal size, including sizes that the stride does not tile (Tolooshams, Song, Temereanca & Ba,
ICML 2020, Sec. 3: ``H`` is the convolutional matrix of the filters).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from udlbench.dictionaries import (
    Convolutional,
    Dense,
    as_dictionary,
    polyphase_conv2d,
    polyphase_conv_transpose2d,
)
from udlbench.linalg import largest_eigenvalue

pytestmark = pytest.mark.fast

F64 = torch.float64


def explicit_matrix(dictionary: Dense | Convolutional, signal_size: tuple[int, ...] = ()):
    """The matrix of ``decode``, shape (signal entries, code entries), column j = decode(e_j)."""
    if isinstance(dictionary, Dense):
        p = dictionary.weight.shape[1]
        return dictionary.decode(torch.eye(p, dtype=dictionary.dtype)).T
    probe = torch.zeros((1, dictionary.weight.shape[1], *signal_size), dtype=dictionary.dtype)
    code_shape = dictionary.code_shape(probe)[1:]
    p = int(torch.tensor(code_shape).prod())
    units = torch.eye(p, dtype=dictionary.dtype).reshape(p, *code_shape)
    return dictionary.decode(units, signal_size).reshape(p, -1).T


@st.composite
def conv_cases(draw):
    """A small 1-D or 2-D convolutional dictionary, its stride and a signal size it accepts."""
    dims = draw(st.sampled_from([1, 2]))
    stride = draw(st.sampled_from([1, 2, 3, 7]))
    kernel = tuple(draw(st.integers(1, 5 if dims == 1 else 4)) for _ in range(dims))
    reach = 20 if dims == 1 else 9
    size = tuple(k + draw(st.integers(0, reach)) for k in kernel)
    n_filters = draw(st.integers(1, 3))
    channels = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    filters = torch.randn((n_filters, channels, *kernel), generator=generator, dtype=F64)
    return Convolutional(filters, stride=stride), size, generator


@settings(deadline=None)
@given(case=conv_cases(), n=st.integers(1, 3))
def test_adjoint_identity(case, n):
    """<H z, x> = <z, H^T x> in float64, and both maps agree with the explicit matrix."""
    H, size, generator = case
    X = torch.randn((n, H.weight.shape[1], *size), generator=generator, dtype=F64)
    Z = torch.randn(H.code_shape(X), generator=generator, dtype=F64)
    HZ, HtX = H.decode(Z, size), H.adjoint(X)
    assert HZ.shape == X.shape
    assert HtX.shape == H.code_shape(X)
    lhs, rhs = float((HZ * X).sum()), float((Z * HtX).sum())
    scale = float(torch.linalg.vector_norm(HZ) * torch.linalg.vector_norm(X))
    assert abs(lhs - rhs) <= 1e-12 * scale
    M = explicit_matrix(H, size)
    torch.testing.assert_close(HtX.reshape(n, -1), X.reshape(n, -1) @ M, rtol=0, atol=1e-12)
    torch.testing.assert_close(HZ.reshape(n, -1), Z.reshape(n, -1) @ M.T, rtol=0, atol=1e-12)


@settings(deadline=None)
@given(case=conv_cases())
def test_code_shape_is_the_valid_correlation_size(case):
    H, size, _ = case
    X = torch.zeros((2, H.weight.shape[1], *size), dtype=F64)
    kernel = H.weight.shape[2:]
    expected = tuple((s - k) // H.stride + 1 for s, k in zip(size, kernel, strict=True))
    assert H.code_shape(X) == (2, H.weight.shape[0], *expected)
    assert tuple(H.adjoint(X).shape) == H.code_shape(X)


@settings(max_examples=25, deadline=None)
@given(case=conv_cases())
def test_lipschitz_is_the_largest_squared_singular_value(case):
    H, size, _ = case
    sigma_max = float(torch.linalg.matrix_norm(explicit_matrix(H, size), 2))
    assert H.lipschitz(size) == pytest.approx(sigma_max**2, rel=1e-6)


def test_lipschitz_with_clustered_spectrum():
    """Stride 1 and wide H: the top eigenvalues of H^T H cluster; power iteration stalls there."""
    generator = torch.Generator().manual_seed(5)  # a plain power iteration is off by 6e-4 here
    H = Convolutional(torch.randn((3, 2, 5), generator=generator, dtype=F64))
    sigma_max = float(torch.linalg.matrix_norm(explicit_matrix(H, (19,)), 2))
    assert H.lipschitz((19,)) == pytest.approx(sigma_max**2, rel=1e-12)


def test_decode_pads_the_samples_no_shift_covers():
    """With (size - kernel) % stride = r > 0 the last r samples of H z are zero."""
    generator = torch.Generator().manual_seed(0)
    H = Convolutional(torch.randn((2, 1, 4, 3), generator=generator, dtype=F64), stride=3)
    size = (13, 11)  # natural sizes (13 - 4) // 3 * 3 + 4 = 13 and (11 - 3) // 3 * 3 + 3 = 9
    Z = torch.randn(H.code_shape(torch.zeros(1, 1, *size, dtype=F64)), generator=generator,
                    dtype=F64)
    full, natural = H.decode(Z, size), H.decode(Z)
    assert natural.shape[2:] == (13, 9)
    assert torch.equal(full[..., :9], natural)
    assert torch.equal(full[..., 9:], torch.zeros_like(full[..., 9:]))


@pytest.mark.parametrize("signal_size", [(11,), (12,), (7,), (8,)])
def test_decode_rejects_codes_of_another_signal_size(signal_size):
    """Codes of size 4 (kernel 3, stride 2) belong to signals of size 9 or 10 only."""
    H = Convolutional(torch.ones((2, 1, 3), dtype=F64), stride=2)
    Z = torch.ones((1, 2, 4), dtype=F64)
    assert H.decode(Z, (9,)).shape[-1] == 9 and H.decode(Z, (10,)).shape[-1] == 10
    with pytest.raises(ValueError, match="code size"):
        H.decode(Z, signal_size)


def test_decode_checks_signal_size_rank():
    H = Convolutional(torch.ones((2, 1, 3), dtype=F64), stride=2)
    with pytest.raises(ValueError, match="signal_size"):
        H.decode(torch.ones((1, 2, 4), dtype=F64), (9, 9))
    with pytest.raises(ValueError, match="signal_size"):
        H.lipschitz((2,))


def test_dense_matches_the_plain_matrix():
    generator = torch.Generator().manual_seed(1)
    D = torch.randn((7, 11), generator=generator, dtype=F64)
    X = torch.randn((5, 7), generator=generator, dtype=F64)
    Z = torch.randn((5, 11), generator=generator, dtype=F64)
    dense = Dense(D)
    assert torch.equal(dense.decode(Z), Z @ D.T)
    assert torch.equal(dense.adjoint(X), X @ D)
    assert dense.code_shape(X) == (5, 11)
    assert torch.equal(explicit_matrix(dense), D)
    assert dense.lipschitz() == pytest.approx(float(torch.linalg.matrix_norm(D, 2)) ** 2,
                                              rel=1e-12)


def test_float32_dictionaries(device):
    generator = torch.Generator().manual_seed(2)
    filters = torch.randn((3, 2, 4), generator=generator, dtype=F64)
    H64, H32 = Convolutional(filters, stride=2), Convolutional(filters.float().to(device), stride=2)
    X = torch.randn((2, 2, 17), generator=generator, dtype=F64)
    Z = torch.randn(H64.code_shape(X), generator=generator, dtype=F64)
    torch.testing.assert_close(H32.adjoint(X.float().to(device)).cpu().double(), H64.adjoint(X),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(H32.decode(Z.float().to(device), (17,)).cpu().double(),
                               H64.decode(Z, (17,)), rtol=1e-5, atol=1e-5)
    assert H32.lipschitz((17,)) == pytest.approx(H64.lipschitz((17,)), rel=1e-6)


def test_lipschitz_runs_outside_autograd():
    filters = torch.randn((2, 1, 3), dtype=F64, requires_grad=True)
    L = Convolutional(filters).lipschitz((10,))
    assert isinstance(L, float) and L > 0
    assert filters.grad is None


def test_largest_eigenvalue_of_a_diagonal_map():
    diagonal = torch.tensor([1.0, 3.0, 2.0, 3.0 - 1e-9, 0.5], dtype=F64)
    assert largest_eigenvalue(lambda v: diagonal * v, (5,)) == pytest.approx(3.0, rel=1e-14)
    assert largest_eigenvalue(lambda v: 0 * v, (5,)) == 0.0


def test_as_dictionary():
    D = torch.randn((4, 6), dtype=F64)
    assert isinstance(as_dictionary(D), Dense)
    H = Convolutional(torch.randn((2, 1, 3), dtype=F64))
    assert as_dictionary(H) is H
    with pytest.raises(ValueError, match="Convolutional"):
        as_dictionary(torch.randn((2, 1, 3), dtype=F64))


def test_zero_filters_are_rejected():
    filters = torch.randn((3, 2, 4), dtype=F64)
    filters[1] = 0.0
    with pytest.raises(ValueError, match=r"H has 1 zero filters \(indices \[1\]\)"):
        Convolutional(filters)
    D = torch.randn((4, 3), dtype=F64)
    D[:, 2] = 0.0
    with pytest.raises(ValueError, match="zero atoms"):
        Dense(D)


def test_wrong_channel_count_is_rejected():
    H = Convolutional(torch.randn((3, 2, 4), dtype=F64))
    X = torch.randn((1, 3, 10), dtype=F64)
    with pytest.raises(ValueError, match="X has 3 channels"):
        H.check_signal(X)
    with pytest.raises(ValueError, match="X has 3 channels"):
        H.adjoint(X)
    with pytest.raises(ValueError, match="Z has 2 code channels"):
        H.decode(torch.randn((1, 2, 7), dtype=F64))
    with pytest.raises(ValueError, match="X has shape"):
        Dense(torch.randn((5, 3), dtype=F64)).check_signal(torch.randn((2, 4), dtype=F64))


def test_signal_smaller_than_kernel_is_rejected():
    H = Convolutional(torch.randn((3, 1, 4, 5), dtype=F64))
    X = torch.randn((1, 1, 6, 4), dtype=F64)
    with pytest.raises(ValueError, match="smaller than the filters"):
        H.check_signal(X)
    with pytest.raises(ValueError, match="smaller than the filters"):
        H.adjoint(X)
    with pytest.raises(ValueError, match="smaller than the filters"):
        H.lipschitz((6, 4))


def test_wrong_rank_is_rejected():
    with pytest.raises(ValueError, match="H must have 3 or 4 dimensions"):
        Convolutional(torch.randn((3, 4), dtype=F64))
    H = Convolutional(torch.randn((3, 1, 4), dtype=F64))
    with pytest.raises(ValueError, match="X must have 3 dimensions"):
        H.check_signal(torch.randn((1, 1, 6, 6), dtype=F64))
    with pytest.raises(ValueError, match="stride"):
        Convolutional(torch.randn((3, 1, 4), dtype=F64), stride=0)


def test_non_tensor_input_names_the_argument():
    H = Convolutional(torch.randn((3, 1, 4), dtype=F64))
    with pytest.raises(TypeError, match="H must be a torch.Tensor"):
        Convolutional([[[1.0]]])
    with pytest.raises(TypeError, match="filters must be a torch.Tensor"):
        Convolutional([[[1.0]]], name="filters")
    with pytest.raises(TypeError, match="D must be a torch.Tensor"):
        Dense([[1.0]])
    with pytest.raises(TypeError, match="X must be a torch.Tensor"):
        H.check_signal([[[0.0] * 6]])
    with pytest.raises(TypeError, match="X must be a torch.Tensor"):
        H.adjoint([[[0.0] * 6]])
    with pytest.raises(TypeError, match="Z must be a torch.Tensor"):
        H.decode([[[0.0] * 3]] * 3)
    with pytest.raises(TypeError, match="Z must be a torch.Tensor"):
        Dense(torch.randn((4, 3), dtype=F64)).decode([[0.0] * 3])
    with pytest.raises(TypeError, match="float32 or float64"):
        Convolutional(torch.ones((3, 1, 4), dtype=torch.int64))


POLYPHASE_CASES = [  # (stride, kernel (kh, kw), code size (a, b), output_padding)
    (7, (11, 11), (3, 4), (3, 6)),
    (4, (7, 5), (5, 2), (0, 3)),
    (3, (3, 3), (4, 4), (2, 1)),
    (1, (5, 4), (3, 6), (0, 0)),
    (5, (4, 4), (2, 3), (1, 0)),  # stride > kernel height
]


@pytest.mark.fast
@pytest.mark.parametrize(("stride", "kernel", "code", "padding"), POLYPHASE_CASES)
def test_polyphase_convolutions_equal_torch_strided_convolutions(stride, kernel, code, padding):
    """polyphase_conv_transpose2d and polyphase_conv2d equal F.conv_transpose2d and F.conv2d
    (float64, to 1e-12) for square and rectangular kernels, strides 1..7, output paddings and
    signal sizes the stride does not divide; their input gradients agree too."""
    g = torch.Generator().manual_seed(3)
    weight = torch.randn(6, 2, *kernel, generator=g, dtype=torch.float64)
    Z = torch.randn(3, 6, *code, generator=g, dtype=torch.float64, requires_grad=True)
    ours = polyphase_conv_transpose2d(Z, weight, stride=stride, output_padding=padding)
    reference = F.conv_transpose2d(Z, weight, stride=stride, output_padding=padding)
    assert ours.shape == reference.shape
    assert (ours - reference).abs().max().item() <= 1e-12
    probe = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    (grad_ours,) = torch.autograd.grad((ours * probe).sum(), Z)
    (grad_reference,) = torch.autograd.grad((reference * probe).sum(), Z)
    assert (grad_ours - grad_reference).abs().max().item() <= 1e-12
    size = (ours.shape[2] + 1, ours.shape[3] + 2)
    X = torch.randn(2, 2, *size, generator=g, dtype=torch.float64)
    forward = polyphase_conv2d(X, weight, stride=stride)
    expected = F.conv2d(X, weight, stride=stride)
    assert forward.shape == expected.shape
    assert (forward - expected).abs().max().item() <= 1e-12


@pytest.mark.fast
def test_strided_2d_dictionary_is_torchs_convolution_and_its_adjoint():
    """A strided 2-D Convolutional (polyphase inside) decodes and correlates like torch's strided
    convolutions (float64, 1e-12), <H z, x> = <z, H^T x> to 1e-12, float32 agrees to 1e-5."""
    g = torch.Generator().manual_seed(7)
    filters = torch.randn(5, 1, 11, 11, generator=g, dtype=torch.float64)
    H = Convolutional(filters, stride=7)
    x = torch.randn(2, 1, 40, 37, generator=g, dtype=torch.float64)
    z = torch.randn(H.code_shape(x), generator=g, dtype=torch.float64)
    assert (H.adjoint(x) - F.conv2d(x, filters, stride=7)).abs().max().item() <= 1e-12
    decoded = H.decode(z, (40, 37))
    padding = (40 - ((z.shape[2] - 1) * 7 + 11), 37 - ((z.shape[3] - 1) * 7 + 11))
    reference = F.conv_transpose2d(z, filters, stride=7, output_padding=padding)
    assert (decoded - reference).abs().max().item() <= 1e-12
    lhs, rhs = (decoded * x).sum().item(), (z * H.adjoint(x)).sum().item()
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
    single = Convolutional(filters.float(), stride=7)
    assert (single.decode(z.float(), (40, 37)).double() - decoded).abs().max().item() <= 1e-5
