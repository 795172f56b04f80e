"""Time to accuracy: udlbench's unrolled learners against the fastest dictionary-learning peers.

The problem (issue "Performance"): samples ``x = D* z*`` of the sparse model of PUDLE (Tolooshams &
Ba, TMLR 2023, Sec. 3 and App. C.1; :func:`udlbench.data.make_sparse`) with m = 50, p = 100,
s = 5, n = 10,000, every method started at the close initialisation
``D0 = perturb(D*, tau)`` with ``tau = 0.55 / ln m`` (:func:`udlbench.data.perturb`). The error is
the relative **Frobenius** error of the aligned, column-normalised dictionary,
``||D_bar - D*_bar||_F / ||D*_bar||_F`` (:func:`udlbench.metrics.dictionary_error` with
``norm="fro"``; the spectral error is recorded next to it). The GPU variant is the papers' size
m = 1000, p = 1500, s = 20, n = 50,000 on ``device="cuda"`` against SPAMS on every CPU core.

Candidates (:data:`CANDIDATES`): a handful of udlbench configurations of PUDLE (TMLR 2023,
Algorithm 2) chosen from a small search space (estimator dec / ae-ls, hard thresholding or a
per-layer lam decay, ISTA / FISTA, T, batch size, SGD step), udlbench's NOODL (Rambhatla, Li &
Haupt, ICLR 2019) as a reference, and three peers, each at the best lam of a small grid:
``spams.trainDL`` (Mairal et al., JMLR 2010), scikit-learn's ``MiniBatchDictionaryLearning``
(the same online algorithm) and SPORCO's ``BPDNDictLearn`` (Wohlberg, SciPy 2017). Every method
gets the same samples (float64 for the peers; the peers' own layout is made before the clock
starts).

How each method's clock is read (``time.perf_counter``; metric evaluation always excluded):

* udlbench (``pudle``, ``noodl``): the records of :meth:`udlbench.training.DictionaryLearner.fit`,
  whose clock counts the updates only (synchronised on CUDA); the callback stops the run;
* ``sklearn``: one ``fit`` call; its ``callback`` (called after every mini-batch) measures the
  error every ``record_every`` steps and the time spent inside the callback is subtracted; the run
  is stopped by an exception raised from the callback;
* ``sporco``: ``BPDNDictLearn``'s own timer ``solve_wo_eval`` (which excludes its objective
  evaluation), paused by the callback while the error is measured, plus the constructor's time;
* ``spams``: ``trainDL`` has no callback and a warm restart is not the same run, so every point
  of its curve is a **fresh run** from D0 with an iteration budget: budgets double from
  ``spams_first_iter`` until the error reaches the smallest target or a run takes ``budget_s``;
  then, for every target crossed, the budget is bisected between the last run above and the
  first run at or below the target until they are within 10 % of each other. The time to a
  target is the wall time of the cheapest run found at or below it.

Protocol (:func:`run`): for each peer, one search run per lam of its grid at one thread picks the
lam with the shortest time to each target (or, if no lam reaches it, the lowest error); then for
every thread count, each candidate (peers at their chosen lam) has an untimed warm-up run and
``repeats`` timed runs. The table gives the median over repeats of the time to each target, or
"not reached" with the lowest error (the floor) and the time spent.

Load detection: ``/proc/stat`` (the CPUs this process may run on) and this process's CPU time are
read before and after every timed run; ``other_load`` is the CPU time of other processes divided
by the wall time (in cores). A run whose ``other_load`` exceeds ``max_other_load`` (default 0.25
core) is discarded and redone, at most ``max_attempts`` times in all; the last attempt is kept
with ``loaded=True``. Where ``/proc/stat`` cannot be read the load is NaN and never discards.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from udlbench import metrics
from udlbench._validation import check_choice, check_nonnegative, check_positive, check_positive_int
from udlbench.data import make_sparse, perturb

TARGETS = (1e-2, 1e-4)
NORM = "fro"
MAX_OTHER_LOAD = 0.25
FAMILIES = ("udlbench", "baseline", "peer")
RUNNERS = ("pudle", "noodl", "spams", "sklearn", "sporco")
PEERS = ("spams", "sklearn", "sporco")


@dataclass(frozen=True)
class Problem:
    """The sparse-model problem: sizes, the close start ``tau = tau_scale / ln m`` and the seed."""

    name: str
    m: int
    p: int
    s: int
    n: int
    tau_scale: float = 0.55
    seed: int = 0

    @property
    def tau(self) -> float:
        return self.tau_scale / math.log(self.m)

    def build(self, *, dtype: torch.dtype, device: str):
        """``(X, D0, D_star)``: samples (n, m), start (m, p) and truth (m, p)."""
        data = make_sparse(self.m, self.p, self.n, self.s, seed=self.seed, dtype=dtype,
                           device=device)
        return data.X, perturb(data.D_star, self.tau, seed=self.seed + 1), data.D_star


PROBLEMS = {
    "cpu": Problem("cpu", 50, 100, 5, 10_000),
    "gpu": Problem("gpu", 1000, 1500, 20, 50_000),
    "quick": Problem("quick", 12, 16, 2, 400),
}


@dataclass(frozen=True)
class Candidate:
    """One method: ``runner`` with fixed ``options``; peers search ``lams`` for the best lam."""

    name: str
    family: str
    runner: str
    options: dict = field(default_factory=dict)
    lams: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_choice("family", self.family, FAMILIES)
        check_choice("runner", self.runner, RUNNERS)
        if self.runner in PEERS and not self.lams:
            raise ValueError(f"candidate {self.name!r}: a peer needs a non-empty lam grid.")


_HT = {"prox": "hard", "lam": 0.5, "alpha": 0.2, "optimizer": "sgd"}
_DECAY = {"prox": "soft", "lam": 0.2, "alpha": None, "optimizer": "sgd",
          "lam_decay": {"schedule": "paper", "decrement": 0.01, "every": 5, "nu_min": 0.93}}
PEER_LAMS = (0.1, 0.03, 0.01)

# The udlbench search space, kept to a handful of plausible points (measured on the "cpu" problem
# while this module was written, one thread, 10-20 s each): hard thresholding (HT, b = alpha lam =
# 0.1 under codes of magnitude >= 1) reaches 1e-2 in 0.3-1.4 s with FISTA and T = 50-100 but stalls
# near 5e-3, where spurious IHT fixed points (3 % of the supports at D*) leave the codes biased;
# a per-layer decay lam_t = 0.2 * 0.93^t over T = 100 FISTA layers gives codes within 7e-4 of z*
# at D* (basis pursuit recovers s = 5 of p = 100 in m = 50), the only route to 1e-4 here. Decaying
# from the first update stalls (lam_T ~ 1e-4 makes the codes reconstruct any D exactly, since
# p > m, so the gradient vanishes: 0.137 -> 0.135 in 40 updates); the paper's way works: nu
# starts at 1 and falls by 0.01 every 5 updates to 0.93 (App. C.1's schedule, faster), reaching
# 1e-4 in about 120 updates (measured: 2e-5 floor in float32). SGD with
# step 2 (about 1 / E[z_j^2] = 1 / (s/p * 7/3)) is Newton-like near D*, where the per-sample
# gradients vanish with exact codes; Adam with lr 1e-3 was 4x slower to 1e-2.
CANDIDATES = (
    Candidate("pudle-dec-ht-fista-T50-b200", "udlbench", "pudle",
              {"estimator": "dec", "encoder": "fista", "n_layers": 50, "batch_size": 200,
               "lr": 2.0, **_HT}),
    Candidate("pudle-ae-ls-ht-fista-T50-b200", "udlbench", "pudle",
              {"estimator": "ae-ls", "encoder": "fista", "n_layers": 50, "batch_size": 200,
               "lr": 2.0, **_HT}),
    Candidate("pudle-dec-ht-ista-T100-b500", "udlbench", "pudle",
              {"estimator": "dec", "encoder": "ista", "n_layers": 100, "batch_size": 500,
               "lr": 2.0, **_HT}),
    Candidate("pudle-dec-decay-fista-T100-b500", "udlbench", "pudle",
              {"estimator": "dec", "encoder": "fista", "n_layers": 100, "batch_size": 500,
               "lr": 2.0, **_DECAY}),
    Candidate("pudle-ae-ls-decay-fista-T100-b500", "udlbench", "pudle",
              {"estimator": "ae-ls", "encoder": "fista", "n_layers": 100, "batch_size": 500,
               "lr": 2.0, **_DECAY}),
    Candidate("noodl-b200", "baseline", "noodl",
              {"eta_A": 1.0, "tau": 0.3, "n_coding_iter": 50, "batch_size": 200}),
    Candidate("spams-trainDL-b256", "peer", "spams", {"batch_size": 256}, PEER_LAMS),
    Candidate("sklearn-MiniBatchDL-b256", "peer", "sklearn", {"batch_size": 256}, PEER_LAMS),
    Candidate("sporco-BPDNDictLearn", "peer", "sporco", {}, PEER_LAMS),
)


# --- load detection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuReading:
    """Busy CPU seconds of the watched CPUs, this process's CPU seconds, and the wall clock."""

    busy_s: float
    own_s: float
    wall_s: float


