"""Interpretability of PUDLE on scikit-learn's digits (Tolooshams & Ba, TMLR 2023, Sec. 5,
Thm 5.1, eqs 17-19, Figs 7-10, App. C.4).

The paper trains PUDLE on MNIST digits 0-4 (m = 784, p = 500) and reads the dictionary through
Thm 5.1: with the converged codes Z~ fixed, the stationary dictionary of
``0.5 ||X - Z D^T||_F^2 + lam ||Z||_1 + (omega / 2) ||D||_F^2`` is ``D~ = X^T G^{-1} Z`` with
``G = Z Z^T + omega I`` (udlbench's row convention, :mod:`udlbench.interpretability`). MNIST cannot
be downloaded here; this study runs the same pipeline on the digits 0-4 of
:func:`sklearn.datasets.load_digits` (8 x 8 images, pixels / 16, m = 64) and never claims to
reproduce the paper's figures.

Data (:func:`load_digits_split`, fixed and documented): within each class, in the order
``load_digits`` returns the images, the last ``round(test_fraction * n_c)`` images form the test
set and the others the training set. With digits 0-4 and ``test_fraction = 0.2``: 721 training
and 180 test images. The split does not depend on the seed; the seed sets the initial dictionary
(Gaussian, unit atoms) and the mini-batch order.

Sizes rescaled from App. C.4 (T = 15, lam = 0.7, alpha = 1, p = 500, Adam lr 1e-4, batch 32,
200 epochs, omega = 1e-3):

* ``n_atoms = 40``: the paper's p / m = 500 / 784 = 0.64 times m = 64 (undercomplete, and far
  fewer atoms than the 721 training images, so that eq. 17 summarises the training set);
* ``lam = 0.3``: the paper's 0.7 times the ratio of the mean image norms, 3.87 for the digits
  (pixels / 16) against 9.37 for MNIST (pixels / 255: ``sqrt(784 (0.3081^2 + 0.1307^2))`` from
  MNIST's pixel mean and standard deviation), 0.7 x 0.41 = 0.29;
* ``alpha = None`` (``1 / sigma_max(D)^2`` at every step): alpha = 1 is above the stability
  limit 2 / L of unrolled ISTA for this p / m (L = 3.1 for the Gaussian start at p = 40, 7.8
  after training);
* ``omega = 1e-3`` as in the paper. The G-based quantities are computed in float64 whatever the
  training dtype: ``cond(G)`` is about 7e5 here, beyond float32's precision.

Checks done by :func:`run`: the exact dictionary step for the trained codes,
``D_exact = argmin_D 0.5 ||X - Z D^T||^2 + (omega / 2) ||D||^2`` (closed form,
:func:`udlbench.interpretability.ridge_dictionary`), zeroes the gradient and equals
``X^T G^{-1} Z`` of eq. 17; the trained dictionary (unit atoms, no omega in training) does not
(THEOREMS.md P-T5.1 (iii)).
"""

from __future__ import annotations

import html
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from udlbench import interpretability, linalg
from udlbench._validation import (
    check_nonnegative,
    check_option_keys,
    check_positive,
    check_positive_int,
)
from udlbench.data import normalize_columns
from udlbench.figures import save_figure
from udlbench.training import PUDLE

DIGITS_SCALE = 16.0  # load_digits pixels are integers 0..16
CLASSES = tuple(range(10))

QUICK: dict = {
    "classes": [0, 1, 2, 3, 4],
    "test_fraction": 0.2,
    "n_atoms": 40,
    "n_layers": 15,
    "lam": 0.3,
    "alpha": None,
    "lr": 1e-3,
    "n_epochs": 30,
    "batch_size": 32,
    "omega": 1e-3,
    "n_reconstruct": 24,
    "n_shown_atoms": 6,
    "n_shown_images": 5,
}
"""CPU profile: App. C.4's settings rescaled (module docstring) with 30 epochs at lr 1e-3
(about 3 s of training on one core)."""

FULL: dict = {**QUICK, "lr": 1e-4, "n_epochs": 200}
"""App. C.4's schedule: Adam lr 1e-4, batch 32, 200 epochs (on the digits, not MNIST)."""

