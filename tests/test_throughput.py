"""Kernel throughput (udlbench.throughput, `udlbench bench --kernel`): mechanics only."""

import pandas as pd
import pytest

from udlbench import cli, throughput

pytestmark = pytest.mark.fast


def test_throughput_table_reports_every_variant_with_both_flop_counts():
    table = throughput.measure(m=30, p=45, n=20, s=3, n_layers=5, repeats=1)
    assert list(table["variant"]) == list(throughput.VARIANTS)
    assert (table["seconds"] > 0).all() and (table["matmul_gflops_per_s"] > 0).all()
    dense = table["dense_gflops_per_s"] * table["seconds"] * 1e9
    assert (dense.round() == 12 * 20 * 30 * 45 * 5).all()  # 12 nmpT: 4 forward + 8 backward
    adjoint = table.set_index("variant").loc["adjoint, auto form"]
    assert adjoint["saved_fraction_of_autograd"] < 0.5


def test_bench_kernel_command_writes_the_table(tmp_path, capsys):
    assert cli.main(["bench", "--kernel", "--quick", "--threads", "1", "-o", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "kernel_throughput.csv")
    assert len(table) == len(throughput.VARIANTS)
    assert "dense_fraction_of_matmul" in capsys.readouterr().out
