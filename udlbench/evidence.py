"""Evidence records of checked claims, and the statistics that go into them.

A record says which claim was checked (catalogue id, paper, statement), what was measured, what
theory predicts, the verdict ("holds", "deviation documented", "failed"), and how (seeds, tier,
device, dtype, timings). Records are JSON files, one per check, written atomically so that an
interrupted run never leaves a torn file; ``udlbench report`` turns a directory of them into the
theorem table.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scipy import stats

VERDICTS = ("holds", "deviation documented", "not checkable", "failed")


@dataclass
class Evidence:
    claim: str
    test: str
    paper: str = ""
    statement: str = ""
    measured: dict[str, object] = field(default_factory=dict)
    predicted: dict[str, object] = field(default_factory=dict)
    verdict: str = ""
    seeds: list[int] = field(default_factory=list)
    tier: str = ""
    device: str = "cpu"
    dtype: str = "float64"
    timings: dict[str, float] = field(default_factory=dict)
    notes: str = ""
    figures: list[str] = field(default_factory=list)

    def measure(self, **values: object) -> None:
        """Record measured quantities (numbers, lists or short strings)."""
        self.measured.update({k: _plain(v) for k, v in values.items()})

    def predict(self, **values: object) -> None:
        """Record what theory predicts for the measured quantities of the same name."""
        self.predicted.update({k: _plain(v) for k, v in values.items()})

    def save_figure(self, figure, directory: str | os.PathLike, name: str) -> list[Path]:
        """Save a matplotlib figure as ``<claim>__<name>.png`` and ``.svg`` under
        ``directory/figures`` and list the files in the record (paths relative to ``directory``)."""
        folder = Path(directory) / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        stem = _safe(f"{self.claim}__{name}")
        paths = []
        for suffix in (".png", ".svg"):
            path = folder / (stem + suffix)
            figure.savefig(path, dpi=150, bbox_inches="tight")
            paths.append(path)
            self.figures.append(str(path.relative_to(directory)))
        return paths

    def write(self, directory: str | os.PathLike) -> Path:
        """Write ``<claim>__<test>.json`` atomically into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{_safe(f'{self.claim}__{self.test}')}.json"
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle, indent=2, sort_keys=True)
        os.replace(tmp, target)
        return target


def record_files(directory: str | os.PathLike) -> list[Path]:
    """The evidence records in ``directory``: JSON files holding a claim and a verdict (other
    files are left alone)."""
    found = []
    for path in Path(directory).glob("*.json"):
        try:
            content = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(content, dict) and {"claim", "test", "verdict"} <= content.keys():
            found.append(path)
    return found


def load(directory: str | os.PathLike) -> list[Evidence]:
    """Every record in ``directory``, sorted by claim and test."""
    records = [Evidence(**json.loads(p.read_text())) for p in record_files(directory)]
    return sorted(records, key=lambda r: (r.claim, r.test))


def clopper_pearson(
    successes: int, trials: int, *, confidence: float = 0.95
) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion (THEOREMS.md Sec. 0.1)."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0; got {successes}/{trials}.")
    ci = stats.binomtest(successes, trials).proportion_ci(
        confidence_level=confidence, method="exact"
    )
    return float(ci.low), float(ci.high)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _plain(value: object) -> object:
    """Convert numpy / torch scalars and arrays to JSON-friendly Python values."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
