"""NOODL: neurally plausible alternating optimisation-based online dictionary learning
(Rambhatla, Li & Haupt, ICLR 2019, Algorithm 1), on the :class:`DictionaryLearner` interface.
"""

from __future__ import annotations

import torch

from udlbench._validation import check_positive, check_positive_int
from udlbench.operators import hard_threshold
from udlbench.training import DictionaryLearner


class NOODL(DictionaryLearner):
    """NOODL (Rambhatla, Li & Haupt, ICLR 2019, Algorithm 1).

    With samples as rows (the paper's ``A`` is our ``D`` (m, p), ``Y`` our ``X^T``, its codes
    ``X`` our ``Z^T``), each step takes a batch ``X`` of shape (n, m) and

    1. estimates the support: ``Z_0 = HT_{C/2}(X D)`` (row i is ``HT_{C/2}(D^T x_i)``);
    2. runs ``n_coding_iter`` (R) iterative hard-thresholding steps
       ``Z_{r+1} = HT_tau(Z_r - eta_x (Z_r D^T - X) D)``;
    3. moves the dictionary along ``g = (Z D^T - X)^T sign(Z) / n``, i.e. the batch mean of
       ``(D z_i - x_i) sign(z_i)^T`` (the paper's ``(1/p)(AX - Y) sign(X)^T`` with p the batch
       size): ``D <- normalise(D - eta_A g)`` (plain SGD of the base loop with ``lr = eta_A``
       and unit-norm atoms, ``constraint="sphere"``).

    ``HT_b(v) = v 1{|v| >= b}`` (:func:`udlbench.operators.hard_threshold`). The coding
    iterations stop after R steps, or earlier with ``rel_tol`` once
    ``||Z_{r+1} - Z_r||_F <= rel_tol ||Z_{r+1}||_F``; neither rule looks at the true codes.
    The online mode of the paper (fresh samples every step) is ``n_epochs=1`` with
    ``batch_size`` dividing a stream of ``n_steps * batch_size`` samples; more epochs reuse a
    fixed data set.

    Parameters
    ----------
    eta_x : float
        Step of the coding iterations (0.2 in the authors' code).
    tau : float
        Hard threshold of the coding iterations (0.1 in the authors' code).
    C : float
        Lower bound on the code magnitudes; the initial support estimate keeps ``|D^T x| >= C/2``
        (1 in the authors' code, matching the U(1, 2) magnitudes of ``make_sparse``).
    eta_A : float
        Dictionary step size (15 or 50 in the authors' code); the base loop's ``lr``.
    n_coding_iter : int
        R, the number of coding iterations per step (default 50).
    rel_tol : float or None
        Optional early stop of the coding iterations on the relative change of Z.
    **loop_options
        ``n_epochs``, ``batch_size``, ``max_steps``, ``record_every``, ``seed``, ``constraint``
        of :class:`udlbench.training.DictionaryLearner` (the optimizer is always SGD).

    References
    ----------
    S. Rambhatla, X. Li and J. Haupt, *NOODL: Provable Online Dictionary Learning and Sparse
    Coding*, ICLR 2019, Algorithm 1.
    """

    def __init__(
        self,
        *,
        eta_x: float = 0.2,
        tau: float = 0.1,
        C: float = 1.0,
        eta_A: float = 15.0,
        n_coding_iter: int = 50,
        rel_tol: float | None = None,
        **loop_options,
    ) -> None:
        for fixed in ("lr", "optimizer", "adam_eps"):
            if fixed in loop_options:
                raise ValueError(
                    f"NOODL sets {fixed} itself (SGD with lr = eta_A); got {fixed}="
                    f"{loop_options[fixed]!r}. Pass eta_A instead."
                )
        self.eta_x = check_positive("eta_x", eta_x)
        self.tau = check_positive("tau", tau)
        self.C = check_positive("C", C)
        self.eta_A = check_positive("eta_A", eta_A)
        self.n_coding_iter = check_positive_int("n_coding_iter", n_coding_iter)
        self.rel_tol = None if rel_tol is None else check_positive("rel_tol", rel_tol)
        super().__init__(lr=self.eta_A, optimizer="sgd", **loop_options)

    def code(self, X: torch.Tensor, D: torch.Tensor, step: int = 0) -> torch.Tensor:
        """Support estimate then R hard-thresholding iterations (Algorithm 1, steps 4-6)."""
        Z = hard_threshold(X @ D, self.C / 2)
        for _ in range(self.n_coding_iter):
            Z_next = hard_threshold(Z - self.eta_x * ((Z @ D.T - X) @ D), self.tau)
            change = torch.linalg.vector_norm(Z_next - Z)
            Z = Z_next
            if self.rel_tol is not None and change <= self.rel_tol * torch.linalg.vector_norm(Z):
                break
        return Z

    def gradient(self, X: torch.Tensor, D: torch.Tensor, step: int) -> tuple[torch.Tensor, float]:
        """``(Z D^T - X)^T sign(Z) / n`` and the batch loss ``mean 0.5 ||x - D z||^2``."""
        Z = self.code(X, D)
        residual = Z @ D.T - X
        direction = residual.T @ torch.sign(Z) / X.shape[0]
        loss = 0.5 * (residual**2).sum(1).mean()
        return direction, float(loss)