def parse_proc_stat(text: str, cpus: Sequence[int] | None = None, *, ticks: int = 100) -> float:
    """Busy seconds (everything but idle and iowait) summed over the per-CPU lines ``cpuN`` of
    ``/proc/stat`` whose N is in ``cpus`` (all of them when None); ``ticks`` per second."""
    busy = 0
    found = False
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in rest.split()]
        if len(values) < 4:
            raise ValueError(f"/proc/stat line {line!r} has fewer than 4 counters.")
        # user nice system idle iowait irq softirq steal (guest time is inside user already)
        busy += sum(values[:8]) - values[3] - (values[4] if len(values) > 4 else 0)
        found = True
    if not found:
        raise ValueError(f"no per-CPU line of /proc/stat matches cpus={cpus!r}.")
    return busy / ticks


def read_cpu(path: str | os.PathLike = "/proc/stat") -> CpuReading | None:
    """Read ``path`` for the CPUs this process may use, and this process's CPU time; None when
    ``path`` cannot be read (no /proc)."""
    try:
        text = Path(path).read_text()
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        busy = parse_proc_stat(text, cpus, ticks=os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError):
        return None
    own = os.times()
    return CpuReading(busy, own.user + own.system + own.children_user + own.children_system,
                      time.perf_counter())


