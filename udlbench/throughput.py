"""Throughput of the unrolled kernel against the machine's own matrix-product rate.

The performance target of the kernel (forward + backward of the encoder at m = 1000, p = 1500,
T = 100) is stated as a fraction of the float32 matrix-product rate of the same machine, measured
in the same run with the same threads. Two FLOP counts are reported:

* ``dense_flops``: the direct dense count, forward ``4nmpT`` (two products with D per layer) and
  backward ``8nmpT`` (each product's two adjoint products), i.e. what a plain autograd loop does;
  this is the count of the issue's reference (225 GFLOP/s forward, 178 forward + backward);
* ``kernel_flops``: what the chosen kernel plans to do (:func:`udlbench.kernel.flops`; the Gram
  form and the support path do less work, so their effective rate can exceed the product rate).

``saved_mb`` is the memory autograd keeps for the backward (exact, via saved-tensor hooks).
Timings are the median of ``repeats`` runs after one untimed warm-up, with a CUDA synchronisation
before each clock reading on GPU.
"""

from __future__ import annotations

import statistics

import pandas as pd
import torch

from udlbench import kernel
from udlbench.data import make_sparse, perturb
from udlbench.encoders import unroll
from udlbench.linalg import lipschitz_constant
from udlbench.training import clock

VARIANTS = {
    "autograd, direct form": {"backward": "autograd", "form": "direct"},
    "autograd, auto form": {"backward": "autograd", "form": "auto"},
    "adjoint, auto form": {"backward": "adjoint", "form": "auto"},
}


def _median_time(fn, device: torch.device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = clock(device)
        fn()
        times.append(clock(device) - start)
    return statistics.median(times)


def matmul_rate(*, size: int = 4096, device: str = "cpu", repeats: int = 3) -> float:
    """FLOP/s of a float32 ``size x size`` matrix product (2 size^3 FLOPs)."""
    device = torch.device(device)
    g = torch.Generator().manual_seed(0)
    A = torch.randn(size, size, generator=g).to(device)
    B = torch.randn(size, size, generator=g).to(device)
    return 2 * size**3 / _median_time(lambda: A @ B, device, repeats)


def saved_bytes(fn) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward of ``fn()`` (counted once per
    storage, through ``torch.autograd.graph.saved_tensors_hooks``)."""
    seen = {}

    def pack(t):
        seen[(t.untyped_storage().data_ptr(), t.dtype)] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def measure(
    *, m: int = 1000, p: int = 1500, n: int = 500, s: int = 20, n_layers: int = 100,
    lam: float = 0.2, device: str = "cpu", repeats: int = 3, seed: int = 0,
) -> pd.DataFrame:
    """Forward + backward of ``0.5 ||x - D z_T||^2`` in D for each of :data:`VARIANTS` at
    ``D = perturb(D*, 1/ln m)`` (float32), next to the matrix-product rate; one row each."""
    dev = torch.device(device)
    problem = make_sparse(m, p, n, s, seed=seed, dtype=torch.float32, device=dev)
    D0 = perturb(problem.D_star, 1.0 / torch.log(torch.tensor(float(m))).item(), seed=seed + 1)
    X = problem.X
    alpha = 1.0 / lipschitz_constant(D0)
    rate = matmul_rate(device=device, repeats=repeats)
    dense = 12 * n * m * p * n_layers
    rows = []
    for label, options in VARIANTS.items():
        def step(options=options):
            W = D0.clone().requires_grad_(True)
            z = unroll(X, W, lam=lam, n_layers=n_layers, alpha=alpha, check_step=False,
                       **options)
            loss = 0.5 * ((X - z @ W.T) ** 2).sum()
            loss.backward()
            return z

        def forward_only(options=options):
            W = D0.clone().requires_grad_(True)
            return unroll(X, W, lam=lam, n_layers=n_layers, alpha=alpha, check_step=False,
                          **options)

        seconds = _median_time(step, dev, repeats)
        density = float((step() != 0).float().mean())
        form = kernel.plan(n, m, p, n_layers, backward=True).form
        form = options["form"] if options["form"] != "auto" else form
        planned = kernel.flops(n, m, p, n_layers, form=form, backward=True)
        rows.append({
            "variant": label, "form": form, "m": m, "p": p, "n": n, "n_layers": n_layers,
            "threads": torch.get_num_threads(), "device": str(dev),
            "seconds": seconds,
            "dense_gflops_per_s": dense / seconds / 1e9,
            "kernel_gflops_per_s": planned / seconds / 1e9,
            "matmul_gflops_per_s": rate / 1e9,
            "dense_fraction_of_matmul": dense / seconds / rate,
            "saved_mb": saved_bytes(forward_only) / 2**20,
            "final_code_density": density,
        })
    table = pd.DataFrame(rows)
    reference = table.loc[table["variant"] == "autograd, direct form"].iloc[0]
    table["speedup_vs_autograd_direct"] = reference["seconds"] / table["seconds"]
    table["saved_fraction_of_autograd"] = table["saved_mb"] / reference["saved_mb"]
    return table


__all__ = ["VARIANTS", "matmul_rate", "measure", "saved_bytes"]
