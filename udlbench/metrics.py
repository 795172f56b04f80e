"""Metrics of dictionary and code recovery, and of reconstruction quality.

A learned dictionary is only defined up to the order and the signs of its atoms, so every
dictionary metric matches the atoms of ``D`` to those of ``D_star`` first (Hungarian assignment on
the absolute correlations of column-normalised copies) unless told not to.

Every function accepts float32 or float64 tensors on any device. Dictionary metrics are computed
in float64 (float32 inputs are promoted), and the assignment problem is solved on the CPU with
``scipy.optimize.linear_sum_assignment``. Scalars are returned as Python floats; tensors keep the
dtype and device of the first argument.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from udlbench._validation import check_choice, check_dictionary, check_tensor

__all__ = [
    "Alignment",
    "align",
    "atom_distances",
    "atom_sines",
    "coherence",
    "dictionary_error",
    "psnr",
    "recovery_score",
    "support_precision_recall",
    "support_recovery",
]


class Alignment(NamedTuple):
    """The atoms of ``D`` reordered and sign-flipped to match ``D_star``.

    ``D[:, j] = signs[j] * D_original[:, permutation[j]]`` for every atom j of ``D_star``.
    """

    D: torch.Tensor
    permutation: torch.Tensor
    signs: torch.Tensor


def _pair(D: torch.Tensor, D_star: torch.Tensor, *, square: bool = True) -> None:
    """Validate two dictionaries of matching shapes on one device."""
    check_dictionary(D, name="D")
    check_dictionary(D_star, name="D_star")
    if D.device != D_star.device:
        raise ValueError(
            f"D is on {D.device} but D_star is on {D_star.device}; move them to one device."
        )
    if square and D.shape != D_star.shape:
        raise ValueError(
            f"D and D_star must have the same shape (m, p); got D {tuple(D.shape)} and "
            f"D_star {tuple(D_star.shape)}."
        )
    if D.shape[0] != D_star.shape[0]:
        raise ValueError(
            f"D and D_star must have the same number of rows m; got D {tuple(D.shape)} and "
            f"D_star {tuple(D_star.shape)}."
        )


def _unit(D: torch.Tensor) -> torch.Tensor:
    D = D.detach().to(torch.float64)
    return D / torch.linalg.vector_norm(D, dim=0, keepdim=True)


def _match(D: torch.Tensor, D_star: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each atom j of D_star, the index of the atom of D matched to it and their cosine.

    Maximises ``sum_j |<D_bar_perm[j], D*_bar_j>|`` over injective maps (Hungarian algorithm) on
    column-normalised copies; ``D`` may have more atoms than ``D_star``. Both results live on
    ``D``'s device; the cosines are float64.
    """
    cosines = _unit(D_star).T @ _unit(D)
    rows, cols = linear_sum_assignment(cosines.abs().cpu().numpy(), maximize=True)
    permutation = np.empty(D_star.shape[1], dtype=np.int64)
    permutation[rows] = cols
    index = torch.from_numpy(permutation).to(cosines.device)
    return index, cosines[torch.arange(D_star.shape[1], device=cosines.device), index]


def align(D: torch.Tensor, D_star: torch.Tensor) -> Alignment:
    """Permute and sign-flip the atoms of ``D`` to match those of ``D_star``.

    The permutation maximises ``sum_j |<D_bar_perm[j], D*_bar_j>|`` on column-normalised copies
    (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``); each sign makes the matched
    inner product non-negative. This is the alignment every dictionary error needs when the
    initialisation is not close (Tolooshams & Ba, TMLR 2023, App. C; Malezieux et al.,
    ICLR 2022, Sec. 3).

    Parameters
    ----------
    D, D_star : Tensor of shape (m, p)
        Dictionaries with atoms as columns and no zero atom, on one device.

    Returns
    -------
    Alignment
        ``D`` (m, p): the columns of the input ``D``, unnormalised, reordered and sign-flipped;
        ``permutation`` (p,) int64 and ``signs`` (p,) of ``D``'s dtype, on ``D``'s device, with
        ``D_aligned[:, j] = signs[j] * D[:, permutation[j]]``.
    """
    _pair(D, D_star)
    index, matched = _match(D, D_star)
    signs = torch.where(matched < 0, -1.0, 1.0).to(D.dtype)
    return Alignment(D=D[:, index] * signs, permutation=index, signs=signs)


