"""Generative models of the papers udlbench reproduces.

Conventions shared by every generator:

* samples are rows: data ``X`` of shape (n, m), codes ``Z_star`` of shape (n, p), dictionary
  ``D_star`` of shape (m, p) whose columns are the atoms, so that ``X = Z_star @ D_star.T``;
* every random number is drawn in float64 on the CPU from one ``torch.Generator`` seeded with
  ``seed``, in a fixed order, and only the results are cast to ``dtype`` and moved to ``device``.
  The same seed therefore gives the same numbers on CPU and CUDA, and the float32 data are the
  float64 data rounded once;
* ``seed`` is mixed with a label of the generator (``numpy.random.SeedSequence``), so different
  generators called with the same seed draw independent numbers. Without this, the Gaussian
  matrix behind ``perturb(D_star, tau, seed=0)`` would be the one that made the ``D_star`` of
  ``make_sparse(..., seed=0)``, and the perturbation would be parallel to the atoms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from udlbench._validation import (
    FLOAT_DTYPES,
    check_choice,
    check_dictionary,
    check_nonnegative,
    check_positive_int,
    check_tensor,
)

__all__ = [
    "ConvExpFamilyData",
    "GroupSparseData",
    "MalezieuxData",
    "SparseData",
    "make_conv_expfamily",
    "make_group_sparse",
    "make_malezieux",
    "make_sparse",
    "normalize_columns",
    "perturb",
    "project_columns",
    "sample_counts",
]

_GEN_DTYPE = torch.float64


@dataclass(frozen=True)
class SparseData:
    """Samples of the sparse linear model ``x = D* z* + noise`` (samples are rows).

    Attributes
    ----------
    X : Tensor of shape (n, m)
        The observations ``Z_star @ D_star.T + noise``.
    D_star : Tensor of shape (m, p)
        The generating dictionary (atoms are columns).
    Z_star : Tensor of shape (n, p)
        The generating codes.
    noise : Tensor of shape (n, m) or None
        The additive white Gaussian noise; None when no ``snr_db`` was asked for.
    noise_std : float or None
        Standard deviation of each noise entry.
    seed : int
        The seed the sample was drawn from.
    """

    X: torch.Tensor
    D_star: torch.Tensor
    Z_star: torch.Tensor
    noise: torch.Tensor | None
    noise_std: float | None
    seed: int


@dataclass(frozen=True)
class MalezieuxData:
    """The synthetic set-up of Malezieux, Moreau & Kowalski (ICLR 2022, App. A).

    Attributes
    ----------
    X : Tensor of shape (n, m)
        Observations ``Z_star @ D_star.T + noise``.
    D_star : Tensor of shape (m, p)
        The generating dictionary ``A`` (unit-norm columns); also available as ``A``.
    Z_star : Tensor of shape (n, p)
        Bernoulli-Gaussian codes.
    D_init : Tensor of shape (m, p)
        The working dictionary ``A + N(0, (dict_noise std(A))^2)``, not re-normalised.
    noise : Tensor of shape (n, m)
        The additive Gaussian noise.
    noise_std : float
        Standard deviation of each noise entry.
    seed : int
        The seed the sample was drawn from.
    """

    X: torch.Tensor
    D_star: torch.Tensor
    Z_star: torch.Tensor
    D_init: torch.Tensor
    noise: torch.Tensor
    noise_std: float
    seed: int

    @property
    def A(self) -> torch.Tensor:
        """The generating dictionary in the paper's notation (same tensor as ``D_star``)."""
        return self.D_star


