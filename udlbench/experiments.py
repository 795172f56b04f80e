"""Named experiments: a generative model, methods, a parameter grid, seeds and a budget.

An experiment is plain data, so that it can live in a short Python file or a YAML/TOML file:

* ``dataset``: ``generator`` (a name of :data:`udlbench.datasets.GENERATORS`) and its options;
* ``methods``: label -> ``{"method": name of :data:`udlbench.methods.METHODS`, **options}``;
* ``budget``: loop options given to every method (``max_steps``, ``n_epochs``, ``batch_size``,
  ``record_every``), which a method's own options override;
* ``grid``: dotted key -> list of values, swept as a Cartesian product; ``methods.*.KEY`` sets
  KEY of every method, and mappings as values are merged into the section they name (e.g. a
  ``dataset`` axis of problem sizes);
* ``seeds``; ``metrics`` (``dictionary`` and optionally ``code``);
* ``profiles``: ``quick`` (CPU, minutes) and ``full`` (the paper's sizes), nested overrides
  merged into the rest;
* ``reference``: what the paper reports, shown next to the measurements in the report;
* ``kind``: ``"learning"`` (the above: a learner of :mod:`udlbench.methods` on a generated
  problem) or ``"study"`` (each method names a study of :mod:`udlbench.studies`, which builds
  its own data and metrics from the options next to it; ``dataset`` is then empty).

``resolve(experiment, profile, overrides)`` gives the configuration a sweep runs, with
``--set KEY=VALUE`` overrides checked against the keys that exist.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import itertools
import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PROFILES = ("quick", "full")
KINDS = ("learning", "study")
SECTIONS = ("dataset", "methods", "budget", "grid", "seeds", "metrics")
METRICS = ("dictionary", "code")


@dataclass
class Experiment:
    """A named experiment; see the module docstring for the meaning of each field."""

    name: str
    title: str
    dataset: dict
    methods: dict[str, dict]
    budget: dict = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    metrics: list[str] = field(default_factory=lambda: ["dictionary"])
    profiles: dict[str, dict] = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    kind: str = "learning"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"experiment {self.name!r}: unknown kind {self.kind!r}; use {list(KINDS)}."
            )
        if not self.name or any(c in self.name for c in "/\\ "):
            raise ValueError(f"experiment name {self.name!r} must be non-empty, no '/' or spaces.")
        unknown = sorted(set(self.profiles) - set(PROFILES))
        if unknown:
            raise ValueError(
                f"experiment {self.name!r}: unknown profile(s) {unknown}; use {list(PROFILES)}."
            )
        for profile, overrides in self.profiles.items():
            bad = sorted(set(overrides) - set(SECTIONS))
            if bad:
                raise ValueError(
                    f"experiment {self.name!r}, profile {profile!r}: unknown section(s) {bad}; "
                    f"a profile overrides {list(SECTIONS)}."
                )
        if not self.methods:
            raise ValueError(f"experiment {self.name!r} has no methods.")
        for label, options in self.methods.items():
            if "method" not in options:
                raise ValueError(
                    f"experiment {self.name!r}: method {label!r} needs a 'method' key naming "
                    "one of udlbench.methods.METHODS."
                )


REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add an experiment to the registry (a later one of the same name replaces it)."""
    REGISTRY[experiment.name] = experiment
    return experiment


def get(name: str) -> Experiment:
    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; choose from {sorted(REGISTRY)}.")
    return REGISTRY[name]


