"""udlbench: benchmark and theorem-verification harness for unrolled dictionary learning.

Conventions shared by every module:

* Samples are rows. A data batch is ``X`` of shape ``(n, m)``, its sparse codes are ``Z`` of shape
  ``(n, p)``, and the dictionary is ``D`` of shape ``(m, p)`` with atoms as columns (the papers'
  ``D``), so that ``x ~ D z`` for one sample and ``X ~ Z @ D.T`` for a batch.
* The per-sample loss is ``L(x, z, D) = 0.5 * ||x - D z||_2^2`` and the regulariser is
  ``h(z) = lam * ||z||_1``.
* Gradients with respect to ``D`` are averaged over the samples of a batch, i.e. ``1/n`` times the
  sum written in Tolooshams & Ba (TMLR 2023, Algorithm 2).
* Functions work in float32 and float64, on CPU and CUDA, on batches, and take an explicit seed or
  ``torch.Generator`` wherever they draw random numbers.

Importing ``udlbench`` is light: it imports no submodule (and so not torch); import the modules you
need, e.g. ``from udlbench import operators``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("udlbench")
except PackageNotFoundError:
    __version__ = "0.1.0"

__all__ = ["__version__"]
