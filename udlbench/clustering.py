"""Clustering with group-sparse and sparse autoencoder codes on scikit-learn's digits (Theodosis,
Tolooshams, Tankala, Tasissa & Ba, *On the convergence of group-sparse autoencoders*, Sec. 4.2,
Table 1, Fig. 4).

The paper trains on MNIST (60,000 images, pixels / 255) a group-sparse autoencoder, Gamma = 10
groups of 16 atoms (784 x 160), its encoder unrolled 15 iterations with the group soft-threshold
at lam = 0.2, Adam lr 1e-3 for 300 epochs, and a sparse autoencoder baseline (784 x 160, soft
threshold, lam = 0.03) with the same settings; then clusters the 10,000 test images with k-means
(10 centroids) and spectral clustering (graph of the 1,000 nearest neighbours) on five
representations: raw pixels, sparse codes, sparse codes made non-negative and scaled to sum to
1 ("+"), group-sparse codes and group-sparse codes "+". Accuracy is that of the best one-to-one
matching of clusters to classes.

MNIST cannot be downloaded here: this study runs the same pipeline on all ten classes of
:func:`sklearn.datasets.load_digits` (8 x 8, pixels / 16, m = 64, so 64 x 160 dictionaries) with
the fixed split of :func:`udlbench.digits_interpretability.load_digits_split` (within each class,
in ``load_digits`` order, the last ``round(test_fraction * n_c)`` images are the test set; 1,258
training and 539 test images at ``test_fraction = 0.3``). The spectral graph keeps the paper's
ratio of neighbours to test images (1,000 / 10,000). Unstated in the paper and chosen here: the
encoder is FISTA with step ``1 / sigma_max(D)^2`` (threshold ``lam / L``), ae-ls
back-propagation through it (:class:`udlbench.training.PUDLE`), unit-norm atoms, mini-batches
of 64, one Gaussian start (unit atoms) from the seed shared by both autoencoders, and "made
non-negative" read as absolute values. The seed also sets the mini-batch order and the
initialisation of k-means and spectral clustering; the split does not depend on it.
"""

from __future__ import annotations

import html
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from udlbench._validation import (
    check_choice,
    check_nonnegative,
    check_option_keys,
    check_positive,
    check_positive_int,
)
from udlbench.digits_interpretability import (
    CLASSES,
    check_dtype,
    initial_dictionary,
    load_digits_split,
    tidy_rows,
)
from udlbench.figures import save_figure
from udlbench.group_sparse import group_norms
from udlbench.training import PUDLE

QUICK: dict = {
    "test_fraction": 0.3,
    "n_groups": 10,
    "group_size": 16,
    "n_atoms_sparse": 160,
    "n_layers": 15,
    "encoder": "fista",
    "lam_group": 0.2,
    "lam_sparse": 0.03,
    "lr": 1e-3,
    "n_epochs": 50,
    "batch_size": 64,
    "neighbors_fraction": 0.1,
    "kmeans_n_init": 10,
}
"""CPU profile: the paper's settings on the digits with 50 epochs (about 15 s of training per
autoencoder on one core)."""

FULL: dict = {**QUICK, "n_epochs": 300}
"""The paper's 300 epochs (on the digits, not MNIST)."""

OPTION_NAMES = tuple(QUICK)
ENCODERS = ("ista", "fista")
ALGORITHMS = ("kmeans", "spectral")
REPRESENTATIONS = ("raw", "sparse", "sparse+", "group", "group+")
ROW_NAMES = {
    "raw": "Raw representation", "sparse": "Sparse codes", "sparse+": "Sparse codes +",
    "group": "Group-sparse codes", "group+": "Group-sparse codes +",
}
TABLE1 = {  # Theodosis et al., Table 1: MNIST test accuracy (%), (k-means, spectral clustering)
    "raw": (54.46, 63.04), "sparse": (54.14, 55.49), "sparse+": (60.94, 56.98),
    "group": (74.5, 79.4), "group+": (80.09, 80.27),
}
COLUMNS = (
    "seed", "section", "method", "representation", "algorithm", "metric", "epoch", "atom",
    "pixel", "value",
)
INTEGER_COLUMNS = ("seed", "epoch", "atom", "pixel")