def _merge(base: dict, overrides: Mapping) -> dict:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_value(text: str) -> object:
    """A ``--set`` value: an integer, a float (``1e-3`` included), else a YAML value (lists,
    ``true``, ``null``, strings)."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def _check_type(key: str, old: object, new: object) -> object:
    if old is None or new is None:
        return new
    if isinstance(old, bool) or isinstance(new, bool):
        if isinstance(old, bool) != isinstance(new, bool):
            raise ValueError(f"--set {key}: expected true or false like {old!r}; got {new!r}.")
        return new
    if isinstance(old, float) and isinstance(new, int):
        return float(new)
    if isinstance(old, int | float) and not isinstance(new, int | float):
        raise ValueError(f"--set {key}: expected a number like {old!r}; got {new!r}.")
    if isinstance(old, int) and isinstance(new, float):
        if not new.is_integer():
            raise ValueError(f"--set {key}: expected an integer like {old!r}; got {new!r}.")
        return int(new)
    if isinstance(old, str) and not isinstance(new, str):
        raise ValueError(f"--set {key}: expected a string like {old!r}; got {new!r}.")
    if isinstance(old, list) and not isinstance(new, list):
        return [new]
    return new


def _leaf_keys(config: Mapping, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and key != "grid" and prefix != "grid.":
            keys += _leaf_keys(value, path + ".")
        else:
            keys.append(path)
    return keys


def apply_override(config: dict, key: str, value: object) -> None:
    """Set dotted ``key`` of a resolved configuration to ``value`` (checked)."""
    if key.startswith("grid."):
        axis = key[len("grid.") :]
        if axis not in config["grid"]:
            raise ValueError(
                f"--set {key}: the grid has no axis {axis!r}; "
                f"its axes are {sorted(config['grid'])}."
            )
        config["grid"][axis] = value if isinstance(value, list) else [value]
        return
    if key in config["grid"]:  # a swept key set to one value (or a list) replaces its axis
        config["grid"][key] = value if isinstance(value, list) else [value]
        return
    parts = key.split(".")
    node = config
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            raise ValueError(
                f"--set {key}: unknown key; valid keys are "
                f"{sorted(k for k in _leaf_keys(config) if not k.startswith('grid'))} "
                f"and the grid axes {sorted(config['grid'])}."
            )
        node = node[part]
        if depth == 0 and part == "methods" and parts[1] not in node:
            raise ValueError(f"--set {key}: unknown method label; labels are {sorted(node)}.")
    last = parts[-1]
    if last not in node:
        allowed = sorted(node)
        from udlbench import methods

        if parts[0] == "methods" and len(parts) == 3 and node["method"] in methods.METHODS:
            allowed = methods.option_names(node["method"])
            if last in allowed:
                node[last] = value
                return
        raise ValueError(f"--set {key}: unknown key {last!r}; valid keys here are {allowed}.")
    node[last] = _check_type(key, node[last], value)


def resolve(
    experiment: Experiment,
    profile: str = "quick",
    overrides: Iterable[tuple[str, object]] = (),
    seeds: Iterable[int] | None = None,
) -> dict:
    """The configuration a sweep of ``experiment`` runs on ``profile`` with ``overrides``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {list(PROFILES)}.")
    config = {
        "dataset": experiment.dataset,
        "methods": experiment.methods,
        "budget": experiment.budget,
        "grid": experiment.grid,
        "seeds": experiment.seeds,
        "metrics": experiment.metrics,
    }
    config = _merge(config, experiment.profiles.get(profile, {}))
    for key, value in overrides:
        apply_override(config, key, value)
    if seeds is not None:
        config["seeds"] = [int(s) for s in seeds]
    bad = sorted(set(config["metrics"]) - set(METRICS))
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; choose from {list(METRICS)}.")
    for axis, values in config["grid"].items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid axis {axis!r} needs a non-empty list of values.")
    return config


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: a method on one grid point and one seed."""

    experiment: str
    profile: str
    method: str
    options: dict
    dataset: dict
    seed: int
    point: dict
    metrics: tuple[str, ...]
    device: str = "cpu"
    dtype: str = "float32"
    kind: str = "learning"

    @property
    def run_id(self) -> str:
        """A stable hash of everything that determines the run's numbers (not the profile; the
        kind is implied by the method's name)."""
        payload = json.dumps(
            {k: v for k, v in self.__dict__.items() if k not in ("profile", "kind")},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha1(payload.encode()).hexdigest()[:16]


def _set_path(config: dict, key: str, value: object) -> None:
    parts = key.split(".")
    if parts[0] == "methods" and len(parts) == 3 and parts[1] == "*":
        for options in config["methods"].values():
            options[parts[2]] = value
        return
    node = config
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
        node[parts[-1]] = {**node[parts[-1]], **value}  # a grid of whole sections merges
    else:
        node[parts[-1]] = value


def plan(
    experiment: Experiment,
    config: dict,
    *,
    profile: str = "quick",
    device: str = "cpu",
    dtype: str = "float32",
) -> list[RunSpec]:
    """Every run of the sweep: grid points x methods x seeds."""
    axes = list(config["grid"])
    runs = []
    for values in itertools.product(*(config["grid"][a] for a in axes)):
        point = dict(zip(axes, values, strict=True))
        local = copy.deepcopy(config)
        for key, value in point.items():
            _set_path(local, key, value)
        for label, options in local["methods"].items():
            merged = {**local["budget"], **options}
            runs += [
                RunSpec(
                    experiment=experiment.name,
                    profile=profile,
                    method=label,
                    options=merged,
                    dataset=local["dataset"],
                    seed=int(seed),
                    point=point,
                    metrics=tuple(local["metrics"]),
                    device=device,
                    dtype=dtype,
                    kind=experiment.kind,
                )
                for seed in local["seeds"]
            ]
    return runs


def load_file(path: str | Path) -> list[Experiment]:
    """Experiments from a YAML/TOML file (one experiment, or a list under ``experiments``) or a
    Python file (which calls :func:`register` or defines ``EXPERIMENTS``); registers them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {path} does not exist.")
    if path.suffix == ".py":
        before = set(REGISTRY)
        spec = importlib.util.spec_from_file_location(f"udlbench_user_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found = [register(e) for e in getattr(module, "EXPERIMENTS", [])]
        found += [REGISTRY[n] for n in sorted(set(REGISTRY) - before) if REGISTRY[n] not in found]
        return found
    if path.suffix in (".yaml", ".yml"):
        content = yaml.safe_load(path.read_text())
    elif path.suffix == ".toml":
        content = tomllib.loads(path.read_text())
    else:
        raise ValueError(f"experiment file {path}: use .py, .yaml, .yml or .toml.")
    entries = content.get("experiments", [content]) if isinstance(content, dict) else None
    if not entries:
        raise ValueError(f"experiment file {path} holds no experiment mapping.")
    return [register(Experiment(**entry)) for entry in entries]


def _close(m: int, scale: float = 0.55) -> float:
    return round(scale / math.log(m), 6)


# --- the papers' experiments ------------------------------------------------------------------

_THREE_GRADIENTS = {
    f"ae-{k}" if k != "dec" else "dec": {"method": "pudle", "estimator": e}
    for k, e in (("ls", "ae-ls"), ("lasso", "ae-lasso"), ("dec", "dec"))
}
_PUDLE_FIG4_QUICK = {
    "dataset": {"m": 20, "p": 40, "s": 3, "n": 1000, "tau": 0.3},
    "budget": {"n_epochs": 300, "record_every": 10},
    "grid": {"methods.*.n_layers": [25, 50]},
    "seeds": [0, 1, 2],
}
_PUDLE_FIG4_FULL = {
    "dataset": {"m": 50, "p": 100, "s": 5, "n": 10_000, "tau": 0.716, "sign": "shared"},
    "budget": {"n_epochs": 600, "record_every": 5},
    "grid": {"methods.*.n_layers": [25, 100]},
    "seeds": [0, 1, 2, 3, 4],
}


def _fig4_like(name: str, title: str, *, grid=None, dataset=None, methods=None, reference=None,
               full_budget=None):
    quick = _merge(_PUDLE_FIG4_QUICK, {"dataset": dataset or {}})
    full = _merge(_PUDLE_FIG4_FULL, {"dataset": dataset or {}, "budget": full_budget or {}})
    if grid:
        quick["grid"] = {**quick["grid"], **grid["quick"]}
        full["grid"] = {**full["grid"], **grid["full"]}
    options = {"lam": 0.2, "alpha": 0.2, "lr": 1e-3, "adam_eps": 1e-8}
    return register(
        Experiment(
            name=name,
            title=title,
            dataset={"generator": "sparse", "init": "close", **_PUDLE_FIG4_QUICK["dataset"]},
            methods={k: {**v, **options, **(methods or {})} for k, v in _THREE_GRADIENTS.items()},
            budget={"batch_size": None, **_PUDLE_FIG4_QUICK["budget"]},
            profiles={"quick": quick, "full": full},
            reference=reference or {},
        )
    )


_fig4_like(
    "pudle-fig4",
    "PUDLE Fig. 4b-c: dictionary error of g_dec, g_ae-lasso, g_ae-ls at T = 25 and T = 100",
    reference={
        "source": "Tolooshams & Ba, TMLR 2023, Fig. 4b-c; THEOREMS.md P-DL4",
        "claim": "g_ae-ls reaches a closer neighbourhood of D* than g_dec and g_ae-lasso; at "
        "T = 25 g_ae-lasso beats g_dec; at T = 100 they are alike.",
        "quick_proto": {"ae-ls": 0.050, "ae-lasso": 0.187, "dec": 0.314},
    },
)
_fig4_like(
    "pudle-fig12",
    "PUDLE Fig. 12: Fig. 4 with noise (SNR 12 dB, lam = 0.3)",
    dataset={"snr_db": 12.0},
    methods={"lam": 0.3},
    reference={"source": "Tolooshams & Ba, TMLR 2023, Fig. 12",
               "claim": "the ordering of Fig. 4 holds with noise"},
)
_fig4_like(
    "pudle-fig13",
    "PUDLE Fig. 13: Fig. 4 with batch sizes 4, 16, 64",
    grid={"quick": {"budget.batch_size": [4, 16, 64]}, "full": {"budget.batch_size": [4, 16, 64]}},
    # the paper does not give Fig. 13's budget and notes that small batches converge in fewer
    # epochs; 600 epochs of batch 4 would be 1.5 million updates, so the full profile gives every
    # batch size the same 20,000 updates
    full_budget={"n_epochs": 10_000, "max_steps": 20_000, "record_every": 100},
    reference={"source": "Tolooshams & Ba, TMLR 2023, Fig. 13",
               "claim": "the ordering of Fig. 4 holds for every batch size"},
)
_fig4_like(
    "pudle-fig14",
    "PUDLE Fig. 14: Fig. 4 with learning rates 1e-4, 1e-3, 1e-2",
    grid={"quick": {"methods.*.lr": [1e-4, 1e-3, 1e-2]},
          "full": {"methods.*.lr": [1e-4, 1e-3, 1e-2]}},
    reference={"source": "Tolooshams & Ba, TMLR 2023, Fig. 14",
               "claim": "g_ae-ls is stable over learning rates; g_dec and g_ae-lasso diverge "
               "at 1e-2"},
)

register(
    Experiment(
        name="pudle-fig5",
        title="PUDLE Figs. 5/16: g_ae-ls (fixed lam, decay, HT) against NOODL and alternating "
        "minimisation",
        dataset={"generator": "sparse", "init": "close", "m": 50, "p": 100, "s": 5, "n": 5000,
                 "sign": "shared"},
        methods={
            "ae-ls": {"method": "pudle", "estimator": "ae-ls", "lam": 0.2, "alpha": 0.2},
            "ae-ls-decay": {"method": "pudle", "estimator": "ae-ls", "lam": 0.2, "alpha": 0.2,
                            "lam_decay": {"schedule": "paper", "every": 100, "decrement": 0.005}},
            "ae-ls-ht": {"method": "pudle", "estimator": "ae-ls", "lam": 0.5, "alpha": 0.2,
                         "prox": "hard"},
            "noodl": {"method": "noodl", "eta_A": 20.0, "tau": 0.1, "n_coding_iter": 50},
            "am": {"method": "am", "lam": 0.2, "lr": 1e-3},
            "sporco-am": {"method": "sporco-am", "lam": 0.2, "batch_size": None,
                          "n_epochs": 200, "max_steps": 200, "record_every": 5},
        },
        budget={"batch_size": 50, "n_epochs": 1, "max_steps": 1000, "record_every": 20},
        seeds=[0, 1, 2],
        profiles={
            "quick": {
                # the issue's size, and THEOREMS.md P-DL5's quick proxy nearer the paper's regime
                "grid": {"dataset": [
                    {"m": 50, "p": 100, "s": 5, "tau": _close(50, 1.0)},
                    {"m": 100, "p": 150, "s": 3, "tau": _close(100, 1.0)},
                ]},
                "budget": {"n_epochs": 10},  # 5000 samples seen 10 times: 1000 updates
                # at m = 50 the authors' step 20 diverges (NaN); 1.0 with tau 0.3 is stable
                "methods": {"noodl": {"eta_A": 1.0, "tau": 0.3}},
            },
            "full": {
                "dataset": {"m": 1000, "p": 1500, "n": 50_000, "tau": _close(1000, 1.0)},
                "grid": {"dataset.s": [10, 20, 40]},
                "budget": {"record_every": 10},
            },
        },
        reference={
            "source": "Tolooshams & Ba, TMLR 2023, Figs. 5 and 16; THEOREMS.md P-DL5",
            "claim": "decay, HT and NOODL go far below the fixed-lam floors; g_ae-ls ends "
            "closer to D* than AM with the same lam",
            "paired": [["ae-ls", "am"]],
            "floors_s20": {"ae-ls": 1.4e-2, "ae-ls-decay": 5.7e-6, "ae-ls-ht": 4.8e-7,
                           "noodl": 1.7e-4},
        },
    )
)

register(
    Experiment(
        name="pudle-fig15",
        title="PUDLE Fig. 15: the three gradients from the pairwise initialisation of Arora et al.",
        dataset={"generator": "sparse", "init": "arora", "m": 50, "p": 50, "s": 5, "n": 2000,
                 "dictionary": "orthogonal", "amplitude": "normal"},
        methods={k: {**v, "lam": 0.05, "alpha": 0.2, "lr": 1e-3, "adam_eps": 1e-8}
                 for k, v in _THREE_GRADIENTS.items()},
        budget={"batch_size": None, "n_epochs": 300, "record_every": 10},
        grid={"methods.*.n_layers": [25, 50]},
        seeds=[0, 1, 2],
        profiles={
            "full": {
                "dataset": {"m": 100, "p": 100, "n": 10_000},
                "budget": {"n_epochs": 600, "record_every": 5},
                "grid": {"methods.*.n_layers": [25, 100]},
            },
        },
        reference={
            "source": "Tolooshams & Ba, TMLR 2023, Fig. 15 and App. C.1; THEOREMS.md P-F15",
            "claim": "from the Arora et al. initialisation, g_ae-ls converges to a closer "
            "neighbourhood of D* than g_dec and g_ae-lasso",
        },
    )
)


def _study(name: str, title: str, study: str, *, seeds: list[int], reference: dict,
           options: dict | None = None) -> None:
    """Register study ``study`` (:mod:`udlbench.studies`) as experiment ``name``: its ``QUICK``
    options are the quick profile, its ``FULL`` options the full one (``options`` override
    both)."""
    from udlbench import studies

    implementation = studies.module(study)
    register(
        Experiment(
            name=name,
            title=title,
            kind="study",
            dataset={},
            methods={study: {"method": study, **implementation.QUICK, **(options or {})}},
            seeds=seeds,
            profiles={"full": {"methods": {study: {**implementation.FULL, **(options or {})}}}},
            reference=reference,
        )
    )


_study(
    "pudle-fig2-3",
    "PUDLE Figs 2 and 3: code error and gradient errors of g_dec, g_ae-lasso, g_ae-ls vs depth",
    "encoder-probes",
    seeds=[0, 1],
    reference={"source": "Tolooshams & Ba, TMLR 2023, Figs 2-3, Thms 4.3, 4.9-4.12",
               "claim": "codes converge linearly at rho_S; g_ae-lasso converges twice as fast "
                        "as g_dec; g_ae-ls plateaus at O(lam)"},
)
_study(
    "malezieux-figs",
    "Malezieux et al. Figs 1-4 and 6: unstable Jacobians, truncated back-propagation, AM vs DDL",
    "malezieux-figs",
    seeds=[0, 1],
    reference={"source": "Malezieux, Moreau & Kowalski, ICLR 2022, Secs 2-3.2, Figs 1-4, 6",
               "claim": "40 % of Jacobians unstable; truncation stabilises; DDL beats AM in angle "
                        "and recovery for N < 50; one DDL step costs 1.5 AM steps"},
)
_study(
    "pudle-table1",
    "PUDLE Table 1 and Fig. 6: Gaussian denoising (sigma = 25) with a convolutional dictionary",
    "gaussian-denoising",
    seeds=[0, 1],
    reference={"source": "Tolooshams & Ba, TMLR 2023, Sec. 4.3, App. C.3, Table 1, Fig. 6",
               "claim": "g_ae-ls denoises better than g_dec; g_ae-lasso is unstable"},
)
_study(
    "dcea-table2",
    "DCEA Table 2: Poisson denoising (peaks 1, 2, 4), DCEA-C and DCEA-UC against Anscombe + NLM",
    "poisson-denoising",
    seeds=[0, 1],
    reference={"source": "Tolooshams, Song, Temereanca & Ba, ICML 2020, Sec. 5.1, Table 2",
               "claim": "DCEA-UC > DCEA-C, competitive with VST + BM3D at a fraction of the "
                        "parameters"},
)
_study(
    "pudle-digits",
    "PUDLE Sec. 5 on digits 0-4: the stationary dictionary and what each atom is made of",
    "digits-interpretability",
    seeds=[0, 1],
    reference={"source": "Tolooshams & Ba, TMLR 2023, Thm 5.1, eqs 17-19, Figs 8-10",
               "claim": "D~ = X G^-1 Z^T; atoms interpolate training images of similar codes"},
)
_study(
    "group-table1",
    "Group-sparse autoencoder codes for clustering digits (MNIST in the paper)",
    "digits-clustering",
    seeds=[0, 1],
    reference={"source": "Theodosis, Tolooshams, Tankala, Tasissa & Ba, Sec. 4.2, Table 1",
               "claim": "group-sparse codes cluster better than raw pixels and sparse codes"},
)
_study(
    "group-fig3",
    "Group-sparse autoencoder Fig. 3: dictionary error against epochs, group against sparse",
    "group-fig3",
    seeds=[0, 1],
    reference={"source": "Theodosis, Tolooshams, Tankala, Tasissa & Ba, Sec. 4.1, Fig. 3a-d",
               "claim": "the error decreases at every SNR; at 1 dB group-sparse beats sparse in "
                        "dictionary error and support recovery"},
)
_study(
    "dcea-fig3",
    "DCEA Fig. 3: binomial convolutional dictionary learning, DCEA against BCOMP",
    "dcea-fig3",
    seeds=[0, 1],
    options={"parts": ["fig3"]},
    reference={"source": "Tolooshams, Song, Temereanca & Ba, ICML 2020, Sec. 5.2.1, Fig. 3",
               "claim": "DCEA recovers the filters; its CSC inference is faster than BCOMP's"},
)
_study(
    "dcea-fig5",
    "DCEA Fig. 5: Gaussian- against binomial-trained DCEA on binomial data",
    "dcea-fig5",
    seeds=[0, 1],
    options={"parts": ["fig5"]},
    reference={"source": "Tolooshams, Song, Temereanca & Ba, ICML 2020, Sec. 5.2.3, Fig. 5",
               "claim": "DCEA-b error about 0.09 at M = 30, falling with M; DCEA-g about 0.4 at "
                        "M = 200"},
)
