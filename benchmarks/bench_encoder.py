"""Forward pass of the unrolled encoders: T layers of ISTA / FISTA on a batch, float32, no graph.

``z_{t+1} = S_{alpha lam}(y_t - alpha D^T (D y_t - x))`` (Tolooshams & Ba, TMLR 2023, Alg. 2,
eq. 6; FISTA's extrapolation ``y_t`` after Beck & Teboulle, 2009), the inference path of
:func:`udlbench.encoders.unroll` (``form="auto"``, sparse products through late iterates).
"""

from __future__ import annotations

import torch

from udlbench.encoders import unroll

from .common import ALPHA, CASE_LABELS, LAM, TIMEOUT, pin_threads, problem, synchronize


class EncoderForward:
    """``z_T`` (n, p) from X (n, m) and D (m, p) for T in {25, 100}."""

    params = [CASE_LABELS, ["ista", "fista"], [25, 100]]
    param_names = ["case", "encoder", "n_layers"]
    timeout = TIMEOUT

    def setup(self, label, encoder, n_layers):
        pin_threads()
        self.problem = problem(label, dtype=torch.float32)
        self.accelerate = encoder == "fista"

    def _forward(self, n_layers):
        with torch.no_grad():
            z = unroll(self.problem.X, self.problem.D0, lam=LAM, n_layers=n_layers,
                       alpha=ALPHA, accelerate=self.accelerate, check_step=False)
        synchronize(z.device)
        return z

    def time_forward(self, label, encoder, n_layers):
        self._forward(n_layers)

    def peakmem_forward(self, label, encoder, n_layers):
        self._forward(n_layers)
