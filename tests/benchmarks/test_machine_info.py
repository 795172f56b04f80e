"""The ``pytest_benchmark_update_machine_info`` hook of this folder's conftest.py: the GPU's name,
memory, compute capability, driver (from nvidia-smi) and CUDA version are added when CUDA is
available, and nothing when it is not. A stand-in GPU is used where none is present."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pytestmark = pytest.mark.fast


@pytest.fixture
def folder_conftest(request: pytest.FixtureRequest):
    """The conftest.py module of this folder, as pytest registered it."""
    path = Path(__file__).with_name("conftest.py").resolve()
    for plugin in request.config.pluginmanager.get_plugins():
        if Path(getattr(plugin, "__file__", "") or "").resolve() == path:
            return plugin
    raise LookupError(f"{path} is not registered as a conftest plugin")


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch, folder_conftest):
    """The current GPU's expected name; a stand-in H100 with driver 550.54.15 without CUDA."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(torch.cuda.current_device()).name
    properties = SimpleNamespace(name="Stand-in H100", total_memory=80 * 2**30, major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: properties)
    monkeypatch.setattr(folder_conftest.shutil, "which", lambda name: "/usr/bin/" + name)

    def nvidia_smi(command, **options):
        assert command[1:] == ["--query-gpu=driver_version", "--format=csv,noheader", "--id=0"]
        return subprocess.CompletedProcess(command, 0, stdout="550.54.15\n", stderr="")

    monkeypatch.setattr(folder_conftest.subprocess, "run", nvidia_smi)
    return properties.name


def test_machine_info_names_the_gpu(request, folder_conftest, gpu):
    machine_info = {"node": "host"}
    folder_conftest.pytest_benchmark_update_machine_info(request.config, machine_info)
    info = machine_info["gpu"]
    assert info["name"] == gpu and machine_info["node"] == "host"
    assert info["memory_gib"] > 0 and info["compute_capability"].count(".") == 1
    assert info["cuda"] == torch.version.cuda
    if not torch.cuda.is_available():
        assert info["driver"] == "550.54.15" and info["memory_gib"] == 80.0


def test_machine_info_without_cuda_is_unchanged(request, monkeypatch, folder_conftest):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    machine_info = {"node": "host"}
    folder_conftest.pytest_benchmark_update_machine_info(request.config, machine_info)
    assert machine_info == {"node": "host"}


def test_driver_is_none_without_nvidia_smi(monkeypatch, folder_conftest):
    monkeypatch.setattr(folder_conftest.shutil, "which", lambda name: None)
    assert folder_conftest._nvidia_driver(0) is None