def other_load(before: CpuReading | None, after: CpuReading | None) -> float:
    """CPU time of other processes between two readings per second of wall time (in cores);
    NaN without readings. /proc/stat counts in ticks (10 ms), so short timings are coarse."""
    if before is None or after is None:
        return math.nan
    wall = after.wall_s - before.wall_s
    if wall <= 0:
        return math.nan
    others = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return max(others, 0.0) / wall


def measure(
    task: Callable[[], pd.DataFrame],
    *,
    max_other_load: float = MAX_OTHER_LOAD,
    max_attempts: int = 3,
    reader: Callable[[], CpuReading | None] = read_cpu,
) -> tuple[pd.DataFrame, dict]:
    """Run ``task`` (one timed run returning its curve) until the other processes' load during it
    is at most ``max_other_load`` cores, at most ``max_attempts`` times; returns the curve of the
    kept attempt and ``{"attempts", "other_load", "loaded", "discarded_loads"}``."""
    check_nonnegative("max_other_load", max_other_load)
    check_positive_int("max_attempts", max_attempts)
    discarded: list[float] = []
    for attempt in range(1, max_attempts + 1):
        before = reader()
        curve = task()
        load = other_load(before, reader())
        loaded = bool(load > max_other_load)  # NaN (unknown load) never discards
        if not loaded or attempt == max_attempts:
            return curve, {"attempts": attempt, "other_load": load, "loaded": loaded,
                           "discarded_loads": json.dumps([round(x, 3) for x in discarded])}
        discarded.append(load)
    raise AssertionError("unreachable: the last attempt always returns")


# --- curves ------------------------------------------------------------------------------------


def time_to_target(curve: pd.DataFrame, target: float) -> float:
    """Wall time of the first point (in time order) of ``curve`` (columns ``time`` and
    ``error_fro``) at or below ``target``; NaN if no point reaches it."""
    check_positive("target", target)
    ordered = curve.sort_values("time", kind="stable")
    hit = ordered[ordered["error_fro"] <= target]
    return float(hit["time"].iloc[0]) if len(hit) else math.nan


def _errors(D: torch.Tensor, D_star: torch.Tensor) -> dict[str, float]:
    D = D.to(device=D_star.device, dtype=D_star.dtype)
    return {"error_fro": metrics.dictionary_error(D, D_star, norm="fro"),
            "error_spectral": metrics.dictionary_error(D, D_star, norm="spectral")}


class _Stop(Exception):
    """Raised from a peer's callback to end its run."""


@dataclass
class _Task:
    """One run's inputs: data (torch and the peers' float64 numpy), budget and stopping error."""

    X: torch.Tensor
    D0: torch.Tensor
    D_star: torch.Tensor
    X64: np.ndarray
    D064: np.ndarray
    budget_s: float
    stop_below: float
    record_every: int
    threads: int
    seed: int
    spams_first_iter: int = 4

    def done(self, elapsed: float, error: float) -> bool:
        return error <= self.stop_below or elapsed >= self.budget_s


