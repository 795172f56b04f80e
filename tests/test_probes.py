"""Encoder probes (udlbench.probes): PUDLE Figs 2 and 3 as a study."""

import pandas as pd
import pytest

from udlbench import probes

pytestmark = pytest.mark.fast

TINY = {**probes.QUICK, "m": 20, "p": 40, "s": 3, "n": 12, "n_gradient": 6, "n_layers": 200,
        "n_depths": 16, "tau": 0.1}


def test_probe_table_shows_the_rates_the_theorems_state(tmp_path):
    """On a tiny problem: fitted code rates equal rho_S (Thm 4.3), g_ae-lasso's slope is about
    twice g_dec's (Thm 4.10) and g_ae-ls stops at a plateau (Thm 4.12)."""
    table = probes.run(TINY, seed=0)
    assert set(table["figure"]) == {"fig2", "fig3"}
    assert table["compute_dtype"].eq("float64").all()
    row = probes.summary(table).iloc[0]
    assert abs(row["median fitted rate / rho_S (Thm 4.3: 1)"] - 1) < 0.02
    assert 1.5 < row["slope ae-lasso / dec, errors in [1e-11, 1e-2] (Thm 4.10: ~2)"] < 2.5
    assert row["ae-ls plateau / ||g_hat|| (Thm 4.12: O(lam))"] > 1e-2
    fragment = probes.render(pd.concat([table, probes.run(TINY, seed=1)]), tmp_path)
    for name in ("probes_fig2.png", "probes_fig2.svg", "probes_fig3.png", "probes_summary.csv"):
        assert (tmp_path / name).is_file()
    assert "Paper, Fig. 2" in fragment


def test_probe_is_deterministic_per_seed():
    small = {**TINY, "n_layers": 30, "n_depths": 4}
    first, again = probes.run(small, seed=3), probes.run(small, seed=3)
    pd.testing.assert_frame_equal(first, again)
    assert not first["value"].equals(probes.run(small, seed=4)["value"])


@pytest.mark.parametrize(("key", "value", "match"), [
    ("s", 50, "s must be <= p"), ("n_gradient", 99, "n_gradient must be <= n"),
    ("lam", 0.0, "lam"), ("sign", "both", "sign"), ("n_layers", 0, "n_layers"),
])
def test_bad_probe_options_are_named(key, value, match):
    with pytest.raises(ValueError, match=match):
        probes.check({**TINY, key: value})
    with pytest.raises(ValueError, match="unknown option"):
        probes.check({**TINY, "depth": 3})


def test_depths_are_distinct_and_span_the_range():
    values = probes.depths(300, 16)
    assert values[0] == 1 and values[-1] == 300 and len(set(values)) == len(values)
