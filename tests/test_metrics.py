"""Tests of the recovery and reconstruction metrics in udlbench.metrics."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from udlbench.data import make_sparse, perturb
from udlbench.metrics import (
    Alignment,
    align,
    atom_distances,
    atom_sines,
    coherence,
    dictionary_error,
    psnr,
    recovery_score,
    support_precision_recall,
    support_recovery,
)

pytestmark = pytest.mark.fast



def gaussian(m: int, p: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, p, generator=g, dtype=torch.float64).to(dtype)


@st.composite
def problems(draw):
    """A pair (D, D_star) and a signed permutation of the atoms of D."""
    m = draw(st.integers(3, 12))
    p = draw(st.integers(2, 10))
    seed = draw(st.integers(0, 2**16))
    noise = draw(st.floats(0.0, 2.0))
    D_star = gaussian(m, p, seed)
    D = D_star + noise * gaussian(m, p, seed + 1)
    permutation = torch.tensor(draw(st.permutations(list(range(p)))))
    signs = torch.tensor(draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=p, max_size=p)),
                         dtype=torch.float64)
    scales = torch.tensor(draw(st.lists(st.floats(0.1, 10.0), min_size=p, max_size=p)),
                          dtype=torch.float64)
    return D, D_star, permutation, signs, scales


def relabel(D, permutation, signs, scales=None):
    out = D[:, permutation] * signs
    return out if scales is None else out * scales


# --- invariance to the order and signs of the atoms (property-based) ---------------------------


@given(problems())
def test_dictionary_error_invariant_to_signed_permutation(problem):
    D, D_star, permutation, signs, _ = problem
    D2 = relabel(D, permutation, signs)
    for norm in ("spectral", "fro"):
        assert math.isclose(dictionary_error(D2, D_star, norm=norm),
                            dictionary_error(D, D_star, norm=norm), rel_tol=1e-9, abs_tol=1e-12)


@given(problems())
def test_recovery_score_and_coherence_invariant(problem):
    D, D_star, permutation, signs, scales = problem
    D2 = relabel(D, permutation, signs, scales)
    assert math.isclose(recovery_score(D2, D_star), recovery_score(D, D_star), rel_tol=1e-9)
    assert math.isclose(coherence(D2), coherence(D), rel_tol=1e-9, abs_tol=1e-12)
    assert 0.0 <= recovery_score(D, D_star) <= 1.0 + 1e-12


@given(problems())
def test_atom_sines_and_distances_invariant(problem):
    D, D_star, permutation, signs, scales = problem
    D2 = relabel(D, permutation, signs, scales)
    assert torch.allclose(atom_sines(D2, D_star), atom_sines(D, D_star), atol=1e-10)
    assert torch.allclose(atom_distances(D2, D_star), atom_distances(D, D_star), atol=1e-10)


def unit_columns(D):
    return D / torch.linalg.vector_norm(D, dim=0)


@given(problems())
def test_spectral_error_at_most_frobenius(problem):
    D, D_star, _, _, _ = problem
    for kwargs, reference in (({}, unit_columns(D_star)), ({"align": False}, unit_columns(D_star)),
                              ({"normalize": False}, D_star)):
        # ||E||_2 <= ||E||_F for the error E; the relative errors divide by different norms
        spectral = dictionary_error(D, D_star, norm="spectral", **kwargs)
        frobenius = dictionary_error(D, D_star, norm="fro", **kwargs)
        absolute_spectral = spectral * float(torch.linalg.matrix_norm(reference, ord=2))
        absolute_frobenius = frobenius * float(torch.linalg.matrix_norm(reference))
        assert absolute_spectral <= absolute_frobenius * (1 + 1e-12) + 1e-14


def test_relative_spectral_error_can_exceed_relative_frobenius_error():
    # D* = I: ||D*||_2 = 1 but ||D*||_F = 2, so a rank-one error of norm e gives e against e/2
    D_star = torch.eye(4, dtype=torch.float64)
    D = D_star.clone()
    D[1, 0] = 0.1
    spectral = dictionary_error(D, D_star)
    frobenius = dictionary_error(D, D_star, norm="fro")
    assert math.isclose(spectral, 2 * frobenius, rel_tol=1e-12)


@given(problems())
def test_align_recovers_known_signed_permutation(problem):
    _, D_star, permutation, signs, _ = problem
    D = relabel(D_star, permutation, signs)  # D[:, k] = signs[k] D*[:, permutation[k]]
    result = align(D, D_star)
    inverse = torch.argsort(permutation)
    assert torch.equal(result.permutation, inverse)
    assert torch.equal(result.signs, signs[inverse])
    assert torch.equal(result.D, D_star)
    assert torch.equal(result.D, D[:, result.permutation] * result.signs)


@given(problems())
def test_distances_and_sines_agree(problem):
    D, D_star, _, _, _ = problem
    # for unit atoms with a non-negative cosine c: d^2 = 2 - 2c and sin^2 = 1 - c^2
    cosine = 1 - atom_distances(D, D_star).square() / 2
    sines = atom_sines(D, D_star)
    assert bool((cosine >= -1e-12).all())
    assert torch.allclose(sines, torch.sqrt(torch.clamp(1 - cosine.square(), min=0)), atol=1e-6)


# --- closed forms and hand-made examples ----------------------------------------------------------


def test_dictionary_error_closed_forms():
    D_star = make_sparse(20, 30, 1, 1, seed=0).D_star
    for norm in ("spectral", "fro"):
        assert dictionary_error(D_star, D_star, norm=norm) == 0.0
        assert dictionary_error(3 * D_star, D_star, norm=norm) < 1e-15
        # without normalisation 2 D* - D* = D*: relative error exactly 1
        assert math.isclose(dictionary_error(2 * D_star, D_star, norm=norm, normalize=False), 1.0)
    flipped = D_star.clone()
    flipped[:, 0] *= -1
    assert dictionary_error(flipped, D_star, norm="fro") == 0.0
    # identity order, signs kept: ||D - D*||_F = 2 and ||D*||_F = sqrt(p)
    assert math.isclose(dictionary_error(flipped, D_star, norm="fro", align=False),
                        2 / math.sqrt(30), rel_tol=1e-12)
    shuffled = D_star[:, torch.randperm(30, generator=torch.Generator().manual_seed(1))]
    assert dictionary_error(shuffled, D_star) == 0.0
    assert dictionary_error(shuffled, D_star, align=False) > 0.5


def test_dictionary_error_spectral_below_frobenius_and_perturbation_size():
    D_star = make_sparse(50, 100, 1, 1, seed=1).D_star
    D = perturb(D_star, 0.1, seed=2)
    spectral = dictionary_error(D, D_star)
    frobenius = dictionary_error(D, D_star, norm="fro")
    assert 0 < spectral and 0 < frobenius
    # the relative Frobenius error of a tau-perturbation is about tau (column distances ~ tau)
    assert 0.08 < frobenius < 0.11
    assert float(atom_distances(D, D_star).max()) < 0.16


def test_recovery_score_values():
    D_star = make_sparse(20, 30, 1, 1, seed=3).D_star
    assert math.isclose(recovery_score(D_star, D_star), 1.0, rel_tol=1e-12)
    unrelated = make_sparse(20, 30, 1, 1, seed=4).D_star
    assert recovery_score(unrelated, D_star) < 0.8
    # more estimated atoms than true ones: the extra atoms are ignored
    extra = torch.cat([-D_star[:, torch.arange(29, -1, -1)], unrelated[:, :5]], dim=1)
    assert math.isclose(recovery_score(extra, D_star), 1.0, rel_tol=1e-12)
    with pytest.raises(ValueError, match="at least as many atoms"):
        recovery_score(D_star[:, :10], D_star)


def test_atom_sines_hand_made():
    D_star = torch.eye(3, dtype=torch.float64)
    angle = 0.3
    D = torch.eye(3, dtype=torch.float64)
    D[:, 1] = torch.tensor([0.0, math.cos(angle), math.sin(angle)], dtype=torch.float64)
    D = D[:, [2, 0, 1]]  # reorder: alignment must undo it
    sines = atom_sines(D, D_star)
    expected = torch.tensor([0.0, math.sin(angle), 0.0], dtype=torch.float64)
    assert torch.allclose(sines, expected, atol=1e-15)
    distances = atom_distances(D, D_star)
    assert math.isclose(float(distances[1]), 2 * math.sin(angle / 2), rel_tol=1e-12)


def test_coherence_hand_made():
    D = torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 2.0]], dtype=torch.float64)
    assert math.isclose(coherence(D), 1 / math.sqrt(2), rel_tol=1e-14)
    assert coherence(torch.eye(4, dtype=torch.float64)) == 0.0
    with pytest.raises(ValueError, match="at least 2 atoms"):
        coherence(torch.ones(3, 1, dtype=torch.float64))


def test_alignment_is_a_named_tuple():
    D_star = gaussian(5, 4, 0)
    D, permutation, signs = align(-D_star, D_star)
    assert isinstance(align(D_star, D_star), Alignment)
    assert torch.equal(D, D_star) and torch.equal(permutation, torch.arange(4))
    assert torch.equal(signs, -torch.ones(4, dtype=torch.float64))


@pytest.mark.parametrize(
    "D,D_star,match",
    [
        (gaussian(5, 4, 0), gaussian(5, 3, 1), "same shape"),
        (gaussian(6, 4, 0), gaussian(5, 4, 1), "same shape"),
        (torch.zeros(5, 4, dtype=torch.float64), gaussian(5, 4, 1), "zero atoms"),
        (gaussian(5, 4, 0).flatten(), gaussian(5, 4, 1), "2 dimensions"),
    ],
)
def test_dictionary_metrics_reject_bad_shapes(D, D_star, match):
    for metric in (align, dictionary_error, atom_distances, atom_sines):
        with pytest.raises(ValueError, match=match):
            metric(D, D_star)


def test_dictionary_error_rejects_unknown_norm():
    with pytest.raises(ValueError, match="norm must be one of"):
        dictionary_error(gaussian(5, 4, 0), gaussian(5, 4, 1), norm="nuclear")


def test_dictionary_metrics_float32(device):
    D_star64 = make_sparse(20, 30, 1, 1, seed=5).D_star
    D64 = perturb(D_star64, 0.3, seed=6)[:, torch.randperm(30)]
    D, D_star = D64.float().to(device), D_star64.float().to(device)
    for norm in ("spectral", "fro"):
        assert math.isclose(dictionary_error(D, D_star, norm=norm),
                            dictionary_error(D64, D_star64, norm=norm), rel_tol=1e-5)
    assert math.isclose(recovery_score(D, D_star), recovery_score(D64, D_star64), rel_tol=1e-6)
    assert math.isclose(coherence(D), coherence(D64), rel_tol=1e-5)
    for metric in (atom_sines, atom_distances):
        value = metric(D, D_star)
        assert value.dtype == torch.float32 and value.device.type == device.type
        assert torch.allclose(value.cpu().double(), metric(D64, D_star64), atol=1e-5)
    result = align(D, D_star)
    reference = align(D64, D_star64)
    assert result.D.dtype == torch.float32 and result.signs.dtype == torch.float32
    assert torch.equal(result.permutation.cpu(), reference.permutation)
    assert torch.equal(result.signs.cpu().double(), reference.signs)


# --- supports ---------------------------------------------------------------------------------


Z_STAR = torch.tensor([[1.0, 0.0, -2.0], [0.0, 3.0, 0.0], [1.0, 1.0, 0.0]], dtype=torch.float64)


def test_support_recovery_hand_made():
    Z = torch.tensor([[0.5, 0.0, -1.0], [0.0, -3.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    # row 0 exact; row 1 right support, wrong sign; row 2 misses an entry
    assert math.isclose(support_recovery(Z, Z_STAR), 1 / 3)
    assert math.isclose(support_recovery(Z, Z_STAR, signed=False), 2 / 3)
    assert support_recovery(Z_STAR, Z_STAR) == 1.0
    tiny = Z_STAR + 1e-9 * (Z_STAR == 0)
    assert support_recovery(tiny, Z_STAR) == 0.0
    assert support_recovery(tiny, Z_STAR, tol=1e-6) == 1.0


def test_support_precision_recall_hand_made():
    Z = torch.tensor([[0.5, 0.0, -1.0], [0.0, -3.0, 0.2], [1.0, 0.0, 0.0]], dtype=torch.float64)
    # estimated: 5 entries, 4 of them true (signs ignored); true: 5 entries
    precision, recall = support_precision_recall(Z, Z_STAR)
    assert math.isclose(precision, 4 / 5) and math.isclose(recall, 4 / 5)
    precision, recall = support_precision_recall(Z, Z_STAR, tol=0.5)
    # |0.2| and |0.5| are below tol: estimated {(0,2), (1,1), (2,0)}; true {(0,0), (0,2),
    # (1,1), (2,0), (2,1)} (all true entries are >= 1)
    assert math.isclose(precision, 1.0) and math.isclose(recall, 3 / 5)
    assert support_precision_recall(torch.zeros_like(Z_STAR), Z_STAR) == (1.0, 0.0)


def test_support_metrics_float32_and_conv_codes():
    Z = Z_STAR.float()
    assert support_recovery(Z, Z_STAR.float()) == 1.0
    assert support_precision_recall(Z, Z_STAR.float()) == (1.0, 1.0)
    codes = torch.zeros(2, 3, 5, dtype=torch.float32)
    codes[0, 1, 2] = 1.0
    estimate = codes.clone()
    estimate[1, 0, 0] = 0.5
    assert support_recovery(estimate, codes) == 0.5
    assert support_precision_recall(estimate, codes) == (0.5, 1.0)


@pytest.mark.parametrize(
    "Z,kwargs,match",
    [
        (torch.zeros(3, 4, dtype=torch.float64), {}, "same shape"),
        (torch.zeros(3, dtype=torch.float64), {}, "dimensions"),
        (Z_STAR, {"tol": -1.0}, "tol must be"),
    ],
)
def test_support_metrics_bad_input(Z, kwargs, match):
    for metric in (support_recovery, support_precision_recall):
        with pytest.raises(ValueError, match=match):
            metric(Z, Z_STAR, **kwargs)


# --- psnr -------------------------------------------------------------------------------------


def test_psnr_closed_form(dtype):
    reference = torch.zeros(2, 4, 4, dtype=dtype)
    estimate = torch.stack([torch.full((4, 4), v, dtype=dtype) for v in (0.1, 0.01)])
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    # per image: mse 1e-2 and 1e-4, so 20 dB and 40 dB
    per_image = psnr(estimate, reference, data_range=1.0, reduction="none")
    assert per_image.dtype == dtype and per_image.shape == (2,)
    assert torch.allclose(per_image.double(), torch.tensor([20.0, 40.0], dtype=torch.float64),
                          rtol=rtol)
    assert math.isclose(psnr(estimate, reference, data_range=1.0, reduction="mean"), 30.0,
                        rel_tol=rtol)
    global_mse = (1e-2 + 1e-4) / 2
    assert math.isclose(psnr(estimate, reference, data_range=1.0),
                        10 * math.log10(1 / global_mse), rel_tol=rtol)
    # data_range 255 adds 20 log10(255) dB
    assert math.isclose(psnr(estimate[0], reference[0], data_range=255.0),
                        20 + 20 * math.log10(255), rel_tol=rtol)
    assert psnr(reference, reference, data_range=1.0) == math.inf


@pytest.mark.parametrize(
    "x,kwargs,match",
    [
        (torch.zeros(3, 3, dtype=torch.float64), {"data_range": 1.0}, "same shape"),
        (torch.zeros(2, 2, dtype=torch.float64), {"data_range": 0.0}, "data_range must be"),
        (torch.zeros(2, 2, dtype=torch.float64), {"data_range": 1.0, "reduction": "sum"},
         "reduction must be one of"),
    ],
)
def test_psnr_bad_input(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        psnr(x, torch.ones(2, 2, dtype=torch.float64), **kwargs)


def test_psnr_batch_reduction_needs_batch_axis():
    x = torch.zeros(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="batch of images"):
        psnr(x, x + 1, data_range=1.0, reduction="none")