OPTION_NAMES = tuple(QUICK)
COLUMNS = (
    "seed", "section", "metric", "epoch", "atom", "image", "label", "test_image", "test_label",
    "rank", "k", "pixel", "value",
)
INTEGER_COLUMNS = tuple(c for c in COLUMNS if c not in ("section", "metric", "value"))
RECONSTRUCTION_KS = (1, 2, 5, 10, 24, 50, 100, 200, 500)
"""Numbers of top-contributing training images the partial reconstructions of eq. 18 use (the
whole training set is added); 24 of 721 is the paper's 200 of 6000."""

PAPER = {
    "identity": "exact (Thm 5.1, analytic)",
    "top_beta": "above 1 for MNIST test images (Sec. 5)",
    "own_class": "one digit-2 test image: class 2 shifted most to the right (Fig. 10)",
}


@dataclass
class DigitsSplit:
    """A fixed train/test split of :func:`sklearn.datasets.load_digits` (pixels / 16).

    ``X_train`` (n_train, 64) and ``X_test`` (n_test, 64) tensors; ``y_train``, ``y_test`` their
    classes and ``train_index``, ``test_index`` their row indices in ``load_digits`` (int64
    arrays, increasing).
    """

    X_train: torch.Tensor
    X_test: torch.Tensor
    y_train: np.ndarray
    y_test: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    return images / DIGITS_SCALE, labels.astype(np.int64)


def _check_classes(classes: object) -> tuple[int, ...]:
    if (
        not isinstance(classes, list | tuple)
        or len(classes) < 2
        or len(set(classes)) != len(classes)
        or any(isinstance(c, bool) or c not in CLASSES for c in classes)
    ):
        raise ValueError(
            f"classes must be a list of at least 2 distinct digits from {list(CLASSES)}; "
            f"got {classes!r}."
        )
    return tuple(int(c) for c in classes)


def _check_fraction(test_fraction: object) -> float:
    value = check_positive("test_fraction", test_fraction)
    if value >= 1:
        raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction!r}.")
    return value