def _labels(name: str, values: object) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"{name} must be a non-empty 1-D array of integer labels; got dtype {array.dtype} "
            f"and shape {array.shape}."
        )
    if array.min() < 0:
        raise ValueError(f"{name} must hold labels >= 0; got the label {int(array.min())}.")
    return array.astype(np.int64)


def clustering_accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    """Accuracy of a clustering under the best one-to-one matching of clusters to classes.

    ``max over injective maps pi of (1/N) #{i : pi(labels_i) = truth_i}``, solved as an
    assignment problem on the (clusters x classes) contingency table with the Hungarian
    algorithm (:func:`scipy.optimize.linear_sum_assignment`); clusters left unmatched (more
    clusters than classes) count as errors. This is the accuracy of Theodosis et al., Table 1.

    Parameters
    ----------
    labels : array of shape (N,)
        Cluster indices >= 0.
    truth : array of shape (N,)
        Class indices >= 0.

    Returns
    -------
    float
        In [0, 1]; invariant to any relabelling of the clusters.
    """
    from scipy.optimize import linear_sum_assignment

    labels, truth = _labels("labels", labels), _labels("truth", truth)
    if labels.shape != truth.shape:
        raise ValueError(
            f"labels and truth must have the same length; got {labels.size} and {truth.size}."
        )
    table = np.zeros((labels.max() + 1, truth.max() + 1))
    np.add.at(table, (labels, truth), 1)
    rows, columns = linear_sum_assignment(table, maximize=True)
    return float(table[rows, columns].sum() / truth.size)


def simplex_rows(codes: np.ndarray) -> np.ndarray:
    """The "+" representation of Table 1: ``|z| / sum |z|`` per row of codes (N, p) (made
    non-negative and scaled to sum to 1); all-zero rows stay zero."""
    magnitudes = np.abs(np.asarray(codes, dtype=np.float64))
    totals = magnitudes.sum(1, keepdims=True)
    return np.divide(magnitudes, totals, out=np.zeros_like(magnitudes), where=totals > 0)


def cluster(
    features: np.ndarray, *, algorithm: str, n_clusters: int = 10, n_neighbors: int = 10,
    n_init: int = 10, seed: int = 0,
) -> np.ndarray:
    """Cluster the rows of ``features`` (N, d): ``kmeans`` (k-means++, ``n_init`` restarts) or
    ``spectral`` (spectral clustering of the symmetrised ``n_neighbors``-nearest-neighbour
    graph), both from scikit-learn and seeded by ``seed`` (Theodosis et al., Sec. 4.2).

    Returns
    -------
    ndarray of shape (N,)
        Cluster indices in 0 .. n_clusters - 1.
    """
    from sklearn.cluster import KMeans, SpectralClustering

    check_choice("algorithm", algorithm, ALGORITHMS)
    check_positive_int("n_clusters", n_clusters)
    check_positive_int("n_neighbors", n_neighbors)
    check_positive_int("n_init", n_init)
    if algorithm == "kmeans":
        model = KMeans(n_clusters, n_init=n_init, random_state=seed)
    else:
        model = SpectralClustering(n_clusters, affinity="nearest_neighbors",
                                   n_neighbors=n_neighbors, random_state=seed)
    return model.fit_predict(np.asarray(features, dtype=np.float64))


