"""Pairwise spectral initialisation of a dictionary (Arora, Ge, Ma & Moitra, COLT 2015, the
"pairwise initialization" algorithm), the initialisation of PUDLE's Fig. 15 (Tolooshams & Ba,
TMLR 2023, App. C.1).
"""

from __future__ import annotations

import math
import warnings

import torch

from udlbench._validation import (
    check_choice,
    check_positive,
    check_positive_int,
    check_tensor,
)

FILLS = ("random", "raise")


class AroraInitWarning(UserWarning):
    """Fewer distinct atoms than asked were found; the rest were filled with random vectors."""


def arora_init(
    X: torch.Tensor,
    n_atoms: int,
    *,
    seed: int = 0,
    n_pairs: int | None = None,
    n_pool: int = 1000,
    min_cosine: float = 0.1,
    max_ratio: float | None = None,
    dedup_distance: float = 0.5,
    chunk_size: int = 16,
    fill: str = "random",
) -> torch.Tensor:
    """Initial dictionary from the spectra of pairwise reweighted second moments.

    For samples ``x_1, ..., x_n`` (rows of ``X``) of the model ``x = D* z`` with sparse,
    sign-symmetric ``z`` and an incoherent ``D*`` (m, p), and two samples ``u = D* a``,
    ``v = D* b``, Arora, Ge, Ma & Moitra (COLT 2015, analysis of their pairwise
    initialisation) show that

        M_uv = (1/n') sum_i <x_i, u> <x_i, v> x_i x_i^T
             = sum_{j in supp(a) and supp(b)} q_j c_j a_j b_j d*_j d*_j^T + E,

    with ``q_j = P(z_j != 0)``, ``c_j = E[z_j^4 | z_j != 0]`` and ``||E||`` small. When the
    supports of ``a`` and ``b`` share exactly one atom j, ``M_uv`` is close to rank one and its
    top eigenvector is ``+- d*_j``. Their algorithm draws pairs until it has p vectors, keeps a
    pair when ``sigma_1 >= Omega(k/p)`` and ``sigma_2 < O*(k / (p log m))`` (k the sparsity;
    their m and n are our p and m), and adds the top eigenvector unless it lies within
    ``1/log m`` of a vector already there, up to sign. This function runs that procedure:

    1. Pairs. A pool of ``n_pool`` samples is drawn at random (``seed``); among its pairs, those
       with ``|cos(u, v)| >= min_cosine`` are candidates, and ``n_pairs`` of them are drawn at
       random (all when fewer). ``<u, v> = sum_j a_j b_j`` over the shared atoms plus cross
       terms bounded by ``mu ||a||_1 ||b||_1`` (mu the coherence of ``D*``; exactly 0 for an
       orthogonal ``D*``), so a pair sharing no atom has a small cosine and is skipped. This
       screen is not in the paper, which draws pairs uniformly; it saves the eigen-decompositions
       of pairs that share nothing, and it stands in for the paper's magnitude test
       ``sigma_1 >= Omega(k/p)``, which comes from a lower bound on ``|a_j b_j|`` and needs the
       model's scale: for a pair sharing one atom, ``|cos(u, v)| ~ |a_j b_j| / (||a|| ||b||)``.
    2. Moments. ``M_uv`` is formed from every sample except ``u`` and ``v`` (the paper uses
       fresh samples; leaving out the pair removes the ``<u, u> <u, v> u u^T / n`` bias toward
       ``u``), in ``chunk_size`` pairs at a time.
    3. Spectral test. With ``sigma_1 >= sigma_2`` the two largest absolute eigenvalues of
       ``M_uv``, the pair is kept when ``sigma_2 <= max_ratio * sigma_1``. The paper's two
       thresholds differ by a factor ``log m`` with unstated constants; the scale-free ratio
       test keeps that factor: ``max_ratio`` defaults to ``1 / ln m`` (m = ``X.shape[1]``, the
       sample dimension; 0.24 for m = 64, 0.22 for m = 100). Measured with an orthogonal
       ``D*`` (m = p = 64, s = 3, n = 4000, N(0, 1) amplitudes), pairs sharing one atom have
       ratios with median 0.08 and 90th percentile 0.15; on isotropic Gaussian data (no
       dictionary), no pair passes.
    4. Deduplication. The kept eigenvectors are visited from the smallest ratio (the
       best-separated spectrum) up; one is added unless it lies within ``dedup_distance`` of a
       vector already taken, up to sign. Taking the best estimate first replaces the paper's
       order of discovery. The default 0.5 is larger than the paper's ``1/log m`` (0.24 at
       m = 64) because the estimates from a few thousand samples have sines of 0.1-0.2
       (measured), so two estimates of one atom can be 0.3 apart; distinct unit atoms of a
       dictionary with coherence ``mu <= 1/2`` are at least ``sqrt(2 - 2 mu) >= 1`` apart, so
       the radius 0.5 never merges them.
    5. Output. The first ``n_atoms`` distinct vectors are the columns of ``D0`` (unit norm; the
       paper's final projection onto dictionaries of bounded spectral norm is not applied).
       When fewer are found, ``fill="random"`` completes ``D0`` with random unit Gaussian
       vectors (from ``seed``) and warns with :class:`AroraInitWarning`, naming the count;
       ``fill="raise"`` raises ``RuntimeError`` instead.

    Measured (defaults, seed 0, s = 3, N(0, 1) amplitudes): orthogonal ``D*`` with
    m = p = 64, n = 4000: all 64 atoms, sines median 0.13, max 0.23; m = p = 100,
    n = 10,000 (PUDLE's Fig. 15 size, with s = 3): 99 of 100 atoms, median 0.10. With a Gaussian
    ``D*`` at m = 64 (coherence 0.45), the terms ``q_j c_j a_j <d*_j, v> d*_j d*_j^T`` of
    the atoms of ``u`` outside ``supp(b)`` are within a factor 2-3 of the shared term, few pairs
    pass, and only 24 of p = 96 atoms are found (n = 4000): the method needs the incoherent
    regime of the paper (``mu`` small against ``1 / k``).

    Parameters
    ----------
    X : Tensor of shape (n, m)
        Samples as rows, float32 or float64, any device (the moments are computed there).
    n_atoms : int
        Number of atoms p of the returned dictionary.
    seed : int
        Seed of the draws of the pool, the pairs and any filling vectors.
    n_pairs : int or None
        Number of candidate pairs tested; None means ``10 * n_atoms``, enough for a
        coupon-collector cover of p atoms when most screened pairs share one atom
        (``p (ln p + 2) < 10 p`` for p < 3000).
    n_pool : int
        Number of samples the pairs are drawn from (at most n), ``>= 2``.
    min_cosine : float
        Smallest ``|cos(u, v)|`` of a candidate pair, in (0, 1).
    max_ratio : float or None
        Largest ``sigma_2 / sigma_1`` of a kept pair, in (0, 1); None means ``1 / ln m``.
    dedup_distance : float
        Radius under which two eigenvectors (up to sign) count as one atom, ``> 0``.
    chunk_size : int
        Pairs whose moment matrices are formed together (memory ``chunk_size * m * n``).
    fill : {"random", "raise"}
        What to do when fewer than ``n_atoms`` distinct atoms are found.

    Returns
    -------
    Tensor of shape (m, n_atoms)
        Unit-norm columns, dtype and device of ``X``.

    References
    ----------
    S. Arora, R. Ge, T. Ma and A. Moitra, *Simple, efficient, and neural algorithms for sparse
    coding*, COLT 2015, the pairwise initialisation algorithm and its analysis.
    B. Tolooshams and D. Ba, *Stable and interpretable unrolled dictionary learning*, TMLR 2023,
    App. C.1 ("Dictionary initialization").

    Examples
    --------
    >>> from udlbench.data import make_sparse
    >>> data = make_sparse(32, 32, 2000, 2, dictionary="orthogonal", amplitude="normal")
    >>> arora_init(data.X, 32).shape
    torch.Size([32, 32])
    """
    check_tensor("X", X, ndim=2)
    n, m = X.shape
    check_positive_int("n_atoms", n_atoms)
    check_positive_int("seed", seed, minimum=0)
    n_pairs = 10 * n_atoms if n_pairs is None else check_positive_int("n_pairs", n_pairs)
    check_positive_int("n_pool", n_pool, minimum=2)
    if n < 3:
        raise ValueError(f"X must have at least 3 samples (rows); got shape {tuple(X.shape)}.")
    min_cosine = _check_open_unit("min_cosine", min_cosine)
    if max_ratio is None:
        if m < 3:
            raise ValueError(f"the default max_ratio = 1/ln m needs m >= 3; got m={m}.")
        max_ratio = 1.0 / math.log(m)
    max_ratio = _check_open_unit("max_ratio", max_ratio)
    dedup_distance = check_positive("dedup_distance", dedup_distance)
    check_positive_int("chunk_size", chunk_size)
    check_choice("fill", fill, FILLS)

    generator = torch.Generator().manual_seed(seed)
    u_index, v_index = _candidate_pairs(X, n_pairs, n_pool, min_cosine, generator)
    vectors, ratios = _top_eigenvectors(X, u_index, v_index, chunk_size)
    keep = ratios <= max_ratio
    vectors, ratios = vectors[keep], ratios[keep]
    atoms = _deduplicate(vectors[torch.argsort(ratios)], n_atoms, dedup_distance)

    missing = n_atoms - atoms.shape[0]
    if missing:
        message = (
            f"arora_init found {atoms.shape[0]} distinct atoms out of n_atoms={n_atoms} "
            f"({int(keep.sum())} of {len(u_index)} candidate pairs passed the spectral test "
            f"sigma_2/sigma_1 <= max_ratio={max_ratio:.3g}); raise n_pairs, n_pool or max_ratio"
        )
        if fill == "raise":
            raise RuntimeError(message + ".")
        warnings.warn(
            message + f"; {missing} columns are random unit vectors.",
            AroraInitWarning,
            stacklevel=2,
        )
        extra = torch.randn(m, missing, generator=generator, dtype=torch.float64)
        atoms = torch.cat([atoms, extra.to(atoms).T], dim=0)
    D0 = atoms.T.contiguous()
    return D0 / torch.linalg.vector_norm(D0, dim=0, keepdim=True)