def load_digits_split(
    *,
    classes: list[int] | tuple[int, ...] = CLASSES,
    test_fraction: float = 0.2,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> DigitsSplit:
    """The digits of ``classes`` split by a fixed rule: within each class, in ``load_digits``
    order, the last ``round(test_fraction * n_c)`` images are test images, the rest training
    images.

    Parameters
    ----------
    classes : list of int
        At least two distinct digits in 0..9.
    test_fraction : float
        In (0, 1); every class keeps at least one image on each side.
    dtype, device
        Of the returned tensors.

    Returns
    -------
    DigitsSplit
        Images as rows of 64 pixels in [0, 1] (the 8 x 8 image in row-major order).
    """
    classes = _check_classes(classes)
    test_fraction = _check_fraction(test_fraction)
    images, labels = _digits()
    train, test = [], []
    for c in classes:
        members = np.flatnonzero(labels == c)
        n_test = min(max(int(round(test_fraction * members.size)), 1), members.size - 1)
        train.append(members[: members.size - n_test])
        test.append(members[members.size - n_test :])
    train_index, test_index = np.sort(np.concatenate(train)), np.sort(np.concatenate(test))

    def tensor(index):
        return torch.tensor(images[index], dtype=dtype, device=device)

    return DigitsSplit(tensor(train_index), tensor(test_index), labels[train_index],
                       labels[test_index], train_index, test_index)


def check(options: dict) -> None:
    """Raise ValueError naming the option, the value and what is allowed; every key of
    :data:`QUICK` is required and no other."""
    check_option_keys(options, OPTION_NAMES)
    _check_classes(options["classes"])
    _check_fraction(options["test_fraction"])
    for name in ("n_atoms", "n_layers", "n_epochs", "batch_size", "n_reconstruct",
                 "n_shown_atoms", "n_shown_images"):
        check_positive_int(name, options[name])
    for name in ("lam", "omega"):
        check_nonnegative(name, options[name])
    check_positive("lr", options["lr"])
    if options["omega"] == 0:
        raise ValueError("omega must be > 0 (Thm 5.1 needs G = Z Z^T + omega I invertible); got 0.")
    if options["alpha"] is not None:
        check_positive("alpha", options["alpha"])
    if options["n_shown_atoms"] > options["n_atoms"]:
        raise ValueError(
            f"n_shown_atoms must be <= n_atoms = {options['n_atoms']}; "
            f"got {options['n_shown_atoms']}."
        )


def check_dtype(dtype: object) -> None:
    """Raise ValueError unless ``dtype`` is torch.float32 or torch.float64."""
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64; got {dtype!r}.")


def initial_dictionary(m: int, p: int, *, seed: int, like: torch.Tensor) -> torch.Tensor:
    """Gaussian dictionary (m, p) with unit atoms, drawn in float64 on the CPU from ``seed`` and
    cast to the dtype and device of ``like`` (so that CPU and GPU runs start alike)."""
    generator = torch.Generator().manual_seed(seed)
    D0 = torch.randn(m, p, generator=generator, dtype=torch.float64)
    return normalize_columns(D0).to(like)


def stationarity(X: torch.Tensor, Z: torch.Tensor, D: torch.Tensor, *, omega: float) -> dict:
    """Thm 5.1 at the trained codes Z (n, p) of X (n, m), for a trained dictionary D (m, p).

    Returns the relative gradient ``||grad|| / ||X^T Z||`` of the omega-regularised objective at
    the exact dictionary step (``gradient_exact``, 0 to rounding) and at D
    (``gradient_trained``), the relative gap between the eq. 17 form ``X^T G^{-1} Z`` and the
    exact step (``gap_estimate_exact``), between D and ``X^T G^{-1} Z``
    (``gap_trained_estimate``, THEOREMS.md P-T5.1 (iii)), and ``cond(G)``
    (``gram_condition``). Computed in float64.
    """
    X, Z, D = (t.detach().to(torch.float64) for t in (X, Z, D))
    exact = interpretability.ridge_dictionary(X, Z, omega=omega)
    estimate = interpretability.stationary_dictionary(X, Z, omega=omega)
    scale = float(torch.linalg.matrix_norm(X.T @ Z))

    def gradient(W):
        residual = interpretability.ridge_gradient(X, Z, W, omega=omega)
        return float(torch.linalg.matrix_norm(residual))

    eigenvalues = torch.linalg.eigvalsh(interpretability.code_gram(Z, omega=omega))
    return {
        "gradient_exact": gradient(exact) / scale,
        "gradient_trained": gradient(D) / scale,
        "gap_estimate_exact": float(torch.linalg.matrix_norm(estimate - exact)
                                    / torch.linalg.matrix_norm(exact)),
        "gap_trained_estimate": float(torch.linalg.matrix_norm(D - estimate)
                                      / torch.linalg.matrix_norm(D)),
        "gram_condition": float(eigenvalues[-1] / eigenvalues[0]),
    }


def partial_reconstruction(beta: torch.Tensor, X: torch.Tensor, k: int) -> torch.Tensor:
    """Eq. 18 restricted to the k training images of largest ``beta_k``: rows
    ``sum_{k in top} beta_k x^k`` (n_test, m) for weights beta (n_test, n) and training images
    X (n, m); k = n gives the full ``X^T beta`` (TMLR 2023, Fig. 9 and App. C.4)."""
    check_positive_int("k", k)
    if k > beta.shape[1]:
        raise ValueError(f"k must be <= the number of training images {beta.shape[1]}; got {k}.")
    values, index = torch.topk(beta, k, dim=1)
    return torch.einsum("jk,jkm->jm", values, X[index])


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"[digits_interpretability] {message}", file=sys.stderr, flush=True)


def tidy_rows(section: str, metric: str, value, **columns) -> pd.DataFrame:
    """A block of the tidy table; array-valued columns broadcast against ``value``."""
    value = np.atleast_1d(np.asarray(value, dtype=np.float64))
    frame = {"section": section, "metric": metric, "value": value.ravel()}
    for name, column in columns.items():
        frame[name] = np.broadcast_to(np.asarray(column), value.shape).ravel()
    return pd.DataFrame(frame)


def _tidy(blocks: list[pd.DataFrame], seed: int) -> pd.DataFrame:
    table = pd.concat(blocks, ignore_index=True)
    table["seed"] = seed
    for column in COLUMNS:
        if column not in table:
            table[column] = pd.NA
    table = table[list(COLUMNS)]
    return table.astype({c: "Int64" for c in INTEGER_COLUMNS})


