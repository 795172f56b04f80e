"""Pairwise initialisation of Arora, Ge, Ma & Moitra (COLT 2015), as used by PUDLE's Fig. 15
(Tolooshams & Ba, TMLR 2023, App. C.1; THEOREMS.md P-F15)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from baselines.arora import AroraInitWarning, arora_init
from udlbench.data import make_sparse, normalize_columns
from udlbench.metrics import atom_sines

pytestmark = pytest.mark.fast


def _orthogonal(m: int, n: int, s: int, *, dtype=torch.float64, device="cpu"):
    """``x = D* z`` with a Haar orthogonal D* (m, m) and s-sparse N(0, 1) codes (P-F15's model)."""
    return make_sparse(
        m, m, n, s, dictionary="orthogonal", amplitude="normal", seed=0, dtype=dtype, device=device
    )


def _quiet_init(X, n_atoms, **options):
    """``arora_init`` with its shortfall warning turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", AroraInitWarning)
        return arora_init(X, n_atoms, **options)


def _random_dictionary(m: int, p: int, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return normalize_columns(torch.randn(m, p, generator=generator, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_close_to_an_incoherent_dictionary(dtype):
    """m = p = 64, s = 3, n = 4000, orthogonal D*: all 64 atoms are found, with per-atom sines
    median 0.133, 90th percentile 0.179, max 0.225 in float64 and float32 alike (measured),
    against a median of 0.948 for a random dictionary (negative control). Asserted: median
    below 0.2, max below 0.35, median below a quarter of the random one's."""
    data = _orthogonal(64, 4000, 3, dtype=dtype)
    D0 = _quiet_init(data.X, 64, seed=0)
    assert D0.shape == (64, 64) and D0.dtype == dtype
    norms = torch.linalg.vector_norm(D0, dim=0)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    sines = atom_sines(D0, data.D_star).double()
    random_sines = atom_sines(_random_dictionary(64, 64, dtype), data.D_star).double()
    assert float(sines.median()) < 0.2
    assert float(sines.max()) < 0.35
    assert float(sines.median()) < 0.25 * float(random_sines.median())


def test_deterministic_under_the_seed():
    """m = p = 32, s = 2, n = 2000: sines median 0.094 (seed 0) and 0.097 (seed 1), measured."""
    data = _orthogonal(32, 2000, 2)
    first, second, other = (_quiet_init(data.X, 32, seed=seed) for seed in (0, 0, 1))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    for D0 in (first, other):
        assert float(atom_sines(D0, data.D_star).median()) < 0.15


def test_isotropic_noise_has_no_atoms():
    """Without a sparse model, ``M_uv = <u, v> I + u v^T + v u^T`` in expectation has two
    comparable top eigenvalues, so no pair passes the spectral test (0 of 320, measured)."""
    X = torch.randn(2000, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.warns(AroraInitWarning, match="found 0 distinct atoms out of n_atoms=32"):
        D0 = arora_init(X, 32, seed=0)
    norms = torch.linalg.vector_norm(D0, dim=0)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-12)
    with pytest.raises(RuntimeError, match="found 0 distinct atoms"):
        arora_init(X, 32, seed=0, fill="raise")


def test_shortfall_is_filled_with_random_unit_vectors_and_warned():
    """With 5 pairs at most 5 atoms can be found: those 5 are true atoms, the other 27 columns
    are random unit vectors, and the warning names the count."""
    data = _orthogonal(32, 2000, 2)
    with pytest.warns(AroraInitWarning, match="found 5 distinct atoms out of n_atoms=32"):
        D0 = arora_init(data.X, 32, seed=0, n_pairs=5)
    norms = torch.linalg.vector_norm(D0, dim=0)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-12)
    best_cosines = (D0.T @ data.D_star).abs().amax(dim=1)
    assert bool((best_cosines[:5] > 0.98).all())
    assert float(best_cosines[5:].max()) < 0.9
    with pytest.raises(RuntimeError, match="found 5 distinct atoms"):
        arora_init(data.X, 32, seed=0, n_pairs=5, fill="raise")


def test_runs_on_device(device):
    data = _orthogonal(32, 2000, 2, device=device)
    D0 = _quiet_init(data.X, 32, seed=0)
    assert D0.device.type == device.type
    assert float(atom_sines(D0, data.D_star).median()) < 0.15


@pytest.mark.parametrize(
    ("option", "error"),
    [
        ({"n_atoms": 0}, ValueError),
        ({"seed": -1}, ValueError),
        ({"n_pairs": 0}, ValueError),
        ({"n_pool": 1}, ValueError),
        ({"min_cosine": 0.0}, ValueError),
        ({"min_cosine": 1.0}, ValueError),
        ({"max_ratio": 1.5}, ValueError),
        ({"dedup_distance": 0.0}, ValueError),
        ({"chunk_size": 0}, ValueError),
        ({"fill": "zeros"}, ValueError),
        ({"X": np.ones((10, 4))}, TypeError),
        ({"X": torch.ones(10)}, ValueError),
    ],
)
def test_options_are_validated_by_name(option, error):
    arguments = {"X": torch.randn(50, 8, dtype=torch.float64), "n_atoms": 8} | option
    (name,) = option
    with pytest.raises(error, match=name):
        arora_init(**arguments)


def test_default_ratio_needs_three_dimensions():
    with pytest.raises(ValueError, match="max_ratio"):
        arora_init(torch.randn(50, 2, dtype=torch.float64), 2)
