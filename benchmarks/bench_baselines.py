"""One dictionary update (``DictionaryLearner.update``) of each method on a full batch, float32.

PUDLE (Tolooshams & Ba, TMLR 2023, Alg. 2), alternating minimisation with certified lasso codes
(Alg. 1), NOODL (Rambhatla, Li & Haupt, ICLR 2019, Alg. 1), SPORCO's ADMM alternating
minimisation (Wohlberg, SciPy 2017) and online dictionary learning (Mairal et al., ICML 2009,
Algs. 1-2), with the settings of :func:`benchmarks.common.learner`. The setup re-runs before every
timed call (``number = 1``), so that each update starts from ``D0`` with fresh learner state.
"""

from __future__ import annotations

import torch

from .common import CASE_LABELS, METHODS, TIMEOUT, pin_threads, problem, started, synchronize


class DictionaryUpdate:
    """``D <- update(X, D)`` for X (n, m) and D (m, p), from ``D0``."""

    params = [CASE_LABELS, list(METHODS)]
    param_names = ["case", "method"]
    number = 1
    timeout = TIMEOUT

    def setup(self, label, method):
        pin_threads()
        data = problem(label, dtype=torch.float32)
        self.X = data.X
        self.model, self.D = started(method, data)

    def _update(self):
        loss = self.model.update(self.X, self.D, 0)
        synchronize(self.D.device)
        return loss

    def time_update(self, label, method):
        self._update()

    def peakmem_update(self, label, method):
        self._update()