@dataclass(frozen=True)
class GroupSparseData:
    """Samples of the group-sparse model of Theodosis et al. (eq. 2, Sec. 4.1).

    Attributes
    ----------
    X : Tensor of shape (n, m)
        Observations ``Z_star @ D_star.T (+ noise)``.
    D_star : Tensor of shape (m, n_groups * group_size)
        The dictionary ``A*``; group g is the block of columns ``g*group_size`` to
        ``(g+1)*group_size - 1``.
    Z_star : Tensor of shape (n, n_groups * group_size)
        Group-sparse codes, laid out in the same contiguous blocks.
    groups : LongTensor of shape (n, n_active)
        The active groups of each sample, in increasing order.
    group_size : int
        Number of atoms per group (``d`` in the paper).
    noise : Tensor of shape (n, m) or None
        The additive white Gaussian noise; None when no ``snr_db`` was asked for.
    noise_std : float or None
        Standard deviation of each noise entry.
    seed : int
        The seed the sample was drawn from.
    """

    X: torch.Tensor
    D_star: torch.Tensor
    Z_star: torch.Tensor
    groups: torch.Tensor
    group_size: int
    noise: torch.Tensor | None
    noise_std: float | None
    seed: int


@dataclass(frozen=True)
class ConvExpFamilyData:
    """Samples of the convolutional exponential-family model of DCEA (ICML 2020, Sec. 3.2).

    Attributes
    ----------
    Y : Tensor of shape (n, length)
        Integer-valued counts (stored as floats): successes out of ``trials`` (binomial) or
        Poisson counts.
    H_star : Tensor of shape (n_filters, filter_length)
        Unit-norm filters.
    X_star : Tensor of shape (n, n_filters, length - filter_length + 1)
        Sparse non-negative codes.
    mu : Tensor of shape (n, length)
        The mean ``f^{-1}(baseline + sum_c h_c * x_c)``: a success probability per trial
        (binomial) or a rate (Poisson).
    family : str
        ``"binomial"`` or ``"poisson"``.
    trials : int or None
        Number of trials ``M`` of the binomial model; None for Poisson.
    baseline : float
        The constant added to the linear predictor.
    seed : int
        The seed the sample was drawn from.
    """

    Y: torch.Tensor
    H_star: torch.Tensor
    X_star: torch.Tensor
    mu: torch.Tensor
    family: str
    trials: int | None
    baseline: float
    seed: int


def _check_dtype(dtype: object) -> torch.dtype:
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be torch.float32 or torch.float64; got {dtype!r}.")
    return dtype  # type: ignore[return-value]


def _check_finite(name: str, value: object) -> float:
    value = float(value)  # type: ignore[arg-type]
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}.")
    return value


def _check_range(name: str, value: object) -> tuple[float, float]:
    """A pair (a, b) of finite numbers with 0 <= a <= b and b > 0."""
    if isinstance(value, str) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be a pair (a, b) with 0 <= a <= b; got {value!r}.")
    a, b = (float(v) for v in value)
    if not (math.isfinite(a) and math.isfinite(b) and 0 <= a <= b and b > 0):
        raise ValueError(
            f"{name} must be a pair (a, b) of finite numbers with 0 <= a <= b and b > 0; "
            f"got {value!r}."
        )
    return a, b


def _check_density(value: object) -> float:
    density = float(value)  # type: ignore[arg-type]
    if not 0 < density <= 1:
        raise ValueError(f"density must lie in (0, 1]; got {value!r}.")
    return density


