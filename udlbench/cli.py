"""Command-line interface: ``udlbench info | list | run | report | verify | bench``.

``udlbench info`` prints the provenance that every result of udlbench records (versions, commit,
threads, BLAS, devices); ``udlbench list`` the experiments, methods and generators;
``udlbench run`` is the main job: it runs experiments' sweeps into a results store and writes the
comparison report (``udlbench.sweep``); ``udlbench report`` re-makes a report from stored results;
``udlbench verify`` runs the theorem suite; ``udlbench bench`` times udlbench and its peers to
target dictionary errors (``udlbench.bench``). Heavy modules (torch, numpy, the library) are
imported inside the subcommands so that ``udlbench --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from udlbench import __version__

DEVICES = ("cpu", "cuda")
_REPO_ROOT = Path(__file__).resolve().parent.parent


def git_commit(path: Path = _REPO_ROOT) -> str:
    """Short hash of the checkout holding ``path``, with ``-dirty`` if it has uncommitted changes.

    Returns ``"unknown"`` when git is missing or ``path`` is not in a repository with commits.
    """
    if shutil.which("git") is None:
        return "unknown"
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not commit:
        return "unknown"
    return f"{commit}-dirty" if status else commit


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if out else None


def collect_info() -> dict[str, object]:
    """Versions, commit, threads, BLAS and devices of this environment, as a JSON-able dict."""
    import numpy as np
    import torch

    torch_config = torch.__config__.show()

    def build_setting(key: str) -> str:
        match = re.search(rf"\b{key}=([^,\s]*)", torch_config)
        return match.group(1) if match else "unknown"

    try:
        numpy_blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        numpy_blas_name = f"{numpy_blas.get('name', 'unknown')} {numpy_blas.get('version', '')}"
    except Exception:  # numpy's config layout is not a stable API; this is best effort
        numpy_blas_name = "unknown"

    try:
        usable_cores = len(os.sched_getaffinity(0))
    except AttributeError:
        usable_cores = os.cpu_count() or 0

    cuda_devices = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            cuda_devices.append(
                {
                    "index": index,
                    "name": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "capability": f"{props.major}.{props.minor}",
                }
            )

    return {
        "udlbench": __version__,
        "commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": _package_version("scipy"),
        "pandas": _package_version("pandas"),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_blas": build_setting("BLAS_INFO"),
        "torch_lapack": build_setting("LAPACK_INFO"),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy_blas": numpy_blas_name.strip(),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count() or 0,
        "cpu_cores_usable": usable_cores,
        "cuda_version": torch.version.cuda,
        "cudnn_version": (
            torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        ),
        "nvidia_driver": _nvidia_driver() if cuda_devices else None,
        "cuda_devices": cuda_devices,
    }


def format_info(info: dict[str, object]) -> str:
    """Human-readable rendering of :func:`collect_info`."""
    lines = [
        f"udlbench      {info['udlbench']} (commit {info['commit']})",
        f"python        {info['python']} on {info['platform']}",
        f"torch         {info['torch']}",
        f"numpy         {info['numpy']}",
        f"scipy         {info['scipy']}",
        f"pandas        {info['pandas']}",
        f"threads       torch {info['torch_threads']}, interop {info['torch_interop_threads']}",
        f"BLAS/LAPACK   torch {info['torch_blas']}/{info['torch_lapack']} "
        f"({info['torch_cpu_capability']}), numpy {info['numpy_blas']}",
        f"CPU           {info['cpu']}, {info['cpu_cores']} cores "
        f"({info['cpu_cores_usable']} usable)",
    ]
    devices = info["cuda_devices"]
    if devices:
        lines.append(
            f"CUDA          {info['cuda_version']}, cuDNN {info['cudnn_version']}, "
            f"driver {info['nvidia_driver'] or 'unknown'}"
        )
        for device in devices:  # type: ignore[union-attr]
            lines.append(
                f"  cuda:{device['index']}       {device['name']}, {device['memory_gib']} GiB, "
                f"compute capability {device['capability']}"
            )
    else:
        built = f"built with CUDA {info['cuda_version']}" if info["cuda_version"] else "CPU-only"
        lines.append(f"CUDA          no CUDA device (torch {built})")
    return "\n".join(lines)


def _cmd_info(args: argparse.Namespace) -> int:
    info = collect_info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    return importlib.import_module("udlbench.sweep").list_main(args)


def _cmd_run(args: argparse.Namespace) -> int:
    sweep = importlib.import_module("udlbench.sweep")
    sweep.resolve_executor(args)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print(
                "udlbench run: error: --device cuda given but no CUDA device is available",
                file=sys.stderr,
            )
            return 2
    return sweep.run_main(args)


def _cmd_report(args: argparse.Namespace) -> int:
    report = importlib.import_module("udlbench.report")
    try:
        index = report.write_report(args.results, Path(args.output), evidence_dir=args.evidence)
    except (ValueError, FileNotFoundError) as error:
        print(f"udlbench report: error: {error}", file=sys.stderr)
        return 2
    print(index)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    verify = importlib.import_module("udlbench.verify")
    return int(verify.main(args))


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.kernel:
        return _cmd_kernel_throughput(args)
    bench = importlib.import_module("udlbench.bench")
    options = bench.quick() if args.quick else {}
    names = [c.name for c in bench.CANDIDATES]
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            print(f"udlbench bench: error: unknown candidate(s) {unknown}; choose from {names}",
                  file=sys.stderr)
            return 2
        pool = options.get("candidates", bench.CANDIDATES)
        options["candidates"] = [c for c in pool if c.name in args.only]
    for key in ("threads", "repeats", "problem", "max_other_load"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.budget is not None:
        options["budget_s"] = args.budget
    if args.device.startswith("cuda") and "problem" not in options:
        options["problem"] = "gpu"
    try:
        results = bench.run(device=args.device, log=None if args.silent else print, **options)
    except RuntimeError as error:
        print(f"udlbench bench: error: {error}", file=sys.stderr)
        return 2
    folder = results.save(args.output)
    section = bench.render(results, folder)
    index = folder / "index.html"
    index.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>udlbench bench"
                     f"</title></head><body>{section}</body></html>\n", encoding="utf-8")
    print(results.ratios.to_string(index=False))
    print(index)
    return 0


def _cmd_kernel_throughput(args: argparse.Namespace) -> int:
    """``udlbench bench --kernel``: the kernel's throughput against the matrix-product rate."""
    import pandas as pd
    import torch

    throughput = importlib.import_module("udlbench.throughput")
    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = dict(m=40, p=60, n=50, n_layers=10, s=3, repeats=1) if args.quick else {}
    tables = []
    for threads in args.threads or [1, 2]:
        torch.set_num_threads(threads)
        tables.append(throughput.measure(device=args.device, **sizes))
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(folder / "kernel_throughput.csv", index=False)
    print(table[["variant", "threads", "seconds", "dense_gflops_per_s", "matmul_gflops_per_s",
                 "dense_fraction_of_matmul", "saved_fraction_of_autograd"]].to_string(index=False))
    print(folder / "kernel_throughput.csv")
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {value}")
    return value


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="udlbench",
        description="Benchmark and theorem-verification harness for unrolled dictionary learning.",
    )
    parser.add_argument("--version", action="version", version=f"udlbench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = commands.add_parser(
        "info",
        help="print versions, commit, threads, BLAS and devices",
        description="Print the provenance recorded with every result: versions, git commit, "
        "threads, BLAS/LAPACK and devices.",
    )
    info.add_argument("--json", action="store_true", help="print a JSON object instead")
    info.set_defaults(handler=_cmd_info)

    listing = commands.add_parser(
        "list",
        help="list experiments, methods and dataset generators",
        description="List the registered experiments (with their methods), the methods and the "
        "dataset generators.",
    )
    listing.add_argument("--experiments-file", action="append", metavar="FILE",
                         help="also load experiments from this .py/.yaml/.toml file")
    listing.set_defaults(handler=_cmd_list)

    run = commands.add_parser(
        "run",
        help="run experiments' sweeps and write the comparison report (the main job)",
        description="Run the sweeps of the named experiments (default: the main job's selection) "
        "on a profile, store every run in the results directory (finished runs are skipped, an "
        "interrupted sweep resumes), then write the HTML comparison report.",
    )
    importlib.import_module("udlbench.sweep").add_arguments(run)
    run.set_defaults(handler=_cmd_run)

    report = commands.add_parser(
        "report",
        help="write the HTML comparison report of stored results",
        description="Make the static HTML report (figures, tables, theorem table, environment) "
        "from one or more results directories.",
    )
    report.add_argument("results", nargs="+", metavar="RESULTS", help="results directories")
    report.add_argument("-o", "--output", required=True, help="report directory")
    report.add_argument("--evidence", default="results/evidence",
                        help="theorem evidence records (default results/evidence)")
    report.set_defaults(handler=_cmd_report)

    verify = commands.add_parser(
        "verify",
        help="run the theorem suite and print the claim table",
        description="Run pytest on theorems/ (the checks of ../shared/THEOREMS.md), then print one "
        "line per check with its verdict and measured quantities.",
    )
    verify.add_argument(
        "--tier",
        action="append",
        choices=("fast", "medium", "slow", "full"),
        help="tier to run; repeat for several (default: fast and medium)",
    )
    verify.add_argument(
        "--base-seed",
        type=_int_at_least(0),
        default=0,
        help="offset added to every seed of the suite (default: 0)",
    )
    verify.add_argument("--device", choices=DEVICES, default="cpu", help="device (default: cpu)")
    verify.add_argument(
        "--evidence-dir",
        default="results/evidence",
        help="where the evidence records go (default: results/evidence)",
    )
    verify.add_argument(
        "--workers",
        type=_int_at_least(1),
        default=2,
        help="pytest-xdist worker processes (default: 2)",
    )
    verify.add_argument("pytest_args", nargs="*", help="further arguments for pytest, after --")
    verify.set_defaults(handler=_cmd_verify)

    bench = commands.add_parser(
        "bench",
        help="time udlbench and its peers to target dictionary errors",
        description="Time to relative Frobenius dictionary errors 1e-2 and 1e-4 of udlbench's "
        "configurations and of SPAMS, scikit-learn and SPORCO at their best lam, at each thread "
        "count (median over repeats, runs under load redone); writes tables, a figure and "
        "index.html into OUTPUT.",
    )
    bench.add_argument("-o", "--output", required=True, help="output directory")
    bench.add_argument("--quick", action="store_true",
                       help="tiny problem and budgets: checks the mechanics, measures nothing")
    bench.add_argument("--device", choices=DEVICES, default="cpu",
                       help="device of udlbench's candidates (default: cpu; cuda runs the "
                       "papers' size against SPAMS on every CPU core)")
    bench.add_argument("--problem", choices=("cpu", "gpu", "quick"),
                       help="problem size (default: cpu, or gpu with --device cuda)")
    bench.add_argument("--threads", type=_int_at_least(1), nargs="+",
                       help="CPU thread counts (default: 1 2)")
    bench.add_argument("--repeats", type=_int_at_least(1), help="timed runs (default: 3)")
    bench.add_argument("--budget", type=_positive_float,
                       help="seconds per run before it counts as not reached (default: 30)")
    bench.add_argument("--only", action="append", metavar="NAME",
                       help="run only this candidate; repeat for several")
    bench.add_argument("--max-other-load", type=_positive_float,
                       help="cores of other processes' CPU use above which a timing is redone "
                       "(default: 0.25)")
    bench.add_argument("--silent", action="store_true", help="no progress lines")
    bench.add_argument("--kernel", action="store_true",
                       help="instead: forward + backward throughput of the unrolled kernel at "
                       "m = 1000, p = 1500, T = 100 against this machine's matrix-product rate "
                       "(udlbench.throughput) -> OUTPUT/kernel_throughput.csv")
    bench.set_defaults(handler=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``udlbench`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