def train_autoencoder(
    X: torch.Tensor, D0: torch.Tensor, *, lam: float, group_size: int | None, n_layers: int,
    encoder: str, lr: float, n_epochs: int, batch_size: int, seed: int,
) -> PUDLE:
    """Train a (group-)sparse autoencoder with tied weights on images X (n, m) from D0 (m, p).

    The encoder unrolls ``n_layers`` ISTA or FISTA steps for
    ``min_z 0.5 ||x - D z||^2 + lam sum_g ||z_g||`` (groups of ``group_size`` contiguous atoms;
    ``group_size=None`` is the soft threshold, the sparse autoencoder), with step
    ``1 / sigma_max(D)^2``; D moves along the back-propagated gradient of
    ``0.5 ||x - D z_T||^2`` (ae-ls) with Adam and unit-norm atoms, one record per epoch
    (Theodosis et al., Sec. 4.2; Tolooshams & Ba, TMLR 2023, Alg. 2).
    """
    batch = min(batch_size, X.shape[0])
    learner = PUDLE(lam=lam, n_layers=n_layers, encoder=encoder,
                    prox="soft" if group_size is None else "group", group_size=group_size,
                    estimator="ae-ls", lr=lr, n_epochs=n_epochs, batch_size=batch,
                    record_every=math.ceil(X.shape[0] / batch), seed=seed)
    return learner.fit(X, D0)


def check(options: dict) -> None:
    """Raise ValueError naming the option, the value and what is allowed; every key of
    :data:`QUICK` is required and no other."""
    check_option_keys(options, OPTION_NAMES)
    fraction = check_positive("test_fraction", options["test_fraction"])
    if fraction >= 1:
        raise ValueError(f"test_fraction must lie in (0, 1); got {fraction!r}.")
    for name in ("n_groups", "group_size", "n_atoms_sparse", "n_layers", "n_epochs",
                 "batch_size", "kmeans_n_init"):
        check_positive_int(name, options[name])
    for name in ("lam_group", "lam_sparse"):
        check_nonnegative(name, options[name])
    check_positive("lr", options["lr"])
    check_choice("encoder", options["encoder"], ENCODERS)
    neighbours = check_positive("neighbors_fraction", options["neighbors_fraction"])
    if neighbours >= 1:
        raise ValueError(f"neighbors_fraction must lie in (0, 1); got {neighbours!r}.")


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"[clustering] {message}", file=sys.stderr, flush=True)