def _prepared(
    D: torch.Tensor, D_star: torch.Tensor, *, align: bool, normalize: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 copies of D (aligned if asked) and D_star, column-normalised if asked."""
    _pair(D, D_star)
    if normalize:
        D_bar, D_star_bar = _unit(D), _unit(D_star)
    else:
        D_bar, D_star_bar = D.detach().to(torch.float64), D_star.detach().to(torch.float64)
    if align:
        index, matched = _match(D, D_star)
        D_bar = D_bar[:, index] * torch.where(matched < 0, -1.0, 1.0).to(torch.float64)
    return D_bar, D_star_bar


def dictionary_error(
    D: torch.Tensor,
    D_star: torch.Tensor,
    *,
    norm: str = "spectral",
    align: bool = True,
    normalize: bool = True,
) -> float:
    """Relative dictionary error ``||D_bar - D*_bar|| / ||D*_bar||``.

    Tolooshams & Ba (TMLR 2023, App. C) write the spectral norm ``||.||_2``; their released code
    uses the Frobenius norm (``fro_distance_relative``). Report both.

    Parameters
    ----------
    D, D_star : Tensor of shape (m, p)
    norm : {"spectral", "fro"}
        Matrix 2-norm (largest singular value) or Frobenius norm.
    align : bool
        Match the atoms of ``D`` to those of ``D_star`` by permutation and sign first (see
        :func:`align`); if False, compare column j with column j as given.
    normalize : bool
        Scale the columns of both dictionaries to unit norm first.

    Returns
    -------
    float
        The relative error. The absolute errors satisfy ``||E||_2 <= ||E||_F``, but the relative
        ones divide by different norms of ``D*_bar`` and are not ordered: for ``D* = I_p`` a
        rank-one error gives a spectral error ``sqrt(p)`` times the Frobenius one.
    """
    check_choice("norm", norm, ["spectral", "fro"])
    D_bar, D_star_bar = _prepared(D, D_star, align=align, normalize=normalize)
    order = 2 if norm == "spectral" else "fro"
    difference = torch.linalg.matrix_norm(D_bar - D_star_bar, ord=order)
    return float(difference / torch.linalg.matrix_norm(D_star_bar, ord=order))


def atom_distances(D: torch.Tensor, D_star: torch.Tensor, *, align: bool = True) -> torch.Tensor:
    """Distances ``||D_bar_j - D*_bar_j||`` between matched, column-normalised atoms.

    Their maximum is the ``delta`` of (delta, 2)-closeness (Tolooshams & Ba, TMLR 2023,
    Def. A.2; Lemma 3.1).

    Parameters
    ----------
    D, D_star : Tensor of shape (m, p)
    align : bool
        Match the atoms by permutation and sign first (see :func:`align`).

    Returns
    -------
    Tensor of shape (p,)
        Dtype and device of ``D``.
    """
    D_bar, D_star_bar = _prepared(D, D_star, align=align, normalize=True)
    return torch.linalg.vector_norm(D_bar - D_star_bar, dim=0).to(D.dtype)


def atom_sines(D: torch.Tensor, D_star: torch.Tensor, *, align: bool = True) -> torch.Tensor:
    """Filter errors ``sqrt(max(0, 1 - <h, h_hat>^2))`` of matched unit-norm atoms.

    The error measure of Tolooshams, Song, Temereanca & Ba (ICML 2020, Sec. 5.2.1), the sine of
    the angle between a true filter and its estimate. The paper takes the permutation of lowest
    error; here the atoms are matched as in :func:`align` (largest total ``|cosine|``), which is
    the same permutation whenever the estimate is close.

    Parameters
    ----------
    D, D_star : Tensor of shape (m, p)
        Atoms (filters) as columns; a bank of filters of shape (C, K) is passed as its
        transpose.
    align : bool
        Match the atoms by permutation first; if False, compare column j with column j.

    Returns
    -------
    Tensor of shape (p,)
        Values in [0, 1], dtype and device of ``D``. Computed as ``||h_hat - <h, h_hat> h||``,
        equal to the formula above for unit vectors and accurate for small angles.
    """
    D_bar, D_star_bar = _prepared(D, D_star, align=align, normalize=True)
    cosines = (D_bar * D_star_bar).sum(dim=0)
    # ||h_hat - <h, h_hat> h|| equals sqrt(1 - <h, h_hat>^2) for unit vectors and, unlike it,
    # keeps full relative accuracy for small angles
    sines = torch.linalg.vector_norm(D_bar - cosines * D_star_bar, dim=0)
    return sines.clamp(max=1.0).to(D.dtype)


def coherence(D: torch.Tensor) -> float:
    """Mutual coherence ``max_{i != j} |<D_i, D_j>|`` of the column-normalised dictionary.

    Equals ``mu / sqrt(m)`` in the notation of Tolooshams & Ba (TMLR 2023, Assumption 3.4 and
    Lemma 3.1).

    Parameters
    ----------
    D : Tensor of shape (m, p)
        At least two atoms.

    Returns
    -------
    float
    """
    check_dictionary(D)
    if D.shape[1] < 2:
        raise ValueError(f"D needs at least 2 atoms for a coherence; got shape {tuple(D.shape)}.")
    D_bar = _unit(D)
    gram = (D_bar.T @ D_bar).abs()
    gram.fill_diagonal_(0.0)
    return float(gram.max())


def recovery_score(D: torch.Tensor, D_star: torch.Tensor) -> float:
    """Recovery score ``S(C) = max_sigma (1/p) sum_i |C_{sigma(i), i}|`` (Malezieux, Moreau &
    Kowalski, ICLR 2022, Sec. 3).

    ``C`` is the matrix of correlations (cosines) between the atoms of ``D_star`` and ``D``;
    the maximum over injective maps sigma is found with the Hungarian algorithm.

    Parameters
    ----------
    D : Tensor of shape (m, q)
        Estimated dictionary, with ``q >= p`` atoms.
    D_star : Tensor of shape (m, p)
        True dictionary.

    Returns
    -------
    float
        In [0, 1]; 1 exactly when every true atom is matched to a collinear estimated atom.
    """
    _pair(D, D_star, square=False)
    if D.shape[1] < D_star.shape[1]:
        raise ValueError(
            f"D needs at least as many atoms as D_star; got D {tuple(D.shape)} and D_star "
            f"{tuple(D_star.shape)}."
        )
    _, matched = _match(D, D_star)
    return float(matched.abs().mean())


def _codes(Z: torch.Tensor, Z_star: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_tensor("Z", Z, ndim=(2, 3))
    check_tensor("Z_star", Z_star, ndim=(2, 3))
    if Z.shape != Z_star.shape:
        raise ValueError(
            f"Z and Z_star must have the same shape; got Z {tuple(Z.shape)} and Z_star "
            f"{tuple(Z_star.shape)}."
        )
    if Z.device != Z_star.device:
        raise ValueError(
            f"Z is on {Z.device} but Z_star is on {Z_star.device}; move them to one device."
        )
    return Z.detach().reshape(Z.shape[0], -1), Z_star.detach().reshape(Z.shape[0], -1)


def _check_tol(tol: float) -> float:
    tol = float(tol)
    if not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0; got {tol!r}.")
    return tol


def support_recovery(
    Z: torch.Tensor, Z_star: torch.Tensor, *, signed: bool = True, tol: float = 0.0
) -> float:
    """Fraction of samples whose estimated (signed) support equals the true one exactly.

    The event of one-step signed-support recovery (Tolooshams & Ba, TMLR 2023, Thm 4.1;
    Theodosis et al., Lemma 1 for groups read entry-wise).

    Parameters
    ----------
    Z, Z_star : Tensor of shape (n, p) or (n, C, L)
        Estimated and true codes, samples along the first axis.
    signed : bool
        Compare ``sign(z) 1{|z| > tol}`` instead of ``1{|z| > tol}``.
    tol : float
        An entry of either tensor is active when its magnitude exceeds ``tol``.

    Returns
    -------
    float
        In [0, 1].
    """
    tol = _check_tol(tol)
    Z, Z_star = _codes(Z, Z_star)
    pattern = (Z.abs() > tol).to(torch.int8)
    pattern_star = (Z_star.abs() > tol).to(torch.int8)
    if signed:
        pattern = pattern * torch.sign(Z).to(torch.int8)
        pattern_star = pattern_star * torch.sign(Z_star).to(torch.int8)
    return float((pattern == pattern_star).all(dim=1).to(torch.float64).mean())


def support_precision_recall(
    Z: torch.Tensor, Z_star: torch.Tensor, *, tol: float = 0.0
) -> tuple[float, float]:
    """Precision and recall of the estimated support, pooled over all entries of all samples.

    ``precision = |S_hat & S| / |S_hat|`` and ``recall = |S_hat & S| / |S|``, with ``S`` the
    set of entries (sample, atom) where ``|Z_star| > tol`` and ``S_hat`` those where
    ``|Z| > tol``. Signs are ignored. With an empty ``S_hat`` (``S``) the precision (recall) is
    1.0: there is no false positive (no missed entry).

    Parameters
    ----------
    Z, Z_star : Tensor of shape (n, p) or (n, C, L)
    tol : float

    Returns
    -------
    (float, float)
        ``(precision, recall)``.
    """
    tol = _check_tol(tol)
    Z, Z_star = _codes(Z, Z_star)
    estimated, true = Z.abs() > tol, Z_star.abs() > tol
    hits = int((estimated & true).sum())
    n_estimated, n_true = int(estimated.sum()), int(true.sum())
    precision = hits / n_estimated if n_estimated else 1.0
    recall = hits / n_true if n_true else 1.0
    return precision, recall


def psnr(
    x: torch.Tensor,
    x_ref: torch.Tensor,
    *,
    data_range: float,
    reduction: str = "global",
) -> float | torch.Tensor:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / mse)`` in dB.

    Used for the denoising results of Tolooshams et al. (ICML 2020, Table 2) and Malezieux et al.
    (ICLR 2022, Fig. 5), where ``data_range`` is the peak value of the clean image.

    Parameters
    ----------
    x, x_ref : Tensor
        Estimate and reference of the same shape; for ``reduction`` "mean" or "none" the first
        axis indexes images (shape (B, ...), at least 2 axes).
    data_range : float
        The peak-to-peak range of the signal, ``> 0`` (1.0 for images in [0, 1], 255 for
        8-bit images).
    reduction : {"global", "mean", "none"}
        ``"global"``: one mse over every entry of ``x``. ``"mean"``: the mean over the batch of
        the per-image PSNR. ``"none"``: the per-image PSNR as a tensor of shape (B,).

    Returns
    -------
    float or Tensor of shape (B,)
        ``inf`` where the mse is zero.
    """
    check_tensor("x", x)
    check_tensor("x_ref", x_ref)
    check_choice("reduction", reduction, ["global", "mean", "none"])
    if x.shape != x_ref.shape:
        raise ValueError(
            f"x and x_ref must have the same shape; got {tuple(x.shape)} and "
            f"{tuple(x_ref.shape)}."
        )
    if x.device != x_ref.device:
        raise ValueError(f"x is on {x.device} but x_ref is on {x_ref.device}; move them.")
    data_range = float(data_range)
    if not math.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range must be a finite number > 0; got {data_range!r}.")
    error = (x.detach().to(torch.float64) - x_ref.detach().to(torch.float64)).square()
    if reduction == "global":
        return 10 * math.log10(data_range**2 / float(error.mean())) if error.any() else math.inf
    if x.ndim < 2:
        raise ValueError(
            f"reduction={reduction!r} needs a batch of images of shape (B, ...); "
            f"got shape {tuple(x.shape)}."
        )
    per_image = 10 * torch.log10(data_range**2 / error.reshape(x.shape[0], -1).mean(dim=1))
    if reduction == "none":
        return per_image.to(x.dtype)
    return float(per_image.mean())
