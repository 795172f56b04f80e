"""Online dictionary learning (Mairal, Bach, Ponce & Sapiro, ICML 2009, Algorithms 1 and 2) on the
:class:`~udlbench.training.DictionaryLearner` interface.
"""

from __future__ import annotations

import torch

from udlbench import lasso
from udlbench._validation import (
    check_nonnegative,
    check_positive,
    check_positive_int,
)
from udlbench.training import DictionaryLearner


class OnlineDictionaryLearning(DictionaryLearner):
    """Online dictionary learning with mini-batches (Mairal, Bach, Ponce & Sapiro, ICML 2009,
    Algorithm 1 with the mini-batch extension of Sec. 3.4.2, and Algorithm 2).

    The learner minimises the expected lasso cost over the constraint set
    ``C = {D in R^(m x p) : ||d_j||_2 <= 1 for every atom j}`` (eq. 1-3 of the paper). With
    samples as rows (a batch ``X`` of shape (eta, m), codes ``Z`` of shape (eta, p), dictionary
    ``D`` of shape (m, p)), update ``t = 1, 2, ...`` (one mini-batch of ``eta`` samples):

    1. sparse coding (Algorithm 1, step 4): ``z_i = argmin_z 0.5 ||x_i - D_{t-1} z||^2 +
       lam ||z||_1`` for every row of the batch, with the certified solver
       :func:`udlbench.lasso.solve`;
    2. sufficient statistics (Algorithm 1, steps 5-6, in the mini-batch form of Sec. 3.4.2)::

           A_t = beta_t A_{t-1} + sum_i z_i z_i^T        (p, p) = Z^T Z
           B_t = beta_t B_{t-1} + sum_i x_i z_i^T        (m, p) = X^T Z

       with ``A_0 = t0 I`` and ``B_0 = t0 D_0`` (``t0 = 0`` is Algorithm 1's ``A_0 = 0,
       B_0 = 0``; ``t0 > 0`` adds ``(t0 / 2) ||D - D_0||_F^2`` to the surrogate, whose weight
       decays with the betas: the "slowing down of the first iterations" of Mairal, Bach, Ponce
       & Sapiro, JMLR 2010, Sec. 3.4.4; SPAMS's ``t0`` is similar but is dropped after 10,000
       samples). The forgetting factor is

       * ``forget_rho=None`` (default): ICML 2009, Sec. 3.4.2,
         ``beta_t = (theta + 1 - eta) / (theta + 1)`` with ``theta = t eta`` if ``t < eta`` and
         ``theta = eta^2 + t - eta`` otherwise. This is the factor of
         ``sklearn.decomposition.MiniBatchDictionaryLearning`` (which averages each batch
         instead of summing it, the same dictionary for batches of equal size) and of SPAMS's
         default mode (which also caps theta at 2n and keeps only the statistics of the current
         and previous epochs);
       * ``forget_rho = rho >= 0``: ``beta_t = (1 - 1/t)^rho`` ("scaling the past data",
         JMLR 2010, Sec. 3.4.2), ``t`` counting mini-batches, so that
         ``A_t = sum_{u <= t} (u / t)^rho Z_u^T Z_u``; ``rho = 0`` keeps every past batch with
         weight one (Algorithm 1 as written). ``beta_1 = 0`` except for ``rho = 0``, where
         ``0^0 = 1`` keeps ``A_0``.

       Both factors are computed with the size ``eta`` of the current batch (the last batch of
       an epoch may be smaller);
    3. dictionary update (Algorithm 2): ``n_passes`` sweeps of block coordinate descent on the
       surrogate ``0.5 Tr(D^T D A_t) - Tr(D^T B_t)`` over ``C``, warm-started at ``D_{t-1}``,
       atom by atom: ``u_j = (b_j - D a_j) / A_jj + d_j``, ``d_j = u_j / max(||u_j||, 1)``
       (``a_j``, ``b_j`` the j-th columns of A and B). The paper repeats the sweeps "until
       convergence"; SPAMS and scikit-learn run one (the default here).

    Fixed-size data sets are handled as in ICML 2009, Sec. 3.4.1, by cycling over the training
    set in a new random order every epoch (the base loop); the statistics of earlier epochs are
    kept (down-weighted by the betas), not removed.

    Dead atoms (ICML 2009, Sec. 3.4.3, "purging the dictionary from unused atoms"): an atom is
    unused when ``A_jj <= dead_tol * trace(A_t)`` (its share of the accumulated code energy is
    below ``dead_tol``; ``A_jj = 0`` exactly when no certified lasso code has used it since the
    start and ``t0 = 0``). Such an atom cannot be updated (Algorithm 2 divides by ``A_jj``); with
    ``resample_dead=True`` it is replaced by a nonzero sample of the current batch drawn at
    random (from a generator seeded with ``seed``) and scaled to unit norm, as the paper
    suggests; with ``resample_dead=False`` (or a batch of zero samples) it is left unchanged.
    ``n_resampled_`` counts the replacements of the last fit.

    With ``constraint="sphere"`` step 3 uses ``d_j = u_j / ||u_j||`` instead (unit-norm atoms,
    the constraint of the PUDLE experiments); this is not the paper's set C, and the sweep is
    then a heuristic, not an exact block minimisation.

    The recorded loss of an update is the mean lasso objective of the batch,
    ``mean_i 0.5 ||x_i - D_{t-1} z_i||^2 + lam ||z_i||_1``, at the codes of step 1.

    Parameters
    ----------
    lam : float
        Lasso weight ``lambda > 0`` (the certified solver needs a unique solution, so 0 is
        not allowed).
    forget_rho : float or None
        ``None`` for the ICML 2009 mini-batch factor, or ``rho >= 0`` for
        ``beta_t = (1 - 1/t)^rho``.
    t0 : float
        Weight ``>= 0`` of the initial statistics ``A_0 = t0 I``, ``B_0 = t0 D_0``.
    n_passes : int
        Block-coordinate sweeps of Algorithm 2 per update, ``>= 1``.
    dead_tol : float
        Relative usage ``A_jj / trace(A)`` at or below which an atom counts as unused, ``>= 0``.
    resample_dead : bool
        Replace unused atoms by random samples of the batch (True) or leave them (False).
    lasso_tol : float
        ``tol`` of :func:`udlbench.lasso.solve` (equality residual relative to lam), ``> 0``.
    **loop_options
        ``n_epochs``, ``batch_size``, ``max_steps``, ``record_every``, ``seed``, ``constraint``
        (default ``"ball"``, the paper's C) of :class:`udlbench.training.DictionaryLearner`.
        ``lr``, ``optimizer`` and ``adam_eps`` are not accepted: the update is not a gradient
        step.

    References
    ----------
    J. Mairal, F. Bach, J. Ponce and G. Sapiro, *Online dictionary learning for sparse coding*,
    ICML 2009, Algorithms 1-2, Sec. 3.4.1-3.4.3. J. Mairal, F. Bach, J. Ponce and G. Sapiro,
    *Online learning for matrix factorization and sparse coding*, JMLR 11, 2010, Sec. 3.4.2
    (``beta_t = (1 - 1/t)^rho``) and Sec. 3.4.4 (``A_0 = t0 I``, ``B_0 = t0 D_0``).

    Examples
    --------
    >>> from udlbench.data import make_sparse, perturb
    >>> data = make_sparse(20, 30, 400, 3, seed=0)
    >>> D0 = perturb(data.D_star, 0.3, seed=1)
    >>> model = OnlineDictionaryLearning(lam=0.1, batch_size=100, n_epochs=2).fit(data.X, D0)
    >>> model.dictionary_.shape
    torch.Size([20, 30])
    """

    def __init__(
        self,
        *,
        lam: float = 0.1,
        forget_rho: float | None = None,
        t0: float = 0.0,
        n_passes: int = 1,
        dead_tol: float = 1e-6,
        resample_dead: bool = True,
        lasso_tol: float = 1e-12,
        constraint: str = "ball",
        **loop_options,
    ) -> None:
        for fixed in ("lr", "optimizer", "adam_eps"):
            if fixed in loop_options:
                raise ValueError(
                    f"OnlineDictionaryLearning takes no {fixed} (got {fixed}="
                    f"{loop_options[fixed]!r}): its dictionary update is the block coordinate "
                    "descent of Algorithm 2, not a gradient step."
                )
        self.lam = check_positive("lam", lam)
        self.forget_rho = (
            None if forget_rho is None else check_nonnegative("forget_rho", forget_rho)
        )
        self.t0 = check_nonnegative("t0", t0)
        self.n_passes = check_positive_int("n_passes", n_passes)
        self.dead_tol = check_nonnegative("dead_tol", dead_tol)
        if not isinstance(resample_dead, bool):
            raise ValueError(f"resample_dead must be True or False; got {resample_dead!r}.")
        self.resample_dead = resample_dead
        self.lasso_tol = check_positive("lasso_tol", lasso_tol)
        super().__init__(lr=1.0, optimizer="sgd", constraint=constraint, **loop_options)

    def forgetting_factor(self, t: int, eta: int) -> float:
        """``beta_t`` of update ``t >= 1`` for a batch of ``eta`` samples (see the class notes)."""
        if self.forget_rho is not None:
            return (1.0 - 1.0 / t) ** self.forget_rho
        theta = t * eta if t < eta else eta * eta + t - eta
        return (theta + 1 - eta) / (theta + 1)

    def start(self, X: torch.Tensor, D: torch.nn.Parameter) -> None:
        """``A_0 = t0 I``, ``B_0 = t0 D_0``, and the generator of the atom replacements."""
        D0 = D.detach()
        p = D0.shape[1]
        self._A = self.t0 * torch.eye(p, dtype=D0.dtype, device=D0.device)
        self._B = self.t0 * D0.clone()
        self._generator = torch.Generator().manual_seed(self.seed)
        self.n_resampled_ = 0

    def code(self, X: torch.Tensor, D: torch.Tensor, step: int) -> torch.Tensor:
        """Certified lasso codes (n, p) of X (n, m) under D (Algorithm 1, step 4)."""
        return lasso.solve(X, D, lam=self.lam, tol=self.lasso_tol)

    def update(self, X: torch.Tensor, D: torch.nn.Parameter, step: int) -> float:
        """One iteration of Algorithm 1 on the batch X (eta, m); returns the batch lasso cost."""
        with torch.no_grad():
            D_old = D.detach()
            Z = self.code(X, D_old, step)
            loss = float(lasso.objective(X, D_old, Z, lam=self.lam).mean())
            beta = self.forgetting_factor(step + 1, X.shape[0])
            self._A = beta * self._A + Z.T @ Z
            self._B = beta * self._B + X.T @ Z
            D.copy_(self._dictionary_update(D_old.clone(), X))
        return loss

    def _dictionary_update(self, D: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Algorithm 2: ``n_passes`` sweeps of block coordinate descent over the atoms of D."""
        A, B = self._A, self._B
        usage = torch.diagonal(A)
        dead = (usage <= self.dead_tol * usage.sum()).tolist()
        sphere = self.constraint == "sphere"
        for _ in range(self.n_passes):
            for j in range(D.shape[1]):
                if dead[j]:
                    continue
                u = (B[:, j] - D @ A[:, j]) / A[j, j] + D[:, j]
                norm = torch.linalg.vector_norm(u)
                D[:, j] = u / (norm if sphere else norm.clamp_min(1.0))
        norms = torch.linalg.vector_norm(X, dim=1)
        samples = torch.nonzero(norms > 0).flatten().cpu()
        if self.resample_dead and len(samples):
            for j in (j for j, is_dead in enumerate(dead) if is_dead):
                pick = samples[torch.randint(len(samples), (1,), generator=self._generator)]
                D[:, j] = X[pick.item()] / norms[pick.item()]
                self.n_resampled_ += 1
        return D