def run(
    options: dict, *, seed: int, dtype: torch.dtype, device: str, progress: bool = False
) -> pd.DataFrame:
    """Train both autoencoders on the digits' training split and cluster the test split, for
    one seed (Theodosis et al., Sec. 4.2, Table 1).

    Parameters
    ----------
    options : dict
        Every key of :data:`QUICK` (see :func:`check`).
    seed : int
        Sets the start, the mini-batch order and the clustering initialisations.
    dtype : torch.float32 or torch.float64
        Of the training.
    device : str
        Torch device of the training; clustering runs on the CPU (scikit-learn).
    progress : bool
        Print the stages to stderr.

    Returns
    -------
    pandas.DataFrame
        Long format, one row per recorded number, columns :data:`COLUMNS` (``seed``,
        ``section``, ``metric``, ``value``; ``method``, ``representation``, ``algorithm``,
        ``epoch``, ``atom``, ``pixel`` where they apply, missing elsewhere):

        * ``setup``: ``n_train``, ``n_test``, ``n_neighbors``, ``n_groups``, ``group_size``,
          ``lam_group``, ``lam_sparse``, ``n_epochs``;
        * ``training``: ``loss`` (0.5 ||x - D z_T||^2, last mini-batch) per ``method``
          (``group`` or ``sparse``) and ``epoch``;
        * ``codes``: per ``method`` on the test images, ``test_rel_error``
          (||X - Z D^T|| / ||X||), ``density`` (fraction of non-zero entries),
          ``dictionary_change`` (||D - D0||_F / ||D0||_F) and, for ``group``, ``active_groups``
          (mean number of non-zero groups per code);
        * ``clustering``: ``accuracy`` (%) per ``representation`` (:data:`REPRESENTATIONS`) and
          ``algorithm`` (``kmeans``, ``spectral``; and ``argmax_group``: each test image in the
          cluster of its group of largest norm, for ``group``); ``silhouette`` of the true
          classes per ``representation`` (Euclidean; how well the classes separate, cf. Fig. 5);
        * ``dictionary``: the learned atoms, per ``method``, ``atom`` and ``pixel`` (0..63,
          row-major 8 x 8).
    """
    from sklearn.metrics import silhouette_score

    check(options)
    check_dtype(dtype)
    split = load_digits_split(classes=CLASSES, test_fraction=options["test_fraction"],
                              dtype=dtype, device=device)
    X_train, X_test, truth = split.X_train, split.X_test, split.y_test
    m = X_train.shape[1]
    n_neighbors = max(2, round(options["neighbors_fraction"] * X_test.shape[0]))
    setup = {"n_train": X_train.shape[0], "n_test": X_test.shape[0], "n_neighbors": n_neighbors,
             "n_groups": options["n_groups"], "group_size": options["group_size"],
             "lam_group": options["lam_group"], "lam_sparse": options["lam_sparse"],
             "n_epochs": options["n_epochs"]}
    blocks = [tidy_rows("setup", name, value) for name, value in setup.items()]
    representations = {"raw": X_test.cpu().double().numpy()}
    group_size = options["group_size"]
    autoencoders = (
        ("group", options["lam_group"], group_size, options["n_groups"] * group_size),
        ("sparse", options["lam_sparse"], None, options["n_atoms_sparse"]),
    )
    for method, lam, size, p in autoencoders:
        _say(progress, f"training the {method} autoencoder ({m} x {p}, lam = {lam})")
        D0 = initial_dictionary(m, p, seed=seed, like=X_train)
        learner = train_autoencoder(
            X_train, D0, lam=lam,
            group_size=size, n_layers=options["n_layers"], encoder=options["encoder"],
            lr=options["lr"], n_epochs=options["n_epochs"], batch_size=options["batch_size"],
            seed=seed,
        )
        records = learner.records_.dropna(subset=["loss"])
        D = learner.dictionary_
        Z = learner.encode(X_test)
        codes = Z.cpu().double().numpy()
        representations[method], representations[f"{method}+"] = codes, simplex_rows(codes)
        error = torch.linalg.matrix_norm(X_test - Z @ D.T) / torch.linalg.matrix_norm(X_test)
        change = torch.linalg.matrix_norm(D - D0) / torch.linalg.matrix_norm(D0)
        atoms, pixels = np.meshgrid(np.arange(p), np.arange(m))
        blocks += [
            tidy_rows("training", "loss", records["loss"], epoch=records["epoch"], method=method),
            tidy_rows("codes", "test_rel_error", float(error), method=method),
            tidy_rows("codes", "density", float((codes != 0).mean()), method=method),
            tidy_rows("codes", "dictionary_change", float(change), method=method),
            tidy_rows("dictionary", "weight", D.cpu().double().numpy(), atom=atoms, pixel=pixels,
                      method=method),
        ]
        if method == "group":
            norms = group_norms(Z.double(), group_size=group_size)
            active = float((norms > 0).sum(1).double().mean())
            blocks.append(tidy_rows("codes", "active_groups", active, method=method))
            nearest = norms.argmax(1).cpu().numpy()
            blocks.append(tidy_rows("clustering", "accuracy",
                                    100 * clustering_accuracy(nearest, truth),
                                    representation="group", algorithm="argmax_group"))

    _say(progress, f"clustering {X_test.shape[0]} test images ({n_neighbors}-NN graph)")
    for name in REPRESENTATIONS:
        features = representations[name]
        for algorithm in ALGORITHMS:
            labels = cluster(features, algorithm=algorithm, n_neighbors=n_neighbors,
                             n_init=options["kmeans_n_init"], seed=seed)
            accuracy = 100 * clustering_accuracy(labels, truth)
            blocks.append(tidy_rows("clustering", "accuracy", accuracy, representation=name,
                                    algorithm=algorithm))
        silhouette = silhouette_score(features, truth) if np.ptp(features) > 0 else np.nan
        blocks.append(tidy_rows("clustering", "silhouette", silhouette, representation=name))
    table = pd.concat(blocks, ignore_index=True)
    table["seed"] = seed
    for column in COLUMNS:
        if column not in table:
            table[column] = pd.NA
    return table[list(COLUMNS)].astype({c: "Int64" for c in INTEGER_COLUMNS})