def run(
    options: dict, *, seed: int, dtype: torch.dtype, device: str, progress: bool = False
) -> pd.DataFrame:
    """Train PUDLE on the digits and read it through Thm 5.1 and eqs 17-19, for one seed.

    Steps: train PUDLE (T unrolled ISTA layers, ae-ls gradient, Adam, unit atoms) on the training
    split; encode the training images (Z~, n x p) and the test images (z_hat); then in float64
    the checks of Thm 5.1 (:func:`stationarity`), the atoms and their eq. 17 estimates
    ``X^T G^{-1} w_j``, the training images of highest and lowest contribution
    ``(G^{-1} w_j)_k`` for the most used atoms (Fig. 8), the weights ``beta = G^{-1} Z~ z_hat``
    and the reconstructions from the top-k of them (eq. 18, Fig. 9) and the code similarities
    ``<z~^k, z_hat>`` by class (eq. 19, Fig. 10).

    Parameters
    ----------
    options : dict
        Every key of :data:`QUICK` (see :func:`check`).
    seed : int
        Sets the initial dictionary and the mini-batch order; same seed, same table.
    dtype : torch.float32 or torch.float64
        Of the training; the Thm 5.1 quantities are computed in float64.
    device : str
        Torch device of the training and the linear algebra.
    progress : bool
        Print the stages to stderr.

    Returns
    -------
    pandas.DataFrame
        Long format, one row per recorded number, columns :data:`COLUMNS`: ``seed``,
        ``section``, ``metric``, ``value`` and the integer keys (missing where they do not apply)
        ``epoch``, ``atom``, ``image`` / ``label`` (a training image: its ``load_digits`` index
        and class), ``test_image`` / ``test_label`` (a test image likewise), ``rank`` (1 = the
        largest), ``k`` (number of training images used), ``pixel`` (0..63, row-major 8 x 8).
        Sections and metrics:

        * ``setup``: ``n_train``, ``n_test``, ``n_atoms``, ``lam``, ``omega``, ``n_epochs``;
        * ``training``: ``loss`` per ``epoch`` (0.5 ||x - D z_T||^2 averaged over the last
          mini-batch of the epoch);
        * ``fit``: ``train_rel_error``, ``test_rel_error_trained`` (||X - Z D^T|| / ||X||),
          ``test_rel_error_estimate`` (with ``X^T beta``), ``code_density``, ``lipschitz``;
        * ``stationarity``: the keys of :func:`stationarity`, and ``atom_cosine`` per ``atom``
          (cosine of the trained atom and its eq. 17 estimate);
        * ``atoms``: ``trained`` and ``estimate`` per ``atom`` and ``pixel``; ``usage`` per
          ``atom`` (fraction of training codes using it) with its ``rank``;
        * ``contribution``: ``highest`` and ``lowest`` per shown ``atom``, ``rank``, ``image``,
          ``label``, value ``(G^{-1} w_j)_k``;
        * ``reconstruction``: per shown ``test_image``: ``beta_highest`` / ``beta_lowest``
          (``rank``, ``image``, ``label``), ``full`` and ``partial`` (``k`` = n_reconstruct)
          reconstructions per ``pixel``; over all test images: ``partial_error`` per ``k``
          (||partial - full|| / ||full||, mean) and ``beta_same_class`` per ``k`` (fraction of
          the top-k training images of the test image's class, mean), ``top_beta`` (mean
          largest beta);
        * ``similarity``: ``similarity`` of each shown ``test_image`` to every training
          ``image``; ``class_mean`` per ``test_label`` and ``label`` (mean over test images of
          the mean similarity to the training class); ``own_class_highest`` (fraction of test
          images whose own class has the largest mean similarity).
    """
    check(options)
    check_dtype(dtype)
    split = load_digits_split(classes=options["classes"], test_fraction=options["test_fraction"],
                              dtype=dtype, device=device)
    X_train, X_test = split.X_train, split.X_test
    n, m = X_train.shape
    batch = min(options["batch_size"], n)
    learner = PUDLE(lam=options["lam"], n_layers=options["n_layers"], alpha=options["alpha"],
                    estimator="ae-ls", lr=options["lr"], n_epochs=options["n_epochs"],
                    batch_size=batch, record_every=math.ceil(n / batch), seed=seed)
    omega = options["omega"]
    _say(progress, f"training PUDLE on {n} images for {options['n_epochs']} epochs")
    learner.fit(X_train, initial_dictionary(m, options["n_atoms"], seed=seed, like=X_train))
    records = learner.records_.dropna(subset=["loss"])
    setup = {"n_train": n, "n_test": X_test.shape[0], "n_atoms": options["n_atoms"],
             "lam": options["lam"], "omega": omega, "n_epochs": options["n_epochs"]}
    blocks = [tidy_rows("setup", name, value) for name, value in setup.items()]
    blocks.append(tidy_rows("training", "loss", records["loss"], epoch=records["epoch"]))

    _say(progress, "Thm 5.1 and eqs 17-19")
    D = learner.dictionary_.to(torch.float64)
    Z = learner.encode(X_train).to(torch.float64)
    z_hat = learner.encode(X_test).to(torch.float64)
    X, X_new = X_train.to(torch.float64), X_test.to(torch.float64)
    contributions = interpretability.sample_contributions(Z, omega=omega)
    estimate = X.T @ contributions
    beta = interpretability.reconstruction_weights(Z, z_hat, omega=omega)
    full = beta @ X

    def relative(A, B):
        return float(torch.linalg.matrix_norm(A - B) / torch.linalg.matrix_norm(B))

    fit = {
        "train_rel_error": relative(Z @ D.T, X),
        "test_rel_error_trained": relative(z_hat @ D.T, X_new),
        "test_rel_error_estimate": relative(full, X_new),
        "code_density": float((Z != 0).double().mean()),
        "lipschitz": linalg.lipschitz_constant(D),
    }
    blocks += [tidy_rows("fit", name, value) for name, value in fit.items()]
    blocks += [tidy_rows("stationarity", name, value)
               for name, value in stationarity(X, Z, D, omega=omega).items()]
    cosines = torch.nn.functional.cosine_similarity(D, estimate, dim=0)
    p = D.shape[1]
    atoms, pixels = np.meshgrid(np.arange(p), np.arange(m))
    blocks += [
        tidy_rows("stationarity", "atom_cosine", cosines.cpu(), atom=np.arange(p)),
        tidy_rows("atoms", "trained", D.cpu().numpy(), atom=atoms, pixel=pixels),
        tidy_rows("atoms", "estimate", estimate.cpu().numpy(), atom=atoms, pixel=pixels),
    ]
    usage = (Z != 0).double().mean(0).cpu().numpy()
    order = np.argsort(-usage, kind="stable")
    blocks.append(tidy_rows("atoms", "usage", usage[order], atom=order, rank=np.arange(1, p + 1)))

    shown = options["n_shown_images"]
    rank = np.arange(1, shown + 1)
    contributions = contributions.cpu()
    for j in order[: options["n_shown_atoms"]]:
        for metric, largest in (("highest", True), ("lowest", False)):
            values, index = torch.topk(contributions[:, j], min(shown, n), largest=largest)
            rows = split.train_index[index.numpy()]
            blocks.append(tidy_rows("contribution", metric, values, atom=j, rank=rank[: len(rows)],
                                    image=rows, label=split.y_train[index.numpy()]))

    k_top = min(options["n_reconstruct"], n)
    partial = partial_reconstruction(beta, X, k_top)
    examples = [int(np.flatnonzero(split.y_test == c)[0]) for c in np.unique(split.y_test)]
    beta_cpu = beta.cpu()
    for j in examples:
        where = dict(test_image=split.test_index[j], test_label=split.y_test[j])
        for metric, largest in (("beta_highest", True), ("beta_lowest", False)):
            values, index = torch.topk(beta_cpu[j], min(shown, n), largest=largest)
            blocks.append(tidy_rows("reconstruction", metric, values, rank=rank[: len(values)],
                                    image=split.train_index[index.numpy()],
                                    label=split.y_train[index.numpy()], **where))
        blocks.append(tidy_rows("reconstruction", "full", full[j].cpu(), pixel=np.arange(m), k=n,
                                **where))
        blocks.append(tidy_rows("reconstruction", "partial", partial[j].cpu(), pixel=np.arange(m),
                                k=k_top, **where))
    y_train = torch.as_tensor(split.y_train)
    y_test = torch.as_tensor(split.y_test)
    for k in sorted({k for k in RECONSTRUCTION_KS if k < n} | {n}):
        error = torch.linalg.vector_norm(partial_reconstruction(beta, X, k) - full, dim=1)
        blocks.append(tidy_rows("reconstruction", "partial_error",
                                float((error / torch.linalg.vector_norm(full, dim=1)).mean()), k=k))
        top = torch.topk(beta_cpu, k, dim=1).indices
        same = (y_train[top] == y_test[:, None]).double().mean()
        blocks.append(tidy_rows("reconstruction", "beta_same_class", float(same), k=k))
    blocks.append(tidy_rows("reconstruction", "top_beta", float(beta_cpu.max(1).values.mean())))

    similarity = interpretability.code_similarity(Z, z_hat).cpu()
    for j in examples:
        blocks.append(tidy_rows("similarity", "similarity", similarity[j], image=split.train_index,
                                label=split.y_train, test_image=split.test_index[j],
                                test_label=split.y_test[j]))
    classes = np.unique(split.y_train)
    means = torch.stack([similarity[:, y_train == c].mean(1) for c in classes], dim=1)
    for c_test in classes:
        rows = y_test == int(c_test)
        blocks.append(tidy_rows("similarity", "class_mean", means[rows].mean(0), label=classes,
                                test_label=c_test))
    own = (torch.as_tensor(classes)[means.argmax(1)] == y_test).double().mean()
    blocks.append(tidy_rows("similarity", "own_class_highest", float(own)))
    return _tidy(blocks, seed)


