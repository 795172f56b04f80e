"""Group-sparse autoencoders (Theodosis, Tolooshams, Tankala, Tasissa & Ba, *On the convergence of
group-sparse autoencoders*): the group-norm bounds (Props 1-2), one-step support recovery
(Lemma 1), the gradient and its approximation (eqs 23-26, 41-51), the gradient direction (Thm 1),
the convergence to a neighbourhood (Thm 2), the simulation (Fig. 3) and the clustering table
(Table 1). THEOREMS.md Sec. 4, Sec. 7.4 and Sec. 8 items 31-37.

Notation (udlbench's layout, samples are rows): the paper's y, A, x are the rows of ``X``, the
dictionary ``A`` of shape (n, d Gamma) and the rows of ``Z``; group g is the block of columns
``g d .. (g + 1) d - 1``. The shallow encoder (eq. 11), ``z = sigma_lam(A^T y)``, is one layer of
``udlbench.encoders.ista`` from ``z_0 = 0`` with step 1 and the group soft-threshold, so that its
gradient is ``udlbench.gradients.estimate("ae-ls", ...)`` with the same options (autograd through
the exact, non-diagonal Jacobian of the group prox). ``mu_B`` is eq. 3's block coherence and
``mu_B^raw = d mu_B`` the one without the 1/d (``udlbench.group_sparse.block_coherence``).

The runs of G-T1, G-GRAD (c) and G-T2 share one data set and its gradients (``t1_run``); G-L1 B
and G-T2 (b) share the paper-scale sample (``paper_run``).
"""

import functools
import itertools
import math

import numpy as np
import pytest
import torch

from udlbench import clustering, data, encoders, gradients, group_sparse, metrics
from udlbench.clustering import simplex_rows
from udlbench.digits_interpretability import initial_dictionary
from udlbench.evidence import clopper_pearson
from udlbench.operators import group_soft_threshold

D_GROUP, N_ACTIVE = 2, 3  # d and gamma of the simulation (G Sec. 4.1)
B_MIN, B_MAX = 4.0, 5.0
LAM = 2.0
T1_DELTAS = (0.07, 0.14, 0.28)  # median ||A_g - A*_g||_F of THEOREMS.md G-T1
T1_SIZE = dict(N=20_000, n_groups=100, m=200)


def shallow_codes(X, A, *, lam=LAM, group_size=D_GROUP):
    """Eq. 11, ``z = sigma_lam(A^T y)``: one ISTA layer from z_0 = 0 with step 1 (the step check
    is meaningless for one layer from zero, so it is off)."""
    return encoders.ista(X, A, lam=lam, n_layers=1, alpha=1.0, prox="group",
                         group_size=group_size, check_step=False)


def autograd_gradient(X, A, *, lam=LAM, group_size=D_GROUP, reduction="mean"):
    """Back-propagation of ``mean 0.5 ||y - A sigma_lam(A^T y)||^2`` (eq. 13) through eq. 11."""
    return gradients.estimate("ae-ls", X, A, lam=lam, n_layers=1, alpha=1.0, prox="group",
                              group_size=group_size, check_step=False, reduction=reduction)


def orthonormal_model(N, n_groups, m, seed, device, *, group_size=D_GROUP):
    """``make_group_sparse`` with A* replaced by its per-group polar factor (orthonormal groups,
    the model conditions of G Sec. 3.2) and ``X = Z* A*^T`` recomputed."""
    problem = data.make_group_sparse(N, n_groups, group_size, N_ACTIVE, m=m, b_min=B_MIN,
                                     b_max=B_MAX, seed=seed, device=device)
    A_star = group_sparse.orthonormalize_groups(problem.D_star, group_size=group_size)
    return A_star, problem.Z_star @ A_star.T, problem.Z_star


