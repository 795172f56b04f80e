"""pytest-benchmark set-up of the kernel micro-benchmarks in this folder.

Timing is off unless asked for: the ``benchmark`` fixture below disables pytest-benchmark's timing
loop unless ``--benchmark-enable`` is given, so the default test run (``bash scripts/test.sh``, or
``pytest tests/benchmarks``) calls each benchmarked function once and checks its result, as
``--benchmark-disable`` would. Time them with

    .venv/bin/python -m pytest tests/benchmarks -n 0 --benchmark-enable

(add ``--benchmark-autosave`` or ``--benchmark-json=FILE`` to keep the numbers). Where CUDA is
available the machine info of the saved results names the GPU, its driver and the CUDA version.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch


@pytest.fixture
def benchmark(benchmark, request: pytest.FixtureRequest):
    """pytest-benchmark's fixture, with its timing disabled unless ``--benchmark-enable``."""
    if not request.config.getoption("benchmark_enable"):
        benchmark.disabled = True
    return benchmark


def _nvidia_driver(index: int) -> str | None:
    """The NVIDIA driver version reported by ``nvidia-smi`` for GPU ``index`` (None without it)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        answer = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader", f"--id={index}"],
            capture_output=True, text=True, timeout=30, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return answer.stdout.strip() or None


def pytest_benchmark_update_machine_info(config, machine_info):
    """Add the current GPU (name, memory, compute capability, driver, CUDA and cuDNN versions)
    to pytest-benchmark's machine info when CUDA is available."""
    if not torch.cuda.is_available():
        return
    index = torch.cuda.current_device()
    properties = torch.cuda.get_device_properties(index)
    machine_info["gpu"] = {
        "name": properties.name,
        "memory_gib": round(properties.total_memory / 2**30, 1),
        "compute_capability": f"{properties.major}.{properties.minor}",
        "driver": _nvidia_driver(index),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
