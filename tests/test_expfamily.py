"""The exponential-family encoder of DCEA through convolutional dictionaries.

``x_t = S_b(x_{t-1} + alpha W_e^T r(y, W_d x_{t-1}))`` with the working residual of Tolooshams,
Song, Temereanca & Ba (ICML 2020), Table 1 and eqs. 5-6: Gaussian ``y - Hx``, binomial
``y/M - sigmoid(Hx)``, Poisson ``Elu(y - exp(Hx))``; steps ``alpha <= 1/sigma^2`` (Gaussian) and
``4/sigma^2`` (binomial), Sec. 3.2 (THEOREMS.md, E-ISTA and 0.2).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from udlbench import encoders
from udlbench.dictionaries import Convolutional, Dense

pytestmark = pytest.mark.fast

F64 = torch.float64


def explicit_matrix(H: Convolutional, signal_size: tuple[int, ...]) -> torch.Tensor:
    """The matrix of ``H``, shape (signal entries, code entries), column j = H e_j."""
    probe = torch.zeros((1, H.weight.shape[1], *signal_size), dtype=H.dtype)
    code_shape = H.code_shape(probe)[1:]
    p = int(torch.tensor(code_shape).prod())
    units = torch.eye(p, dtype=H.dtype).reshape(p, *code_shape)
    return H.decode(units, signal_size).reshape(p, -1).T


def sigma_max_squared(H: Convolutional, signal_size: tuple[int, ...]) -> float:
    return float(torch.linalg.matrix_norm(explicit_matrix(H, signal_size), 2)) ** 2


def random_filters(
    shape: tuple[int, ...],
    generator: torch.Generator,
    *,
    stride: int,
    size: tuple[int, ...],
    sigma2: float | None = None,
) -> torch.Tensor:
    """Unit-norm random filters, rescaled so that sigma_max(H)^2 = sigma2 when it is given."""
    weight = torch.randn(shape, generator=generator, dtype=F64)
    weight = weight / torch.linalg.vector_norm(weight.flatten(1), dim=1).reshape(
        -1, *[1] * (len(shape) - 1)
    )
    if sigma2 is not None:
        current = sigma_max_squared(Convolutional(weight, stride=stride), size)
        weight = weight * (sigma2 / current) ** 0.5
    return weight


def sparse_codes(H: Convolutional, n: int, size, generator, *, density=0.2, scale=1.0):
    """Non-negative sparse codes for n signals of the given size."""
    shape = H.code_shape(torch.zeros((n, H.weight.shape[1], *size), dtype=F64))
    support = torch.rand(shape, generator=generator, dtype=F64) < density
    return scale * support * torch.rand(shape, generator=generator, dtype=F64)


def binomial_problem(*, trials=50, seed=0, size=(23,), kernel=(5,), stride=2, sigma2=None, n=4):
    generator = torch.Generator().manual_seed(seed)
    weight = random_filters((3, 2, *kernel), generator, stride=stride, size=size, sigma2=sigma2)
    H = Convolutional(weight, stride=stride)
    logits = H.decode(sparse_codes(H, n, size, generator, scale=2.0), size) - 0.5
    Y = torch.binomial(torch.full_like(logits, float(trials)), torch.sigmoid(logits),
                       generator=generator)
    return H, Y


def poisson_problem(*, seed=0, size=(23,), kernel=(5,), stride=2, n=4):
    generator = torch.Generator().manual_seed(seed)
    weight = random_filters((3, 2, *kernel), generator, stride=stride, size=size)
    H = Convolutional(weight, stride=stride)
    log_rates = H.decode(sparse_codes(H, n, size, generator), size) + 1.0
    Y = torch.poisson(torch.exp(log_rates), generator=generator)
    return H, Y


def binomial_objective(Y, H, codes, *, trials, lam):
    """Per-sample-summed ``sum(softplus(Hx) - (y/M) Hx) + lam ||x||_1`` (NLL per unit M)."""
    prediction = H.decode(codes, tuple(Y.shape[2:]))
    nll = (F.softplus(prediction) - Y / trials * prediction).sum()
    return nll + lam * codes.abs().sum()


# ---------------------------------------------------------------- Gaussian: ISTA through H


@pytest.mark.parametrize(
    ("filters", "size", "stride"),
    [((3, 2, 5), (23,), 2), ((2, 1, 3, 4), (11, 13), 3), ((2, 2, 3), (26,), 7)],
    ids=["1d-stride2", "2d-stride3", "1d-stride7"],
)
@pytest.mark.parametrize("solver", [encoders.ista, encoders.fista])
def test_conv_encoder_equals_the_explicit_matrix(filters, size, stride, solver):
    generator = torch.Generator().manual_seed(0)
    H = Convolutional(random_filters(filters, generator, stride=stride, size=size), stride=stride)
    X = torch.randn((4, filters[1], *size), generator=generator, dtype=F64)
    D = explicit_matrix(H, size)
    alpha = 1.0 / float(torch.linalg.matrix_norm(D, 2)) ** 2
    conv = solver(X, H, lam=0.05, n_layers=12, alpha=alpha)
    dense = solver(X.reshape(4, -1), D, lam=0.05, n_layers=12, alpha=alpha)
    assert conv.shape == H.code_shape(X)
    torch.testing.assert_close(conv.reshape(4, -1), dense, rtol=0, atol=1e-12)
    # The default step 1/sigma_max^2 agrees too: the Lipschitz constant is exact.
    conv = solver(X, H, lam=0.05, n_layers=12)
    dense = solver(X.reshape(4, -1), D, lam=0.05, n_layers=12)
    torch.testing.assert_close(conv.reshape(4, -1), dense, rtol=0, atol=1e-12)


@pytest.mark.parametrize("prox", ["soft", "relu"])
def test_gaussian_family_is_ista(prox):
    generator = torch.Generator().manual_seed(1)
    H = Convolutional(random_filters((3, 2, 5), generator, stride=2, size=(23,)), stride=2)
    X = torch.randn((4, 2, 23), generator=generator, dtype=F64)
    z_exp = encoders.expfamily(X, H, family="gaussian", lam=0.05, n_layers=10, prox=prox)
    z_ista = encoders.ista(X, H, lam=0.05, n_layers=10, prox=prox)
    assert torch.equal(z_exp, z_ista)


# ---------------------------------------------------------------- binomial


@pytest.mark.parametrize("trials", [20.0, "tensor"])
def test_one_binomial_layer_is_the_sea_encoder(trials):
    """From zero, one layer with alpha = 4 is c_1 = ReLU_{4 lam}(4 H^T (y/M - 1/2)) (THEOREMS 0.2);
    it needs sigma_max(H)^2 < 2, so H is scaled to sigma^2 = 1."""
    H, Y = binomial_problem(trials=20, sigma2=1.0)
    if trials == "tensor":  # one M per sample, broadcast against Y
        trials = torch.tensor([20.0, 25.0, 30.0, 40.0], dtype=F64).reshape(4, 1, 1)
        Y = torch.minimum(Y + torch.arange(4, dtype=F64).reshape(4, 1, 1) * 3, trials)
    lam = 0.1
    c1 = encoders.expfamily(Y, H, family="binomial", trials=trials, lam=lam, n_layers=1,
                            alpha=4.0)
    expected = torch.relu(4.0 * H.adjoint(Y / trials - 0.5) - 4.0 * lam)
    torch.testing.assert_close(c1, expected, rtol=0, atol=1e-12)
    assert bool((c1 > 0).any()) and bool((c1 == 0).any())


@pytest.mark.parametrize("kernel,size,stride", [((5,), (23,), 2), ((3, 3), (9, 10), 2)])
def test_binomial_encoder_decreases_its_objective(kernel, size, stride):
    """With the default alpha = 4/sigma^2 (= 1/L) every layer decreases the binomial NLL (per unit
    M) + lam ||x||_1 (Beck & Teboulle, 2009; ICML 2020 Sec. 3.2; THEOREMS E-ISTA)."""
    trials, lam = 1000.0, 0.02
    H, Y = binomial_problem(trials=trials, size=size, kernel=kernel, stride=stride, seed=3)
    iterates = encoders.expfamily(Y, H, family="binomial", trials=trials, lam=lam, n_layers=300,
                                  trace=True)
    values = torch.stack([binomial_objective(Y, H, z, trials=trials, lam=lam) for z in iterates])
    increase = float((values[1:] - values[:-1]).max())
    assert increase <= 1e-12 * float(values.abs().max())
    assert float(values[-1]) < float(values[0]) - 1.0  # and it actually moves


def test_binomial_counts_are_checked():
    H, Y = binomial_problem(trials=20)
    with pytest.raises(ValueError, match=r"\[0, trials\]"):
        encoders.expfamily(Y + 21.0, H, family="binomial", trials=20, lam=0.1, n_layers=2)
    with pytest.raises(ValueError, match=r"\[0, trials\]"):
        encoders.expfamily(Y - 21.0, H, family="binomial", trials=20, lam=0.1, n_layers=2)
    with pytest.raises(ValueError, match="trials"):
        encoders.expfamily(Y, H, family="binomial", lam=0.1, n_layers=2)
    with pytest.raises(ValueError, match="trials must be positive"):
        encoders.expfamily(Y, H, family="binomial", trials=0, lam=0.1, n_layers=2)
    with pytest.raises(ValueError, match="trials"):
        encoders.expfamily(Y, H, family="poisson", trials=20, lam=0.1, n_layers=2, alpha=0.1)


def test_binomial_default_step_is_four_over_sigma_squared():
    H, Y = binomial_problem(trials=20)
    sigma2 = sigma_max_squared(H, (23,))
    assert encoders.default_step(H, Y, "binomial") == pytest.approx(4.0 / sigma2, rel=1e-10)
    assert encoders.default_step(H, Y, "gaussian") == pytest.approx(1.0 / sigma2, rel=1e-10)
    default = encoders.expfamily(Y, H, family="binomial", trials=20, lam=0.1, n_layers=3)
    explicit = encoders.expfamily(Y, H, family="binomial", trials=20, lam=0.1, n_layers=3,
                                  alpha=4.0 / sigma2)
    torch.testing.assert_close(default, explicit, rtol=0, atol=1e-12)
    # 2/L with L = sigma^2/4: alpha >= 8/sigma^2 raises, just below it runs.
    encoders.expfamily(Y, H, family="binomial", trials=20, lam=0.1, n_layers=1,
                       alpha=7.99 / sigma2)
    for factor in (8.0 * (1 + 1e-9), 16.0):
        with pytest.raises(ValueError, match="2/L"):
            encoders.expfamily(Y, H, family="binomial", trials=20, lam=0.1, n_layers=1,
                               alpha=factor / sigma2)
    with pytest.raises(ValueError, match="2/L"):
        encoders.expfamily(Y, H, family="gaussian", lam=0.1, n_layers=1,
                           alpha=2.0 * (1 + 1e-9) / sigma2)


# ---------------------------------------------------------------- Poisson


def test_poisson_elu_clamps_the_residual_at_minus_one():
    """exp(Hx) >> y: the raw residual y - exp(Hx) is about -e^50, the Elu residual is -1, so the
    update is alpha H^T (-1) (ICML 2020, Table 1 and Sec. 3.2)."""
    alpha = 0.3
    identity = Dense(torch.eye(5, dtype=F64))
    z0 = torch.full((2, 5), 50.0, dtype=F64)
    Y = torch.zeros((2, 5), dtype=F64)
    z1 = encoders.expfamily(Y, identity, family="poisson", lam=0.0, n_layers=1, alpha=alpha,
                            prox="soft", z0=z0)
    torch.testing.assert_close(z1 - z0, torch.full_like(z0, -alpha), rtol=0, atol=1e-12)

    H, Y = poisson_problem()
    z0 = torch.full(H.code_shape(Y), 30.0, dtype=F64)
    z1 = encoders.expfamily(Y, H, family="poisson", lam=0.0, n_layers=1, alpha=alpha,
                            prox="soft", z0=z0)
    assert bool(torch.isfinite(z1).all())
    raw = Y - torch.exp(H.decode(z0, (23,)))
    residual = encoders.working_residual("poisson", Y, H.decode(z0, (23,)), None)
    assert float(raw.min()) < -1e6
    assert bool((residual >= -1).all())
    assert torch.equal(residual[raw < -50], torch.full_like(residual[raw < -50], -1.0))
    torch.testing.assert_close(z1 - z0, alpha * H.adjoint(residual), rtol=0, atol=1e-12)


def test_poisson_needs_alpha_and_counts():
    H, Y = poisson_problem()
    with pytest.raises(ValueError, match="alpha"):
        encoders.expfamily(Y, H, family="poisson", lam=0.1, n_layers=2)
    with pytest.raises(ValueError, match="non-negative"):
        encoders.expfamily(Y - 1.0, H, family="poisson", lam=0.1, n_layers=2, alpha=0.1)


# ---------------------------------------------------------------- untied weights (eq. 6)


def test_untied_weights():
    H, Y = poisson_problem()
    kwargs = dict(family="poisson", lam=0.05, n_layers=5, alpha=0.2)
    tied = encoders.expfamily(Y, H, **kwargs)
    copy = Convolutional(H.weight.clone(), stride=H.stride)
    assert torch.equal(encoders.expfamily(Y, H, W_e=copy, W_d=copy, **kwargs), tied)
    assert torch.equal(encoders.expfamily(Y, H, W_e=H, **kwargs), tied)
    generator = torch.Generator().manual_seed(9)
    other = Convolutional(H.weight + 0.1 * torch.randn(H.weight.shape, generator=generator,
                                                       dtype=F64), stride=H.stride)
    assert not torch.allclose(encoders.expfamily(Y, H, W_e=other, **kwargs), tied)
    assert not torch.allclose(encoders.expfamily(Y, H, W_d=other, **kwargs), tied)
    with pytest.raises(ValueError, match="alpha"):
        encoders.expfamily(Y, H, family="binomial", trials=1000, lam=0.05, n_layers=2, W_e=copy)
    with pytest.raises(ValueError, match="alpha"):
        encoders.expfamily(Y, H, family="gaussian", lam=0.05, n_layers=2, W_d=copy)


# ---------------------------------------------------------------- autograd


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_gradient_wrt_filters_matches_finite_differences(family):
    """d/dH of a reconstruction loss through 3 layers (autograd runs through every use of H)."""
    if family == "binomial":
        H, Y = binomial_problem(trials=30, seed=4)
        kwargs = dict(family=family, trials=30.0, alpha=1.0)
    else:
        H, Y = poisson_problem(seed=4)
        kwargs = dict(family=family, alpha=0.05)
    stride, size = H.stride, tuple(Y.shape[2:])

    def loss(weight: torch.Tensor) -> torch.Tensor:
        dictionary = Convolutional(weight, stride=stride)
        codes = encoders.expfamily(Y, dictionary, lam=1e-3, n_layers=3, **kwargs)
        prediction = dictionary.decode(codes, size)
        if family == "binomial":
            return (F.softplus(prediction) - Y / 30.0 * prediction).sum()
        return (torch.exp(prediction) - Y * prediction).sum()

    codes = encoders.expfamily(Y, H, lam=1e-3, n_layers=3, **kwargs)
    assert bool((codes > 0).any()) and bool((codes == 0).any())
    weight = H.weight.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(loss(weight), weight)
    generator = torch.Generator().manual_seed(5)
    eps = 1e-6
    for _ in range(3):
        direction = torch.randn(weight.shape, generator=generator, dtype=F64)
        with torch.no_grad():
            central = (loss(H.weight + eps * direction) - loss(H.weight - eps * direction)) / (
                2 * eps
            )
        assert float((gradient * direction).sum()) == pytest.approx(float(central), rel=1e-6)


# ---------------------------------------------------------------- precision and devices


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_float32_agrees_with_float64(family, device):
    if family == "binomial":
        H, Y = binomial_problem(trials=30, seed=6)
        kwargs = dict(family=family, trials=30.0, lam=0.05, n_layers=20)
    else:
        H, Y = poisson_problem(seed=6)
        kwargs = dict(family=family, lam=0.05, n_layers=20, alpha=0.05)
    z64 = encoders.expfamily(Y, H, **kwargs)
    H32 = Convolutional(H.weight.float().to(device), stride=H.stride)
    z32 = encoders.expfamily(Y.float().to(device), H32, **kwargs)
    assert z32.dtype == torch.float32 and z32.device.type == device.type
    torch.testing.assert_close(z32.cpu().double(), z64, rtol=0,
                               atol=1e-4 * float(z64.abs().max()))
    assert float(z64.abs().max()) > 0
