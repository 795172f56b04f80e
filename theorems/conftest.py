"""The theorem suite: options, the ``claim`` marker and the evidence recorder.

Every check carries ``@pytest.mark.claim("P-T4.3", statement="Thm 4.3")`` (its id in
../shared/THEOREMS.md) and a tier marker (``fast``, ``medium``, ``slow``, ``full``). Its
``evidence`` fixture collects what it measured and what theory predicts; after the test the record
is written to ``--evidence-dir`` with the verdict taken from the outcome: a passing
``test_<id>_deviation_*`` documents a deviation, any other passing test says the claim holds, a
failing one says it failed; a check of an item the catalogue lists as not numerically checkable
sets ``evidence.verdict = "not checkable"`` itself. ``--base-seed`` shifts every seed of the
suite; the checks must pass for any base seed. Computations run in float64 (THEOREMS.md
Sec. 0.1) on ``--device``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from udlbench.evidence import Evidence

os.environ.setdefault("MPLBACKEND", "Agg")  # figures are files; there is no display

PAPERS = {
    "P": "Tolooshams & Ba, Stable and Interpretable Unrolled Dictionary Learning, TMLR 2023",
    "W": "Tolooshams & Ba, PUDLE: Implicit Acceleration of Dictionary Learning by "
    "Backpropagation, arXiv 2106.00058v1",
    "M": "Malezieux, Moreau & Kowalski, ICLR 2022",
    "G": "Theodosis, Tolooshams, Tankala, Tasissa & Ba, On the convergence of group-sparse "
    "autoencoders",
    "E": "Tolooshams, Song, Temereanca & Ba, ICML 2020 (DCEA)",
}
TIERS = ("fast", "medium", "slow", "full")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("udlbench theorems")
    group.addoption(
        "--evidence-dir",
        default=os.path.join("results", "evidence"),
        help="directory for the evidence records (default: results/evidence)",
    )
    group.addoption(
        "--base-seed",
        type=int,
        default=0,
        help="offset added to every seed of the suite (default: 0)",
    )
    group.addoption(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="device the checks compute on (default: cpu)",
    )
    group.addoption(
        "--figures",
        action="store_true",
        help="render each check's paper figure into <evidence-dir>/figures",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "claim(id, statement=''): catalogue id of the claim")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here not in item.path.parents:
            continue
        if item.get_closest_marker("claim") is None:
            raise pytest.UsageError(f"{item.nodeid} has no @pytest.mark.claim(...) marker.")
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            raise pytest.UsageError(f"{item.nodeid} has no tier marker {TIERS}.")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        item.stash[_OUTCOME] = report.outcome
    return report


_OUTCOME = pytest.StashKey[str]()


@pytest.fixture(autouse=True)
def _float64():
    """THEOREMS.md Sec. 0.1: float64 everywhere (restored after each check)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    name = request.config.getoption("--device")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda given but no CUDA device is available")
    return torch.device(name)


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> Callable[[int], int]:
    """``seed(k)`` is the k-th seed of this check shifted by ``--base-seed``."""
    base = request.config.getoption("--base-seed")
    return lambda k=0: base + k


@pytest.fixture
def figures(request: pytest.FixtureRequest):
    """``figures(evidence, figure, name)`` saves the figure when ``--figures`` is given (and closes
    it); a check draws its paper figure only when ``figures.enabled``."""
    enabled = request.config.getoption("--figures")
    directory = request.config.getoption("--evidence-dir")

    def save(record: Evidence, figure, name: str) -> None:
        import matplotlib.pyplot as plt

        record.save_figure(figure, directory, name)
        plt.close(figure)

    save.enabled = enabled
    return save


@pytest.fixture
def evidence(request: pytest.FixtureRequest, device: torch.device):
    """The check's evidence record, written after the test with its verdict."""
    marker = request.node.get_closest_marker("claim")
    claim = marker.args[0]
    tier = next(t for t in TIERS if request.node.get_closest_marker(t))
    record = Evidence(
        claim=claim,
        test=request.node.name,
        paper=PAPERS.get(claim.split("-")[0], ""),
        statement=marker.kwargs.get("statement", ""),
        tier=tier,
        device=str(device),
        dtype="float64",
        notes=(request.node.function.__doc__ or "").strip(),
    )
    start = time.perf_counter()
    yield record
    record.timings["total_s"] = round(time.perf_counter() - start, 3)
    outcome = request.node.stash.get(_OUTCOME, "failed")
    if outcome == "passed":
        if record.verdict != "not checkable":
            deviation = "_deviation" in request.node.name
            record.verdict = "deviation documented" if deviation else "holds"
    elif outcome == "failed":
        record.verdict = "failed"
    else:
        return
    record.write(request.config.getoption("--evidence-dir"))