def _images() -> np.ndarray:
    """All ``load_digits`` images as (1797, 8, 8) in [0, 1]."""
    return _digits()[0].reshape(-1, 8, 8)


def _show(ax, image, title: str = "", colour: str | None = None, signed: bool = False) -> None:
    limit = float(np.abs(image).max()) or 1.0
    if signed:
        ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
    else:
        ax.imshow(image, cmap="gray_r", vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8, color=colour or "black")
    if colour:
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(2.5)


def _pixels(frame: pd.DataFrame) -> np.ndarray:
    return frame.sort_values("pixel")["value"].to_numpy().reshape(8, 8)


def _spread(results: pd.DataFrame, section: str, metric: str, by: str | None = None):
    rows = results[(results["section"] == section) & (results["metric"] == metric)]
    keys = ["seed"] if by is None else ["seed", by]
    per_seed = rows.groupby(keys)["value"].mean()
    if by is None:
        return per_seed.agg(["mean", "min", "max"])
    return per_seed.groupby(level=by).agg(["mean", "min", "max"])


def _figure_atoms(first: pd.DataFrame, out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    atoms = first[(first["section"] == "atoms") & (first["metric"] == "trained")]
    usage = first[(first["section"] == "atoms") & (first["metric"] == "usage")].sort_values("rank")
    columns = 10
    rows = math.ceil(len(usage) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.1 * columns, 1.25 * rows))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, (_, row) in zip(np.ravel(axes), usage.iterrows(), strict=False):
        ax.axis("on")
        _show(ax, _pixels(atoms[atoms["atom"] == row["atom"]]), f"{100 * row['value']:.0f} %",
              signed=True)
    figure.suptitle("Learned atoms (8 x 8 pixels), most used first; title: % of training codes "
                    "using the atom (cf. TMLR 2023, Fig. 7)", fontsize=9)
    return save_figure(figure, out_dir, "digits_atoms")