def _generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for ``seed``, independent of the other streams at the same seed."""
    check_positive_int("seed", seed, minimum=0)
    label = int.from_bytes(stream.encode(), "little")
    state = np.random.SeedSequence([seed, label]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device="cpu").manual_seed(int(state))


def _out(t: torch.Tensor, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    return t.to(device=device, dtype=dtype)


def _unit_columns(D: torch.Tensor) -> torch.Tensor:
    return D / torch.linalg.vector_norm(D, dim=0, keepdim=True)


def _gaussian_dictionary(m: int, p: int, g: torch.Generator) -> torch.Tensor:
    return _unit_columns(torch.randn(m, p, generator=g, dtype=_GEN_DTYPE))


def _random_subsets(rows: int, size: int, k: int, g: torch.Generator) -> torch.Tensor:
    """``rows`` independent uniform subsets of ``k`` indices out of ``size``, as (rows, k)."""
    return torch.rand(rows, size, generator=g, dtype=_GEN_DTYPE).argsort(dim=1)[:, :k]


def _white_noise(
    signal: torch.Tensor, snr_db: float, g: torch.Generator
) -> tuple[torch.Tensor, float]:
    """Noise of per-entry variance ``mean_i ||signal_i||^2 / (m 10^(snr_db/10))``."""
    n, m = signal.shape
    power = float(signal.square().sum()) / n
    std = math.sqrt(power / (m * 10.0 ** (snr_db / 10.0)))
    return std * torch.randn(n, m, generator=g, dtype=_GEN_DTYPE), std


def normalize_columns(D: torch.Tensor) -> torch.Tensor:
    """Scale every column (atom) of ``D`` to unit Euclidean norm.

    Parameters
    ----------
    D : Tensor of shape (m, p)
        A dictionary with no zero column.

    Returns
    -------
    Tensor of shape (m, p)
        ``D_j / ||D_j||`` for every column j; differentiable, same dtype and device as ``D``.
    """
    check_dictionary(D)
    return _unit_columns(D)


def project_columns(D: torch.Tensor) -> torch.Tensor:
    """Project every column of ``D`` onto the unit ball: ``D_j / max(||D_j||, 1)``.

    This is the projection onto the constraint set ``{D : ||D_j|| <= 1}`` of the dictionary
    learning problem (Tolooshams & Ba, TMLR 2023, Sec. 3, after eq. 3).

    Parameters
    ----------
    D : Tensor of shape (m, p)

    Returns
    -------
    Tensor of shape (m, p)
        Columns of norm at most one; a column already inside the ball is unchanged.
    """
    check_tensor("D", D, ndim=2, finite=False)
    return D / torch.linalg.vector_norm(D, dim=0, keepdim=True).clamp_min(1.0)


def make_sparse(
    m: int,
    p: int,
    n: int,
    s: int,
    *,
    dictionary: str | torch.Tensor = "gaussian",
    amplitude: tuple[float, float] | str = (1.0, 2.0),
    sign: str = "iid",
    density: float | None = None,
    snr_db: float | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> SparseData:
    """Draw ``n`` samples ``x = D* z* (+ noise)`` of the sparse linear model.

    This is the data model of PUDLE (Tolooshams & Ba, TMLR 2023, Sec. 3, Assumptions 3.3-3.4
    and App. C.1): a Gaussian dictionary with unit-norm columns, a support of ``s`` entries
    drawn uniformly without replacement for each sample, and magnitudes ``U(1, 2)``.

    Parameters
    ----------
    m : int
        Dimension of a sample.
    p : int
        Number of atoms.
    n : int
        Number of samples.
    s : int
        Support size of every code, ``1 <= s <= p``. With ``amplitude="bernoulli-gaussian"``
        ``s`` is ignored and only needs to be an integer in ``[0, p]``.
    dictionary : {"gaussian", "orthogonal"} or Tensor of shape (m, p)
        ``"gaussian"``: N(0, 1) entries, then unit-norm columns. ``"orthogonal"`` (needs
        ``p == m``): a Haar-random orthogonal matrix (QR of a Gaussian matrix, with the signs
        of diag(R) folded into Q). A tensor is used as it is (not normalised).
    amplitude : (a, b) or {"normal", "bernoulli-gaussian"}
        ``(a, b)``: magnitudes ``U(a, b)`` on the support, with signs given by ``sign``.
        ``"normal"``: N(0, 1) values on the support. ``"bernoulli-gaussian"``: each of the p
        entries is active independently with probability ``density``, with an N(0, 1) value
        (the model of Malezieux et al., ICLR 2022); the number of active entries then varies.
    sign : {"iid", "shared"}
        Only for a pair ``amplitude``. ``"iid"``: an independent random sign per entry, the
        closest to TMLR Assumption 3.3. ``"shared"``: one random sign per sample for all its
        ``s`` entries, as the authors' released generator does (``xDzDataset_uniform``).
    density : float in (0, 1], optional
        Activation probability; required with ``amplitude="bernoulli-gaussian"`` and not
        accepted otherwise.
    snr_db : float, optional
        Add white Gaussian noise of per-entry variance ``sigma^2`` chosen so that
        ``10 log10(mean_i ||D* z*_i||^2 / (m sigma^2)) = snr_db``, i.e. the ratio of the mean
        signal energy over the whole batch to the expected noise energy per sample.
    seed : int
        Seed of the random generator.
    dtype : torch.float32 or torch.float64
    device : torch.device or str

    Returns
    -------
    SparseData
        ``X`` (n, m), ``D_star`` (m, p), ``Z_star`` (n, p), ``noise`` (n, m) or None.

    Notes
    -----
    Draw order: dictionary, supports, magnitudes, signs, noise. The dictionary depends only on
    ``(m, p, dictionary, seed)``, so two calls with the same seed share ``D_star``; to draw a
    fresh sample from a fixed dictionary, pass ``dictionary=data.D_star`` and another seed.
    Neither sign mode meets TMLR Assumption 3.3 exactly: ``E[z_i^2] = 7/3`` for ``U(1, 2)``
    magnitudes, and shared signs correlate the entries of a code.
    """
    check_positive_int("m", m)
    check_positive_int("p", p)
    check_positive_int("n", n)
    _check_dtype(dtype)
    bernoulli = amplitude == "bernoulli-gaussian"
    if isinstance(amplitude, str):
        check_choice("amplitude", amplitude, ["normal", "bernoulli-gaussian"])
    else:
        amplitude = _check_range("amplitude", amplitude)
    check_positive_int("s", s, minimum=0 if bernoulli else 1)
    if s > p:
        raise ValueError(f"s must be at most p = {p} (the number of atoms); got s={s}.")
    check_choice("sign", sign, ["iid", "shared"])
    if isinstance(amplitude, str) and sign != "iid":
        raise ValueError(
            f"sign={sign!r} is only used with a pair amplitude=(a, b); "
            f"amplitude={amplitude!r} draws signed values itself, so leave sign='iid'."
        )
    if bernoulli:
        if density is None:
            raise ValueError("amplitude='bernoulli-gaussian' needs density, a number in (0, 1].")
        density = _check_density(density)
    elif density is not None:
        raise ValueError(
            f"density is only used with amplitude='bernoulli-gaussian'; got density={density!r} "
            f"with amplitude={amplitude!r}."
        )
    if snr_db is not None:
        snr_db = _check_finite("snr_db", snr_db)

    g = _generator(seed, "make_sparse")
    if isinstance(dictionary, torch.Tensor):
        check_dictionary(dictionary, name="dictionary")
        if tuple(dictionary.shape) != (m, p):
            raise ValueError(
                f"dictionary must have shape (m, p) = {(m, p)}; got {tuple(dictionary.shape)}."
            )
        D = dictionary.detach().to(device="cpu", dtype=_GEN_DTYPE)
    else:
        check_choice("dictionary", dictionary, ["gaussian", "orthogonal"])
        if dictionary == "gaussian":
            D = _gaussian_dictionary(m, p, g)
        else:
            if p != m:
                raise ValueError(f"dictionary='orthogonal' needs p == m; got m={m}, p={p}.")
            Q, R = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=_GEN_DTYPE))
            D = Q * torch.sign(torch.diagonal(R))

    if bernoulli:
        active = torch.rand(n, p, generator=g, dtype=_GEN_DTYPE) < density
        Z = active * torch.randn(n, p, generator=g, dtype=_GEN_DTYPE)
    else:
        support = _random_subsets(n, p, s, g)
        if amplitude == "normal":
            values = torch.randn(n, s, generator=g, dtype=_GEN_DTYPE)
        else:
            a, b = amplitude
            values = a + (b - a) * torch.rand(n, s, generator=g, dtype=_GEN_DTYPE)
            sign_shape = (n, s) if sign == "iid" else (n, 1)
            signs = 2.0 * torch.randint(0, 2, sign_shape, generator=g, dtype=_GEN_DTYPE) - 1.0
            values = values * signs
        Z = torch.zeros(n, p, dtype=_GEN_DTYPE).scatter_(1, support, values)

    X = Z @ D.T
    noise, noise_std = None, None
    if snr_db is not None:
        noise, noise_std = _white_noise(X, snr_db, g)
        X = X + noise
        noise = _out(noise, dtype, device)
    return SparseData(
        X=_out(X, dtype, device),
        D_star=_out(D, dtype, device),
        Z_star=_out(Z, dtype, device),
        noise=noise,
        noise_std=noise_std,
        seed=seed,
    )


def perturb(
    D_star: torch.Tensor, tau: float, *, seed: int = 0, mode: str = "random"
) -> torch.Tensor:
    """A dictionary close to ``D_star``, for initialising dictionary learning near the truth.

    Parameters
    ----------
    D_star : Tensor of shape (m, p)
        The reference dictionary (unit-norm columns expected).
    tau : float
        Size of the perturbation, ``tau >= 0``.
    seed : int
        Seed of the random generator.
    mode : {"random", "aligned"}
        ``"random"``: ``normalize_columns(D_star + tau B)`` with B having i.i.d. N(0, 1/m)
        entries, the close initialisation of PUDLE (Tolooshams & Ba, TMLR 2023, App. C.1;
        the released ``dict_init`` equals ``tau / sqrt(m)``). Each column then moves by about
        ``tau`` for small ``tau``. ``"aligned"``: ``D_i = normalize(D*_i + tau u_i)`` with
        ``u_i`` the unit-normalised sum of 3 other atoms of ``D_star`` chosen at random
        (needs p >= 4). It moves atoms toward each other, so that the coherence grows, which
        a random B (nearly orthogonal to every atom) barely does.

    Returns
    -------
    Tensor of shape (m, p)
        Unit-norm columns, same dtype and device as ``D_star``. Computed in float64 on the
        CPU, so CPU and CUDA give the same dictionary.
    """
    check_dictionary(D_star, name="D_star")
    tau = check_nonnegative("tau", tau)
    check_choice("mode", mode, ["random", "aligned"])
    m, p = D_star.shape
    g = _generator(seed, "perturb")
    D = D_star.detach().to(device="cpu", dtype=_GEN_DTYPE)
    if mode == "random":
        B = torch.randn(m, p, generator=g, dtype=_GEN_DTYPE) / math.sqrt(m)
        out = _unit_columns(D + tau * B)
    else:
        if p < 4:
            raise ValueError(f"mode='aligned' needs at least 4 atoms in D_star; got p={p}.")
        keys = torch.rand(p, p, generator=g, dtype=_GEN_DTYPE)
        keys.fill_diagonal_(2.0)
        others = keys.argsort(dim=1)[:, :3]
        u = D[:, others].sum(dim=-1)
        out = _unit_columns(D + tau * _unit_columns(u))
    return out.to(device=D_star.device, dtype=D_star.dtype)


def make_malezieux(
    m: int = 30,
    p: int = 50,
    n: int = 1000,
    *,
    density: float = 0.3,
    noise_std: float = 0.1,
    dict_noise: float = 0.5,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> MalezieuxData:
    """The synthetic data of Malezieux, Moreau & Kowalski (ICLR 2022, Sec. 2 and App. A.1-A.3).

    ``A`` has N(0, 1)/30 entries and then unit-norm columns (the 1/30 cancels); codes are
    Bernoulli(``density``) times N(0, 1); ``X = Z A^T + noise`` with noise of standard deviation
    ``noise_std`` (the paper writes variance 0.1, the released code uses std 0.1); the working
    dictionary is ``D_init = A + N(0, (dict_noise std(A))^2)``, with ``std(A)`` the population
    standard deviation of all entries of A, and it is not re-normalised (released code; the
    paper says "scale 0.5 sigma_D^2").

    Parameters
    ----------
    m, p, n : int
        Sample dimension, number of atoms, number of samples (paper: 30, 50, 1000).
    density : float in (0, 1]
        Probability that a code entry is active.
    noise_std : float
        Standard deviation of the additive noise, ``>= 0``.
    dict_noise : float
        Standard deviation of the perturbation of ``D_init``, in units of ``std(A)``, ``>= 0``.
    seed : int
    dtype : torch.float32 or torch.float64
    device : torch.device or str

    Returns
    -------
    MalezieuxData
    """
    check_positive_int("m", m)
    check_positive_int("p", p)
    check_positive_int("n", n)
    density = _check_density(density)
    noise_std = check_nonnegative("noise_std", noise_std)
    dict_noise = check_nonnegative("dict_noise", dict_noise)
    _check_dtype(dtype)
    g = _generator(seed, "make_malezieux")
    A = _unit_columns(torch.randn(m, p, generator=g, dtype=_GEN_DTYPE) / 30.0)
    active = torch.rand(n, p, generator=g, dtype=_GEN_DTYPE) < density
    Z = active * torch.randn(n, p, generator=g, dtype=_GEN_DTYPE)
    noise = noise_std * torch.randn(n, m, generator=g, dtype=_GEN_DTYPE)
    X = Z @ A.T + noise
    scale = dict_noise * float(A.std(correction=0))
    D_init = A + scale * torch.randn(m, p, generator=g, dtype=_GEN_DTYPE)
    return MalezieuxData(
        X=_out(X, dtype, device),
        D_star=_out(A, dtype, device),
        Z_star=_out(Z, dtype, device),
        D_init=_out(D_init, dtype, device),
        noise=_out(noise, dtype, device),
        noise_std=noise_std,
        seed=seed,
    )


def make_group_sparse(
    n: int,
    n_groups: int,
    group_size: int,
    n_active: int,
    *,
    m: int | None = None,
    b_min: float = 4.0,
    b_max: float = 5.0,
    snr_db: float | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> GroupSparseData:
    """Samples of the group-sparse model ``y = A* x* (+ noise)`` of Theodosis, Tolooshams,
    Tankala, Tasissa & Ba, *On the convergence of group-sparse autoencoders* (eq. 2, Sec. 4.1).

    ``A*`` has N(0, 1) entries and unit-norm columns. Each sample has ``n_active`` active groups
    drawn uniformly without replacement; the code of an active group is an N(0, I) vector,
    normalised, then scaled by ``U(b_min, b_max)``, so that ``b_min <= ||x*_g|| <= b_max``.

    The paper's notation differs from ours (samples are rows here):

    ============================  ==========================  ======================
    paper                         here                        Sec. 4.1 value
    ============================  ==========================  ======================
    N (number of examples)        ``n``                       10,000
    n (dimension of y)            ``m``                       950
    m (code length) = d Gamma     ``n_groups * group_size``   1000
    Gamma (number of groups)      ``n_groups``                500
    d (group size)                ``group_size``              2
    gamma (active groups)         ``n_active``                3
    [B_min, B_max]                ``[b_min, b_max]``          [4, 5]
    A*, x*, y                     ``D_star, Z_star, X``
    ============================  ==========================  ======================

    Parameters
    ----------
    n : int
        Number of samples.
    n_groups, group_size, n_active : int
        ``1 <= n_active <= n_groups``.
    m : int, optional
        Sample dimension; defaults to ``n_groups * group_size`` (a square dictionary).
    b_min, b_max : float
        Range of the group norms, ``0 <= b_min <= b_max``, ``b_max > 0``.
    snr_db : float, optional
        Additive white Gaussian noise at this SNR, defined as in :func:`make_sparse` (the paper
        uses 1, 5 and 10 dB).
    seed : int
    dtype : torch.float32 or torch.float64
    device : torch.device or str

    Returns
    -------
    GroupSparseData
    """
    check_positive_int("n", n)
    check_positive_int("n_groups", n_groups)
    check_positive_int("group_size", group_size)
    check_positive_int("n_active", n_active)
    if n_active > n_groups:
        raise ValueError(
            f"n_active must be at most n_groups = {n_groups}; got n_active={n_active}."
        )
    p = n_groups * group_size
    m = p if m is None else check_positive_int("m", m)
    b_min, b_max = float(b_min), float(b_max)
    if not (math.isfinite(b_min) and math.isfinite(b_max) and 0 <= b_min <= b_max and b_max > 0):
        raise ValueError(
            f"b_min and b_max must be finite with 0 <= b_min <= b_max and b_max > 0; "
            f"got b_min={b_min!r}, b_max={b_max!r}."
        )
    if snr_db is not None:
        snr_db = _check_finite("snr_db", snr_db)
    _check_dtype(dtype)
    g = _generator(seed, "make_group_sparse")
    D = _gaussian_dictionary(m, p, g)
    groups = _random_subsets(n, n_groups, n_active, g).sort(dim=1).values
    directions = torch.randn(n, n_active, group_size, generator=g, dtype=_GEN_DTYPE)
    directions = directions / torch.linalg.vector_norm(directions, dim=-1, keepdim=True)
    norms = b_min + (b_max - b_min) * torch.rand(n, n_active, 1, generator=g, dtype=_GEN_DTYPE)
    blocks = torch.zeros(n, n_groups, group_size, dtype=_GEN_DTYPE)
    index = groups.unsqueeze(-1).expand(-1, -1, group_size)
    Z = blocks.scatter_(1, index, norms * directions).reshape(n, p)
    X = Z @ D.T
    noise, noise_std = None, None
    if snr_db is not None:
        noise, noise_std = _white_noise(X, snr_db, g)
        X = X + noise
        noise = _out(noise, dtype, device)
    return GroupSparseData(
        X=_out(X, dtype, device),
        D_star=_out(D, dtype, device),
        Z_star=_out(Z, dtype, device),
        groups=groups.to(device),
        group_size=group_size,
        noise=noise,
        noise_std=noise_std,
        seed=seed,
    )


def _check_family_trials(family: str, trials: int | None) -> int | None:
    check_choice("family", family, ["binomial", "poisson"])
    if family == "binomial":
        return 25 if trials is None else check_positive_int("trials", trials)
    if trials is not None:
        raise ValueError(
            f"trials is only used with family='binomial'; got trials={trials!r} with "
            "family='poisson'."
        )
    return None


def _draw_counts(
    mu: torch.Tensor, family: str, trials: int | None, g: torch.Generator
) -> torch.Tensor:
    if family == "binomial":
        return torch.binomial(torch.full_like(mu, float(trials)), mu, generator=g)
    return torch.poisson(mu, generator=g)


def sample_counts(
    mu: torch.Tensor,
    *,
    family: str = "binomial",
    trials: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Draw counts of mean ``mu`` from the binomial or Poisson model (DCEA, ICML 2020, Table 1).

    DCEA draws two independent sets of counts from the same mean, one to train and one to
    validate (Sec. 5.2.1); use this with ``data.mu`` and a new seed for the second set.

    Parameters
    ----------
    mu : Tensor
        Success probabilities in [0, 1] (binomial) or non-negative rates (Poisson).
    family : {"binomial", "poisson"}
    trials : int, optional
        Number of trials ``M`` of the binomial model (default 25, the paper's value); must be
        None for Poisson.
    seed : int

    Returns
    -------
    Tensor
        Counts with the shape, dtype and device of ``mu``, drawn in float64 on the CPU.
    """
    check_tensor("mu", mu)
    trials = _check_family_trials(family, trials)
    rate = mu.detach().to(device="cpu", dtype=_GEN_DTYPE)
    if family == "binomial" and not bool(((rate >= 0) & (rate <= 1)).all()):
        raise ValueError("mu must lie in [0, 1] for family='binomial' (success probabilities).")
    if family == "poisson" and not bool((rate >= 0).all()):
        raise ValueError("mu must be >= 0 for family='poisson' (rates).")
    return _draw_counts(rate, family, trials, _generator(seed, "sample_counts")).to(mu)


