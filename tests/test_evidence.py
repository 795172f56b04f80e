"""Evidence records round-trip through JSON and Clopper-Pearson intervals are exact."""

import json

import numpy as np
import pytest
import torch

from udlbench import evidence

pytestmark = pytest.mark.fast


def test_record_round_trip_and_plain_values(tmp_path):
    record = evidence.Evidence(claim="P-T4.3", test="test_rate", statement="Thm 4.3")
    record.measure(
        rate=np.float64(0.91),
        ratios=torch.tensor([1.0, 0.99], dtype=torch.float64),
        bad=float("nan"),
    )
    record.predict(rate=0.91)
    record.verdict = "holds"
    path = record.write(tmp_path)
    assert path.name == "P-T4.3__test_rate.json"
    stored = json.loads(path.read_text())
    assert stored["measured"] == {"rate": 0.91, "ratios": [1.0, 0.99], "bad": "nan"}
    (loaded,) = evidence.load(tmp_path)
    assert loaded.claim == "P-T4.3" and loaded.verdict == "holds"
    assert not list(tmp_path.glob(".tmp-*"))  # the atomic write leaves no temporary file


def test_clopper_pearson_matches_known_values():
    low, high = evidence.clopper_pearson(0, 10)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 10))
    low, high = evidence.clopper_pearson(10, 10)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 10))
    with pytest.raises(ValueError, match="successes"):
        evidence.clopper_pearson(11, 10)


def test_save_figure_writes_png_and_svg_and_lists_them(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.semilogy([1, 2, 3], [1.0, 0.1, 0.01])
    record = evidence.Evidence(claim="P-T4.3", test="t")
    paths = record.save_figure(figure, tmp_path, "fig2")
    plt.close(figure)
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size for p in paths)
    assert record.figures == ["figures/P-T4.3__fig2.png", "figures/P-T4.3__fig2.svg"]


def test_load_and_record_files_ignore_other_json(tmp_path):
    (tmp_path / "config.json").write_text('{"lr": 0.1}')
    (tmp_path / "broken.json").write_text("{not json")
    record = evidence.Evidence(claim="P-L3.2", test="t", verdict="holds")
    path = record.write(tmp_path)
    assert evidence.record_files(tmp_path) == [path]
    assert [r.claim for r in evidence.load(tmp_path)] == ["P-L3.2"]
