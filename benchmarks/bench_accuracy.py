"""Accuracy that must not regress, in float64 on fixed seeds (asv ``track_``; lower is better).

* the relative dictionary error ``||D - D*||_2 / ||D*||_2`` after alignment
  (:func:`udlbench.metrics.dictionary_error`; Tolooshams & Ba, TMLR 2023, App. C) after
  ``N_STEPS`` full-batch updates of each method from ``D0 = perturb(D*, tau_B)``;
* the fitted linear rate ``rho_hat`` of ISTA (TMLR 2023, Thm. 4.3: ``||z_t - z_hat|| = O(rho^t)``
  once the support is found), :mod:`udlbench.rates` on the iterates' distance to the certified
  lasso solution over the window ``t >= B + 5`` (THEOREMS.md Sec. 0.7);
* the relative error ``||g - g_hat||_F / ||g_hat||_F`` of the ae-ls gradient (and, as the
  control that goes to 0 with T, the ae-lasso gradient) at T layers against the oracle direction
  at the lasso codes (TMLR 2023, eqs. 4 and 7). ae-ls keeps a bias as T grows, its plateau
  ``J_hat^T grad_1 L(z_hat)`` (THEOREMS.md, P-T4.9), so its number is the plateau, not 0.
"""

from __future__ import annotations

import torch

from udlbench import gradients, lasso, metrics, rates
from udlbench.encoders import unroll

from .common import ALPHA, CASE_LABELS, LAM, METHODS, TIMEOUT, learner, pin_threads, problem

N_STEPS = 20
RATE_SAMPLES = 20
RATE_LAYERS = 1000


class DictionaryError:
    """Relative spectral error of the dictionary after ``N_STEPS`` updates of each method."""

    params = [CASE_LABELS, list(METHODS)]
    param_names = ["case", "method"]
    timeout = TIMEOUT
    unit = "relative error"

    def setup(self, label, method):
        pin_threads()
        self.problem = problem(label, dtype=torch.float64)

    def track_dictionary_error(self, label, method):
        data = self.problem
        model = learner(method, max_steps=N_STEPS).fit(data.X, data.D0)
        return metrics.dictionary_error(model.dictionary_, data.D_star, norm="spectral")


class EncoderRate:
    """``rho_hat = exp(slope)`` of ``log ||Z_t - Z_hat||_F`` against t for ISTA at D0."""

    params = [CASE_LABELS]
    param_names = ["case"]
    timeout = TIMEOUT
    unit = "contraction per layer"

    def setup(self, label):
        pin_threads()
        self.problem = problem(label, dtype=torch.float64, n=RATE_SAMPLES)

    def track_ista_rate(self, label):
        data = self.problem
        Z_hat = lasso.solve(data.X, data.D0, lam=LAM)
        with torch.no_grad():
            iterates = unroll(data.X, data.D0, lam=LAM, n_layers=RATE_LAYERS, alpha=ALPHA,
                              trace=True, check_step=False)
        errors = torch.linalg.vector_norm(iterates - Z_hat, dim=(1, 2)).cpu()
        settled = int(rates.settle_times(iterates, Z_hat).max())
        floor = 1e-12 * float(torch.linalg.vector_norm(Z_hat))
        fit = rates.fit_window(errors, start=settled + 5, floor=floor)
        if fit is None:
            raise RuntimeError(
                f"ISTA's support settles at t = {settled} of {RATE_LAYERS} layers: too late for "
                "a rate window of 8 points; raise RATE_LAYERS."
            )
        return fit.rate


class GradientError:
    """``||g - g_hat||_F / ||g_hat||_F`` at D0 for g_ae-ls and g_ae-lasso, T in {25, 100}."""

    params = [CASE_LABELS, ["ae-ls", "ae-lasso"], [25, 100]]
    param_names = ["case", "estimator", "n_layers"]
    timeout = TIMEOUT
    unit = "relative error"

    def setup(self, label, estimator, n_layers):
        pin_threads()
        self.problem = problem(label, dtype=torch.float64)
        self.g_hat = gradients.oracle("hat", self.problem.X, self.problem.D0, lam=LAM)

    def track_gradient_error(self, label, estimator, n_layers):
        data = self.problem
        g = gradients.estimate(estimator, data.X, data.D0, lam=LAM, n_layers=n_layers,
                               alpha=ALPHA, check_step=False)
        error = torch.linalg.vector_norm(g - self.g_hat) / torch.linalg.vector_norm(self.g_hat)
        return float(error)
