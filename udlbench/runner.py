"""Run a sweep of an experiment: every run once, stored as soon as it finishes, failures recorded.

``run_sweep(runs, store, executor=...)`` skips the runs already in the store (unless ``force``),
checks every run's options before starting any, then executes the rest on one of three executors:

* ``serial``: in this process;
* ``process``: a pool of local worker processes (the default on CPU);
* ``dask``: a Dask distributed cluster, joined at ``scheduler`` (an address) or a local one.

Each run seeds its own data, initialisation and batch order, and pins torch to one thread, so the
numbers do not depend on the executor. A run that raises is stored as failed with its error and
traceback and does not stop the sweep. Timing (in the learners' records): the clock runs around
the updates only, metric evaluation excluded, read after a CUDA synchronisation on GPU; two
untimed warm-up updates on a copy of the problem precede each timed run.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch

from udlbench import __version__, datasets, methods, studies
from udlbench.experiments import RunSpec
from udlbench.results import ResultsStore

EXECUTORS = ("serial", "process", "dask")


def provenance(device: str = "cpu") -> dict[str, object]:
    """Where the results come from: versions, commit, device and how time was measured."""
    import numpy as np

    from udlbench.cli import _cpu_model, git_commit

    on_cuda = device.startswith("cuda")
    return {
        "udlbench_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "device_name": torch.cuda.get_device_name(torch.device(device)) if on_cuda
        else _cpu_model(),
        "cuda_version": torch.version.cuda if on_cuda else None,
        "timing": "perf_counter after torch.cuda.synchronize" if on_cuda else "perf_counter",
    }


def _plain(value: object) -> object:
    return value if isinstance(value, int | float | str | bool) or value is None else json.dumps(
        value, sort_keys=True
    )


def check(spec: RunSpec) -> None:
    """Raise ValueError naming the option if the run's method or dataset options are invalid."""
    options = dict(spec.options)
    name = options.pop("method")
    if spec.kind == "study":
        studies.check(name, options)
        return
    methods.build(name, options)
    datasets.check(spec.dataset)


def execute(spec: RunSpec, origin: dict) -> pd.DataFrame:
    """Run one learner on its problem (or one study); its records with parameters and provenance
    as columns. A study's own columns (its ``method``, say) are kept; the run's label is then in
    ``run_label``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if spec.kind == "study":
            return _label(execute_study(spec), spec, origin)
        problem = datasets.build(spec.dataset, spec.seed, dtype=spec.dtype, device=spec.device)
        options = dict(spec.options)
        name = options.pop("method")
        options.setdefault("seed", spec.seed)
        warm_up = {**options, "max_steps": 2, "record_every": 1}
        methods.build(name, warm_up).fit(problem.X.clone(), problem.D0.clone())
        _reset_peak_memory(spec.device)
        learner = methods.build(name, options)
        learner.fit(
            problem.X,
            problem.D0,
            D_star=problem.D_star,
            Z_star=problem.Z_star if "code" in spec.metrics else None,
        )
        table = learner.records_.copy()
        table["peak_rss_mb"], table["peak_cuda_mb"] = _peak_memory(spec.device)
    finally:
        torch.set_num_threads(threads)
    return _label(table, spec, origin)


def execute_study(spec: RunSpec) -> pd.DataFrame:
    """One seed of a study (:mod:`udlbench.studies`) with its peak memory."""
    options = dict(spec.options)
    name = options.pop("method")
    _reset_peak_memory(spec.device)
    start = time.perf_counter()
    table = studies.run(name, options, seed=spec.seed, dtype=spec.dtype, device=spec.device)
    table = table.copy()
    table["study_seconds"] = time.perf_counter() - start
    table["peak_rss_mb"], table["peak_cuda_mb"] = _peak_memory(spec.device)
    return table


def _reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def _peak_memory(device: str) -> tuple[float, float]:
    """Peak process RSS and (on a GPU) peak allocated CUDA memory, in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not device.startswith("cuda"):
        return rss, float("nan")
    return rss, torch.cuda.max_memory_allocated(torch.device(device)) / 2**20