def _run_learner(learner, task: _Task) -> pd.DataFrame:
    def callback(row: dict, D: torch.Tensor) -> bool:
        return task.done(row["time"], row["error_fro"])

    learner.fit(task.X, task.D0, D_star=task.D_star, callback=callback)
    return learner.records_[["step", "time", "error_fro", "error_spectral"]].copy()


def _run_pudle(task: _Task, options: dict) -> pd.DataFrame:
    from udlbench import methods

    learner = methods.build("pudle", {**options, "n_epochs": 10**9,
                                      "record_every": task.record_every, "seed": task.seed})
    return _run_learner(learner, task)


def _run_noodl(task: _Task, options: dict) -> pd.DataFrame:
    from baselines.noodl import NOODL

    learner = NOODL(**options, n_epochs=10**9, record_every=task.record_every, seed=task.seed)
    return _run_learner(learner, task)


def _run_sklearn(task: _Task, options: dict) -> pd.DataFrame:
    from sklearn.decomposition import MiniBatchDictionaryLearning

    rows = [{"step": 0, "time": 0.0, **_errors(task.D0, task.D_star)}]
    paused = 0.0

    def callback(state: dict) -> None:
        nonlocal paused
        now = time.perf_counter()
        step = state["i"] + 1
        if step % task.record_every == 0:
            elapsed = now - start - paused
            atoms = torch.from_numpy(np.ascontiguousarray(state["dictionary"].T))
            rows.append({"step": step, "time": elapsed, **_errors(atoms, task.D_star)})
            stop = task.done(elapsed, rows[-1]["error_fro"])
            paused += time.perf_counter() - now
            if stop:
                raise _Stop

    model = MiniBatchDictionaryLearning(
        n_components=task.D064.shape[1], alpha=options["lam"], batch_size=options["batch_size"],
        dict_init=task.D064.T.copy(), max_iter=10**6, tol=0.0, max_no_improvement=None,
        random_state=task.seed, callback=callback,
    )
    start = time.perf_counter()
    try:
        model.fit(task.X64)
    except _Stop:
        pass
    return pd.DataFrame.from_records(rows)


def _run_sporco(task: _Task, options: dict) -> pd.DataFrame:
    from sporco.dictlrn import bpdndl

    rows = [{"step": 0, "time": 0.0, **_errors(task.D0, task.D_star)}]
    S = np.ascontiguousarray(task.X64.T)

    def callback(learner) -> bool:
        learner.timer.stop("solve_wo_eval")
        step = learner.j + 1
        stop = False
        if step % task.record_every == 0:
            elapsed = setup + learner.timer.elapsed("solve_wo_eval")
            D = torch.from_numpy(np.ascontiguousarray(learner.getdict()))
            rows.append({"step": step, "time": elapsed, **_errors(D, task.D_star)})
            stop = task.done(elapsed, rows[-1]["error_fro"])
        learner.timer.start("solve_wo_eval")
        return stop

    opt = bpdndl.BPDNDictLearn.Options({"MaxMainIter": 10**9, "Callback": callback,
                                        "Verbose": False})
    tic = time.perf_counter()
    learner = bpdndl.BPDNDictLearn(task.D064.copy(), S, options["lam"], opt)
    setup = time.perf_counter() - tic
    learner.solve()
    return pd.DataFrame.from_records(rows)


