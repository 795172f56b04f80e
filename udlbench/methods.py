"""The methods a sweep can run, by name: the unrolled estimators and the baselines.

A method is a :class:`udlbench.training.DictionaryLearner` built from a plain mapping of options
(what an experiment file holds), so that the runner and the reports treat every method alike.
Options that are not plain values in a file are spelled as mappings:

* ``lam_decay: {schedule: paper, every: 100, decrement: 0.005}`` is the training schedule of the
  decay factor of Tolooshams & Ba (TMLR 2023, App. C.1), :func:`udlbench.operators.nu_at_step`;
  a number is a fixed factor nu.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Mapping

from udlbench import operators
from udlbench.training import DictionaryLearner

#: method name -> "module:Class" of its learner, and a one-line description.
METHODS: dict[str, tuple[str, str]] = {
    "pudle": (
        "udlbench.training:PUDLE",
        "unrolled ISTA/FISTA autoencoder with g_dec, g_ae-lasso or g_ae-ls (TMLR 2023, Alg. 2)",
    ),
    "am": (
        "udlbench.training:AlternatingMinimization",
        "alternating minimisation with certified lasso codes (TMLR 2023, Alg. 1)",
    ),
    "noodl": ("baselines.noodl:NOODL", "NOODL (Rambhatla, Li & Haupt, ICLR 2019, Alg. 1)"),
    "sporco-am": (
        "baselines.sporco_am:SporcoAM",
        "SPORCO-style alternating minimisation, ADMM or exact coding (Wohlberg 2017)",
    ),
    "online-dl": (
        "baselines.online:OnlineDictionaryLearning",
        "online dictionary learning (Mairal, Bach, Ponce & Sapiro, ICML 2009)",
    ),
}

SCHEDULES = {"paper": operators.nu_at_step}


def learner_class(name: str) -> type[DictionaryLearner]:
    """The learner class of method ``name``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}.")
    module, _, attribute = METHODS[name][0].partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"method {name!r} is not available in this install: {error}") from None


def available() -> dict[str, str]:
    """Method name -> description, for the methods this install can build."""
    found = {}
    for name, (_, description) in METHODS.items():
        try:
            learner_class(name)
        except ValueError:
            continue
        found[name] = description
    return found


def option_names(name: str) -> list[str]:
    """The options method ``name`` accepts (its learner's keywords and the loop's)."""
    names: list[str] = []
    for cls in learner_class(name).__mro__:
        if "__init__" in vars(cls):
            names += [
                p.name
                for p in inspect.signature(cls.__init__).parameters.values()
                if p.kind is p.KEYWORD_ONLY and p.name not in names
            ]
    return sorted(names)


def _resolve(key: str, value: object) -> object:
    if key == "lam_decay" and isinstance(value, Mapping):
        options = dict(value)
        schedule = options.pop("schedule", "paper")
        if schedule not in SCHEDULES:
            raise ValueError(
                f"lam_decay schedule {schedule!r} is unknown; choose from {sorted(SCHEDULES)}."
            )
        return functools.partial(SCHEDULES[schedule], **options)
    return value


def build(name: str, options: Mapping[str, object]) -> DictionaryLearner:
    """A learner of method ``name`` with ``options``; unknown options are named with the valid
    ones, and the learner's own validation names a bad value."""
    cls = learner_class(name)
    allowed = option_names(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"method {name!r} has no option(s) {unknown}; its options are {allowed}.")
    return cls(**{key: _resolve(key, value) for key, value in options.items()})
