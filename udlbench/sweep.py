"""``udlbench list`` and ``udlbench run``: the registry of experiments and the main job.

``udlbench run NAME...`` resolves each experiment on a profile with ``--set`` overrides, runs its
sweep into the results directory (skipping finished runs) and writes the comparison report.
Without NAME it runs :data:`DEFAULT_SELECTION` on the quick profile.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from udlbench import experiments

DEFAULT_SELECTION = ("pudle-fig5",)


def _overrides(pairs: list[str]) -> list[tuple[str, object]]:
    parsed = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE (e.g. budget.max_steps=200); got {pair!r}.")
        parsed.append((key.strip(), experiments.parse_value(value.strip())))
    return parsed


def list_main(args: argparse.Namespace) -> int:
    from udlbench import datasets, methods

    for path in args.experiments_file or []:
        experiments.load_file(path)
    print("experiments (udlbench run NAME):")
    for name, experiment in sorted(experiments.REGISTRY.items()):
        print(f"  {name:<14} {experiment.title}")
        print(f"  {'':<14} methods: {', '.join(experiment.methods)}")
    print("\nmethods (an experiment's methods.<label>.method):")
    for name, description in methods.available().items():
        print(f"  {name:<14} {description}")
    from udlbench import studies

    print("\nstudies (the methods of an experiment of kind 'study'):")
    for name, (_, description) in studies.STUDIES.items():
        print(f"  {name:<24} {description}")
    print("\ndataset generators (an experiment's dataset.generator):")
    for name in datasets.GENERATORS:
        print(f"  {name:<14} inits: {', '.join(datasets.INITS)}")
    return 0


def run_main(args: argparse.Namespace) -> int:
    from udlbench import report, runner
    from udlbench.results import IncompatibleStoreError, ResultsStore

    try:
        for path in args.experiments_file or []:
            experiments.load_file(path)
        names = args.names or list(DEFAULT_SELECTION)
        selected = [experiments.get(name) for name in names]
        overrides = _overrides(args.set or [])
        plans = []
        for experiment in selected:
            config = experiments.resolve(experiment, args.profile, overrides, seeds=args.seeds)
            runs = experiments.plan(
                experiment, config, profile=args.profile, device=args.device, dtype=args.dtype
            )
            for spec in runs:
                runner.check(spec)
            plans.append((experiment, runs))
        store = ResultsStore(args.results)
    except (ValueError, FileNotFoundError, IncompatibleStoreError) as error:
        print(f"udlbench run: error: {error}", file=sys.stderr)
        return 2
    status = 0
    for experiment, runs in plans:
        print(
            f"{experiment.name} ({args.profile}): {len(runs)} runs -> "
            f"{store.root / experiment.name}",
            file=sys.stderr,
        )
        summary = runner.run_sweep(
            runs,
            store,
            executor=args.executor,
            workers=args.workers,
            scheduler=args.scheduler,
            force=args.force,
            progress=not args.quiet,
        )
        print(
            f"{experiment.name}: {summary.finished} finished, {summary.skipped} already stored, "
            f"{summary.failed} failed",
            file=sys.stderr,
        )
        for line in summary.errors:
            print(f"  failed: {line}", file=sys.stderr)
        status = status or int(summary.failed > 0)
    if args.report is not None:
        index = report.write_report(
            [args.results], Path(args.report), evidence_dir=args.evidence,
            only=[e.name for e, _ in plans],
        )
        print(f"report: {index}", file=sys.stderr)
    return status


def add_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("names", nargs="*", metavar="NAME",
                     help=f"experiments to run (default: {', '.join(DEFAULT_SELECTION)})")
    run.add_argument("--profile", choices=experiments.PROFILES, default="quick",
                     help="quick (CPU, minutes) or full (the papers' sizes); default quick")
    run.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the experiment's)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a configuration key, e.g. budget.max_steps=200, "
                     "methods.ae-ls.lr=1e-2, dataset.s=10 (repeatable)")
    run.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    run.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                     help="data and dictionary dtype (default float32)")
    run.add_argument("--executor", choices=("serial", "process", "dask"), default=None,
                     help="serial, local processes (default on CPU) or Dask (--scheduler ADDRESS "
                     "joins a cluster; without it a local cluster starts); serial on CUDA")
    run.add_argument("--scheduler", help="address of a Dask scheduler (with --executor dask)")
    run.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    run.add_argument("--results", default="results", help="results directory (default results)")
    run.add_argument("--report", default="reports/latest",
                     help="report directory written after the sweep (default reports/latest)")
    run.add_argument("--no-report", dest="report", action="store_const", const=None,
                     help="do not write a report")
    run.add_argument("--evidence", default="results/evidence",
                     help="theorem evidence records shown in the report (default results/evidence)")
    run.add_argument("--force", action="store_true", help="re-run finished runs")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--experiments-file", action="append", metavar="FILE",
                     help="a .py, .yaml or .toml file of more experiments (repeatable)")


def resolve_executor(args: argparse.Namespace) -> None:
    if args.executor is None:
        args.executor = "serial" if args.device.startswith("cuda") else "process"
