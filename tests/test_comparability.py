"""The comparability key of a stored spectrum, and de-duplication of positions."""

from __future__ import annotations

from typing import Any

import pytest

from services.comparability import (
    ComparabilityKey,
    SelectedRow,
    comparability_key,
    differing_fields,
    group_rows,
)

RESOLVED = {
    "model": "dcgan-faces",
    "generator": {"facts": {"weights_sha256": "abc"}},
    "distance": "lpips-alex",
    "distance_options": {"random_backbone": True},
    "method": "jacobian",
    "method_options": {},
    "dtype": "float32",
}


def _key(resolved: dict[str, Any] = RESOLVED, **columns: Any) -> ComparabilityKey:
    values: dict[str, Any] = {
        "model": "dcgan-faces",
        "distance": "lpips-alex",
        "method": "jacobian",
        "dtype": "float32",
        "k": 100,
        "d": 100,
        **columns,
    }
    return comparability_key(resolved, **values)


def test_random_backbone_space_and_psi_are_part_of_the_key_and_the_label() -> None:
    random = _key()
    real = _key({**RESOLVED, "distance_options": {}})
    assert random != real
    assert random.label() == "dcgan-faces/lpips-alex (random backbone)/jacobian"
    w = _key({**RESOLVED, "space": "w", "psi": 0.7})
    assert w != random and "space=w" in w.label() and "psi=0.7" in w.label()


def test_dtype_top_k_weights_and_method_options_split_keys() -> None:
    base = _key()
    assert _key(dtype="float64") != base
    assert _key(k=20).kept == "top-20" and _key(k=20) != base
    assert _key({**RESOLVED, "generator": {"facts": {"weights_sha256": "other"}}}) != base
    options = _key({**RESOLVED, "method_options": {"tol": 1e-10, "seed": 0}})
    assert options != base and "seed=0, tol=1e-10" in options.label()
    assert _key({**RESOLVED, "method_options": {"tol": 1e-10, "seed": 1}}) != options
    # What does not change the spectra does not split: the order options were given in, and
    # an option left unset (None) against one not given.
    assert _key({**RESOLVED, "method_options": {"seed": 0, "tol": 1e-10}}) == options
    assert (
        _key({**RESOLVED, "method_options": {"tol": 1e-10, "seed": 0, "max_iter": None}}) == options
    )
    assert set(differing_fields([base, _key(dtype="float64", k=20)])) == {"dtype", "kept"}


def test_an_imported_copy_carries_the_source_key() -> None:
    imported = {"model": "dcgan-faces", "imported": True, "source_resolved": RESOLVED}
    assert _key(imported) == _key()
    bare_import = {"model": "dcgan-faces", "imported": True}
    assert _key(bare_import) != _key()  # weights unknown: not the same key


def _row(
    job: str, index: int, code: str | None, status: str = "succeeded", **key: Any
) -> SelectedRow:
    return SelectedRow(f"{job}-{index}", job, status, index, _key(**key), code)


def test_the_same_position_counts_once_and_partial_jobs_are_left_out() -> None:
    rows = [
        _row("a", 0, "c0"),
        _row("a", 1, "c1"),
        _row("copy", 0, "c0"),  # an import of job a
        _row("copy", 1, "c1"),
        _row("b", 0, "c2"),
        _row("cancelled", 0, "c3", status="cancelled"),
    ]
    grouping = group_rows(rows)
    (group,) = grouping.groups
    assert [r.spectrum_id for r in group.rows] == ["a-0", "a-1", "b-0"]
    assert group.duplicates == 2 and grouping.partial_left_out == {"cancelled": 1}
    assert len(group_rows(rows, include_partial=True).groups[0].rows) == 4


def test_unlike_rows_form_separate_groups() -> None:
    grouping = group_rows([_row("a", 0, "c0"), _row("f64", 0, "c0", dtype="float64")])
    assert len(grouping.groups) == 2
    directions = group_rows([_row("s", 0, None, method="sefa"), _row("t", 0, None, method="sefa")])
    assert len(directions.groups[0].rows) == 1 and directions.groups[0].duplicates == 1


def test_labels_never_show_a_directory() -> None:
    from services.comparability import display_model

    assert display_model("python:/home/a/gen.py:build") == "python:gen.py:build"
    assert display_model("torchscript:/x/y/model.pt") == "torchscript:model.pt"
    assert display_model("shuffled:0:stylegan2:/p/g.pt") == "shuffled:0:stylegan2:g.pt"
    assert display_model("shuffled:3:dcgan-faces") == "shuffled:3:dcgan-faces"
    assert display_model("dcgan-faces") == "dcgan-faces"


def test_biggan_jobs_from_before_its_spaces_compare_with_both_jobs() -> None:
    biggan = {**RESOLVED, "generator": {"family": "biggan-deep", "facts": {"weights_sha256": "b"}}}
    legacy, both = _key({**biggan, "space": "z"}), _key({**biggan, "space": "both"})
    assert legacy == both and "space=both" in both.label()
    assert _key({**biggan, "space": "noise"}) != both
    # Only BigGAN's z was renamed: a StyleGAN2's z stays z.
    stylegan = {**RESOLVED, "generator": {"family": "stylegan2", "facts": {}}, "space": "z"}
    assert _key(stylegan).space == "z"


def test_directions_are_aligned_only_in_one_space_or_through_an_exact_transport() -> None:
    from services.comparability import SpacesDifferError, alignment_coordinates

    z = _key({**RESOLVED, "space": "z"})
    w = _key({**RESOLVED, "space": "w"})
    wplus = _key({**RESOLVED, "space": "w+"})
    assert alignment_coordinates(z, _key())["transport"] is None  # no space recorded: z
    with pytest.raises(SpacesDifferError, match="in 'z'.* in 'w'.*z->w, w->z"):
        alignment_coordinates(z, w)
    assert alignment_coordinates(z, w, transport="w->z")["transport"] == "w->z"
    assert alignment_coordinates(wplus, w, transport="w+->w")["space_a"] == "w+"
    with pytest.raises(SpacesDifferError, match="not 'w->z'"):
        alignment_coordinates(wplus, w, transport="w->z")
    other_w = _key({**RESOLVED, "space": "w", "generator": {"facts": {"weights_sha256": "x"}}})
    with pytest.raises(SpacesDifferError, match="different weights"):
        alignment_coordinates(w, other_w)
    noise = _key({**RESOLVED, "space": "noise"})
    with pytest.raises(SpacesDifferError, match="no exact transport"):
        alignment_coordinates(noise, _key({**RESOLVED, "space": "class"}))