def _check_open_unit(name: str, value: float) -> float:
    number = check_positive(name, value)
    if number >= 1:
        raise ValueError(f"{name} must lie in (0, 1); got {value!r}.")
    return number


def _candidate_pairs(
    X: torch.Tensor, n_pairs: int, n_pool: int, min_cosine: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_pairs`` random pairs (u, v) of a random pool with ``|cos(u, v)| >= min_cosine``."""
    n = X.shape[0]
    pool = torch.randperm(n, generator=generator)[: min(n_pool, n)]
    Y = X[pool.to(X.device)].double()
    norms = torch.linalg.vector_norm(Y, dim=1, keepdim=True)
    nonzero = (norms > 0).flatten()
    pool, Y, norms = pool[nonzero.cpu()], Y[nonzero], norms[nonzero]
    cosines = (Y / norms) @ (Y / norms).T
    first, second = torch.triu_indices(len(pool), len(pool), offset=1, device=X.device)
    screened = cosines[first, second].abs() >= min_cosine
    first, second = first[screened].cpu(), second[screened].cpu()
    chosen = torch.randperm(len(first), generator=generator)[:n_pairs]
    return pool[first[chosen]], pool[second[chosen]]


def _top_eigenvectors(
    X: torch.Tensor, u_index: torch.Tensor, v_index: torch.Tensor, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top eigenvector (by absolute eigenvalue) of every ``M_uv`` and ``sigma_2 / sigma_1``.

    ``M_uv = X^T diag(w) X / (n - 2)`` with ``w_i = <x_i, u> <x_i, v>``, zero at u and v.
    """
    n, m = X.shape
    device = X.device
    u_index, v_index = u_index.to(device), v_index.to(device)
    vectors = torch.empty(len(u_index), m, dtype=X.dtype, device=device)
    ratios = torch.empty(len(u_index), dtype=X.dtype, device=device)
    for start in range(0, len(u_index), chunk_size):
        u = u_index[start : start + chunk_size]
        v = v_index[start : start + chunk_size]
        weights = (X @ X[u].T) * (X @ X[v].T)  # (n, chunk)
        columns = torch.arange(len(u), device=device)
        weights[u, columns] = 0
        weights[v, columns] = 0
        moments = (X.T.unsqueeze(0) * weights.T.unsqueeze(1)) @ X / (n - 2)
        values, eigenvectors = torch.linalg.eigh(moments)
        order = values.abs().argsort(dim=1, descending=True)
        singular = values.abs().gather(1, order[:, :2])
        vectors[start : start + len(u)] = eigenvectors[columns, :, order[:, 0]]
        ratios[start : start + len(u)] = singular[:, 1] / singular[:, 0].clamp_min(
            torch.finfo(X.dtype).tiny
        )
    return vectors, ratios


def _deduplicate(vectors: torch.Tensor, n_atoms: int, radius: float) -> torch.Tensor:
    """Greedy: keep a unit vector unless it is within ``radius`` of a kept one, up to sign.

    ``||z -+ l|| <= radius`` iff ``|<z, l>| >= 1 - radius^2 / 2`` for unit z and l.
    """
    threshold = 1.0 - radius * radius / 2.0
    kept: list[torch.Tensor] = []
    for z in vectors:
        if len(kept) == n_atoms:
            break
        if kept and bool((torch.stack(kept) @ z).abs().max() >= threshold):
            continue
        kept.append(z)
    if not kept:
        return vectors.new_zeros(0, vectors.shape[1])
    return torch.stack(kept)
