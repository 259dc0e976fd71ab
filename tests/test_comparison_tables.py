"""The result document and THE table renderer, on a comparison assembled from the geometry
core's own analyses of known spectra: every format shows the numbers the document holds, and
those are the closed-form / numpy answers."""

from __future__ import annotations

import csv
import io
import math
from typing import Any, cast

import numpy as np
import pytest

from services import geometry, plots
from services.comparability import ComparabilityKey
from services.comparisons import Selection
from services.comparisons.compute import Comparison
from services.comparisons.document import DOCUMENT_VERSION, result_document
from services.comparisons.figures import render_plots
from services.comparisons.selection import LoadedSelection
from services.comparisons.tables import TABLE_FORMATS, comparison_tables, render_tables

D, K, N = 12, 6, 9


def _key(method: str, distance: str = "mse") -> ComparabilityKey:
    return ComparabilityKey(
        model="toy",
        weights_sha256="ab" * 32,
        space="z",
        psi=None,
        distance=distance,
        distance_options=(),
        method=method,
        method_options=(),
        dtype="float64",
        kept="all",
    )


def _loaded(
    label: str, method: str, values: np.ndarray, variation: dict[str, object] | None = None
) -> LoadedSelection:
    directions = method == "sefa"
    return LoadedSelection(
        label=label,
        selection=Selection(model="toy", method=method),
        key=_key(method, "-" if directions else "mse"),
        spectrum_ids=[f"id-{label}-{i}" for i in range(values.shape[0])],
        job_ids=["job"],
        eigenvalues=values,
        d=D,
        vector_k=K,
        model="toy",
        method=method,
        distance="-" if directions else "mse",
        image_variation=variation,
    )


def _comparison(degenerate: bool = False) -> tuple[Comparison, np.ndarray]:
    rng = np.random.default_rng(0)
    values = (
        np.sort(rng.exponential(1.0, size=(N, D)), axis=1)[:, ::-1] * np.arange(1, N + 1)[:, None]
    )
    vectors = np.stack([np.linalg.qr(rng.normal(size=(D, D)))[0] for _ in range(N)])
    hessian = _loaded(
        "hess",
        "jacobian",
        values,
        {"pixel_std": 1e-4, "degenerate": degenerate, "threshold": 1e-3},
    )
    sefa_values = np.sort(rng.exponential(1.0, size=(1, D)), axis=1)[:, ::-1]
    sefa = _loaded("sefa", "sefa", sefa_values)
    a, b = vectors[0][:, :K], vectors[1][:, :K]
    alignment = geometry.alignment(a, b, k=K)
    comparison = Comparison(
        selections=[hessian, sefa],
        anisotropy=[
            geometry.anisotropy(values, latent_dim=D),
            geometry.anisotropy(sefa_values, latent_dim=D),
        ],
        homogeneity=[geometry.homogeneity(values[:, :K], vectors[:, :, :K]), None],
        alignments=[{"a": "sefa", "b": "hess", "kind": "sefa-vs-hessian", **alignment}],
        notes=["a note"],
    )
    return comparison, values


def test_the_document_holds_the_known_answers() -> None:
    comparison, values = _comparison()
    document = result_document(comparison)
    assert (
        document["version"] == DOCUMENT_VERSION
        and document["schema"] == "latent-spectra/comparison"
    )
    hess, sefa = document["members"]
    assert (hess["kind"], sefa["kind"]) == ("hessian", "directions")
    top = hess["anisotropy"]["statistics"]["top_eigenvalue"]
    assert top["median"] == pytest.approx(np.median(values[:, 0]))
    assert top["mean"] == pytest.approx(values[:, 0].mean())
    assert top["ci95"][0] < top["mean"] < top["ci95"][1]
    assert hess["spectrum_ids"] == [f"id-hess-{i}" for i in range(N)]
    # The chart's bands are those of THE normalisation.
    bands = hess["spectrum_bands"]["top"]
    np.testing.assert_allclose(bands["median"], np.median(values / values[:, :1], axis=0))
    assert document["default_normalisation"] == "top"  # Hessians and directions together
    (alignment,) = document["alignments"]
    cosines = np.abs(comparison.alignments[0]["abs_cosine"])
    np.testing.assert_allclose(alignment["best_match_abs_cosine"], cosines.max(axis=1))
    np.testing.assert_allclose(alignment["same_rank_abs_cosine"], np.diagonal(cosines))
    exact = alignment["baselines"]["same_rank_abs_cosine"]
    assert exact["method"] == "exact" and exact["mean"] == pytest.approx(
        geometry.expected_abs_cosine(D)
    )
    assert alignment["baselines"]["best_match_abs_cosine"]["method"] == "sampled"


