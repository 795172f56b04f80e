"""The unrolled kernel (udlbench.kernel): Gram vs direct form, and the adjoint backward pinned to
autograd (Tolooshams & Ba, TMLR 2023, eq. 7; Malezieux et al., ICLR 2022, Prop. 2.2)."""

import itertools
import logging

import pytest
import torch

from udlbench import gradients, kernel
from udlbench.data import make_sparse, perturb
from udlbench.dictionaries import Convolutional
from udlbench.encoders import unroll
from udlbench.throughput import saved_bytes

pytestmark = pytest.mark.fast

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def _problem(dtype, m=30, p=50, n=40, seed=0):
    data = make_sparse(m, p, n, 3, seed=seed, dtype=dtype)
    return data.X, perturb(data.D_star, 0.3, seed=seed)


def _grads(X, D, backward, z0=None, lam=0.1, **options):
    W = D.clone().requires_grad_(True)
    Xr = X.clone().requires_grad_(True)
    leaves = [W, Xr]
    if z0 is not None:
        z0 = z0.clone().requires_grad_(True)
        leaves.append(z0)
    z = unroll(Xr, W, lam=lam, z0=z0, backward=backward, **options)
    loss = 0.5 * ((Xr - z @ W.T) ** 2).sum() + lam * z.abs().sum()
    return z.detach(), torch.autograd.grad(loss, leaves, allow_unused=True)


def _relative(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(a))


CASES = list(
    itertools.product(["soft", "hard", "relu"], [False, True], ["direct", "gram"], [None, 7])
)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("prox", "accelerate", "form", "depth"), CASES)
def test_adjoint_backward_equals_autograd(dtype, prox, accelerate, form, depth):
    """Gradients in D, X and z0 of the lasso loss at z_T: adjoint = autograd to 1e-10 (float64)
    and 1e-4 (float32) relative, for every element-wise prox, ISTA and FISTA, both forms, full
    and truncated depth, with a decaying lam (lam_t = lam 0.97^t)."""
    X, D = _problem(dtype)
    z0 = 0.01 * torch.randn(X.shape[0], D.shape[1], dtype=dtype, generator=torch.Generator()
                            .manual_seed(1))
    options = dict(n_layers=20, prox=prox, accelerate=accelerate, form=form,
                   backprop_depth=depth, lam_decay=0.97)
    z_ref, ref = _grads(X, D, "autograd", z0=z0, **options)
    z_adj, adj = _grads(X, D, "adjoint", z0=z0, **options)
    assert torch.equal(z_ref, z_adj) or _relative(z_ref, z_adj) < TOL[dtype]
    for name, a, b in zip(("D", "X", "z0"), ref, adj, strict=True):
        if depth is not None and name == "z0":  # truncated: z0 is outside the graph
            assert a is None and b is None
            continue
        assert _relative(a, b) < TOL[dtype], name


def test_adjoint_backward_control_detects_a_wrong_mask():
    """Negative control: the same comparison fails when the adjoint runs with the soft mask but
    the forward is hard thresholding (a wrong Jacobian is caught at the 1e-10 tolerance)."""
    X, D = _problem(torch.float64)
    _, ref = _grads(X, D, "autograd", n_layers=20, prox="hard", lam=0.3)
    thresholds = [0.3 / torch.linalg.matrix_norm(D, ord=2).item() ** 2] * 20
    W = D.clone().requires_grad_(True)
    alpha = thresholds[0] / 0.3
    z0 = torch.zeros(X.shape[0], D.shape[1], dtype=X.dtype)
    z = kernel.UnrolledAdjoint.apply(X, W, z0, z0, thresholds, alpha, "soft", None, "direct", 0.0)
    loss = 0.5 * ((X - z @ W.T) ** 2).sum() + 0.3 * z.abs().sum()
    (wrong,) = torch.autograd.grad(loss, W)
    assert _relative(ref[0], wrong) > 1e-3


def test_gram_and_direct_forms_agree():
    X, D = _problem(torch.float64)
    for accelerate in (False, True):
        direct = unroll(X, D, lam=0.1, n_layers=50, form="direct", accelerate=accelerate)
        gram = unroll(X, D, lam=0.1, n_layers=50, form="gram", accelerate=accelerate)
        assert _relative(direct, gram) < 1e-12


def test_plan_counts_and_choice():
    """Forward: direct 4nmpT, Gram 2p^2 m + 2nmp + 2np^2 T; Gram wins when p < 2m (for T large)."""
    n, m, p, T = 7, 5, 3, 4
    assert kernel.flops(n, m, p, T, form="direct") == 4 * n * m * p * T
    gram = 2 * p * p * m + 2 * n * m * p + 2 * n * p * p * T
    assert kernel.flops(n, m, p, T, form="gram") == gram
    assert kernel.plan(1000, 1000, 1500, 100).form == "gram"
    assert kernel.plan(1000, 50, 400, 100).form == "direct"
    both = kernel.plan(1000, 50, 100, 100, backward=True)
    assert both.flops == min(both.flops_direct, both.flops_gram)
    with pytest.raises(ValueError, match="form"):
        kernel.flops(1, 1, 1, 1, form="dense")