def make_conv_expfamily(
    n: int = 1000,
    length: int = 500,
    n_filters: int = 3,
    filter_length: int = 50,
    *,
    family: str = "binomial",
    trials: int | None = None,
    n_events: int = 5,
    amplitude: tuple[float, float] = (2.0, 4.0),
    baseline: float = -2.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> ConvExpFamilyData:
    """Simulated spike trains of the convolutional exponential-family model of DCEA.

    Tolooshams, Song, Temereanca & Ba (ICML 2020, Sec. 3.2, Table 1 and Sec. 5.2.1): for each
    sample j, ``f(mu_j) = baseline + sum_c h_c * x_c^j`` (full 1-D convolution, length
    ``length``), then ``Y_j ~ Binomial(M, mu_j)`` with ``f^{-1} = sigmoid``, or
    ``Y_j ~ Poisson(mu_j)`` with ``f^{-1} = exp``. Each filter occurs ``n_events`` times per
    sample at distinct times drawn uniformly among the ``length - filter_length + 1`` code
    positions, with amplitudes ``U(amplitude)``.

    Defaults are the paper's Sec. 5.2.1 sizes: J = 1000 samples of length N = 500, C = 3
    filters of length K = 50, each occurring five times, M = 25 trials. The paper leaves out
    the filters, the code amplitudes and the baseline. Here the filters are N(0, 1) with unit
    norm (the paper's initialisation distribution), and the amplitudes ``U(2, 4)`` with a
    baseline logit of -2 give rate functions like its Fig. 3a.

    Parameters
    ----------
    n, length, n_filters, filter_length : int
        ``filter_length <= length``.
    family : {"binomial", "poisson"}
    trials : int, optional
        Number of binomial trials M (default 25); must be None for Poisson.
    n_events : int
        Occurrences of each filter per sample, ``1 <= n_events <= length - filter_length + 1``.
    amplitude : (a, b)
        Range of the non-negative code amplitudes, ``0 <= a <= b``.
    baseline : float
        Constant added to the linear predictor (a logit for binomial, a log-rate for Poisson).
    seed : int
    dtype : torch.float32 or torch.float64
    device : torch.device or str

    Returns
    -------
    ConvExpFamilyData
        ``Y`` (n, length), ``H_star`` (n_filters, filter_length), ``X_star``
        (n, n_filters, length - filter_length + 1), ``mu`` (n, length).
    """
    check_positive_int("n", n)
    check_positive_int("length", length)
    check_positive_int("n_filters", n_filters)
    check_positive_int("filter_length", filter_length)
    if filter_length > length:
        raise ValueError(
            f"filter_length must be at most length = {length}; got filter_length={filter_length}."
        )
    positions = length - filter_length + 1
    check_positive_int("n_events", n_events)
    if n_events > positions:
        raise ValueError(
            f"n_events must be at most length - filter_length + 1 = {positions}; "
            f"got n_events={n_events}."
        )
    trials = _check_family_trials(family, trials)
    a, b = _check_range("amplitude", amplitude)
    baseline = _check_finite("baseline", baseline)
    _check_dtype(dtype)
    g = _generator(seed, "make_conv_expfamily")
    H = torch.randn(n_filters, filter_length, generator=g, dtype=_GEN_DTYPE)
    H = H / torch.linalg.vector_norm(H, dim=1, keepdim=True)
    times = _random_subsets(n * n_filters, positions, n_events, g)
    values = a + (b - a) * torch.rand(n * n_filters, n_events, generator=g, dtype=_GEN_DTYPE)
    codes = torch.zeros(n * n_filters, positions, dtype=_GEN_DTYPE).scatter_(1, times, values)
    codes = codes.reshape(n, n_filters, positions)
    eta = baseline + F.conv_transpose1d(codes, H.unsqueeze(1)).squeeze(1)
    mu = torch.sigmoid(eta) if family == "binomial" else torch.exp(eta)
    Y = _draw_counts(mu, family, trials, g)
    return ConvExpFamilyData(
        Y=_out(Y, dtype, device),
        H_star=_out(H, dtype, device),
        X_star=_out(codes, dtype, device),
        mu=_out(mu, dtype, device),
        family=family,
        trials=trials,
        baseline=baseline,
        seed=seed,
    )