def table1(results: pd.DataFrame) -> pd.DataFrame:
    """Table 1's layout: one row per representation, for k-means and spectral clustering the
    measured accuracy (mean, min, max over the seeds, %) next to the paper's MNIST number."""
    accuracy = results[(results["section"] == "clustering") & (results["metric"] == "accuracy")]
    rows = []
    for name in REPRESENTATIONS:
        row = {"representation": ROW_NAMES[name]}
        for algorithm, paper in zip(ALGORITHMS, TABLE1[name], strict=True):
            values = accuracy[(accuracy["representation"] == name)
                              & (accuracy["algorithm"] == algorithm)]["value"]
            label = "k-means" if algorithm == "kmeans" else "spectral"
            row.update({f"{label} mean": values.mean(), f"{label} min": values.min(),
                        f"{label} max": values.max(), f"{label} paper (MNIST)": paper})
        rows.append(row)
    return pd.DataFrame(rows)


def _tile(weights: np.ndarray, columns: int) -> np.ndarray:
    """Atoms (64, k) as one image of 8 x 8 tiles, ``columns`` per row, separated by NaN."""
    k = weights.shape[1]
    rows = math.ceil(k / columns)
    canvas = np.full((9 * rows - 1, 9 * columns - 1), np.nan)
    for index in range(k):
        r, c = divmod(index, columns)
        canvas[9 * r : 9 * r + 8, 9 * c : 9 * c + 8] = weights[:, index].reshape(8, 8)
    return canvas


def _weights(first: pd.DataFrame, method: str) -> np.ndarray:
    rows = first[(first["section"] == "dictionary") & (first["method"] == method)]
    table = rows.pivot(index="pixel", columns="atom", values="value")
    return table.sort_index().sort_index(axis=1).to_numpy()