def _label(table: pd.DataFrame, spec: RunSpec, origin: dict) -> pd.DataFrame:
    columns = {
        "experiment": spec.experiment,
        "profile": spec.profile,
        "method": spec.method,
        "method_name": spec.options["method"],
        "seed": spec.seed,
        "run_id": spec.run_id,
        "device": spec.device,
        "dtype": spec.dtype,
        **{f"grid.{k}": _plain(v) for k, v in spec.point.items()},
        **{f"opt.{k}": _plain(v) for k, v in spec.options.items() if k != "method"},
        **{f"data.{k}": _plain(v) for k, v in spec.dataset.items()},
        **origin,
    }
    if spec.kind == "study":
        columns["run_label"] = columns.pop("method")
        own = set(table.columns) - {"experiment", "profile", "run_id", "run_label"}
        columns = {k: v for k, v in columns.items() if k not in own}
    for key, value in columns.items():
        table[key] = value
    return table


def _guarded(spec: RunSpec, origin: dict) -> tuple[str, object]:
    try:
        return "finished", execute(spec, origin)
    except Exception as error:  # a failed run is a result of the sweep, not its end
        return "failed", {
            "run_id": spec.run_id,
            "spec": asdict(spec),
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


@dataclass
class SweepSummary:
    total: int
    skipped: int = 0
    finished: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _pin_threads() -> None:
    torch.set_num_threads(1)


def _outcomes(pending, origin, executor, workers, scheduler):
    """Yield (spec, status, payload) as runs complete."""
    if executor == "serial":
        for spec in pending:
            yield (spec, *_guarded(spec, origin))
    elif executor == "process":
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_pin_threads
        ) as pool:
            futures = {pool.submit(_guarded, spec, origin): spec for spec in pending}
            for future in as_completed(futures):
                yield (futures[future], *future.result())
    else:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_completed

        cluster = None
        if scheduler is None:
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
        client = Client(scheduler if scheduler is not None else cluster)
        try:
            futures = {
                client.submit(_guarded, spec, origin, pure=False, key=f"run-{spec.run_id}"): spec
                for spec in pending
            }
            for future in dask_completed(futures):
                yield (futures[future], *future.result())
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def run_sweep(
    runs: list[RunSpec],
    store: ResultsStore,
    *,
    executor: str = "process",
    workers: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> SweepSummary:
    """Execute the runs not yet stored; store each as soon as it finishes."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r} is unknown; choose from {list(EXECUTORS)}.")
    if scheduler is not None and executor != "dask":
        raise ValueError("scheduler is an address of a Dask cluster; it needs executor='dask'.")
    for spec in runs:
        check(spec)
    pending = [s for s in runs if force or not store.is_finished(s.experiment, s.run_id)]
    summary = SweepSummary(total=len(runs), skipped=len(runs) - len(pending))
    if not pending:
        return summary
    if workers is None:
        workers = max(1, min(len(pending), multiprocessing.cpu_count()))
    origin = provenance(pending[0].device)
    from tqdm import tqdm

    bar = tqdm(
        total=len(pending), desc=pending[0].experiment, unit="run", file=sys.stderr,
        disable=not progress, dynamic_ncols=True,
    )
    with bar:
        for spec, status, payload in _outcomes(pending, origin, executor, workers, scheduler):
            if status == "finished":
                store.write_run(spec.experiment, spec.run_id, payload)
                summary.finished += 1
            else:
                store.write_failure(spec.experiment, spec.run_id, payload)
                summary.failed += 1
                summary.errors.append(f"{spec.method} seed {spec.seed}: {payload['error']}")
            bar.update(1)
            remaining = len(pending) - summary.finished - summary.failed
            bar.set_postfix(done=summary.finished, failed=summary.failed, remaining=remaining)
    return summary
