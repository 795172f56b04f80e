"""Test configuration shared by tests/ and theorems/: one thread, hypothesis profiles, ``device``
and ``dtype`` fixtures.

Hypothesis profiles are chosen by the environment variable ``HYPOTHESIS_PROFILE``: ``dev`` (the
default) and ``ci`` (derandomised, no deadline, no example database), as in SciPy and PyTorch.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

torch.set_num_threads(1)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:  # can be set only once per process, before any inter-op work
    pass

settings.register_profile("dev", max_examples=50)
settings.register_profile(
    "ci", derandomize=True, deadline=None, database=None, print_blob=True, max_examples=50
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

CUDA_AVAILABLE = torch.cuda.is_available()


@pytest.fixture(
    params=[
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(not CUDA_AVAILABLE, reason="no CUDA device")),
    ]
)
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device a test runs on: CPU always, CUDA where present."""
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    """The floating-point precision a test runs in."""
    return request.param
