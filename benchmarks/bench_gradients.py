"""Forward and backward of the dictionary-gradient estimators of PUDLE, and the reference lasso.

``g_dec``, ``g_ae-lasso`` and ``g_ae-ls`` (Tolooshams & Ba, TMLR 2023, Alg. 2, eq. 7) at T = 100
layers, float32, through :func:`udlbench.gradients.estimate`; the two back-propagations of the
autoencoder gradients, autograd's tape and the adjoint recursion of :mod:`udlbench.kernel`, are
separate columns so that their ratio reads off the table. The certified lasso
(:func:`udlbench.lasso.solve`, Beck & Teboulle's FISTA with a KKT-certified polish, TMLR 2023,
Lemma A.3) is the reference every accuracy number is measured against.
"""

from __future__ import annotations

import torch

from udlbench import gradients, lasso

from .common import ALPHA, CASE_LABELS, LAM, N_LAYERS, TIMEOUT, pin_threads, problem, synchronize


class GradientEstimate:
    """The (m, p) gradient of one estimator on a batch X (n, m) at D0 (m, p).

    ``dec`` does not back-propagate (z_T is held constant), so it is timed once, in the
    ``autograd`` column; its ``adjoint`` entry is skipped.
    """

    params = [CASE_LABELS, list(gradients.ESTIMATORS), ["autograd", "adjoint"]]
    param_names = ["case", "estimator", "backward"]
    timeout = TIMEOUT

    def setup(self, label, estimator, backward):
        if estimator == "dec" and backward == "adjoint":
            raise NotImplementedError("g_dec has no backward pass")
        pin_threads()
        self.problem = problem(label, dtype=torch.float32)

    def _estimate(self, estimator, backward):
        grad = gradients.estimate(estimator, self.problem.X, self.problem.D0, lam=LAM,
                                  n_layers=N_LAYERS, alpha=ALPHA, backward=backward,
                                  check_step=False)
        synchronize(grad.device)
        return grad

    def time_estimate(self, label, estimator, backward):
        self._estimate(estimator, backward)

    def peakmem_estimate(self, label, estimator, backward):
        self._estimate(estimator, backward)


class LassoSolve:
    """Certified lasso codes (n, p) of X (n, m) under D0 (m, p), computed in float64."""

    params = [CASE_LABELS]
    param_names = ["case"]
    timeout = TIMEOUT

    def setup(self, label):
        pin_threads()
        self.problem = problem(label, dtype=torch.float32)

    def _solve(self):
        Z = lasso.solve(self.problem.X, self.problem.D0, lam=LAM)
        synchronize(Z.device)
        return Z

    def time_solve(self, label):
        self._solve()

    def peakmem_solve(self, label):
        self._solve()