def _run_spams(task: _Task, options: dict) -> pd.DataFrame:
    import spams

    X = np.asfortranarray(task.X64.T)
    D0 = np.asfortranarray(task.D064)
    runs: dict[int, dict] = {}

    def fresh(n_iter: int) -> dict:
        if n_iter not in runs:
            tic = time.perf_counter()
            D = spams.trainDL(X, D=D0.copy(order="F"), lambda1=options["lam"], mode=2,
                              iter=n_iter, batchsize=options["batch_size"],
                              numThreads=task.threads, verbose=False)
            elapsed = time.perf_counter() - tic
            runs[n_iter] = {"step": n_iter, "time": elapsed,
                            **_errors(torch.from_numpy(np.ascontiguousarray(D)), task.D_star)}
        return runs[n_iter]

    n_iter = task.spams_first_iter
    while True:
        row = fresh(n_iter)
        if row["error_fro"] <= task.stop_below or row["time"] >= task.budget_s:
            break
        n_iter *= 2
    for target in TARGETS:
        while True:
            ordered = sorted(runs.values(), key=lambda r: r["step"])
            reached = [r["step"] for r in ordered if r["error_fro"] <= target]
            if not reached:
                break
            hi = reached[0]
            below = [r["step"] for r in ordered if r["step"] < hi]
            lo = below[-1] if below else 0
            if hi - lo <= max(1, hi // 10):
                break
            fresh((lo + hi) // 2)
    rows = [{"step": 0, "time": 0.0, **_errors(task.D0, task.D_star)}]
    return pd.DataFrame.from_records(rows + sorted(runs.values(), key=lambda r: r["step"]))


_RUNNERS = {"pudle": _run_pudle, "noodl": _run_noodl, "sklearn": _run_sklearn,
            "sporco": _run_sporco, "spams": _run_spams}


@contextmanager
def thread_limit(n: int) -> Iterator[None]:
    """Limit torch's intra-op threads and the BLAS / OpenMP pools (threadpoolctl) to ``n``."""
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(previous)


# --- the benchmark -----------------------------------------------------------------------------


@dataclass
class BenchResults:
    """``runs``: one row per (candidate, lam, threads, repeat, target) with the time to the target
    (NaN: not reached), the floor and the load notes; ``curves``: every curve point;
    ``summary``: medians over repeats; ``ratios``: udlbench's fastest over the fastest peer per
    target and thread count; ``meta``: problem, hardware, versions, protocol."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    summary: pd.DataFrame
    ratios: pd.DataFrame
    meta: dict

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``runs``/``curves`` (parquet and CSV), ``summary.csv``, ``ratios.csv`` and
        ``meta.json`` into ``out_dir``; returns the folder."""
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("runs", "curves"):
            frame = getattr(self, name)
            frame.to_parquet(folder / f"{name}.parquet", index=False)
            frame.to_csv(folder / f"{name}.csv", index=False)
        self.summary.to_csv(folder / "summary.csv", index=False)
        self.ratios.to_csv(folder / "ratios.csv", index=False)
        (folder / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str))
        return folder


def load(out_dir: str | os.PathLike) -> BenchResults:
    """Read back what :meth:`BenchResults.save` wrote."""
    folder = Path(out_dir)
    return BenchResults(
        runs=pd.read_parquet(folder / "runs.parquet"),
        curves=pd.read_parquet(folder / "curves.parquet"),
        summary=pd.read_csv(folder / "summary.csv"),
        ratios=pd.read_csv(folder / "ratios.csv"),
        meta=json.loads((folder / "meta.json").read_text()),
    )


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def check_device(device: str) -> torch.device:
    """``device`` as a torch device; ``cuda`` needs a CUDA device, and says so when there is
    none."""
    resolved = torch.device(device)
    check_choice("device", resolved.type, ("cpu", "cuda"))
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={device!r} needs a CUDA device, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); run the CPU "
            "benchmark with device='cpu'."
        )
    return resolved


