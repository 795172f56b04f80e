"""Dictionary-learning loops behind one interface: PUDLE (Tolooshams & Ba, TMLR 2023, Alg. 2) and
alternating minimisation with exact lasso codes (Alg. 1).

Every learner is constructed with its options, then
``fit(X, D0, *, D_star=None, Z_star=None, callback=None)`` runs and records one row every
``record_every`` steps (and after the last) in ``records_`` (a pandas DataFrame: ``step``,
``epoch``, ``loss``, ``time`` = cumulative wall time of the updates alone; with ``D_star`` the
relative dictionary errors ``error_spectral`` and ``error_fro`` after alignment; with ``Z_star``
too the relative code error ``error_code`` of ``code(X, D)`` against the true codes, with the
atoms' order and signs of the alignment). Row 0 is the initial dictionary. The clock is paused
while metrics are evaluated; on CUDA it is read after a synchronisation. ``callback(record, D)``
is called with each recorded row and the current dictionary (read-only) and may stop training by
returning True.
``encode(X)`` returns codes with the learned dictionary.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
import torch

from udlbench import encoders, gradients, lasso, metrics
from udlbench._validation import (
    check_choice,
    check_codes,
    check_data,
    check_dictionary,
    check_nonnegative,
    check_positive_int,
)
from udlbench.data import normalize_columns, project_columns

Callback = Callable[[dict, torch.Tensor], bool | None]
CONSTRAINTS = {"sphere": normalize_columns, "ball": project_columns}
OPTIMIZERS = ("adam", "sgd")


class DictionaryLearner:
    """Shared fit loop: mini-batches, optimiser, atom constraint, timing and records.

    Subclasses implement :meth:`code` (the codes of a batch under a dictionary) and either
    :meth:`gradient` (the update direction and the batch loss at D, applied by the optimiser and
    followed by the atom constraint) or, for methods that are not gradient steps, :meth:`update`
    (with :meth:`start` to reset per-fit state such as sufficient statistics).
    """

    def __init__(
        self,
        *,
        lr: float,
        n_epochs: int = 10,
        batch_size: int | None = None,
        optimizer: str = "adam",
        adam_eps: float = 1e-3,
        constraint: str = "sphere",
        max_steps: int | None = None,
        record_every: int = 1,
        seed: int = 0,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0; got {lr!r}.")
        self.lr = float(lr)
        self.n_epochs = check_positive_int("n_epochs", n_epochs)
        self.batch_size = (
            None if batch_size is None else check_positive_int("batch_size", batch_size)
        )
        self.optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
        self.adam_eps = check_nonnegative("adam_eps", adam_eps)
        self.constraint = check_choice("constraint", constraint, list(CONSTRAINTS))
        self.max_steps = None if max_steps is None else check_positive_int("max_steps", max_steps)
        self.record_every = check_positive_int("record_every", record_every)
        self.seed = int(seed)

    def gradient(self, X: torch.Tensor, D: torch.Tensor, step: int) -> tuple[torch.Tensor, float]:
        """The update direction at D for the batch X (n, m), and the batch loss."""
        raise NotImplementedError(f"{type(self).__name__} implements neither gradient nor update.")

    def code(self, X: torch.Tensor, D: torch.Tensor, step: int) -> torch.Tensor:
        """Codes (n, p) of X (n, m) under D as the learner computes them at update ``step``."""
        raise NotImplementedError

    def start(self, X: torch.Tensor, D: torch.nn.Parameter) -> None:
        """Reset per-fit state before the first update; the default builds the optimiser."""
        self._optimizer = (
            torch.optim.Adam([D], lr=self.lr, eps=self.adam_eps)
            if self.optimizer == "adam"
            else torch.optim.SGD([D], lr=self.lr)
        )

    def update(self, X: torch.Tensor, D: torch.nn.Parameter, step: int) -> float:
        """Move D in place using the batch X and return the batch loss: by default one step of
        the optimiser along :meth:`gradient`, then the atom constraint."""
        grad, loss = self.gradient(X, D.detach(), step)
        D.grad = grad
        self._optimizer.step()
        with torch.no_grad():
            D.copy_(CONSTRAINTS[self.constraint](D))
        return loss

    def encode(self, X: torch.Tensor) -> torch.Tensor:
        """Codes (n, p) of X (n, m) with the learned dictionary."""
        if not hasattr(self, "dictionary_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(X, D0) first.")
        check_data(X, self.dictionary_)
        with torch.no_grad():
            return self.code(X, self.dictionary_, max(self.n_updates_ - 1, 0))

    def extra_record(self, step: int) -> dict:
        """Per-step values a learner adds to its records (e.g. the decay factor)."""
        return {}

    def check_start(self, X: torch.Tensor, D0: torch.Tensor) -> None:
        """Validate the learner's options against the data before the first step."""

    def fit(
        self,
        X: torch.Tensor,
        D0: torch.Tensor,
        *,
        D_star: torch.Tensor | None = None,
        Z_star: torch.Tensor | None = None,
        callback: Callback | None = None,
    ) -> DictionaryLearner:
        """Learn a dictionary from samples X (n, m) starting at D0 (m, p).

        ``D_star`` (m, p) adds the dictionary errors to the records; ``Z_star`` (n, p), the
        true codes of X, adds the code error and needs ``D_star`` for the atoms' alignment.
        """
        check_dictionary(D0, name="D0")
        check_data(X, D0)
        if D_star is not None:
            check_dictionary(D_star, name="D_star")
            if D_star.shape != D0.shape:
                raise ValueError(
                    f"D_star has shape {tuple(D_star.shape)} but D0 has {tuple(D0.shape)}."
                )
        if Z_star is not None:
            if D_star is None:
                raise ValueError("Z_star needs D_star: the code error aligns atoms to D_star.")
            check_codes(Z_star, X, D0, name="Z_star")
        project = CONSTRAINTS[self.constraint]
        D = torch.nn.Parameter(project(D0.detach().clone()))
        self.check_start(X, D.detach())
        self.start(X, D)
        n = X.shape[0]
        batch = n if self.batch_size is None else min(self.batch_size, n)
        generator = torch.Generator().manual_seed(self.seed)
        records: list[dict] = []
        elapsed = 0.0

        def record(step: int, epoch: int, loss: float) -> bool:
            row = {"step": step, "epoch": epoch, "loss": loss, "time": elapsed}
            row.update(self.extra_record(max(step - 1, 0)))  # the update that produced D
            if D_star is not None:
                with torch.no_grad():
                    row["error_spectral"] = metrics.dictionary_error(D, D_star, norm="spectral")
                    row["error_fro"] = metrics.dictionary_error(D, D_star, norm="fro")
                    if Z_star is not None:
                        row["error_code"] = _code_error(
                            self.code(X, D.detach(), max(step - 1, 0)), D.detach(), D_star, Z_star
                        )
            records.append(row)
            return bool(callback(row, D.detach())) if callback is not None else False

        stop = record(0, 0, float("nan"))
        step = 0
        for epoch in range(1, self.n_epochs + 1):
            order = torch.randperm(n, generator=generator).to(X.device) if batch < n else None
            for start in range(0, n, batch):
                if stop or (self.max_steps is not None and step >= self.max_steps):
                    break
                X_batch = X if order is None else X[order[start : start + batch]]
                tic = clock(X.device)
                loss = self.update(X_batch, D, step)
                elapsed += clock(X.device) - tic
                step += 1
                if step % self.record_every == 0:
                    stop = record(step, epoch, loss)
            if stop or (self.max_steps is not None and step >= self.max_steps):
                break
        if records[-1]["step"] != step:
            record(step, epoch, loss)
        self.dictionary_ = D.detach().clone()
        self.n_updates_ = step
        self.records_ = pd.DataFrame.from_records(records)
        return self