def test_auto_form_is_logged(caplog):
    X, D = _problem(torch.float64)
    with caplog.at_level(logging.DEBUG, logger="udlbench.encoders"):
        unroll(X, D, lam=0.1, n_layers=3)
    assert any("form" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("form", ["direct", "gram"])
def test_adjoint_keeps_at_most_a_quarter_of_autograds_memory(form):
    """Memory target of the kernel: saved-for-backward bytes of the adjoint are <= 1/4 of
    autograd's at T = 100 (exact byte count through saved_tensors_hooks, float32)."""
    X, D = _problem(torch.float32, m=60, p=90, n=200)
    W = D.clone().requires_grad_(True)
    run = lambda backward: unroll(X, W, lam=0.1, n_layers=100, form=form, backward=backward)
    ratio = saved_bytes(lambda: run("adjoint")) / saved_bytes(lambda: run("autograd"))
    assert ratio <= 0.25


def test_backward_auto_uses_adjoint_only_when_it_applies():
    X, D = _problem(torch.float64)
    W = D.clone().requires_grad_(True)
    z = unroll(X, W, lam=0.1, n_layers=5, backward="auto")
    assert type(z.grad_fn).__name__.startswith("UnrolledAdjoint")
    group = unroll(X[:, :30], W[:, :50], lam=0.1, n_layers=5, prox="group", group_size=5,
                   backward="auto")
    assert not type(group.grad_fn).__name__.startswith("UnrolledAdjoint")
    with torch.no_grad():
        assert unroll(X, W, lam=0.1, n_layers=5, backward="auto").grad_fn is None


def test_adjoint_refuses_what_it_does_not_cover():
    X, D = _problem(torch.float64)
    with pytest.raises(ValueError, match="element-wise prox"):
        unroll(X, D, lam=0.1, n_layers=3, prox="group", group_size=5, backward="adjoint")
    with pytest.raises(ValueError, match="trace=False"):
        unroll(X, D, lam=0.1, n_layers=3, trace=True, backward="adjoint")
    with pytest.raises(ValueError, match="backward"):
        unroll(X, D, lam=0.1, n_layers=3, backward="tape")
    filters = torch.randn(4, 1, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match='form="gram"'):
        unroll(torch.randn(2, 1, 20, dtype=torch.float64), Convolutional(filters), lam=0.1,
               n_layers=3, form="gram")


def test_adjoint_is_not_twice_differentiable():
    X, D = _problem(torch.float64)
    W = D.clone().requires_grad_(True)
    z = unroll(X, W, lam=0.1, n_layers=5, backward="adjoint")
    (grad,) = torch.autograd.grad(0.5 * (z**2).sum(), W, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(grad.sum(), W)


@pytest.mark.parametrize("kind", ["ae-ls", "ae-lasso"])
def test_estimate_backward_options_agree(kind):
    X, D = _problem(torch.float64)
    auto = gradients.estimate(kind, X, D, lam=0.1, n_layers=30)
    tape = gradients.estimate(kind, X, D, lam=0.1, n_layers=30, backward="autograd")
    assert _relative(tape, auto) < 1e-10
    with pytest.raises(ValueError, match="backward"):
        gradients.estimate(kind, X, D, lam=0.1, n_layers=30, backward="tape")


@pytest.mark.parametrize("density", [0.02, 0.5])
def test_product_through_the_support_equals_the_dense_product(density, monkeypatch):
    monkeypatch.setattr(kernel, "SPARSE_MIN_COLUMNS", 1)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 60, generator=g, dtype=torch.float64)
    a = a * (torch.rand(40, 60, generator=g, dtype=torch.float64) < density)
    B = torch.randn(60, 30, generator=g, dtype=torch.float64)
    for sparse_below in (0.0, 1.0):
        assert _relative(a @ B, kernel.product(a, B, sparse_below)) < 1e-14
        assert _relative(a.T @ a, kernel.product(a.T, a, sparse_below)) < 1e-14


@pytest.mark.parametrize("accelerate", [False, True])
def test_adjoint_through_the_support_equals_autograd(accelerate, monkeypatch):
    """The same pin with every product taken through the iterates' support (sparse_below=1)."""
    monkeypatch.setattr(kernel, "SPARSE_MIN_COLUMNS", 1)
    X, D = _problem(torch.float64)
    _, ref = _grads(X, D, "autograd", n_layers=20, accelerate=accelerate, form="gram")
    alpha = 1 / torch.linalg.matrix_norm(D, ord=2).item() ** 2
    betas = kernel.momentum_weights(20) if accelerate else None
    W = D.clone().requires_grad_(True)
    Xr = X.clone().requires_grad_(True)
    z0 = torch.zeros(X.shape[0], D.shape[1], dtype=X.dtype)
    z = kernel.UnrolledAdjoint.apply(Xr, W, z0, z0, [0.1 * alpha] * 20, alpha, "soft", betas,
                                     "gram", 1.0)
    loss = 0.5 * ((Xr - z @ W.T) ** 2).sum() + 0.1 * z.abs().sum()
    for a, b in zip(ref, torch.autograd.grad(loss, (W, Xr)), strict=False):
        assert _relative(a, b) < 1e-10
