"""Numbers over training seeds (issue 26): the paired comparison, the per-seed record of results.json and the
table cell that shows the seeds' spread apart from the protocol's."""
from __future__ import annotations

import pytest
from scipy import stats

from cezsar.reporting.compare import paired, sentence
from cezsar.reporting.results import seed_record
from cezsar.reporting.tables import format_cell


def test_paired_interval_equals_scipys_paired_t_test():
    a = [0.53, 0.61, 0.48, 0.57, 0.55]
    b = [0.50, 0.52, 0.47, 0.49, 0.56]
    r = paired(a, b)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert r["n"] == 5
    assert r["diff"] == pytest.approx(sum(a) / 5 - sum(b) / 5)
    assert (r["low"], r["high"]) == pytest.approx((ci.low, ci.high))
    assert r["distinguishable"] == (ci.low > 0 or ci.high < 0)


def test_an_interval_holding_zero_says_not_distinguishable_with_n_seeds():
    text = sentence("CEZSAR (VE + O)", [0.50, 0.60, 0.40], "CEZSAR (VE)", [0.55, 0.50, 0.45])
    assert "not distinguishable with 3 seeds" in text and "paired over 3 seeds" in text
    assert "is higher" not in text


def test_a_consistent_difference_is_named_with_its_direction():
    text = sentence("A", [0.60, 0.62, 0.61, 0.63], "B", [0.50, 0.52, 0.51, 0.49])  # differences 10, 10, 10, 14
    assert text.startswith("A vs B (top-1): +11.0 points") and text.endswith("A is higher.")
    low = sentence("A", [0.40, 0.41, 0.42], "B", 0.5)  # B a seed-free number (the objects-only baseline)
    assert "A is lower" in low


def test_one_seed_gives_no_interval_and_no_verdict():
    text = sentence("A", [0.7], "B", [0.5])
    assert "no interval" in text and "not distinguishable with 1 seed" in text


def test_paired_refuses_unequal_seed_counts():
    with pytest.raises(ValueError, match="one value per seed"):
        paired([0.1, 0.2], [0.1])


def _record(top1: float, std: float | None, runs: int) -> dict:
    return {"top1_mean": top1, "top1_std": std, "top5_mean": top1 + 0.2, "top5_std": std, "runs": [{}] * runs,
            "protocol": "0/8"}


def test_seed_record_keeps_every_seed_and_averages_the_protocols_numbers():
    recs = [_record(0.5, 0.10, 3), _record(0.6, 0.20, 3), _record(0.7, 0.30, 3)]
    r = seed_record(recs, [0, 1, 2])
    assert r["top1_mean"] == pytest.approx(0.6) and r["top1_std"] == pytest.approx(0.2)
    assert r["seeds"]["top1"] == [0.5, 0.6, 0.7] and r["seeds"]["records"] == recs
    assert r["seeds"]["top1_std"] == pytest.approx(0.1)  # sample std over the seeds' means
    assert r["protocol"] == "0/8" and r["seed_top1"] == {"0": 0.5, "1": 0.6, "2": 0.7}


def test_a_table_cell_shows_the_seeds_spread_apart_from_the_subsets():
    one = {"mean": 0.531, "std": 0.0, "runs": [{}], "n_seeds": 5, "seed_std": 0.024}
    assert format_cell(one) == "53.1 ± 2.4 (5 seeds)"
    many = {"mean": 0.625, "std": 0.093, "runs": [{}] * 50, "n_seeds": 5, "seed_std": 0.018}
    assert format_cell(many) == "62.5 ± 1.8 (5 seeds), subsets ± 9.3"
    assert format_cell({"mean": 0.625, "std": 0.093, "runs": [{}] * 50}) == "62.5 ± 9.3"  # one model: as before