def test_every_format_shows_the_documents_numbers() -> None:
    document = result_document(_comparison()[0])
    top = document["members"][0]["anisotropy"]["statistics"]["top_eigenvalue"]
    shown = f"{top['median']:.4g}"
    for fmt in ("text", "markdown", "latex"):
        assert shown in render_tables(document, fmt), fmt
    rows = list(csv.DictReader(io.StringIO(render_tables(document, "csv").split("\n\n")[0])))
    assert float(rows[0]["λ₁ median"]) == top["median"]  # full precision in CSV
    assert float(rows[0]["λ₁ mean 95 % CI low"]) == top["ci95"][0]
    assert float(rows[0]["λ₁ mean 95 % CI high"]) == top["ci95"][1]
    latex = render_tables(document, "latex")
    assert latex.count(r"\toprule") == len(comparison_tables(document)) == 3
    assert r"\midrule" in latex and r"\bottomrule" in latex and "%" not in latex.replace(r"\%", "")
    text = render_tables(document, "text")
    assert "same-rank |cos| mean" in text and "best-match |cos| mean" in text
    assert "note: a note" in text
    with pytest.raises(ValueError, match="table format"):
        render_tables(document, "html")
    assert set(TABLE_FORMATS) == {"text", "csv", "markdown", "latex"}


def test_directions_are_a_table_apart_from_hessians() -> None:
    tables = {t.name: t for t in comparison_tables(result_document(_comparison()[0]))}
    assert [row[0] for row in tables["hessians"].rows] == ["hess"]
    assert [row[0] for row in tables["directions"].rows] == ["sefa"]
    assert "distance" not in tables["directions"].columns


def test_a_degenerate_generator_is_flagged_in_every_table_format() -> None:
    document = result_document(_comparison(degenerate=True)[0])
    assert document["members"][0]["degenerate_generator"] is True
    assert any("DEGENERATE GENERATOR" in note for note in document["notes"])
    for fmt in ("text", "csv", "markdown", "latex"):
        assert "DEGENERATE" in render_tables(document, fmt), fmt
    clean = result_document(_comparison(degenerate=False)[0])
    assert "DEGENERATE" not in render_tables(clean, "text")


def test_the_one_normalisation_leaves_out_what_cannot_be_normalised() -> None:
    values = np.array([[4.0, 2.0, 1.0], [-1e-18, -2e-18, -3e-18], [0.0, 0.0, 0.0]])
    top = plots.normalise_spectra(values, "top")
    np.testing.assert_allclose(top[0], [1.0, 0.5, 0.25])
    assert np.isnan(top[1:]).all()  # λ₁ <= 0: no normalised form, never drawn as raw values
    bands = plots.spectrum_bands(values, "trace")
    assert bands["n"] == 1
    np.testing.assert_allclose(bands["median"], values[0] / 7.0)
    assert plots.spectrum_bands(values[1:], "top")["n"] == 0


def test_the_heatmap_colour_scale_spans_the_data() -> None:
    off = np.array([0.81, 0.97, 0.9, np.nan])
    assert plots.heatmap_range(off) == (0.81, 0.97)
    low, high = plots.heatmap_range(np.array([0.9, 0.9]))
    assert low < 0.9 < high and not math.isclose(low, high)


def test_a_degenerate_generator_is_flagged_in_every_figure_legend() -> None:
    """The figures name the member as the tables do (SVG keeps its text as text)."""
    flagged = render_plots(
        cast(Any, None), _comparison(degenerate=True)[0], formats=("svg",), montages=False
    )
    assert sorted(flagged) == [
        "heatmap-hess.svg",
        "homogeneity-linear.svg",
        "homogeneity-log.svg",
        "spectrum.svg",
    ]
    for name, picture in flagged.items():
        assert b"hess [DEGENERATE]" in picture, name
        assert b"sefa [DEGENERATE]" not in picture, name
    clean = render_plots(cast(Any, None), _comparison()[0], formats=("svg",), montages=False)
    assert not any(b"DEGENERATE" in picture for picture in clean.values())


def test_the_clients_frames_are_the_tables_as_dataframes() -> None:
    """StoredComparison.frames(): one pandas DataFrame per table, its columns and values the
    CSV's (full precision, intervals as two columns), the known numbers in their cells."""
    import pandas as pd  # a dev extra (pyproject.toml): the tests run with it

    from api.client.comparisons import StoredComparison

    document = result_document(_comparison()[0])
    view = {"id": "c", "status": "succeeded", "progress": 1.0, "document": document}
    frames = StoredComparison.from_json(view).frames()
    tables = comparison_tables(document)
    assert list(frames) == [table.name for table in tables]
    csv_blocks = render_tables(document, "csv").split("\n\n")
    for table, block in zip(tables, csv_blocks, strict=False):
        frame = frames[table.name]
        assert isinstance(frame, pd.DataFrame) and len(frame) == len(table.rows)
        header = next(csv.reader(io.StringIO(block)))
        assert ["table", *frame.columns] == header
    top = document["members"][0]["anisotropy"]["statistics"]["top_eigenvalue"]
    hessians = frames[tables[0].name]
    assert hessians.loc[0, "λ₁ median"] == top["median"]
    assert hessians.loc[0, "λ₁ mean 95 % CI low"] == top["ci95"][0]
    assert hessians.loc[0, "λ₁ mean 95 % CI high"] == top["ci95"][1]
    with pytest.raises(ValueError, match="no result yet"):
        StoredComparison.from_json({**view, "status": "running", "document": None}).frames()