def run(
    *,
    problem: Problem | str = "cpu",
    candidates: Sequence[Candidate] = CANDIDATES,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    threads: Sequence[int] = (1, 2),
    repeats: int = 3,
    budget_s: float = 30.0,
    search_budget_s: float | None = None,
    warmup_s: float = 0.5,
    record_every: int = 5,
    max_other_load: float = MAX_OTHER_LOAD,
    max_attempts: int = 3,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> BenchResults:
    """Time each candidate to the relative Frobenius dictionary errors of :data:`TARGETS`.

    Parameters
    ----------
    problem : Problem or {"cpu", "gpu", "quick"}
        The data (see :data:`PROBLEMS`); samples X (n, m), start D0 and truth D* (m, p).
    candidates : sequence of Candidate
    device : {"cpu", "cuda"}
        Where udlbench's candidates run; with "cuda" the peers other than SPAMS are left out and
        SPAMS runs on every CPU core (the GPU variant). Raises RuntimeError without CUDA.
    dtype : torch.float32 or torch.float64, optional
        udlbench's precision (default float64 on CPU, float32 on CUDA); peers use float64.
    threads : sequence of int
        CPU thread counts to time at (ignored on CUDA but for SPAMS).
    repeats : int
        Timed runs per candidate and thread count; the table reports medians.
    budget_s : float
        Wall time (updates only) after which a run stops if it has not reached the smallest
        target.
    search_budget_s : float, optional
        Budget of the peers' lam-search runs (default ``budget_s``).
    warmup_s : float
        Budget of the untimed warm-up run before each candidate's timed runs.
    record_every : int
        Updates between two error evaluations (the time resolution of the curves).
    max_other_load, max_attempts
        Load detection (module docstring, :func:`measure`).
    seed : int
        Seed of the learners' batch order (the data has the problem's seed).
    log : callable, optional
        Called with a line of progress per run.
    """
    problem = PROBLEMS[check_choice("problem", problem, list(PROBLEMS))] if isinstance(
        problem, str) else problem
    resolved = check_device(device)
    gpu = resolved.type == "cuda"
    dtype = dtype or (torch.float32 if gpu else torch.float64)
    threads = [check_positive_int("threads", t) for t in threads]
    check_positive_int("repeats", repeats)
    budget_s = check_positive("budget_s", budget_s)
    search_budget_s = budget_s if search_budget_s is None else check_positive(
        "search_budget_s", search_budget_s)
    check_positive("warmup_s", warmup_s)
    check_positive_int("record_every", record_every)
    say = log or (lambda line: None)

    X, D0, D_star = problem.build(dtype=dtype, device=str(resolved))
    X64 = X.detach().to(device="cpu", dtype=torch.float64).numpy()
    D064 = D0.detach().to(device="cpu", dtype=torch.float64).numpy()
    D_star_cpu = D_star.detach().to(device="cpu", dtype=torch.float64)
    if gpu:
        candidates = [c for c in candidates if c.runner not in ("sklearn", "sporco")]

    def task_for(candidate: Candidate, n_threads: int, budget: float, stop: float) -> _Task:
        on_gpu = gpu and candidate.runner not in PEERS
        return _Task(
            X=X if candidate.runner not in PEERS else torch.from_numpy(X64),
            D0=D0 if candidate.runner not in PEERS else torch.from_numpy(D064),
            D_star=D_star if on_gpu or candidate.runner not in PEERS else D_star_cpu,
            X64=X64, D064=D064, budget_s=budget, stop_below=stop, record_every=record_every,
            threads=n_threads, seed=seed,
        )

    def once(candidate: Candidate, options: dict, n_threads: int, budget: float, stop: float):
        with thread_limit(n_threads):
            return _RUNNERS[candidate.runner](task_for(candidate, n_threads, budget, stop),
                                              options)

    run_threads = {c.name: ([os.cpu_count() or 1] if gpu and c.runner == "spams" else
                            [1] if gpu else threads) for c in candidates}

    # 1. the peers' lam: one search run per lam, one thread
    plans: list[tuple[Candidate, dict, tuple[float, ...], str]] = []
    rows: list[dict] = []
    curves: list[pd.DataFrame] = []
    for candidate in candidates:
        if candidate.runner not in PEERS:
            plans.append((candidate, dict(candidate.options), TARGETS, ""))
            continue
        search = {}
        for lam in candidate.lams:
            options = {**candidate.options, "lam": lam}
            curve = once(candidate, options, run_threads[candidate.name][0], search_budget_s,
                         min(TARGETS))
            search[lam] = curve
            curves.append(curve.assign(candidate=candidate.name, lam=lam, phase="search",
                                       threads=run_threads[candidate.name][0], repeat=0))
            say(f"search {candidate.name} lam={lam}: floor {curve['error_fro'].min():.3g}")
        chosen: dict[float, list[float]] = {}
        for target in TARGETS:
            times = {lam: time_to_target(c, target) for lam, c in search.items()}
            reached = {lam: t for lam, t in times.items() if not math.isnan(t)}
            best = (min(reached, key=reached.get) if reached else
                    min(search, key=lambda lam: search[lam]["error_fro"].min()))
            chosen.setdefault(best, []).append(target)
        for lam, targets in chosen.items():
            how = "fastest to target" if any(
                not math.isnan(time_to_target(search[lam], t)) for t in targets) else "lowest floor"
            plans.append((candidate, {**candidate.options, "lam": lam}, tuple(targets), how))

    # 2. timed repeats
    for candidate, options, targets, how in plans:
        for n_threads in run_threads[candidate.name]:
            once(candidate, options, n_threads, warmup_s, min(targets))
            for repeat in range(1, repeats + 1):
                curve, notes = measure(
                    lambda c=candidate, o=options, k=n_threads, t=targets: once(
                        c, o, k, budget_s, min(t)),
                    max_other_load=max_other_load, max_attempts=max_attempts)
                lam = options.get("lam", math.nan) if candidate.runner in PEERS else math.nan
                curves.append(curve.assign(candidate=candidate.name, lam=lam, phase="timed",
                                           threads=n_threads, repeat=repeat))
                for target in targets:
                    reached_at = time_to_target(curve, target)
                    rows.append({
                        "candidate": candidate.name, "family": candidate.family,
                        "runner": candidate.runner, "options": json.dumps(options, default=str),
                        "lam": lam, "lam_choice": how, "threads": n_threads,
                        "device": "cpu" if candidate.runner in PEERS else str(resolved),
                        "repeat": repeat, "target": target, "time_to_target": reached_at,
                        "reached": not math.isnan(reached_at),
                        "floor": float(curve["error_fro"].min()),
                        "time_spent": float(curve["time"].max()), **notes,
                    })
                say(f"{candidate.name} threads={n_threads} repeat {repeat}: "
                    f"floor {curve['error_fro'].min():.3g} in {curve['time'].max():.2f} s, "
                    f"other load {notes['other_load']:.2f} cores ({notes['attempts']} attempts)")

    runs = pd.DataFrame.from_records(rows)
    meta = _meta(problem, resolved, dtype, threads, repeats, budget_s, search_budget_s, warmup_s,
                 record_every, max_other_load, max_attempts, seed)
    for key in ("cpu", "cpu_cores", "cpu_cores_usable", "torch", "numpy", "sklearn", "spams",
                "sporco", "commit"):
        runs[key] = meta[key]
    summary = summarise(runs)
    return BenchResults(runs=runs, curves=pd.concat(curves, ignore_index=True),
                        summary=summary, ratios=ratios(summary), meta=meta)


def _meta(problem, device, dtype, threads, repeats, budget_s, search_budget_s, warmup_s,
          record_every, max_other_load, max_attempts, seed) -> dict:
    from udlbench.cli import collect_info

    info = collect_info()
    return {
        "problem": {**problem.__dict__, "tau": problem.tau}, "norm": NORM,
        "targets": list(TARGETS), "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "threads": list(threads), "repeats": repeats, "budget_s": budget_s,
        "search_budget_s": search_budget_s, "warmup_s": warmup_s, "record_every": record_every,
        "max_other_load": max_other_load, "max_attempts": max_attempts, "seed": seed,
        "cpu": info["cpu"], "cpu_cores": info["cpu_cores"],
        "cpu_cores_usable": info["cpu_cores_usable"], "torch": info["torch"],
        "numpy": info["numpy"], "torch_blas": info["torch_blas"],
        "numpy_blas": info["numpy_blas"], "sklearn": _package("scikit-learn"),
        "spams": _package("spams-bin"), "sporco": _package("sporco"), "commit": info["commit"],
        "cuda_devices": info["cuda_devices"],
    }


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Median over repeats per (candidate, lam, threads, target): the time to target, the median
    floor and time spent, and
    the load notes (repeats kept despite the load, attempts in all). A repeat that missed the
    target counts as infinitely slow, so the median is finite only when more than half reached
    it."""
    keys = ["candidate", "family", "runner", "lam", "lam_choice", "device", "threads", "target"]
    rows = []
    for key, part in runs.groupby(keys, dropna=False, sort=True):
        times = part["time_to_target"].to_numpy(dtype=float)
        reached = int(np.isfinite(times).sum())
        median = statistics.median(np.where(np.isfinite(times), times, np.inf))
        rows.append({
            **dict(zip(keys, key, strict=True)), "repeats": len(part), "reached": reached,
            "time_to_target": median if math.isfinite(median) else math.nan,
            "floor": float(part["floor"].median()),
            "time_spent": float(part["time_spent"].median()),
            "loaded_repeats": int(part["loaded"].sum()),
            "attempts": int(part["attempts"].sum()),
            "other_load_max": float(part["other_load"].max()),
        })
    return pd.DataFrame.from_records(rows)


def ratios(summary: pd.DataFrame) -> pd.DataFrame:
    """Per target and thread count: udlbench's fastest median time over the fastest peer's, with
    both names; ``ratio`` < 1 means udlbench is faster. A side that never reached the target
    has NaN time and the ratio is NaN (``outcome`` says which side)."""
    rows = []
    for (target, threads), part in summary.groupby(["target", "threads"], sort=True):
        best = {}
        for family in ("udlbench", "peer"):
            side = part[(part["family"] == family) & part["time_to_target"].notna()]
            best[family] = (side.loc[side["time_to_target"].idxmin()] if len(side) else None)
        udl, peer = best["udlbench"], best["peer"]
        outcome = ("both" if udl is not None and peer is not None else
                   "udlbench only" if udl is not None else
                   "peers only" if peer is not None else "neither")
        rows.append({
            "target": target, "threads": threads,
            "udlbench_fastest": None if udl is None else udl["candidate"],
            "udlbench_time": math.nan if udl is None else float(udl["time_to_target"]),
            "peer_fastest": None if peer is None else peer["candidate"],
            "peer_lam": math.nan if peer is None else float(peer["lam"]),
            "peer_time": math.nan if peer is None else float(peer["time_to_target"]),
            "ratio": (float(udl["time_to_target"] / peer["time_to_target"])
                      if outcome == "both" else math.nan),
            "outcome": outcome,
        })
    return pd.DataFrame.from_records(rows)


def quick(candidates: Sequence[Candidate] = CANDIDATES) -> dict:
    """Options of :func:`run` for a seconds-long check of the mechanics: the tiny problem, one
    thread, one repeat, one attempt, the first lam of each peer's grid, two udlbench candidates,
    NOODL, and budgets of a fraction of a second (no number it gives is a measurement)."""
    udl = [c for c in candidates if c.family == "udlbench"][:2]
    others = [replace(c, lams=c.lams[:1]) if c.runner in PEERS else c
              for c in candidates if c.family != "udlbench"]
    return {"problem": "quick", "candidates": udl + others, "threads": (1,), "repeats": 1,
            "budget_s": 0.15, "warmup_s": 0.02, "record_every": 2, "max_attempts": 1}


# --- rendering ---------------------------------------------------------------------------------


def render(results: BenchResults, out_dir: str | os.PathLike) -> str:
    """An HTML section (ratios, the summary table, hardware and load notes) and a figure of the
    error against wall time (log-log, one colour per method, one panel per thread count, every
    timed repeat), saved as ``figures/bench.png`` and ``.svg`` under ``out_dir``."""
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from udlbench.figures import save_figure
    from udlbench.report import colours, table_html

    folder = Path(out_dir)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    timed = results.curves[results.curves["phase"] == "timed"]
    colour = colours(list(timed["candidate"].unique()))
    thread_counts = sorted(timed["threads"].unique())
    figure, axes = plt.subplots(1, max(len(thread_counts), 1), squeeze=False, sharey=True,
                                figsize=(5.2 * max(len(thread_counts), 1), 3.8))
    for ax, n_threads in zip(axes[0], thread_counts, strict=False):
        part = timed[timed["threads"] == n_threads]
        for (name, repeat), curve in part.groupby(["candidate", "repeat"], sort=True):
            curve = curve[curve["time"] > 0].sort_values("time")
            ax.plot(curve["time"], curve["error_fro"], color=colour[name], lw=1.2, alpha=0.8,
                    marker="." if curve["candidate"].iloc[0].startswith("spams") else None,
                    label=name if repeat == 1 else None)
        for target in results.meta["targets"]:
            ax.axhline(target, color="k", lw=0.6, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("wall time of the updates [s]")
        ax.set_title(f"{n_threads} thread(s)", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("||D - D*||_F / ||D*||_F (aligned)")
    axes[0][-1].legend(fontsize=7, loc="best")
    problem = results.meta["problem"]
    figure.suptitle(f"time to accuracy: m={problem['m']}, p={problem['p']}, s={problem['s']}, "
                    f"n={problem['n']}, tau={problem['tau']:.3g}", fontsize=10)
    figure.tight_layout()
    image = "figures/" + save_figure(figure, folder / "figures", "bench")
    meta = results.meta
    loaded = int(results.runs["loaded"].sum()) if len(results.runs) else 0
    notes = (
        f"CPU {html.escape(str(meta['cpu']))}, {meta['cpu_cores']} cores "
        f"({meta['cpu_cores_usable']} usable); device {html.escape(meta['device'])}, "
        f"{meta['dtype']}; torch {meta['torch']}, numpy {meta['numpy']}, scikit-learn "
        f"{meta['sklearn']}, spams {meta['spams']}, sporco {meta['sporco']}; commit "
        f"{html.escape(str(meta['commit']))}. Medians over {meta['repeats']} repeats; budget "
        f"{meta['budget_s']} s per run. Load: a run is redone when other processes used more "
        f"than {meta['max_other_load']} core during it (at most {meta['max_attempts']} "
        f"attempts); {loaded} of {len(results.runs)} kept rows ran under load."
    )
    return "\n".join([
        "<section id='bench'><h2>Time to accuracy against the fastest peers</h2>",
        f"<p>{notes}</p>",
        "<h3>udlbench fastest / fastest peer</h3>", table_html(results.ratios),
        "<h3>Median time to target (NaN: not reached; see floor and time spent)</h3>",
        table_html(results.summary),
        f"<img src='{image}' alt='error against wall time'>",
        "</section>",
    ])


__all__ = [
    "BenchResults",
    "CANDIDATES",
    "Candidate",
    "CpuReading",
    "MAX_OTHER_LOAD",
    "NORM",
    "PROBLEMS",
    "Problem",
    "TARGETS",
    "check_device",
    "load",
    "measure",
    "other_load",
    "parse_proc_stat",
    "quick",
    "ratios",
    "read_cpu",
    "render",
    "run",
    "summarise",
    "thread_limit",
    "time_to_target",
]
