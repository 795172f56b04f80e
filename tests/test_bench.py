"""Mechanics of ``udlbench.bench`` (time to accuracy against the peers): load detection from
/proc/stat readings, time-to-target extraction, the summary and ratio tables, the CUDA error,
and ``udlbench bench --quick`` end to end. No assertion depends on a measured time.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from udlbench import bench
from udlbench.cli import main

pytestmark = pytest.mark.fast

# Two CPUs: cpu0 busy 100 + 20 + 30 = 150 ticks of 250, cpu1 busy 50 of 250 (iowait 10 is idle).
PROC_STAT = """cpu  150 0 50 250 10 0 0 0 0 0
cpu0 100 0 20 100 0 0 30 0 0 0
cpu1 50 0 0 150 10 0 0 0 0 0
intr 12345
ctxt 678
"""


def test_parse_proc_stat_counts_busy_ticks_of_the_watched_cpus():
    assert bench.parse_proc_stat(PROC_STAT) == pytest.approx(2.0)  # (150 + 50) / 100 ticks
    assert bench.parse_proc_stat(PROC_STAT, [1]) == pytest.approx(0.5)
    assert bench.parse_proc_stat(PROC_STAT, [0], ticks=50) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="cpus"):
        bench.parse_proc_stat(PROC_STAT, [7])


def test_other_load_subtracts_own_cpu_time():
    before = bench.CpuReading(busy_s=10.0, own_s=1.0, wall_s=100.0)
    after = bench.CpuReading(busy_s=14.0, own_s=3.0, wall_s=102.0)
    assert bench.other_load(before, after) == pytest.approx(1.0)  # (4 - 2) s over 2 s
    assert bench.other_load(before, bench.CpuReading(11.0, 3.0, 102.0)) == 0.0  # clipped
    assert math.isnan(bench.other_load(None, after))


def _fake_reader(loads: list[float]):
    """Readings in pairs whose other-process load over a 1 s timing is each of ``loads``."""
    readings = []
    busy = 0.0
    for i, load in enumerate(loads):
        readings.append(bench.CpuReading(busy, 0.0, float(2 * i)))
        busy += load
        readings.append(bench.CpuReading(busy, 0.0, float(2 * i + 1)))
    return iter(readings).__next__


def test_measure_redoes_loaded_timings_up_to_the_limit():
    calls = []

    def task():
        calls.append(len(calls))
        return pd.DataFrame({"time": [0.0, 1.0], "error_fro": [1.0, 0.1]})

    curve, notes = bench.measure(task, max_other_load=0.5, max_attempts=3,
                                 reader=_fake_reader([1.5, 0.2, 9.0]))
    assert len(calls) == 2 and len(curve) == 2
    assert notes["attempts"] == 2 and not notes["loaded"]
    assert notes["other_load"] == pytest.approx(0.2)
    assert notes["discarded_loads"] == "[1.5]"

    calls.clear()
    _, notes = bench.measure(task, max_other_load=0.5, max_attempts=2,
                             reader=_fake_reader([1.5, 0.9]))
    assert len(calls) == 2 and notes["loaded"] and notes["attempts"] == 2

    calls.clear()
    _, notes = bench.measure(task, max_other_load=0.5, reader=lambda: None)  # no /proc
    assert len(calls) == 1 and not notes["loaded"] and math.isnan(notes["other_load"])


def test_read_cpu_on_this_machine_or_none():
    reading = bench.read_cpu()
    if reading is None:
        pytest.skip("no readable /proc/stat")
    assert reading.busy_s > 0 and reading.own_s > 0
    assert bench.read_cpu("/nonexistent/stat") is None


def test_time_to_target_takes_the_first_point_in_time_order():
    curve = pd.DataFrame({"time": [0.0, 3.0, 1.0, 2.0, 4.0],
                          "error_fro": [0.2, 0.005, 0.05, 0.009, 1e-5]})
    assert bench.time_to_target(curve, 1e-2) == 2.0
    assert bench.time_to_target(curve, 1e-4) == 4.0
    assert math.isnan(bench.time_to_target(curve, 1e-6))
    assert bench.time_to_target(curve, 0.2) == 0.0
    with pytest.raises(ValueError, match="target"):
        bench.time_to_target(curve, 0.0)


def _runs(rows):
    base = {"family": "udlbench", "runner": "pudle", "lam": math.nan, "lam_choice": "",
            "device": "cpu", "threads": 1, "target": 1e-2, "floor": 1e-3, "time_spent": 5.0,
            "loaded": False, "attempts": 1, "other_load": 0.0}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_summary_medians_and_ratio():
    runs = _runs([
        {"candidate": "u", "time_to_target": t} for t in (1.0, 3.0, math.nan)
    ] + [
        {"candidate": "v", "time_to_target": t} for t in (math.nan, math.nan, 0.1)
    ] + [
        {"candidate": "peer", "family": "peer", "runner": "spams", "lam": 0.1,
         "time_to_target": t, "loaded": t > 4.5} for t in (4.0, 6.0, 5.0)
    ] + [
        {"candidate": "peer", "family": "peer", "runner": "spams", "lam": 0.01,
         "target": 1e-4, "time_to_target": math.nan, "floor": 8e-4}
    ])
    summary = bench.summarise(runs).set_index(["candidate", "target"])
    assert summary.loc[("u", 1e-2), "time_to_target"] == 3.0  # NaN counts as not reached (inf)
    assert summary.loc[("u", 1e-2), "reached"] == 2
    assert math.isnan(summary.loc[("v", 1e-2), "time_to_target"])  # 1 of 3 reached
    assert summary.loc[("peer", 1e-2), "loaded_repeats"] == 2
    table = bench.ratios(summary.reset_index()).set_index("target")
    assert table.loc[1e-2, "udlbench_fastest"] == "u"
    assert table.loc[1e-2, "ratio"] == pytest.approx(3.0 / 5.0)
    assert table.loc[1e-2, "outcome"] == "both"
    assert table.loc[1e-4, "outcome"] == "neither" and math.isnan(table.loc[1e-4, "ratio"])


def test_candidates_are_validated():
    with pytest.raises(ValueError, match="lam grid"):
        bench.Candidate("x", "peer", "spams")
    with pytest.raises(ValueError, match="runner"):
        bench.Candidate("x", "udlbench", "nope")
    assert len({c.name for c in bench.CANDIDATES}) == len(bench.CANDIDATES)
    assert {c.runner for c in bench.CANDIDATES if c.family == "peer"} == set(bench.PEERS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_a_device_errors_clearly(tmp_path, capsys):
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        bench.run(device="cuda", **bench.quick())
    assert main(["bench", "--device", "cuda", "--quick", "-o", str(tmp_path)]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_bench_quick_writes_tables_figure_and_html(tmp_path, capsys):
    out = tmp_path / "bench"
    names = ["pudle-dec-ht-fista-T50-b200", "spams-trainDL-b256", "sklearn-MiniBatchDL-b256",
             "sporco-BPDNDictLearn"]
    argv = ["bench", "--quick", "--silent", "-o", str(out)]
    for name in names:
        argv += ["--only", name]
    assert main(argv) == 0
    assert str(out / "index.html") in capsys.readouterr().out
    results = bench.load(out)
    assert set(results.runs["candidate"]) == set(names)
    assert set(results.runs["target"]) == set(bench.TARGETS)
    assert results.runs["repeat"].eq(1).all() and results.runs["threads"].eq(1).all()
    reached = results.runs.dropna(subset=["time_to_target"])
    assert (reached["time_to_target"] <= reached["time_spent"]).all()
    for key in ("cpu", "cpu_cores", "torch", "sklearn", "spams", "sporco"):
        assert results.runs[key].notna().all() and key in results.meta
    searched = results.curves[results.curves["phase"] == "search"]
    assert set(searched["candidate"]) == set(names[1:])
    assert list(results.ratios["target"]) == sorted(bench.TARGETS)
    assert (out / "figures" / "bench.png").stat().st_size > 0
    page = (out / "index.html").read_text()
    assert "Time to accuracy" in page and "figures/bench.png" in page
    assert main(["bench", "--quick", "--only", "nope", "-o", str(out)]) == 2
