"""The ``udlbench`` command line: help, version, ``info``, argument errors and ``run`` dispatch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import udlbench
from udlbench import cli

pytestmark = pytest.mark.fast


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "udlbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_help_lists_subcommands():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert "info" in result.stdout and "run" in result.stdout


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"udlbench {udlbench.__version__}"


def test_info_prints_versions_and_devices():
    result = run_cli("info")
    assert result.returncode == 0, result.stderr
    assert torch.__version__ in result.stdout
    assert udlbench.__version__ in result.stdout
    assert "commit" in result.stdout
    if not torch.cuda.is_available():
        assert "no CUDA device" in result.stdout


def test_info_json():
    result = run_cli("info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["torch"] == torch.__version__
    assert info["udlbench"] == udlbench.__version__
    assert info["cpu_cores"] >= 1
    assert len(info["cuda_devices"]) == torch.cuda.device_count()


def test_unknown_subcommand_fails_with_message():
    result = run_cli("no-such-command")
    assert result.returncode != 0
    assert "invalid choice" in result.stderr


def test_no_subcommand_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: udlbench" in capsys.readouterr().err


def test_import_is_light():
    code = "import sys, udlbench; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_verify_runs_the_suite_and_prints_the_claim_table(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "udlbench.cli",
            "verify",
            "--workers",
            "1",
            "--evidence-dir",
            str(tmp_path),
            "--",
            "-k",
            "P_AUX",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "P-AUX" in result.stdout and "holds" in result.stdout
    assert "1 holds, 0 deviation documented, 0 not checkable, 0 failed" in result.stdout
    assert len(list(tmp_path.glob("*.json"))) == 1
