"""The paired bootstrap: the mean difference, an interval that covers it, win/tie/loss, determinism."""

from __future__ import annotations

import pytest

from selfguide.eval.stats import paired_bootstrap


def test_paired_bootstrap_counts_and_interval():
    base = [0, 0, 100, 100, 0, 50]
    tuned = [100, 0, 100, 0, 100, 50]
    c = paired_bootstrap(base, tuned)
    assert (c.n, c.wins, c.ties, c.losses) == (6, 2, 3, 1)
    assert c.baseline == pytest.approx(250 / 6) and c.system == pytest.approx(350 / 6) and c.diff == pytest.approx(100 / 6)
    assert c.low < c.diff < c.high and c.low >= -100 and c.high <= 100
    assert paired_bootstrap(base, tuned) == c  # fixed seed


def test_a_consistent_gain_excludes_zero_and_no_change_is_a_point():
    c = paired_bootstrap([0.0] * 40, [1.0] * 30 + [0.0] * 10)
    assert c.low > 0
    same = paired_bootstrap([0.3, 0.7], [0.3, 0.7])
    assert (same.low, same.high, same.ties) == (0.0, 0.0, 2)


def test_unpaired_scores_are_refused():
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap([1.0], [1.0, 0.0])
