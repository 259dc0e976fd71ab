"""Paired comparisons position by position: matching, known answers, and why pairing matters."""

from __future__ import annotations

import numpy as np
import pytest

from services.geometry import InvalidOptionError
from services.geometry.paired import matched_positions, paired_comparison, paired_differences
from services.geometry.statistics import bootstrap, paired_difference


def test_positions_are_matched_by_key_in_the_first_members_order() -> None:
    a, b = matched_positions(["x", "y", None, "z", "y"], ["z", "q", "x", None])
    assert a.tolist() == [0, 3] and b.tolist() == [2, 0]
    empty_a, _ = matched_positions([None], [None])
    assert empty_a.size == 0


def test_a_constant_shift_is_found_exactly() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(1, 100, size=30)
    result = paired_differences({"top_eigenvalue": a}, {"top_eigenvalue": a + 2.5})
    figure = result["top_eigenvalue"]
    assert figure["mean_difference"] == pytest.approx(2.5)
    assert figure["ci"] == pytest.approx([2.5, 2.5])
    assert figure["share_b_greater"] == 1.0 and figure["n_pairs"] == 30


def test_pairing_sees_a_difference_the_pooled_spread_hides() -> None:
    # Positions vary 100-fold; b is a 5 % larger than a at every position (plus a little noise).
    rng = np.random.default_rng(1)
    a = np.exp(rng.uniform(0, np.log(100), size=40))
    b = a * 1.05 + rng.normal(0, 0.01, size=40)
    paired = paired_differences({"top_eigenvalue": a}, {"top_eigenvalue": b})["top_eigenvalue"]
    low, high = paired["ci"]
    assert low > 0  # the paired interval excludes no difference
    # Each member's own interval of its mean: they overlap, so an unpaired reading sees nothing.
    a_low, a_high = bootstrap(a).low, bootstrap(a).high
    b_low, b_high = bootstrap(b).low, bootstrap(b).high
    assert a_high > b_low and b_high > a_low
    # THE bootstrap of the differences (statistics.paired_difference), not another one.
    assert [low, high] == paired_difference(a, b).bounds() == bootstrap(b - a).bounds()


def test_paired_comparison_of_spectra_over_shared_codes() -> None:
    rng = np.random.default_rng(2)
    spectra_a = np.sort(rng.uniform(0.1, 10, size=(6, 8)), axis=1)[:, ::-1]
    spectra_b = spectra_a * 2.0  # the same positions, every eigenvalue doubled
    keys_a = ["c0", "c1", "c2", "c3", "c4", "c5"]
    keys_b = keys_a[::-1]
    result = paired_comparison(spectra_a, spectra_b[::-1], keys_a, keys_b, full_a=True, full_b=True)
    assert result is not None and result["n_matched"] == 6
    figures = result["figures"]
    assert figures["top_eigenvalue"]["mean_difference"] == pytest.approx(spectra_a[:, 0].mean())
    # Scale-free figures do not move when every eigenvalue doubles.
    for name in ("dims_99", "participation_ratio", "top10_share"):
        assert figures[name]["mean_difference"] == pytest.approx(0.0, abs=1e-12)
    assert (
        paired_comparison(spectra_a, spectra_b, ["x"] * 6, ["y"] * 6, full_a=True, full_b=True)
        is None
    )
    top_only = paired_comparison(spectra_a, spectra_b, keys_a, keys_a, full_a=False, full_b=True)
    assert top_only is not None and set(top_only["figures"]) == {"top_eigenvalue"}


def test_paired_figures_must_be_over_the_same_positions() -> None:
    with pytest.raises(InvalidOptionError, match="same positions"):
        paired_differences({"x": np.ones(3)}, {"x": np.ones(4)})
