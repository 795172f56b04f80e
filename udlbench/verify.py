"""``udlbench verify``: run the theorem suite and print the claim table from its evidence.

Wraps ``pytest theorems/`` with the suite's options (tiers, ``--base-seed``, ``--device``,
``--evidence-dir``), one BLAS thread per process, then reads the evidence records written by the
run and prints one line per check: claim, statement, verdict and the key measured quantities next
to the predicted ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from udlbench import evidence

TIERS = ("fast", "medium", "slow", "full")
DEFAULT_TIERS = ("fast", "medium")


def suite_directory() -> Path:
    """The ``theorems/`` folder of the checkout udlbench was installed from (or of the cwd)."""
    for candidate in (Path(__file__).resolve().parents[1] / "theorems", Path.cwd() / "theorems"):
        if (candidate / "conftest.py").is_file():
            return candidate
    raise FileNotFoundError(
        "cannot find the theorem suite (a theorems/ folder with conftest.py) next to the udlbench "
        "package or in the current directory; run from a udlbench checkout."
    )


def run_suite(
    *,
    tiers: tuple[str, ...],
    base_seed: int,
    device: str,
    evidence_dir: Path,
    workers: int,
    extra: list[str],
) -> int:
    """Run pytest on the suite; returns its exit status."""
    unknown = sorted(set(tiers) - set(TIERS))
    if unknown:
        raise ValueError(f"unknown tiers {unknown}; choose from {list(TIERS)}.")
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(suite_directory()),
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        " or ".join(tiers),
        "--base-seed",
        str(base_seed),
        "--device",
        device,
        "--evidence-dir",
        str(evidence_dir),
    ]
    if workers > 1:
        command += ["-n", str(workers)]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    return subprocess.run(command + extra, env=env, check=False).returncode


def _summary(values: dict, limit: int = 4) -> str:
    parts = []
    for key, value in list(values.items())[:limit]:
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif isinstance(value, int | str | bool):
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}=[...]")
    return ", ".join(parts)


def claim_table(records: list[evidence.Evidence]) -> str:
    """One line per evidence record: claim | statement | verdict | measured | predicted."""
    header = f"{'claim':<9} {'statement':<28} {'verdict':<21} measured  ||  predicted"
    lines = [header, "-" * len(header)]
    for r in records:
        lines.append(
            f"{r.claim:<9} {r.statement[:28]:<28} {r.verdict:<21} {_summary(r.measured)}"
            + (f"  ||  {_summary(r.predicted)}" if r.predicted else "")
        )
    counts = {v: sum(r.verdict == v for r in records) for v in evidence.VERDICTS}
    lines.append(", ".join(f"{n} {v}" for v, n in counts.items()))
    return "\n".join(lines)


def main(args) -> int:
    evidence_dir = Path(args.evidence_dir)
    evidence_dir.mkdir(parents=True, exist_ok=True)
    for stale in evidence.record_files(evidence_dir):
        stale.unlink()
    status = run_suite(
        tiers=tuple(args.tier or DEFAULT_TIERS),
        base_seed=args.base_seed,
        device=args.device,
        evidence_dir=evidence_dir,
        workers=args.workers,
        extra=list(args.pytest_args),
    )
    records = evidence.load(evidence_dir)
    print()
    print(claim_table(records) if records else "no evidence records were written")
    print(f"evidence: {evidence_dir.resolve()}")
    return status