def _figure_dictionaries(first: pd.DataFrame, group_size: int, out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    group = _weights(first, "group")
    sparse = _weights(first, "sparse")
    n_groups = group.shape[1] // group_size
    side = math.ceil(math.sqrt(group_size))
    figure = plt.figure(figsize=(2.0 * min(n_groups, 5) + 4.5, 2.2 * math.ceil(n_groups / 5)))
    grid = figure.add_gridspec(math.ceil(n_groups / 5), min(n_groups, 5) + 2)
    limit = float(np.abs(group).max())
    for g in range(n_groups):
        ax = figure.add_subplot(grid[g // 5, g % 5])
        ax.imshow(_tile(group[:, g * group_size : (g + 1) * group_size], side), cmap="RdBu_r",
                  vmin=-limit, vmax=limit)
        ax.set_title(f"group {g + 1}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = figure.add_subplot(grid[:, min(n_groups, 5):])
    limit = float(np.abs(sparse).max())
    ax.imshow(_tile(sparse, 2 * side), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(f"sparse autoencoder ({sparse.shape[1]} atoms)", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    figure.suptitle(f"Learned atoms (8 x 8 pixels each): the {n_groups} groups of the group-sparse "
                    "autoencoder, one panel per group, and the sparse autoencoder "
                    "(cf. Theodosis et al., Fig. 4a, 4c)", fontsize=9)
    return save_figure(figure, out_dir, "clustering_dictionaries")


def _figure_accuracy(table: pd.DataFrame, out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    positions = np.arange(len(table))
    for ax, label in zip(axes, ("k-means", "spectral"), strict=True):
        mean = table[f"{label} mean"].to_numpy()
        error = np.stack([mean - table[f"{label} min"], table[f"{label} max"] - mean])
        ax.bar(positions - 0.2, mean, 0.4, yerr=error, capsize=3, label="digits (measured)")
        ax.bar(positions + 0.2, table[f"{label} paper (MNIST)"], 0.4, label="MNIST (paper)")
        ax.set_xticks(positions, table["representation"], rotation=25, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("clustering accuracy (%)")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, out_dir, "clustering_accuracy")


def _figure_training(results: pd.DataFrame, out_dir: Path) -> str:
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(5, 3.4))
    rows = results[results["section"] == "training"]
    for (method, seed), curve in rows.groupby(["method", "seed"]):
        ax.plot(curve["epoch"], curve["value"], label=f"{method}, seed {seed}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("0.5 ||x - D z_T||^2 (last mini-batch)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, out_dir, "clustering_training")


def render(results: pd.DataFrame, out_dir: Path) -> str:
    """Write Table 1 (``clustering_table1.csv``), the codes' summary
    (``clustering_codes.csv``) and the figures (PNG and SVG) into ``out_dir`` from the tables of
    :func:`run` (one or more seeds), and return the report's HTML ``<section>``. The dictionary
    figure shows the smallest seed."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = sorted(int(s) for s in results["seed"].unique())
    first = results[results["seed"] == seeds[0]]
    table = table1(results)
    table.to_csv(out_dir / "clustering_table1.csv", index=False)
    codes = (results[results["section"].isin(["codes", "clustering"])
                     & results["metric"].isin(["test_rel_error", "density", "dictionary_change",
                                               "active_groups", "silhouette"])]
             .groupby(["metric", "method", "representation"], dropna=False)["value"]
             .agg(["mean", "min", "max"]).reset_index())
    codes.to_csv(out_dir / "clustering_codes.csv", index=False)
    setup = first[first["section"] == "setup"].set_index("metric")["value"]
    active = first[(first["metric"] == "active_groups") & (first["method"] == "group")]["value"]
    mean = table.set_index("representation")
    orderings = []
    for label in ("k-means", "spectral"):
        measured = mean[f"{label} mean"]
        best = measured.idxmax()
        orderings.append(f"{label}: best {best} ({measured.max():.1f} %), raw "
                         f"{measured[ROW_NAMES['raw']]:.1f} %, group-sparse "
                         f"{measured[ROW_NAMES['group']]:.1f} %")
    text = (
        "<p>The paper's numbers are for MNIST (60,000 training and 10,000 test images of 28 x 28, "
        "784 x 160 dictionaries); these are for scikit-learn's 8 x 8 digits "
        f"({setup['n_train']:.0f} training and {setup['n_test']:.0f} test images, 64 x 160, "
        f"{setup['n_epochs']:.0f} epochs, spectral graph of {setup['n_neighbors']:.0f} "
        "neighbours), so they are not a reproduction. In the paper group-sparse codes cluster "
        "best for both algorithms; measured (mean over seeds) " + "; ".join(orderings) + ". At "
        f"lam = {setup['lam_group']:g} the group-sparse test codes have "
        f"{active.mean():.1f} active groups of {setup['n_groups']:.0f} on average.</p>"
    )
    figures = [_figure_accuracy(table, out_dir),
               _figure_dictionaries(first, int(setup["group_size"]), out_dir),
               _figure_training(results, out_dir)]
    html_table = table.to_html(index=False, border=0, classes="data", float_format="{:.1f}".format,
                               na_rep="-")
    images = "".join(f"<img src='{html.escape(name)}' alt='{html.escape(name)}'>"
                     for name in figures)
    return (
        "<section><h2>Digits: clustering with group-sparse codes (Theodosis et al., Sec. 4.2, "
        f"Table 1, Fig. 4)</h2>{text}<p>Seeds {', '.join(map(str, seeds))}; accuracy (%) after "
        f"the best matching of clusters to classes, mean, min and max over the seeds.</p>"
        f"{html_table}{images}</section>"
    )