def _code_error(
    Z: torch.Tensor, D: torch.Tensor, D_star: torch.Tensor, Z_star: torch.Tensor
) -> float:
    """``||Z_aligned - Z*||_F / ||Z*||_F`` with the atom order and signs matching D to D_star."""
    alignment = metrics.align(D, D_star)
    Z_aligned = Z[:, alignment.permutation.to(Z.device)] * alignment.signs.to(Z)
    return float(torch.linalg.vector_norm(Z_aligned - Z_star) / torch.linalg.vector_norm(Z_star))


def clock(device: torch.device) -> float:
    """``time.perf_counter()`` read after a synchronisation of ``device`` when it is a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class PUDLE(DictionaryLearner):
    """Provable unrolled dictionary learning (Tolooshams & Ba, TMLR 2023, Algorithm 2).

    Each step encodes the batch with T unrolled ISTA (or FISTA) layers and moves D along one of
    the gradients of eq. 7 (``estimator`` in {"dec", "ae-lasso", "ae-ls"}), then renormalises the
    atoms. ``lam_decay`` is a fixed factor nu (``lam_t = lam nu^t``) or a function of the step
    returning nu, e.g. ``functools.partial(udlbench.operators.nu_at_step)`` for the paper's
    "decrease nu by 0.005 every 100 updates" (App. C.1). ``prox="hard"`` gives the HT variant.
    ``alpha=None`` re-computes ``1/sigma_max(D)^2`` at every step.
    """

    def __init__(
        self,
        *,
        lam: float = 0.2,
        n_layers: int = 100,
        alpha: float | None = None,
        estimator: str = "ae-ls",
        encoder: str = "ista",
        prox: str = "soft",
        lam_decay: float | Callable[[int], float] | None = None,
        group_size: int | None = None,
        backprop_depth: int | None = None,
        lr: float = 1e-3,
        **loop_options,
    ) -> None:
        super().__init__(lr=lr, **loop_options)
        self.lam = check_nonnegative("lam", lam)
        self.n_layers = check_positive_int("n_layers", n_layers)
        self.alpha = alpha
        self.estimator = check_choice("estimator", estimator, gradients.ESTIMATORS)
        self.encoder = check_choice("encoder", encoder, gradients.ENCODERS)
        self.prox = prox
        self.lam_decay = lam_decay
        self.group_size = group_size
        self.backprop_depth = backprop_depth

    def _nu(self, step: int) -> float | None:
        return self.lam_decay(step) if callable(self.lam_decay) else self.lam_decay

    def _encoder_options(self, step: int) -> dict:
        options = dict(prox=self.prox, lam_decay=self._nu(step), group_size=self.group_size)
        return {k: v for k, v in options.items() if v is not None}

    def extra_record(self, step: int) -> dict:
        nu = self._nu(step)
        return {} if nu is None else {"nu": nu}

    def check_start(self, X, D0):
        """One layer on one sample validates every encoder option, the step against 2/L included;
        the steps then skip the step check, which would cost an eigenvalue solve per update."""
        self._encode(X[:1], D0, self._encoder_options(0), n_layers=1)

    def gradient(self, X, D, step):
        grad, Z = gradients.estimate(
            self.estimator,
            X,
            D,
            lam=self.lam,
            n_layers=self.n_layers,
            alpha=self.alpha,
            encoder=self.encoder,
            backprop_depth=self.backprop_depth,
            return_codes=True,
            check_step=False,
            **self._encoder_options(step),
        )
        loss = 0.5 * ((X - Z @ D.T) ** 2).sum(1).mean()
        if self.estimator == "ae-lasso":
            loss = loss + self.lam * Z.abs().sum(1).mean()
        return grad, float(loss)

    def _encode(self, X, D, options, n_layers=None):
        run = encoders.fista if self.encoder == "fista" else encoders.ista
        n_layers = self.n_layers if n_layers is None else n_layers
        return run(X, D, lam=self.lam, n_layers=n_layers, alpha=self.alpha, **options)

    def code(self, X, D, step):
        """Codes ``z_T`` of X under D with the encoder of update ``step`` (its decay factor)."""
        with torch.no_grad():
            return self._encode(X, D, self._encoder_options(step))


class AlternatingMinimization(DictionaryLearner):
    """Alternating minimisation with exact lasso codes (Tolooshams & Ba, TMLR 2023, Algorithm 1).

    Each step solves the lasso for the batch with the certified solver
    (:func:`udlbench.lasso.solve`) and moves D along ``g_hat = mean (D z_hat - x) z_hat^T``.
    """

    def __init__(self, *, lam: float = 0.2, lr: float = 1e-3, **loop_options) -> None:
        super().__init__(lr=lr, **loop_options)
        self.lam = check_nonnegative("lam", lam)

    def gradient(self, X, D, step):
        Z = lasso.solve(X, D, lam=self.lam)
        loss = lasso.objective(X, D, Z, lam=self.lam).mean()
        return gradients.analytic(X, D, Z), float(loss)

    def code(self, X, D, step):
        """Certified lasso codes of X under D."""
        return lasso.solve(X, D, lam=self.lam)
