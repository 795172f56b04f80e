"""The results store: one tidy table of every recorded point, one parquet file per finished run.

Layout under a results directory::

    STORE.json                         format version and the udlbench version that made it
    <experiment>/runs/<run_id>.parquet one row per recorded point of a finished run
    <experiment>/failed/<run_id>.json  a run that raised: its spec, the error and the traceback

Each row holds the experiment, method label and method name, the grid point and every option as
columns (``opt.<name>``, ``data.<name>``), the seed, the learner's records (step, epoch, loss,
time, dictionary and code errors) and provenance (udlbench version, git commit, torch and numpy
versions, device name, CUDA version, dtype, timing method). Files are written atomically (a
temporary file then a rename), so a killed run never leaves a torn file; a run is finished exactly
when its parquet file exists.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from udlbench import __version__

FORMAT = 1



def grid_columns(table: pd.DataFrame) -> list[str]:
    """The ``grid.*`` columns of a results table that hold a value (the swept axes)."""
    return [c for c in table.columns if c.startswith("grid.") and table[c].notna().any()]


def point_label(point: tuple, columns: list[str]) -> str:
    """A grid point as ``"n_layers=25, budget.batch_size=4"``: the axis without ``grid.`` and
    ``methods.*.``; a swept whole section (stored as JSON) gives one ``key=value`` per key; a table
    without a grid gives ``"all runs"``."""
    parts = []
    for column, value in zip(columns, point, strict=True):
        if isinstance(value, str) and value.startswith("{"):  # a merged section, e.g. sizes
            parts += [f"{k}={v}" for k, v in json.loads(value).items()]
        else:
            parts.append(f"{column[5:].replace('methods.*.', '')}={value}")
    return ", ".join(parts) or "all runs"


def point_labels(table: pd.DataFrame) -> pd.Series:
    """The :func:`point_label` of every row of a results table."""
    columns = grid_columns(table)
    return pd.Series([point_label(tuple(values), columns)
                      for values in table[columns].itertuples(index=False)],
                     index=table.index, dtype=object)


class IncompatibleStoreError(RuntimeError):
    """A results directory written by an incompatible version of udlbench."""


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ResultsStore:
    """A results directory (created on first use, refused if of another format)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        marker = self.root / "STORE.json"
        if marker.is_file():
            meta = json.loads(marker.read_text())
            if meta.get("format") != FORMAT:
                raise IncompatibleStoreError(
                    f"results directory {self.root} has store format {meta.get('format')!r} "
                    f"(written by udlbench {meta.get('udlbench', '?')}); this udlbench "
                    f"{__version__} reads format {FORMAT}. Use a new results directory."
                )
        elif self.root.exists() and any(self.root.glob("*/runs/*.parquet")):
            raise IncompatibleStoreError(
                f"results directory {self.root} holds runs but no STORE.json; it was not written "
                "by udlbench's results store. Use a new results directory."
            )
        else:
            payload = json.dumps({"format": FORMAT, "udlbench": __version__}, indent=2)
            _atomic_write(marker, lambda tmp: Path(tmp).write_text(payload))

    def run_path(self, experiment: str, run_id: str) -> Path:
        return self.root / experiment / "runs" / f"{run_id}.parquet"

    def failure_path(self, experiment: str, run_id: str) -> Path:
        return self.root / experiment / "failed" / f"{run_id}.json"

    def is_finished(self, experiment: str, run_id: str) -> bool:
        return self.run_path(experiment, run_id).is_file()

    def write_run(self, experiment: str, run_id: str, table: pd.DataFrame) -> Path:
        """Store a finished run (and forget an earlier failure of it)."""
        path = self.run_path(experiment, run_id)
        _atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))
        self.failure_path(experiment, run_id).unlink(missing_ok=True)
        return path

    def write_failure(self, experiment: str, run_id: str, failure: dict) -> Path:
        path = self.failure_path(experiment, run_id)
        payload = json.dumps(failure, indent=2, default=str)
        _atomic_write(path, lambda tmp: Path(tmp).write_text(payload))
        return path

    def experiments(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "runs").is_dir() or (
            p / "failed").is_dir())

    def load(self, experiment: str | None = None) -> pd.DataFrame:
        """All stored rows (of one experiment, or of all)."""
        names = [experiment] if experiment else self.experiments()
        files = [f for name in names for f in sorted((self.root / name / "runs").glob("*.parquet"))]
        if not files:
            return pd.DataFrame()
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    def failures(self, experiment: str | None = None) -> list[dict]:
        names = [experiment] if experiment else self.experiments()
        return [
            json.loads(f.read_text())
            for name in names
            for f in sorted((self.root / name / "failed").glob("*.json"))
        ]