def _figure_contributions(first: pd.DataFrame, out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    images = _images()
    table = first[first["section"] == "contribution"]
    atoms = list(dict.fromkeys(table["atom"]))
    shown = int(table["rank"].max())
    trained = first[(first["section"] == "atoms") & (first["metric"] == "trained")]
    estimate = first[(first["section"] == "atoms") & (first["metric"] == "estimate")]
    figure, axes = plt.subplots(len(atoms), 2 + 2 * shown,
                                figsize=(1.05 * (2 + 2 * shown), 1.25 * len(atoms)), squeeze=False)
    for row, atom in zip(axes, atoms, strict=True):
        _show(row[0], _pixels(trained[trained["atom"] == atom]), f"atom {atom}", signed=True)
        _show(row[1], _pixels(estimate[estimate["atom"] == atom]), "estimate (17)", signed=True)
        for metric, offset, colour in (("highest", 2, "green"), ("lowest", 2 + shown, "red")):
            picks = table[(table["atom"] == atom) & (table["metric"] == metric)]
            for ax, (_, pick) in zip(row[offset:], picks.sort_values("rank").iterrows(),
                                     strict=False):
                _show(ax, images[int(pick["image"])], f"{pick['value']:.2g}", colour)
    figure.suptitle("Training images of highest (green) and lowest (red) contribution "
                    "(G^-1 w_j)_k to atom j, and the eq. 17 estimate X^T G^-1 w_j "
                    "(cf. TMLR 2023, Fig. 8)", fontsize=9)
    return save_figure(figure, out_dir, "digits_contributions")


def _figure_reconstruction(first: pd.DataFrame, out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    images = _images()
    table = first[first["section"] == "reconstruction"]
    examples = list(dict.fromkeys(table["test_image"].dropna()))
    shown = int(table["rank"].max())
    figure, axes = plt.subplots(len(examples), 3 + 2 * shown,
                                figsize=(1.05 * (3 + 2 * shown), 1.25 * len(examples)),
                                squeeze=False)
    for row, index in zip(axes, examples, strict=True):
        mine = table[table["test_image"] == index]
        partial = mine[mine["metric"] == "partial"]
        _show(row[0], images[int(index)], f"test {int(mine['test_label'].iloc[0])}")
        _show(row[1], np.clip(_pixels(mine[mine["metric"] == "full"]), 0, 1), "X^T beta")
        _show(row[2], np.clip(_pixels(partial), 0, 1), f"top {int(partial['k'].iloc[0])}")
        for metric, offset, colour in (("beta_highest", 3, "green"),
                                       ("beta_lowest", 3 + shown, "red")):
            picks = mine[mine["metric"] == metric].sort_values("rank")
            for ax, (_, pick) in zip(row[offset:], picks.iterrows(), strict=False):
                _show(ax, images[int(pick["image"])], f"{pick['value']:.2g}", colour)
    figure.suptitle("Test image, its reconstruction X^T beta (eq. 18), the reconstruction from the "
                    "top-k beta only, and the training images of highest (green) and lowest (red) "
                    "beta_k (cf. TMLR 2023, Fig. 9)", fontsize=9)
    return save_figure(figure, out_dir, "digits_reconstruction")


def _figure_reconstruction_error(results: pd.DataFrame, out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric, label in (
        (axes[0], "partial_error", "||x_k - X^T beta|| / ||X^T beta|| (mean over test images)"),
        (axes[1], "beta_same_class", "top-k images of the test image's class (fraction)"),
    ):
        spread = _spread(results, "reconstruction", metric, by="k")
        k = spread.index.to_numpy(dtype=float)
        ax.plot(k, spread["mean"], marker="o")
        ax.fill_between(k, spread["min"], spread["max"], alpha=0.25, label="min-max over seeds")
        ax.set_xscale("log")
        ax.set_xlabel("training images used, k (largest beta_k first)")
        ax.set_ylabel(label, fontsize=8)
        ax.legend(fontsize=8)
    figure.suptitle("Eq. 18 restricted to the k training images of largest beta_k", fontsize=9)
    figure.tight_layout()
    return save_figure(figure, out_dir, "digits_reconstruction_error")


def _figure_similarity(first: pd.DataFrame, out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    table = first[(first["section"] == "similarity") & (first["metric"] == "similarity")]
    examples = list(dict.fromkeys(table["test_image"]))
    figure, axes = plt.subplots(1, len(examples), figsize=(3.2 * len(examples), 3.0),
                                squeeze=False)
    for ax, index in zip(axes[0], examples, strict=True):
        mine = table[table["test_image"] == index]
        bins = np.linspace(mine["value"].min(), mine["value"].max(), 25)
        for label, group in mine.groupby("label"):
            ax.hist(group["value"], bins=bins, histtype="step", linewidth=1.5,
                    label=f"class {label}")
        ax.set_title(f"test image of digit {int(mine['test_label'].iloc[0])}", fontsize=9)
        ax.set_xlabel("code similarity <z~^k, z_hat> (a.u.)")
        ax.set_ylabel("training images")
    axes[0][-1].legend(fontsize=7)
    figure.suptitle("Code similarity of a test image to the training images, by training class "
                    "(eq. 19; cf. TMLR 2023, Fig. 10)", fontsize=9)
    figure.tight_layout()
    return save_figure(figure, out_dir, "digits_similarity")


def _figure_training(results: pd.DataFrame, out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(5, 3.4))
    for seed, rows in results[results["section"] == "training"].groupby("seed"):
        ax.plot(rows["epoch"], rows["value"], label=f"seed {seed}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("0.5 ||x - D z_T||^2 (last mini-batch)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, out_dir, "digits_training")


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """One row per scalar result: mean, min and max over the seeds, with the paper's statement
    where it has one (the ``summary`` table of :func:`render`)."""
    rows = []
    scalars = [("fit", name) for name in ("train_rel_error", "test_rel_error_trained",
                                          "test_rel_error_estimate", "code_density", "lipschitz")]
    scalars += [("stationarity", name) for name in ("gradient_exact", "gap_estimate_exact",
                                                    "gradient_trained", "gap_trained_estimate",
                                                    "gram_condition", "atom_cosine")]
    scalars += [("reconstruction", "top_beta"), ("similarity", "own_class_highest")]
    paper = {"gradient_exact": PAPER["identity"], "gap_estimate_exact": PAPER["identity"],
             "top_beta": PAPER["top_beta"], "own_class_highest": PAPER["own_class"]}
    for section, metric in scalars:
        spread = _spread(results, section, metric)
        rows.append({"section": section, "metric": metric, "paper (MNIST)": paper.get(metric, ""),
                     **spread.to_dict()})
    k_rows = results[(results["section"] == "reconstruction")
                     & (results["metric"] == "partial")]["k"]
    if len(k_rows):
        k_top = int(k_rows.iloc[0])
        for metric in ("partial_error", "beta_same_class"):
            spread = _spread(results, "reconstruction", metric, by="k").loc[k_top]
            rows.append({"section": "reconstruction", "metric": f"{metric} (k={k_top})",
                         "paper (MNIST)": "", **spread.to_dict()})
    return pd.DataFrame(rows)


def render(results: pd.DataFrame, out_dir: Path) -> str:
    """Write the figures (PNG and SVG) and ``digits_interpretability_summary.csv`` into
    ``out_dir`` from the tables of :func:`run` (one or more seeds) and return the report's HTML
    ``<section>``. Image panels show the smallest seed; curves and tables cover every seed."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = sorted(int(s) for s in results["seed"].unique())
    first = results[results["seed"] == seeds[0]]
    figures = [_figure_training(results, out_dir), _figure_atoms(first, out_dir),
               _figure_contributions(first, out_dir), _figure_reconstruction(first, out_dir),
               _figure_reconstruction_error(results, out_dir), _figure_similarity(first, out_dir)]
    table = summary(results)
    table.to_csv(out_dir / "digits_interpretability_summary.csv", index=False)
    numbers = table.set_index("metric")["mean"]
    setup = first[first["section"] == "setup"].set_index("metric")["value"]
    text = (
        "<p>The paper trains PUDLE on MNIST digits 0-4 (m = 784, p = 500, 200 epochs) and shows "
        "Figs 7-10 as pictures; here the same pipeline runs on scikit-learn's 8 x 8 digits "
        f"(m = 64, p = {setup['n_atoms']:.0f}, {setup['n_train']:.0f} training and "
        f"{setup['n_test']:.0f} test images, lam = {setup['lam']:g}, step 1/L, "
        f"{setup['n_epochs']:.0f} epochs), so the pictures are not a reproduction of the "
        "paper's. Thm 5.1's identity is exact: at the exact dictionary step the relative gap "
        f"between X^T G^-1 Z and the ridge solution is {numbers['gap_estimate_exact']:.1e} and "
        f"the relative gradient {numbers['gradient_exact']:.1e}, while at the trained dictionary "
        f"the gradient is {numbers['gradient_trained']:.2f} (it is not stationary). The paper "
        "shows one digit-2 test image whose own class has the most similar codes (Fig. 10); here "
        f"the own class has the highest mean code similarity for "
        f"{100 * numbers['own_class_highest']:.0f} % of the test images. The paper reports "
        "unnormalised top beta_k above 1 on MNIST; here the largest beta_k averages "
        f"{numbers['top_beta']:.2g}.</p>"
    )
    html_table = table.to_html(index=False, border=0, classes="data", float_format="{:.3g}".format,
                               na_rep="-")
    images = "".join(f"<img src='{html.escape(name)}' alt='{html.escape(name)}'>"
                     for name in figures)
    return (
        "<section><h2>Digits: PUDLE interpretability (TMLR 2023, Sec. 5, Thm 5.1, Figs 7-10)</h2>"
        f"{text}<p>Seeds {', '.join(map(str, seeds))}; mean, min and max over the seeds.</p>"
        f"{html_table}{images}</section>"
    )