def blocks(M, group_size=D_GROUP):
    """The groups of M (m, p) as rows of a (Gamma, m d) matrix."""
    m, p = M.shape
    return M.reshape(m, p // group_size, group_size).permute(1, 0, 2).reshape(p // group_size, -1)


def group_cosines(P, Q, group_size=D_GROUP):
    """Per group, the Frobenius cosine between the blocks P_g and Q_g."""
    return torch.nn.functional.cosine_similarity(blocks(P, group_size), blocks(Q, group_size),
                                                 dim=1)


def group_distances(A, A_star, group_size=D_GROUP):
    """``||A_g - A*_g||_F`` per group."""
    return torch.linalg.vector_norm(blocks(A - A_star, group_size), dim=1)


def active_taus(X, A, Z_star, *, lam=LAM, group_size=D_GROUP):
    """``tau_g = 1 - lam / ||A_g^T y||`` over the (sample, true group) pairs, as in eq. 25."""
    norms = group_sparse.group_norms(X @ A, group_size=group_size)
    return 1 - lam / norms[group_sparse.group_support(Z_star, group_size=group_size)]


# ---------------------------------------------------------------------------------------------
# Props 1 and 2: the group-norm bounds
# ---------------------------------------------------------------------------------------------


@pytest.mark.fast
@pytest.mark.claim("G-P1", statement="Prop. 1 (eqs 20, 34-37)")
def test_G_P1_group_norm_lower_bound(evidence, seed, device):
    """Prop. 1: with A_g^T A_g = I and ||A_g - A*_g||_F <= delta, ||A_g^T A*_g x*_g|| >=
    B_min (1 - delta); deterministic. n = 100, d in {2, 4}, 10^4 groups per d: A*_g Gaussian with
    unit columns (the package generator), A_g = polar(A*_g + t E) with t ~ U(0, 0.05) per group and
    the realized delta = ||A_g - A*_g||_F (groups with delta >= 1 are left out: the claim takes
    delta in [0, 1]); x*_g a random direction with norm U(4, 5), plus the adversarial x*_g =
    B_min times the bottom right singular vector of A_g^T A*_g. Pass: 0 violations of
    ||A_g^T A*_g x|| >= B_min (1 - delta) - 1e-12, and of the proof's sharper (37),
    ||A_g^T A*_g x|| >= (1 - delta) ||x|| - 1e-12. Negative control (the orthonormality premise
    dropped): A_g = A*_g with two unit columns at correlation 0.5 (delta = 0) and x along the
    bottom right singular vector: ||A_g^T A*_g x|| = sigma_min(A*_g)^2 ||x|| = 0.5 B_min <
    B_min, asserted to 1e-12."""
    n, K = 100, 10_000
    violations, sharper, worst_ratio, adversarial_ratio, deltas = 0, 0, math.inf, math.inf, []
    for k, d in enumerate((2, 4)):
        problem = data.make_group_sparse(1, K, d, 1, m=n, seed=seed(k), device=device)
        A_star = problem.D_star
        g = torch.Generator().manual_seed(seed(10 + k))
        t = 0.05 * torch.rand(K, generator=g).repeat_interleave(d).to(device)
        noise = torch.randn(A_star.shape, generator=g).to(device)
        A = group_sparse.orthonormalize_groups(A_star + t * noise, group_size=d)
        delta = group_distances(A, A_star, d)
        A_b = A.reshape(n, K, d).permute(1, 0, 2)
        A_star_b = A_star.reshape(n, K, d).permute(1, 0, 2)
        cross = A_b.transpose(1, 2) @ A_star_b  # A_g^T A*_g, (K, d, d)
        direction = torch.randn(K, d, generator=g).to(device)
        radius = B_MIN + (B_MAX - B_MIN) * torch.rand(K, generator=g).to(device)
        x = radius[:, None] * direction / torch.linalg.vector_norm(direction, dim=1, keepdim=True)
        bottom = torch.linalg.svd(cross).Vh[:, -1, :]  # bottom right singular vectors
        keep = delta < 1
        for vectors in (x, B_MIN * bottom):
            lhs = torch.linalg.vector_norm((cross @ vectors[:, :, None])[..., 0], dim=1)
            norms = torch.linalg.vector_norm(vectors, dim=1)
            violations += int((lhs[keep] < B_MIN * (1 - delta[keep]) - 1e-12).sum())
            sharper += int((lhs[keep] < (1 - delta[keep]) * norms[keep] - 1e-12).sum())
            worst_ratio = min(worst_ratio, float((lhs / (B_MIN * (1 - delta)))[keep].min()))
        adversarial_ratio = min(adversarial_ratio, float(
            (torch.linalg.vector_norm((cross @ bottom[:, :, None])[..., 0], dim=1)
             / (1 - delta))[keep].min()))
        deltas.append(delta[keep])
    deltas = torch.cat(deltas)
    # Negative control: unit columns at correlation 0.5, A_g = A*_g, x along the bottom vector.
    a1 = torch.zeros(n, device=device)
    a1[0] = 1.0
    a2 = torch.zeros(n, device=device)
    a2[0], a2[1] = 0.5, math.sqrt(0.75)
    correlated = torch.stack([a1, a2], dim=1)
    gram = correlated.T @ correlated
    x_bad = B_MIN * torch.linalg.svd(gram).Vh[-1]
    control_ratio = float(torch.linalg.vector_norm(gram @ x_bad)) / B_MIN
    evidence.seeds = [seed(0), seed(1), seed(10), seed(11)]
    evidence.measure(groups_checked=int(deltas.numel()), violations=violations,
                     violations_sharper_eq37=sharper, min_lhs_over_bound=worst_ratio,
                     adversarial_min_lhs_over_one_minus_delta=adversarial_ratio,
                     delta_range=[float(deltas.min()), float(deltas.max())],
                     control_lhs_over_B_min=control_ratio)
    evidence.predict(violations=0, violations_sharper_eq37=0, control_lhs_over_B_min=0.5)
    assert deltas.numel() >= 10_000
    assert violations == 0
    assert sharper == 0
    assert abs(control_ratio - 0.5) <= 1e-12


def pair_attaining_coherence(A_star, d):
    """The groups (v, h), v != h, with the largest ||A*_v^T A*_h||_2, and that norm's top right
    singular vector."""
    n_groups = A_star.shape[1] // d
    gram = A_star.T @ A_star
    pairs = gram.reshape(n_groups, d, n_groups, d).permute(0, 2, 1, 3)
    norms = torch.linalg.matrix_norm(pairs, ord=2)
    norms.fill_diagonal_(-1.0)
    v, h = divmod(int(norms.argmax()), n_groups)
    top = torch.linalg.svd(pairs[v, h]).Vh[0]
    return v, h, pairs[v, h], top


@pytest.mark.fast
@pytest.mark.claim("G-P2", statement="Prop. 2 (eqs 21, 38-39) with mu_B^raw")
def test_G_P2_cross_term_bound_with_raw_block_coherence(evidence, seed, device):
    """Prop. 2 read as its proof needs it (THEOREMS.md G-P2 (a)): ||sum_{h in S} A_v^T A*_h x*_h||
    <= gamma B_max (mu_B^raw + delta) for every v not in S, with delta >= ||A_v - A*_v||_F for all
    groups. 200 dictionaries (n = 32, Gamma = 8, d = 2, orthonormal groups so that
    ||A*_h||_2 = 1 as the paper assumes), A = perturb_groups(A*, delta) with delta ~ U(0, 0.3),
    and 50 draws each (gamma ~ U{1, 2, 3}, a random support S, x*_h random directions with norms
    U(4, 5)), every v not in S checked: 0 violations (tolerance 1e-12 relative). Adversarial
    construction: A_v = A*_v, gamma = 1, the pair (v, h) attaining mu_B^raw and x*_h = B_max times
    the top right singular vector of A*_v^T A*_h: the bound is attained, LHS / RHS = 1 to 1e-10.
    Negative control: the same adversarial draw measured against eq. 3's mu_B (with the 1/d)
    violates the bound (LHS / RHS = d = 2 > 1)."""
    n, n_groups, d, draws = 32, 8, 2, 50
    g = torch.Generator().manual_seed(seed(1))
    violations, checked, worst = 0, 0, 0.0
    for k in range(200):
        problem = data.make_group_sparse(1, n_groups, d, 1, m=n, seed=seed(0) * 1000 + k,
                                         device=device)
        A_star = group_sparse.orthonormalize_groups(problem.D_star, group_size=d)
        delta = 0.3 * float(torch.rand(1, generator=g))
        A = group_sparse.perturb_groups(A_star, delta, group_size=d, seed=seed(2) * 1000 + k)
        mu_raw = group_sparse.block_coherence(A_star, group_size=d, raw=True)
        gamma = torch.randint(1, 4, (draws, 1), generator=g)
        order = torch.rand(draws, n_groups, generator=g).argsort(dim=1)
        support = (order.argsort(dim=1) < gamma).to(device)  # gamma random groups per draw
        x = torch.randn(draws, n_groups, d, generator=g).to(device)
        radius = B_MIN + (B_MAX - B_MIN) * torch.rand(draws, n_groups, 1, generator=g).to(device)
        x = support[..., None] * radius * x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        # ||sum_{h in S} A_v^T A*_h x_h|| for every group v, i.e. ||A_v^T (A* x)||
        lhs = group_sparse.group_norms((x.reshape(draws, -1) @ A_star.T) @ A, group_size=d)
        rhs = gamma.to(device) * B_MAX * (mu_raw + delta)
        outside = ~support
        violations += int((lhs > rhs * (1 + 1e-12))[outside].sum())
        checked += int(outside.sum())
        worst = max(worst, float((lhs / rhs)[outside].max()))
    problem = data.make_group_sparse(1, n_groups, d, 1, m=n, seed=seed(3), device=device)
    A_star = group_sparse.orthonormalize_groups(problem.D_star, group_size=d)
    v, h, pair, top = pair_attaining_coherence(A_star, d)
    lhs_adversarial = float(torch.linalg.vector_norm(pair @ (B_MAX * top)))
    rhs_raw = B_MAX * group_sparse.block_coherence(A_star, group_size=d, raw=True)
    rhs_eq3 = B_MAX * group_sparse.block_coherence(A_star, group_size=d)
    evidence.seeds = [seed(0), seed(1), seed(2), seed(3)]
    evidence.measure(draws=200 * draws, pairs_checked=checked, violations=violations,
                     max_lhs_over_rhs=worst, adversarial_lhs_over_rhs_raw=lhs_adversarial / rhs_raw,
                     control_adversarial_lhs_over_rhs_eq3=lhs_adversarial / rhs_eq3)
    evidence.predict(violations=0, adversarial_lhs_over_rhs_raw=1.0,
                     control_adversarial_lhs_over_rhs_eq3=float(d))
    assert violations == 0
    assert abs(lhs_adversarial / rhs_raw - 1) <= 1e-10
    assert lhs_adversarial > rhs_eq3 * (1 + 1e-6)


@pytest.mark.fast
@pytest.mark.claim("G-P2", statement="Prop. 2 with eq. 3's mu_B (Sec. 8 item 31)")
def test_G_P2_deviation_block_coherence_with_1_over_d_is_too_small(evidence, seed, device):
    """Documented deviation (THEOREMS.md G-P2 (b), Sec. 8 item 31): with mu_B as defined in eq. 3
    (with the 1/d factor), Prop. 2 fails by the factor d. A* with orthonormal groups (n = 32,
    Gamma = 8), A_v = A*_v (delta = 0), gamma = 1, the pair (v, h) attaining the maximum block
    coherence and x*_h = B_max times the top right singular vector of A*_v^T A*_h: LHS =
    d mu_B B_max, RHS = gamma B_max (mu_B + delta) = mu_B B_max. Asserted: LHS / RHS = d to 1e-10
    for d = 2 and d = 4. Also recorded for the paper's dictionary (n = 950, Gamma = 500, d = 2,
    Gaussian unit columns): mu (column coherence), mu_B and mu_B^raw; with mu_B^raw the paper's
    "0 <= mu_B <= mu <= 1" no longer holds (asserted: mu_B^raw > mu > mu_B there), so the two
    conventions cannot both be right."""
    ratios = {}
    for k, d in enumerate((2, 4)):
        problem = data.make_group_sparse(1, 8, d, 1, m=32, seed=seed(k), device=device)
        A_star = group_sparse.orthonormalize_groups(problem.D_star, group_size=d)
        _, _, pair, top = pair_attaining_coherence(A_star, d)
        lhs = float(torch.linalg.vector_norm(pair @ (B_MAX * top)))
        rhs = 1 * B_MAX * (group_sparse.block_coherence(A_star, group_size=d) + 0.0)
        ratios[d] = lhs / rhs
    paper = data.make_group_sparse(1, 500, 2, 1, m=950, seed=seed(2), device=device).D_star
    gram = (paper.T @ paper).abs()
    gram.fill_diagonal_(0.0)
    mu = float(gram.max())
    mu_B = group_sparse.block_coherence(paper, group_size=2)
    mu_raw = group_sparse.block_coherence(paper, group_size=2, raw=True)
    evidence.seeds = [seed(0), seed(1), seed(2)]
    evidence.measure(lhs_over_rhs={str(d): r for d, r in ratios.items()},
                     paper_dictionary_mu=mu, paper_dictionary_mu_B=mu_B,
                     paper_dictionary_mu_B_raw=mu_raw)
    evidence.predict(lhs_over_rhs={"2": 2.0, "4": 4.0})
    for d, ratio in ratios.items():
        assert abs(ratio - d) <= 1e-10 * d
    assert mu_raw > mu > mu_B


@pytest.mark.fast
@pytest.mark.claim("G-P2", statement="Prop. 2 and Assumption (17) (Sec. 8 item 32)")
def test_G_P2_deviation_closeness_is_needed_outside_the_support(evidence, seed, device):
    """Documented deviation (Sec. 8 item 32): assumption (17) bounds ||A_g - A*_g||_F only for g
    in S, but Prop. 2's proof (eq. 39) uses ||A_v - A*_v|| <= delta for v not in S. A* = 16
    columns of a random orthogonal 32 x 32 matrix (n = 32, Gamma = 8, d = 2, so mu_B^raw = 0),
    A_g = A*_g on the support S = {0} (delta = 0 there), and A_v = polar(A*_v + 0.3 A*_0) for one
    v outside S; x*_0 = B_max times the top right singular vector of A_v^T A*_0. Asserted: with
    delta taken over S only the bound is violated (RHS = 0 < LHS), and with delta taken over all
    groups (delta_v = ||A_v - A*_v||_F) it holds (LHS <= RHS)."""
    n, n_groups, d = 32, 8, 2
    g = torch.Generator().manual_seed(seed(0))
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
    A_star = Q[:, : n_groups * d].to(device)
    mu_raw = group_sparse.block_coherence(A_star, group_size=d, raw=True)
    v = 3
    A = A_star.clone()
    moved = A_star[:, v * d:(v + 1) * d] + 0.3 * A_star[:, 0:d]
    A[:, v * d:(v + 1) * d] = group_sparse.orthonormalize_groups(moved, group_size=d)
    cross = A[:, v * d:(v + 1) * d].T @ A_star[:, 0:d]
    x = B_MAX * torch.linalg.svd(cross).Vh[0]
    lhs = float(torch.linalg.vector_norm(cross @ x))
    distances = group_distances(A, A_star, d)
    rhs_on_support = B_MAX * (mu_raw + float(distances[0]))
    rhs_all_groups = B_MAX * (mu_raw + float(distances.max()))
    evidence.seeds = [seed(0)]
    evidence.measure(mu_B_raw=mu_raw, lhs=lhs, rhs_delta_on_support=rhs_on_support,
                     rhs_delta_on_all_groups=rhs_all_groups, delta_v=float(distances[v]))
    evidence.predict(rhs_delta_on_support=0.0)
    assert mu_raw <= 1e-12
    assert lhs > rhs_on_support + 1e-3
    assert lhs <= rhs_all_groups * (1 + 1e-12)


# ---------------------------------------------------------------------------------------------
# Lemma 1: one-step group-support recovery
# ---------------------------------------------------------------------------------------------


@pytest.mark.fast
@pytest.mark.claim("G-L1", statement="Lemma 1 (eq. 22), deterministic implication")
def test_G_L1_nonempty_range_recovers_the_group_support(evidence, seed, device):
    """Lemma 1's deterministic implication (THEOREMS.md G-L1 experiment A), with mu_B^raw (G-P2)
    and delta applied to every group: n = 512, Gamma = 64, d = 2, A* = 128 columns of a random
    orthogonal matrix (mu_B^raw = 0, asserted <= 1e-12), A = perturb_groups(A*, 0.05) (every
    group at distance exactly 0.05), gamma = 3, B = [4, 5], 10^4 samples: the range
    [gamma B_max (mu_B^raw + delta), B_min (1 - delta) - gamma B_max (mu_B^raw + delta)] =
    [0.75, 3.05]. Pass: 100 % exact group-support recovery (||sigma_lam(A_g^T y)|| > 0 <=> g in S)
    for lam in {1, 2, 3}. Negative control: lam = 1.2 B_max = 6 removes true groups, recovery
    rate 0. Also recorded: the rate at lam = 0.5, below the range."""
    n, n_groups, d, N = 512, 64, 2, 10_000
    g = torch.Generator().manual_seed(seed(0))
    Q, _ = torch.linalg.qr(torch.randn(n, n_groups * d, generator=g))
    A_star = Q.to(device)
    A = group_sparse.perturb_groups(A_star, 0.05, group_size=d, seed=seed(1))
    delta = float(group_distances(A, A_star, d).max())
    mu_raw = group_sparse.block_coherence(A_star, group_size=d, raw=True)
    low, high = group_sparse.recovery_range(n_active=N_ACTIVE, b_min=B_MIN, b_max=B_MAX,
                                            mu_B=mu_raw, delta=delta)
    Z_star = data.make_group_sparse(N, n_groups, d, N_ACTIVE, m=n, b_min=B_MIN, b_max=B_MAX,
                                    seed=seed(2), device=device).Z_star
    X = Z_star @ A_star.T
    rates = {}
    for lam in (0.5, 1.0, 2.0, 3.0, 1.2 * B_MAX):
        codes = shallow_codes(X, A, lam=lam, group_size=d)
        rates[lam] = group_sparse.group_support_recovery(codes, Z_star, group_size=d)
    evidence.seeds = [seed(0), seed(1), seed(2)]
    evidence.measure(mu_B_raw=mu_raw, delta=delta, range=[low, high],
                     recovery_rate={str(k): v for k, v in rates.items()})
    evidence.predict(range=[0.75, 3.05], recovery_rate={"1.0": 1.0, "2.0": 1.0, "3.0": 1.0})
    assert mu_raw <= 1e-12
    assert abs(delta - 0.05) <= 1e-9
    assert low <= 1.0 and 3.0 <= high
    for lam in (1.0, 2.0, 3.0):
        assert rates[lam] == 1.0, (lam, rates[lam])
    assert rates[1.2 * B_MAX] == 0.0


@functools.lru_cache(maxsize=2)
def paper_run(seed, device):
    """The paper's simulation regime (G Sec. 4.1; THEOREMS.md G-L1 B): n = 950, Gamma = 500,
    d = 2, gamma = 3, B = [4, 5], Gaussian A* with unit columns, 2000 noiseless samples; and the
    paper's initialisation A* + B, B ~ N(0, sigma_B^2) with average column correlation 0.15,
    sigma_B = sqrt((1 / 0.15^2 - 1) / n)."""
    n, n_groups, d, N = 950, 500, 2, 2000
    problem = data.make_group_sparse(N, n_groups, d, N_ACTIVE, m=n, b_min=B_MIN, b_max=B_MAX,
                                     seed=seed, device=device)
    sigma_B = math.sqrt((1 / 0.15**2 - 1) / n)
    g = torch.Generator().manual_seed(seed + 1)
    A_init = problem.D_star + sigma_B * torch.randn(problem.D_star.shape, generator=g).to(device)
    return problem, A_init, sigma_B


@pytest.mark.medium
@pytest.mark.claim("G-L1", statement="Lemma 1 in the paper's regime (Sec. 4.1)")
def test_G_L1_recovery_in_the_paper_regime(evidence, seed, device):
    """THEOREMS.md G-L1 experiment B: n = 950, Gamma = 500, d = 2, gamma = 3, B = [4, 5],
    Gaussian A* with unit columns, lam = 2, 2000 samples. Lemma 1's deterministic range is empty
    there (mu_B^raw ~ 0.17; asserted low > high), yet the encoder recovers the group support.
    Pass: recovery rate at A = A* >= 0.99 ([proto] 1.000). Negative control: lam = 1.2 B_max,
    rate 0. Report only, at the paper's initialisation A* + B (average column correlation 0.15,
    column norms ~ 6.7): the rate (~0, with ~250 of 500 groups active per sample); asserted:
    the column-normalised initialisation gives all-zero codes at lam = 2 (every ||A_g^T y|| < 2),
    so the paper's no-norm-constraint initialisation is essential (Sec. 8 item 37)."""
    problem, A_init, sigma_B = paper_run(seed(0), device)
    X, A_star, Z_star = problem.X, problem.D_star, problem.Z_star
    mu_raw = group_sparse.block_coherence(A_star, group_size=D_GROUP, raw=True)
    low, high = group_sparse.recovery_range(n_active=N_ACTIVE, b_min=B_MIN, b_max=B_MAX,
                                            mu_B=mu_raw, delta=0.0)
    rate = group_sparse.group_support_recovery(shallow_codes(X, A_star), Z_star,
                                               group_size=D_GROUP)
    control = group_sparse.group_support_recovery(shallow_codes(X, A_star, lam=1.2 * B_MAX),
                                                  Z_star, group_size=D_GROUP)
    codes_init = shallow_codes(X, A_init)
    rate_init = group_sparse.group_support_recovery(codes_init, Z_star, group_size=D_GROUP)
    active_init = group_sparse.group_support(codes_init, group_size=D_GROUP).sum(1)
    A_normalized = data.normalize_columns(A_init)
    normalized_max = float(group_sparse.group_norms(X @ A_normalized, group_size=D_GROUP).max())
    codes_normalized = shallow_codes(X, A_normalized)
    correlation = float((data.normalize_columns(A_init) * A_star).sum(0).mean())
    evidence.seeds = [seed(0)]
    evidence.measure(mu_B_raw=mu_raw, range=[low, high], recovery_rate_at_A_star=rate,
                     control_rate_lam_6=control, init_sigma_B=sigma_B,
                     init_mean_column_correlation=correlation,
                     init_mean_column_norm=float(A_init.norm(dim=0).mean()),
                     init_recovery_rate=rate_init,
                     init_mean_active_groups=float(active_init.double().mean()),
                     normalized_init_max_group_norm=normalized_max,
                     normalized_init_all_codes_zero=bool((codes_normalized == 0).all()))
    evidence.predict(recovery_rate_at_A_star=1.0, init_mean_column_correlation=0.15)
    assert low > high
    assert rate >= 0.99
    assert control == 0.0
    assert normalized_max < LAM
    assert bool((codes_normalized == 0).all())


# ---------------------------------------------------------------------------------------------
# G-GRAD: the gradient (eqs 23, 41, 47) and its approximation (eqs 24, 26, 49, 51)
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def t1_run(seed, device):
    """THEOREMS.md G-T1 setting: n = 200, Gamma = 100, d = 2, gamma = 3, B = [4, 5], lam = 2,
    A* with orthonormal groups, N = 20,000 samples; for each delta in T1_DELTAS, A =
    perturb_groups(A*, delta) and the expected (sample-mean) gradients there: by autograd (the
    exact gradient), the approximation of eq. 24 and the decoder-only gradient g_dec (codes held
    fixed)."""
    A_star, X, Z_star = orthonormal_model(T1_SIZE["N"], T1_SIZE["n_groups"], T1_SIZE["m"], seed,
                                          device)
    unrelated, _, _ = orthonormal_model(1, T1_SIZE["n_groups"], T1_SIZE["m"], seed + 1000, device)
    runs = {}
    for k, delta in enumerate(T1_DELTAS):
        A = group_sparse.perturb_groups(A_star, delta, group_size=D_GROUP, seed=seed + 1 + k)
        runs[delta] = dict(
            A=A,
            exact=autograd_gradient(X, A),
            approximate=group_sparse.approximate_gradient(X, A, lam=LAM, group_size=D_GROUP),
            dec=gradients.estimate("dec", X, A, lam=LAM, n_layers=1, alpha=1.0, prox="group",
                                   group_size=D_GROUP, check_step=False),
        )
    taus = active_taus(X, A_star, Z_star)
    taus = taus[taus > 0]
    quantiles = torch.quantile(taus, torch.tensor([0.05, 0.5, 0.95], device=taus.device))
    return dict(A_star=A_star, X=X, Z_star=Z_star, unrelated=unrelated, runs=runs,
                tau_bar=float(taus.mean()), tau_quantiles=quantiles.tolist())


@pytest.mark.fast
@pytest.mark.claim("G-GRAD", statement="eqs 23, 41, 47 with the exact group-prox Jacobian")
def test_G_GRAD_autograd_equals_the_exact_gradient(evidence, seed, device):
    """THEOREMS.md G-GRAD (a): back-propagation through the encoder (udlbench.gradients, autograd
    through operators.group_soft_threshold) equals the closed form of eq. 47 with the exact
    Jacobian tau_g I + lam u u^T / ||u||^3 of the group prox (udlbench.group_sparse.gradient),
    to 1e-12 relative: the mean over 2000 samples, and each of 50 per-sample gradients, at a
    perturbed A (n = 200, Gamma = 100, delta = 0.14) and for d = 1, 2, 4. Negative control: the
    approximation of eq. 24 (group_sparse.approximate_gradient) differs from autograd by more than
    1e-3 relative at every d."""
    errors, per_sample, control = {}, {}, {}
    for k, d in enumerate((1, 2, 4)):
        n_groups = 200 // d
        A_star, X, _ = orthonormal_model(2000, n_groups, 200, seed(k), device, group_size=d)
        A = group_sparse.perturb_groups(A_star, 0.14, group_size=d, seed=seed(10 + k))
        auto = autograd_gradient(X, A, group_size=d)
        exact = group_sparse.gradient(X, A, lam=LAM, group_size=d)
        approx = group_sparse.approximate_gradient(X, A, lam=LAM, group_size=d)
        errors[d] = float((auto - exact).norm() / auto.norm())
        control[d] = float((auto - approx).norm() / auto.norm())
        auto_i = autograd_gradient(X[:50], A, group_size=d, reduction="none")
        exact_i = group_sparse.gradient(X[:50], A, lam=LAM, group_size=d, reduction="none")
        per_sample[d] = float((torch.linalg.matrix_norm(auto_i - exact_i)
                               / torch.linalg.matrix_norm(auto_i)).max())
    evidence.seeds = [seed(k) for k in (0, 1, 2, 10, 11, 12)]
    evidence.measure(mean_rel_error={str(d): v for d, v in errors.items()},
                     max_per_sample_rel_error={str(d): v for d, v in per_sample.items()},
                     control_rel_error_eq24={str(d): v for d, v in control.items()})
    evidence.predict(mean_rel_error={"1": 0.0, "2": 0.0, "4": 0.0})
    for d in errors:
        assert errors[d] <= 1e-12
        assert per_sample[d] <= 1e-12
        assert control[d] > 1e-3


@pytest.mark.fast
@pytest.mark.claim("G-GRAD", statement="eq. 24 (Sec. 8 item 34)")
def test_G_GRAD_deviation_eq24_drops_the_rank_one_jacobian_term(evidence, seed, device):
    """Documented deviation (THEOREMS.md G-GRAD (b), Sec. 8 item 34): eq. 24 substitutes
    sigma'_lam(A_g^T y) = tau_g 1, but the group prox's Jacobian on an active group is
    tau_g I + lam u u^T / ||u||^3 (u = A_g^T y). The per-sample approximate gradient (eqs 26/51)
    therefore differs from autograd: median relative difference over 200 samples > 0.05
    ([proto] 0.29) at lam = 2, B = [4, 5], in the G-T1 setting (delta = 0.14), for d = 2 and for
    d = 1 (where the true derivative is 1, not tau_g). Asserted also: the difference is exactly
    the dropped term, autograd - approximation = -mean y (J_rank-one A_g^T r)^T with
    J_rank-one = lam u u^T / ||u||^3, built here from the encoder's pre-activations, to 1e-10."""
    medians, dropped_error = {}, {}
    for k, d in enumerate((2, 1)):
        A_star, X, _ = orthonormal_model(200, 200 // d, 200, seed(k), device, group_size=d)
        A = group_sparse.perturb_groups(A_star, 0.14, group_size=d, seed=seed(10 + k))
        auto = autograd_gradient(X, A, group_size=d, reduction="none")
        approx = group_sparse.approximate_gradient(X, A, lam=LAM, group_size=d, reduction="none")
        relative = torch.linalg.matrix_norm(approx - auto) / torch.linalg.matrix_norm(auto)
        medians[d] = float(relative.median())
        U = (X @ A).reshape(X.shape[0], -1, d)
        residual = X - group_soft_threshold(X @ A, LAM, group_size=d) @ A.T
        W = (residual @ A).reshape(U.shape)
        norms = torch.linalg.vector_norm(U, dim=-1, keepdim=True)
        on = norms > LAM
        rank_one = torch.where(on, LAM * U * (U * W).sum(-1, keepdim=True)
                               / torch.where(on, norms, 1.0) ** 3, 0.0)
        dropped = -torch.einsum("nm,np->nmp", X, rank_one.reshape(X.shape[0], -1))
        dropped_error[d] = float((auto - approx - dropped).norm() / (auto - approx).norm())
    evidence.seeds = [seed(0), seed(1), seed(10), seed(11)]
    evidence.measure(median_rel_difference={str(d): v for d, v in medians.items()},
                     rank_one_term_rel_error={str(d): v for d, v in dropped_error.items()})
    evidence.predict(median_rel_difference={"2": 0.29})
    for d in medians:
        assert medians[d] > 0.05
        assert dropped_error[d] <= 1e-10


@pytest.mark.fast
@pytest.mark.claim("G-GRAD", statement="eqs 24/26 in expectation")
def test_G_GRAD_approximation_is_parallel_in_expectation(evidence, seed, device):
    """THEOREMS.md G-GRAD (c): in expectation the approximate gradient (eq. 51) is almost parallel
    to the exact one. G-T1 setting (N = 20,000, n = 200, Gamma = 100, d = 2), at each of the three
    deltas: per group, cos(G~_g, G_g) >= 0.99 ([proto] >= 0.999). That criterion alone has no
    power: the decoder-only gradient g_dec (codes held fixed, i.e. the misplaced-detach estimator)
    passes it too, because the radial component common to every estimator dominates (measured
    min cos 0.987-0.998). So the direction that drives learning under A_g^T A_g = I is checked as
    well: the median over groups of cos(P_T G~_g, P_T G_g) >= 0.99 (measured 0.994-0.999 over
    seeds 0-4) with P_T the Stiefel tangent projection. Negative control: g_dec fails the tangent
    criterion at delta = 0.07 and 0.14 (measured medians 0.964 and 0.982)."""
    run = t1_run(seed(0), device)
    raw_min, tangent_median, dec_raw_min, dec_tangent_median = {}, {}, {}, {}
    for delta, r in run["runs"].items():
        A = r["A"]

        def tangent(G, A=A):
            return group_sparse.stiefel_tangent(A, G, group_size=D_GROUP)

        exact_tangent = tangent(r["exact"])
        raw_min[delta] = float(group_cosines(r["approximate"], r["exact"]).min())
        tangent_median[delta] = float(
            group_cosines(tangent(r["approximate"]), exact_tangent).median())
        dec_raw_min[delta] = float(group_cosines(r["dec"], r["exact"]).min())
        dec_tangent_median[delta] = float(group_cosines(tangent(r["dec"]), exact_tangent).median())
    evidence.seeds = [seed(0)]
    evidence.measure(min_raw_cosine={str(k): v for k, v in raw_min.items()},
                     median_tangent_cosine={str(k): v for k, v in tangent_median.items()},
                     dec_min_raw_cosine={str(k): v for k, v in dec_raw_min.items()},
                     dec_median_tangent_cosine={str(k): v for k, v in dec_tangent_median.items()})
    evidence.predict(min_raw_cosine=0.999)
    for delta in T1_DELTAS:
        assert raw_min[delta] >= 0.99
        assert tangent_median[delta] >= 0.99
    for delta in (0.07, 0.14):
        assert dec_tangent_median[delta] < 0.99


# ---------------------------------------------------------------------------------------------
# Thm 1: the gradient direction
# ---------------------------------------------------------------------------------------------


@pytest.mark.fast
@pytest.mark.claim("G-T1", statement="Thm 1 (eqs 31-33)")
def test_G_T1_tangent_gradient_points_along_A_minus_A_star(evidence, seed, device):
    """Thm 1's alignment, measured as THEOREMS.md G-T1 says: n = 200, Gamma = 100, d = 2,
    gamma = 3, B = [4, 5], lam = 2, A* with orthonormal groups, A = perturb_groups(A*, delta)
    with every group at ||A_g - A*_g||_F = delta in {0.07, 0.14, 0.28}, and the expected gradient
    over N = 20,000 samples (autograd). tau_g is random (Sec. 8 item 35: the proof pulls it out
    of the expectations), so the theory's constant is read as tau_bar = E[tau_g | g in S]
    (recorded, with the 5-50-95 % quantiles of tau_g). The radial part of the gradient (~ -2 tau
    (1 - tau) p_g A_g at A*) is removed by the orthonormality constraint, so the gradient is
    projected on the Stiefel tangent space, P_T(G_g) = G_g - A_g sym(A_g^T G_g). Pass: (i)
    cos(P_T G_g, A_g - A*_g) > 0 for every group at every delta; (ii) median cosine >= 0.5, 0.75
    and 0.9 at the three deltas ([proto] min/median 0.56/0.66, 0.82/0.87, 0.94/0.95). Report:
    (iii) the raw cosine (small, [proto] 0.05-0.18). Negative control: the direction A - A'*
    for an unrelated A'* gives a median cosine below 0.1."""
    run = t1_run(seed(0), device)
    minimum, median, raw, control = {}, {}, {}, {}
    for delta, r in run["runs"].items():
        A = r["A"]
        tangent = group_sparse.stiefel_tangent(A, r["exact"], group_size=D_GROUP)
        cosines = group_cosines(tangent, A - run["A_star"])
        minimum[delta], median[delta] = float(cosines.min()), float(cosines.median())
        raw[delta] = float(group_cosines(r["exact"], A - run["A_star"]).median())
        control[delta] = float(group_cosines(tangent, A - run["unrelated"]).median())
        assert float(group_distances(A, run["A_star"]).sub(delta).abs().max()) <= 1e-9
    evidence.seeds = [seed(0)]
    evidence.measure(tau_bar=run["tau_bar"], tau_quantiles_5_50_95=run["tau_quantiles"],
                     min_cosine={str(k): v for k, v in minimum.items()},
                     median_cosine={str(k): v for k, v in median.items()},
                     raw_median_cosine={str(k): v for k, v in raw.items()},
                     control_median_cosine={str(k): v for k, v in control.items()})
    evidence.predict(median_cosine={"0.07": 0.66, "0.14": 0.87, "0.28": 0.95})
    for delta, floor in zip(T1_DELTAS, (0.5, 0.75, 0.9), strict=True):
        assert minimum[delta] > 0
        assert median[delta] >= floor
        assert control[delta] < 0.1


@pytest.mark.fast
@pytest.mark.claim("G-T1", statement="Thm 1, inequality (61) (Sec. 8 item 36)")
def test_G_T1_deviation_inequality_61_is_an_identity(evidence, seed, device):
    """Documented deviation (THEOREMS.md G-T1 status, Sec. 8 item 36): once v_i := g_gi -
    kappa (a_i - a*_i) is defined (kappa = tau_g (2 - tau_g) p_g alpha_i), the lower bound (61)
    2 <g, a - a*> >= kappa ||a - a*||^2 + ||g||^2 / kappa - ||v||^2 / kappa holds with equality
    for ANY vector g, so (32) without its O-term carries no information; the content is the bound
    (33) on ||v_i||. Asserted: the two sides agree to 1e-12 relative to the sum of the terms'
    magnitudes for 1000 random vectors g unrelated to any gradient (random a, a*, and kappa in
    (0.01, 0.99)). Negative control: with v built from a different constant (1.1 kappa) the two
    sides differ by more than 1e-6 relative."""
    g = torch.Generator().manual_seed(seed(0))
    K, n = 1000, 200
    grad, a, a_star = (torch.randn(K, n, generator=g).to(device) for _ in range(3))
    kappa = torch.rand(K, 1, generator=g).to(device) * 0.98 + 0.01
    diff = a - a_star

    def sides(k):
        v = grad - k * diff
        terms = (2 * (grad * diff).sum(1), kappa[:, 0] * diff.pow(2).sum(1),
                 grad.pow(2).sum(1) / kappa[:, 0], v.pow(2).sum(1) / kappa[:, 0])
        gap = terms[0] - (terms[1] + terms[2] - terms[3])
        scale = sum(term.abs() for term in terms)
        return float((gap.abs() / scale).max())

    identity_error, control_error = sides(kappa), sides(1.1 * kappa)
    evidence.seeds = [seed(0)]
    evidence.measure(max_rel_gap=identity_error, control_max_rel_gap=control_error)
    evidence.predict(max_rel_gap=0.0)
    assert identity_error <= 1e-12
    assert control_error > 1e-6


# ---------------------------------------------------------------------------------------------
# Thm 2: convergence to a neighbourhood
# ---------------------------------------------------------------------------------------------


@pytest.mark.fast
@pytest.mark.claim("G-T2", statement="Thm 2 proof, eqs 66-67 (Sec. 8 item 33)")
def test_G_T2_deviation_identity_has_d_not_n(evidence, seed, device):
    """Documented deviation (THEOREMS.md G-T2 (a), Sec. 8 item 33): A_g^T A*_g is d x d, so in
    eq. 66 ||I||_F^2 is d, not n, and in eq. 67 <A_g, A*_g> >= d - delta^2/2, not n - delta^2/2.
    With M = A_g^T A*_g for 100 groups of the G-T1 setting (n = 200, d = 2, delta = 0.14,
    orthonormal A_g, unit columns of A*_g) and tau in {0.3, 0.56, 0.9}: eq. 66 with d matches
    ||tau M - (2 - tau) I||_F^2 to 1e-12 relative and eq. 66 as printed (with n) is off by exactly
    (2 - tau)^2 (n - d) (to 1e-9 relative); <A_g, A*_g> >= d - delta^2/2 holds for every group (it
    is an equality here, to 1e-12) and the printed n - delta^2/2 fails for every group."""
    n, d, delta = 200, 2, 0.14
    A_star, _, _ = orthonormal_model(1, 100, n, seed(0), device)
    A = group_sparse.perturb_groups(A_star, delta, group_size=d, seed=seed(1))
    A_b = A.reshape(n, -1, d).permute(1, 0, 2)
    A_star_b = A_star.reshape(n, -1, d).permute(1, 0, 2)
    M = A_b.transpose(1, 2) @ A_star_b
    eye = torch.eye(d, device=device)
    trace = torch.diagonal(M, dim1=1, dim2=2).sum(-1)
    corrected_error, printed_offset_error = 0.0, 0.0
    for tau in (0.3, 0.56, 0.9):
        direct = torch.linalg.matrix_norm(tau * M - (2 - tau) * eye).pow(2)
        expansion = tau**2 * torch.linalg.matrix_norm(M).pow(2) - 2 * (2 - tau) * tau * trace
        corrected = (2 - tau) ** 2 * d + expansion
        printed = (2 - tau) ** 2 * n + expansion
        corrected_error = max(corrected_error, float(((corrected - direct) / direct).abs().max()))
        offset = (2 - tau) ** 2 * (n - d)
        printed_offset_error = max(printed_offset_error,
                                   float(((printed - direct - offset) / offset).abs().max()))
    inner = (A_b * A_star_b).sum((1, 2))
    equality_gap = float((inner - (d - delta**2 / 2)).abs().max())
    evidence.seeds = [seed(0), seed(1)]
    evidence.measure(eq66_with_d_rel_error=corrected_error,
                     eq66_printed_offset_rel_error=printed_offset_error,
                     eq67_with_d_equality_gap=equality_gap,
                     eq67_printed_violations=int((inner < n - delta**2 / 2).sum()))
    evidence.predict(eq66_with_d_rel_error=0.0, eq67_printed_violations=100)
    assert corrected_error <= 1e-12
    assert printed_offset_error <= 1e-9
    assert equality_gap <= 1e-12
    assert bool((inner >= d - delta**2 / 2 - 1e-12).all())
    assert bool((inner < n - delta**2 / 2).all())


@pytest.mark.fast
@pytest.mark.claim("G-T2", statement="Thm 2 hypothesis (eq. 69) as printed (Sec. 8 item 33)")
def test_G_T2_deviation_printed_hypothesis_fails_in_the_paper_regime(evidence, seed, device):
    """Documented deviation (THEOREMS.md G-T2 (b)): as printed (with n), Thm 2 requires
    ||A_g^T A*_g||_F^2 <= (1/tau^2)[3 (2 - tau)(tau - 2/3) n + (1 - tau)(2 - tau) delta^2], which
    is negative unless tau > ~2/3. tau_g = 1 - lam / ||A*_g^T y|| is measured over the true groups
    of the paper's simulation (n = 950, Gamma = 500, lam = 2, B = [4, 5], 2000 samples at A*;
    [proto] 5-95 % range 0.49-0.61). Asserted with the most favourable delta = 1: the right side
    is < 0 at the 5 %, 50 % and 95 % quantiles of tau_g and for >= 99 % of the (sample, group)
    pairs, so the hypothesis cannot hold ([proto] RHS -2850, -1396, -739 at tau = 0.5, 0.56,
    0.6). Negative control: at tau = 0.9 (a small lam) the printed right side is positive."""
    problem, _, _ = paper_run(seed(0), device)
    taus = active_taus(problem.X, problem.D_star, problem.Z_star)
    quantiles = torch.quantile(taus, torch.tensor([0.05, 0.5, 0.95], device=taus.device))
    n = problem.X.shape[1]
    at_quantiles = [group_sparse.gram_bound(float(t), delta=1.0, size=n) for t in quantiles]
    negative = float((group_sparse.gram_bound(taus[taus > 0], delta=1.0, size=n) < 0)
                     .double().mean())
    control = group_sparse.gram_bound(0.9, delta=1.0, size=n)
    evidence.seeds = [seed(0)]
    evidence.measure(tau_quantiles_5_50_95=quantiles, printed_rhs_at_quantiles=at_quantiles,
                     fraction_negative=negative, control_rhs_at_tau_0_9=control,
                     rhs_at_tau_0_5_0_56_0_6=[group_sparse.gram_bound(t, delta=0.0, size=n)
                                              for t in (0.5, 0.56, 0.6)])
    evidence.predict(rhs_at_tau_0_5_0_56_0_6=[-2850, -1396, -739])
    assert all(value < 0 for value in at_quantiles)
    assert negative >= 0.99
    assert control > 0


@pytest.mark.fast
@pytest.mark.claim("G-T2", statement="Thm 2 hypothesis (corrected) against Lemma 1")
def test_G_T2_deviation_corrected_hypothesis_contradicts_lemma_1(evidence):
    """Documented deviation (THEOREMS.md G-T2 (c), Sec. 8 item 33): with d in place of n, Thm 2's
    hypothesis ||A_g^T A*_g||_F^2 <= gram_bound(tau, delta, d) is satisfiable only if
    (d - delta^2/2)^2 / d <= gram_bound(tau, delta, d) (Cauchy-Schwarz on the trace and eq. 67 with
    d), which forces 1 - tau_g to be small; Lemma 1 needs lam >= gamma B_max (mu_B + delta), and
    ||A_g^T y|| <= U = B_max (1 + gamma (mu_B + delta)) (Props 1-2), so 1 - tau_g = lam /
    ||A_g^T y|| >= gamma B_max (mu_B + delta) / U. Grid: d in {1, 2, 4, 8, 16}, 12 deltas in
    [0.01, 1] (log-spaced), gamma in {1, 2, 3, 5}, mu_B in {0, 0.05, 0.2}, (B_min, B_max) in
    {(4, 5), (1, 2), (9, 10)}: 2160 points, tau on a grid of 2000 values in (0, 1]. Asserted: no
    point has a non-empty Lemma-1 range and a tau satisfying both ([proto] 0 of 7200), and the
    largest 1 - tau allowed by Thm 2 is below the smallest forced by Lemma 1 by a margin (ratio
    < 0.9). Negative control: without Lemma 1's lower bound on lam (tau up to 1), every point with
    a non-empty range satisfies Thm 2's hypothesis."""
    taus = torch.linspace(1e-3, 1.0, 2000, dtype=torch.float64)
    points = both = range_nonempty = without_lower_bound = 0
    worst = 0.0
    grid = itertools.product((1, 2, 4, 8, 16), np.geomspace(0.01, 1.0, 12), (1, 2, 3, 5),
                             (0.0, 0.05, 0.2), ((4.0, 5.0), (1.0, 2.0), (9.0, 10.0)))
    for d, delta, gamma, mu, (b_min, b_max) in grid:
        delta = float(delta)
        points += 1
        low, high = group_sparse.recovery_range(n_active=gamma, b_min=b_min, b_max=b_max,
                                                mu_B=mu, delta=delta)
        if low > high:
            continue
        range_nonempty += 1
        allowed = group_sparse.gram_bound(taus, delta=delta, size=d) >= (d - delta**2 / 2) ** 2 / d
        forced_gap = low / (b_max * (1 + gamma * (mu + delta)))
        both += int(bool((allowed & (taus <= 1 - forced_gap)).any()))
        without_lower_bound += int(bool(allowed.any()))
        if bool(allowed.any()):
            worst = max(worst, (1 - float(taus[allowed].min())) / forced_gap)
    evidence.measure(grid_points=points, lemma1_range_nonempty=range_nonempty,
                     points_satisfying_both=both,
                     max_allowed_over_forced_one_minus_tau=worst,
                     control_points_without_lam_lower_bound=without_lower_bound)
    evidence.predict(points_satisfying_both=0)
    assert points == 2160
    assert both == 0
    assert worst < 0.9
    assert without_lower_bound == range_nonempty > 0


def projected_descent(X, A0, A_star, *, eta, steps, project=True):
    """Full-batch gradient descent on eq. 13 (step ``eta``, the closed-form gradient of
    ``group_sparse.gradient``), followed by the per-group polar re-orthonormalisation that keeps
    Thm 2's premise A_g^T A_g = I (THEOREMS.md G-T2); ``project=False`` drops it. Returns the
    squared group errors ||A_g^k - A*_g||_F^2 as an array (k, Gamma), cut at the first
    non-finite iterate."""
    A, errors = A0, []
    for k in range(steps + 1):
        if not bool(torch.isfinite(A).all()):
            break
        errors.append(group_distances(A, A_star).pow(2).cpu().numpy())
        if k < steps:
            A = A - eta * group_sparse.gradient(X, A, lam=LAM, group_size=D_GROUP)
            if project:
                A = group_sparse.orthonormalize_groups(A, group_size=D_GROUP)
    return np.array(errors)


def theorem2_rate(A, A_star, *, eta, tau, p_g, delta, group_size=D_GROUP):
    """Thm 2's rho = eta tau (2 - tau) p_g (alpha_min - 2 d (omega_max sqrt(d^2 + 1) + delta)^2 /
    alpha_min), with alpha_i = a*_i^T a_i and omega_i = max_{j != i in g} |a*_j^T a_i| measured at
    A; also returns alpha_max (for the step bound)."""
    m, d = A.shape[0], group_size
    inner = (A_star.reshape(m, -1, d).permute(1, 2, 0) @ A.reshape(m, -1, d).permute(1, 0, 2))
    alpha = torch.diagonal(inner, dim1=1, dim2=2)
    off = inner - torch.diag_embed(alpha)
    alpha_min, alpha_max = float(alpha.min()), float(alpha.max())
    omega_max = float(off.abs().max())
    factor = alpha_min - 2 * d * (omega_max * math.sqrt(d**2 + 1) + delta) ** 2 / alpha_min
    return eta * tau * (2 - tau) * p_g * factor, alpha_max


G_T2_STEPS = 15


@pytest.mark.medium
@pytest.mark.claim("G-T2", statement="Thm 2 (empirical contraction to a neighbourhood)")
def test_G_T2_projected_gradient_descent_contracts_to_a_neighbourhood(evidence, seed, device):
    """Thm 2, empirically (THEOREMS.md G-T2, calibrated): the G-T1 setting (N = 20,000 fixed
    samples, n = 200, Gamma = 100, d = 2, lam = 2) from A^0 at ||A_g - A*_g||_F = 0.28 for every
    group, full-batch GD with step eta = 0.5 / (tau_bar (2 - tau_bar) p_g) (half of Thm 2's bound
    1 / (tau (2 - tau) p_g alpha_max), asserted) and per-group polar re-orthonormalisation, 15
    steps (the catalogue's 60; the errors are constant to 1e-8 after about 10 steps). The
    gradient is the closed form, pinned to autograd at A^0 (1e-12). With e_k the squared group
    error, rho = Thm 2's rate with its constants measured at A^0 (alpha_min, omega_max,
    delta = 0.28; ~0.27, asserted in (0, 1)) and e_inf the group's plateau (max over the last
    half of the steps):
    (i) median e_15 <= 0.2 median e_0 ([proto] 0.08);
    (ii) Thm 2 unrolled, e_k <= (1 - rho)^k e_0 + e_inf for every k, for >= 90 % of the groups.
    Negative controls: (a) a rate faster than the measured one (rho' = 0.99, i.e. claiming
    convergence in one step) leaves < 90 % of the groups inside the envelope; (b) without the
    re-orthonormalisation (Thm 2's premise A_g^T A_g = I dropped) the same GD diverges (a
    non-finite iterate, or (i) fails). Recalibrated: the catalogue's control "eta 10x above the
    bound diverges" does not fail with the polar re-orthonormalisation, which rescales the
    radial part of every step (measured median e_k: 0.0784, 0.0268, 0.0071, 0.0062 at k = 0, 1,
    2, 10 for 10 eta, the same plateau as eta); the plain-GD control replaces it.
    Plateau: the floor is the fixed point of the finite-sample gradient (see the slow
    test_G_T2_plateau_is_a_finite_sample_floor)."""
    run = t1_run(seed(0), device)
    X, A_star = run["X"], run["A_star"]
    delta = T1_DELTAS[-1]
    A0 = run["runs"][delta]["A"]
    tau, p_g = run["tau_bar"], N_ACTIVE / T1_SIZE["n_groups"]
    eta = 0.5 / (tau * (2 - tau) * p_g)
    exact = run["runs"][delta]["exact"]
    pinned = float((group_sparse.gradient(X, A0, lam=LAM, group_size=D_GROUP) - exact).norm()
                   / exact.norm())
    rho, alpha_max = theorem2_rate(A0, A_star, eta=eta, tau=tau, p_g=p_g, delta=delta)
    errors = projected_descent(X, A0, A_star, eta=eta, steps=G_T2_STEPS)
    steps = np.arange(errors.shape[0])[:, None]
    plateau = errors[G_T2_STEPS // 2:].max(0)
    ratio = float(np.median(errors[-1]) / np.median(errors[0]))

    def inside(rate):
        envelope = (1 - rate) ** steps * errors[0] + plateau * (1 + 1e-9)
        return float((errors <= envelope).all(0).mean())

    inside_theorem, inside_fast = inside(rho), inside(0.99)
    plain = projected_descent(X, A0, A_star, eta=eta, steps=G_T2_STEPS, project=False)
    plain_diverged = plain.shape[0] <= G_T2_STEPS
    plain_ratio = float(np.median(plain[-1]) / np.median(plain[0]))
    evidence.seeds = [seed(0)]
    evidence.measure(tau_bar=tau, eta=eta, eta_bound=1 / (tau * (2 - tau) * p_g * alpha_max),
                     rho_theorem=rho, gradient_pin_rel_error=pinned,
                     median_error_by_step=np.median(errors, axis=1), final_over_initial=ratio,
                     fraction_groups_inside_theorem_envelope=inside_theorem,
                     control_fraction_inside_rho_0_99=inside_fast,
                     control_plain_gd_steps_before_non_finite=int(plain.shape[0]),
                     control_plain_gd_last_over_initial=plain_ratio)
    evidence.predict(final_over_initial=0.08)
    assert pinned <= 1e-12
    assert eta <= 1 / (tau * (2 - tau) * p_g * alpha_max)
    assert 0 < rho < 1
    assert ratio <= 0.2
    assert inside_theorem >= 0.9
    assert inside_fast < 0.9
    assert plain_diverged or plain_ratio > 0.2


@pytest.mark.slow
@pytest.mark.claim("G-T2", statement="Thm 2 floor O(d log^2 n / Gamma^2) (report)")
def test_G_T2_plateau_is_a_finite_sample_floor(evidence, seed, device):
    """THEOREMS.md G-T2 (iii), report item: the plateau of the G-T2 descent at Gamma = 200 against
    Gamma = 100 (same n / Gamma = 2). Thm 2's population floor O(d log^2 n / Gamma^2) would be
    smaller at Gamma = 200, but with a fixed sample the plateau is the distance to the fixed point
    of the empirical gradient, a finite-sample term proportional to 1 / (N p_g). Asserted (the
    law that decides what the comparison can show): at Gamma = 100, doubling N (20,000 to 40,000)
    divides the median plateau by 2 (ratio in [0.35, 0.65]). Recorded: the plateau at Gamma = 200
    with N = 40,000 (the same number of samples per group as Gamma = 100, N = 20,000), next to
    the Gamma = 100 one; 10 steps each, delta_0 = 0.28, the G-T2 step rule."""
    plateaus = {}
    for key, (n_groups, N) in {"Gamma100_N20000": (100, 20_000),
                               "Gamma100_N40000": (100, 40_000),
                               "Gamma200_N40000": (200, 40_000)}.items():
        A_star, X, Z_star = orthonormal_model(N, n_groups, 2 * n_groups, seed(0), device)
        A0 = group_sparse.perturb_groups(A_star, 0.28, group_size=D_GROUP, seed=seed(1))
        taus = active_taus(X, A_star, Z_star)
        tau = float(taus[taus > 0].mean())
        eta = 0.5 / (tau * (2 - tau) * N_ACTIVE / n_groups)
        errors = projected_descent(X, A0, A_star, eta=eta, steps=10)
        plateaus[key] = float(np.median(errors[-1]))
    sample_law = plateaus["Gamma100_N40000"] / plateaus["Gamma100_N20000"]
    evidence.seeds = [seed(0), seed(1)]
    evidence.measure(median_plateau=plateaus, plateau_ratio_doubling_N=sample_law,
                     plateau_ratio_Gamma200_over_Gamma100=plateaus["Gamma200_N40000"]
                     / plateaus["Gamma100_N20000"])
    evidence.predict(plateau_ratio_doubling_N=0.5)
    assert 0.35 <= sample_law <= 0.65


# ---------------------------------------------------------------------------------------------
# Fig. 3: the simulation (training-based: slow quick variant, full paper scale)
# ---------------------------------------------------------------------------------------------

F3_SIZES = {
    "quick": dict(n=200, n_groups=100, N=4000, epochs=300),
    "full": dict(n=950, n_groups=500, N=10_000, epochs=300),
}
F3_SNRS = (1.0, 5.0, 10.0)
F3_SPARSE_BIASES = (0.1, 0.3, 1.0, 2.0)  # the sparse AE's bias is not given (Sec. 8 item 37)
F3_TEST_SAMPLES = 2000


def train_shallow_autoencoder(X, A0, A_star, *, prox, lam, epochs, record_every=10):
    """Fig. 3 training: full-batch Adam (lr 1e-3) on eq. 13 with the shallow encoder, tied
    weights and no norm constraint (G Sec. 4.1), the gradient from ``udlbench.gradients``.
    Returns the weights and, every ``record_every`` epochs, the epoch, the loss and
    ||A_bar - A*||_F^2 on column-normalised weights."""
    A = torch.nn.Parameter(A0.clone())
    optimizer = torch.optim.Adam([A], lr=1e-3)
    group_size = D_GROUP if prox == "group" else None
    history = []
    for epoch in range(epochs + 1):
        grad, Z = gradients.estimate("ae-ls", X, A.detach(), lam=lam, n_layers=1, alpha=1.0,
                                     prox=prox, group_size=group_size, check_step=False,
                                     return_codes=True)
        if epoch % record_every == 0 or epoch == epochs:
            loss = float(0.5 * (X - Z @ A.detach().T).pow(2).sum(1).mean())
            error = float((data.normalize_columns(A.detach()) - A_star).pow(2).sum())
            history.append((epoch, loss, error))
        if epoch < epochs:
            A.grad = grad
            optimizer.step()
    return A.detach(), np.array(history)


def f3_experiment(scale, seed, device):
    """G Sec. 4.1 / THEOREMS.md G-F3 at ``scale``: for each SNR the group-sparse AE (lam = 2)
    from A* + B (average column correlation 0.15, unnormalised), and at 1 dB the sparse AE
    (soft threshold) for every bias of F3_SPARSE_BIASES from the same start. Support recovery
    (exact, entry-wise) on F3_TEST_SAMPLES held-out samples of the same model."""
    size = F3_SIZES[scale]
    n, n_groups, N, epochs = size["n"], size["n_groups"], size["N"], size["epochs"]
    sigma_B = math.sqrt((1 / 0.15**2 - 1) / n)
    results = {}
    for snr in F3_SNRS:
        problem = data.make_group_sparse(N + F3_TEST_SAMPLES, n_groups, D_GROUP, N_ACTIVE, m=n,
                                         b_min=B_MIN, b_max=B_MAX, snr_db=snr, seed=seed,
                                         device=device)
        X, X_test = problem.X[:N], problem.X[N:]
        Z_test, A_star = problem.Z_star[N:], problem.D_star
        g = torch.Generator().manual_seed(seed + 1)
        A0 = A_star + sigma_B * torch.randn(A_star.shape, generator=g).to(device)
        runs = {"group": (LAM, "group")}
        if snr == F3_SNRS[0]:
            runs.update({f"sparse@{b}": (b, "soft") for b in F3_SPARSE_BIASES})
        for name, (lam, prox) in runs.items():
            A, history = train_shallow_autoencoder(X, A0, A_star, prox=prox, lam=lam,
                                                   epochs=epochs)
            codes = encoders.ista(X_test, A, lam=lam, n_layers=1, alpha=1.0, prox=prox,
                                  group_size=D_GROUP if prox == "group" else None,
                                  check_step=False)
            hits = int(round(metrics.support_recovery(codes, Z_test, signed=False)
                             * F3_TEST_SAMPLES))
            results[(snr, name)] = dict(history=history, hits=hits,
                                        zero_map_loss=float(0.5 * X.pow(2).sum(1).mean()))
    return results


def f3_check(evidence, figures, results, scale, *, deviation=False):
    """Criteria (a)-(c) of THEOREMS.md G-F3, recorded and asserted; Fig. 3a-d when asked. With
    ``deviation`` the counterexample is asserted instead: the error rises at every SNR."""
    low_snr = F3_SNRS[0]
    group = {snr: results[(snr, "group")] for snr in F3_SNRS}
    ratios = {snr: r["history"][-1, 2] / r["history"][0, 2] for snr, r in group.items()}
    sparse = {b: results[(low_snr, f"sparse@{b}")] for b in F3_SPARSE_BIASES}
    best_bias = min(sparse, key=lambda b: sparse[b]["history"][-1, 2])
    best = sparse[best_bias]
    group_ci = clopper_pearson(group[low_snr]["hits"], F3_TEST_SAMPLES)
    sparse_ci = clopper_pearson(best["hits"], F3_TEST_SAMPLES)
    evidence.measure(
        scale=scale,
        initial_error={str(s): r["history"][0, 2] for s, r in group.items()},
        final_over_initial_error={str(s): v for s, v in ratios.items()},
        error_by_epoch={str(s): r["history"][:, [0, 2]] for s, r in group.items()},
        loss_by_epoch={str(s): r["history"][:, [0, 1]] for s, r in group.items()},
        zero_map_loss={str(s): r["zero_map_loss"] for s, r in group.items()},
        sparse_final_error_1dB={str(b): r["history"][-1, 2] for b, r in sparse.items()},
        sparse_best_bias_1dB=best_bias,
        group_final_error_1dB=group[low_snr]["history"][-1, 2],
        group_support_recovery_1dB=[group[low_snr]["hits"] / F3_TEST_SAMPLES, *group_ci],
        sparse_support_recovery_1dB=[best["hits"] / F3_TEST_SAMPLES, *sparse_ci],
    )
    evidence.predict(final_over_initial_error={str(s): "< 0.3" for s in F3_SNRS},
                     group_final_error_1dB="< sparse", group_support_recovery_1dB="> sparse")
    if figures.enabled:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
        for snr, r in group.items():
            axes[0].plot(r["history"][:, 0], r["history"][:, 2], label=f"{snr:g} dB")
            axes[1].plot(r["history"][:, 0], r["history"][:, 1], label=f"{snr:g} dB")
        axes[2].plot(group[low_snr]["history"][:, 0], group[low_snr]["history"][:, 2],
                     label="group-sparse")
        axes[2].plot(best["history"][:, 0], best["history"][:, 2],
                     label=f"sparse (bias {best_bias:g})")
        axes[3].bar(["group-sparse", "sparse"],
                    [group[low_snr]["hits"] / F3_TEST_SAMPLES, best["hits"] / F3_TEST_SAMPLES])
        titles = ("(a) ||A - A*||_F^2", "(b) training loss", "(c) 1 dB", "(d) support recovery")
        for ax, title in zip(axes, titles, strict=True):
            ax.set_title(title)
        for ax in axes[:3]:
            ax.set_xlabel("epoch")
            ax.legend()
        figures(evidence, fig, f"fig3_{scale}")
    if deviation:
        assert all(ratios[snr] > 1.0 for snr in F3_SNRS), ratios
        return
    for snr in F3_SNRS:
        assert ratios[snr] < 0.3, (snr, ratios[snr])
    assert group[low_snr]["history"][-1, 2] < best["history"][-1, 2]
    assert group_ci[0] > sparse_ci[1]


@pytest.mark.slow
@pytest.mark.claim("G-F3", statement="Fig. 3a-d (quick variant)")
def test_G_F3_deviation_quick_setup_does_not_learn(evidence, figures, seed, device):
    """G Fig. 3, quick variant (THEOREMS.md G-F3): n = 200, Gamma = 100, d = 2, gamma = 3,
    N = 4000 (+ 2000 held out), code groups N(0, I) normalised times U(4, 5), noise at SNR 1, 5,
    10 dB; A = A* + B unnormalised (sigma_B = sqrt((1/0.15^2 - 1)/n): average column correlation
    0.15); full-batch Adam lr 1e-3, lam = 2, 300 epochs, no norm constraint; error
    ||A_bar - A*||_F^2 on column-normalised weights. Sparse AE at 1 dB: soft threshold, bias on
    the grid {0.1, 0.3, 1, 2}, the best final error kept. Pass: (a) final error < 0.3 x initial
    at every SNR; (b) at 1 dB the group-sparse error < the best sparse-AE error; (c) at 1 dB the
    group-sparse AE's exact support recovery on held-out samples > the sparse AE's
    (Clopper-Pearson 95 % intervals disjoint). These are recorded; the setup as the catalogue
    reads it does not reproduce Fig. 3, so this check asserts the counterexample: the final
    error exceeds the initial one at every SNR (the paper-scale check keeps (a)-(c)).
    Measured (seed 0): the error rises from 343.4 to 350.6,
    353.0 and 354.9 at 1, 5 and 10 dB (ratios 1.02-1.03); the loss falls from 1.2e5 to 1.6e4 at
    1 dB but is still ~290 times the loss of the zero map (54.8): 300 Adam steps of 1e-3 do not
    finish shrinking columns of norm ~6.7; 0/2000 supports recovered by either model; the best
    sparse bias (0.1) ends at 350.4. Prototypes (float32, 10 dB, N = 2000): still rising after
    600 epochs at lr 1e-2 (376); from an initial correlation of 0.9 the error falls from 40 to
    4.4; at the paper's n = 950 it rises from 1697 to 1812 in 300 epochs."""
    evidence.seeds = [seed(0), seed(1)]
    f3_check(evidence, figures, f3_experiment("quick", seed(0), device), "quick", deviation=True)


@pytest.mark.full
@pytest.mark.claim("G-F3", statement="Fig. 3a-d (paper scale)")
def test_G_F3_simulation_paper_scale(evidence, figures, seed, device):
    """G Fig. 3 at the paper's scale (THEOREMS.md G-F3): n = 950, Gamma = 500, d = 2 (m = 1000),
    gamma = 3, N = 10,000 (+ 2000 held out), SNR 1, 5, 10 dB, the rest as the quick variant,
    with the same criteria (a)-(c). About 15 minutes on a GPU; hours on a CPU."""
    evidence.seeds = [seed(0), seed(1)]
    f3_check(evidence, figures, f3_experiment("full", seed(0), device), "full")


# ---------------------------------------------------------------------------------------------
# Table 1: clustering (MNIST, full only; scikit-learn's digits as the offline proxy)
# ---------------------------------------------------------------------------------------------

MNIST_ENV = "UDLBENCH_MNIST"
TABLE1 = clustering.TABLE1  # G Table 1 (THEOREMS.md Sec. 7.4), MNIST test set, accuracy %


def table1_accuracies(representations, truth, *, n_neighbors, seed):
    """k-means (10 clusters) and spectral clustering (n_neighbors-NN graph) accuracies for every
    representation, as (k-means, spectral) pairs in % (udlbench.clustering)."""
    return {
        name: tuple(100 * clustering.clustering_accuracy(
            clustering.cluster(features, algorithm=algorithm, n_neighbors=n_neighbors,
                               seed=seed), truth) for algorithm in clustering.ALGORITHMS)
        for name, features in representations.items()
    }


def table1_codes(X_train, X_test, *, group_size, p, n_epochs, batch_size, seed, device):
    """Train the group-sparse AE (lam = 0.2, groups of ``group_size``) and the sparse AE
    (lam = 0.03), both 15 unrolled ISTA layers with ae-ls back-propagation, Adam lr 1e-3 and
    unit-norm atoms (udlbench.clustering.train_autoencoder), from one Gaussian start; return
    their codes of X_test and the learners."""
    D0 = initial_dictionary(X_train.shape[1], p, seed=seed, like=X_train)
    codes, learners = {}, {}
    for name, lam, size in (("group", 0.2, group_size), ("sparse", 0.03, None)):
        learners[name] = clustering.train_autoencoder(
            X_train, D0, lam=lam, group_size=size, n_layers=15, encoder="ista", lr=1e-3,
            n_epochs=n_epochs, batch_size=batch_size or X_train.shape[0], seed=seed)
        codes[name] = learners[name].encode(X_test).cpu().numpy()
    return codes, learners


@pytest.mark.full
@pytest.mark.claim("G-Tab1", statement="Table 1, Figs 4-5 (MNIST clustering)")
def test_G_Tab1_mnist_clustering(evidence, seed, device):
    """G Table 1 at full scale (THEOREMS.md G-Tab1): 60k MNIST training images (pixels / 255),
    Gamma = 10 groups of 16 (m = 160), encoder unrolled 15 iterations (not the shallow model of
    the theory; Sec. 8 item 37), lam = 0.2, Adam lr 1e-3, 300 epochs (mini-batches of 256: the
    batch size is not given); sparse AE 784 x 160 with lam = 0.03. k-means (10 clusters) and
    spectral clustering (1000-NN graph) on the 10,000 test codes, "+" = absolute values scaled
    to sum 1. Pass: group-sparse accuracy > sparse and > raw pixels for both algorithms; the
    accuracies are recorded next to Table 1. MNIST cannot be downloaded here: the check reads the
    file named by the environment variable UDLBENCH_MNIST (an .npz with x_train, y_train, x_test,
    y_test, as keras' mnist.npz) and skips when it is unset."""
    import os
    from pathlib import Path

    path = os.environ.get(MNIST_ENV)
    if not path:
        pytest.skip(f"G-Tab1 needs MNIST, which no installed package ships and which cannot be "
                    f"downloaded here; set {MNIST_ENV} to an mnist.npz file.")
    if not Path(path).is_file():
        pytest.skip(f"{MNIST_ENV}={path} is not a file.")
    with np.load(path) as archive:
        X_train = torch.tensor(archive["x_train"].reshape(-1, 784) / 255.0, device=device)
        X_test = archive["x_test"].reshape(-1, 784) / 255.0
        truth = archive["y_test"].astype(np.int64)
    codes, _ = table1_codes(X_train, torch.tensor(X_test, device=device), group_size=16, p=160,
                            n_epochs=300, batch_size=256, seed=seed(0), device=device)
    representations = {"raw": X_test, "sparse": codes["sparse"],
                       "sparse+": simplex_rows(codes["sparse"]), "group": codes["group"],
                       "group+": simplex_rows(codes["group"])}
    accuracies = table1_accuracies(representations, truth, n_neighbors=1000, seed=seed(0))
    evidence.seeds = [seed(0)]
    evidence.measure(accuracy_kmeans_spectral=accuracies)
    evidence.predict(accuracy_kmeans_spectral=TABLE1)
    for k in range(2):
        assert accuracies["group"][k] > accuracies["sparse"][k]
        assert accuracies["group"][k] > accuracies["raw"][k]


@pytest.mark.slow
@pytest.mark.claim("G-Tab1", statement="Table 1 (offline proxy: scikit-learn digits)")
def test_G_Tab1_digits_proxy_is_reported_not_checked(evidence, seed, device):
    """Offline proxy of G Table 1 (THEOREMS.md G-Tab1 and Sec. 9 "Datasets"): Table 1 is an
    MNIST claim and MNIST is not available here, so the claim is recorded as not checkable; the
    proxy runs the same pipeline on scikit-learn's digits (1797 images of 8 x 8, pixels / 16),
    Gamma = 10 groups of 4 (m = 40), the Table 1 settings otherwise (15 unrolled layers,
    lam = 0.2 and 0.03, Adam lr 1e-3, 300 full-batch epochs), k-means and spectral clustering
    (180-NN graph, the paper's 1000 of 10,000 scaled to 1797) on all 1797 codes, for 3 training
    seeds, and records the accuracies next to Table 1, never as a reproduction of it.
    Recalibrated: the catalogue's proxy criterion "group > raw on k-means" is within the seed
    spread (measured k-means accuracy at seeds 0, 1, 2: raw 79.2, 79.3, 79.0 %, group-sparse
    78.8, 80.0, 79.4 %, sparse 76.7, 78.2, 79.4 %; ~100 % of the groups are active at lam = 0.2,
    and at lam = 1 (6 of 10 groups active) the group-sparse codes fall to 77.4 %), so it is
    recorded, not asserted. Asserted (the proxy is a valid run of the pipeline): both
    autoencoders train (final loss < 0.5 x the loss at the start) and every representation
    clusters far above chance (k-means accuracy > 50 %)."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    images, truth = load_digits(return_X_y=True)
    X = torch.tensor(images / 16.0, device=device)
    per_seed, trained = [], []
    for k in range(3):
        codes, learners = table1_codes(X, X, group_size=4, p=40, n_epochs=300, batch_size=None,
                                       seed=seed(k), device=device)
        for learner in learners.values():
            losses = learner.records_["loss"].to_numpy()
            trained.append(float(losses[-1] / losses[1]))  # row 0 is D0, without a loss
        representations = {"raw": images / 16.0, "sparse": codes["sparse"],
                           "sparse+": simplex_rows(codes["sparse"]), "group": codes["group"],
                           "group+": simplex_rows(codes["group"])}
        per_seed.append(table1_accuracies(representations, truth, n_neighbors=180,
                                          seed=seed(k)))
    mean = {name: tuple(float(np.mean([acc[name][j] for acc in per_seed])) for j in range(2))
            for name in per_seed[0]}
    evidence.verdict = "not checkable"
    evidence.seeds = [seed(k) for k in range(3)]
    evidence.measure(proxy_accuracy_kmeans_spectral_mean=mean,
                     proxy_accuracy_by_seed=per_seed,
                     proxy_group_above_raw_kmeans=mean["group"][0] > mean["raw"][0],
                     final_over_start_loss=trained)
    evidence.predict(mnist_accuracy_kmeans_spectral=TABLE1, proxy_group_above_raw_kmeans=True)
    assert max(trained) < 0.5
    assert min(acc[name][0] for acc in per_seed for name in acc) > 50.0
