"""Comparing selections of stored spectra, for the HTTP compare and plot routes and the CLI.

A selection is a job, or every visible spectrum of one (model, distance, method). For each:
the anisotropy table and the homogeneity statistics. For each pair whose latent spaces have
the same dimension: the alignment of the top-k eigenvectors of their average metrics (SeFa
against a Hessian method on the same model is one such pair). All numbers come from
services.geometry; this module only selects, loads and labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services import geometry, plots
from services.jsonable import jsonable
from services.patterns import TEXT_PATTERN, UUID_PATTERN
from services.store import InvalidDataError, NotFoundError, Store

# Homogeneity is O(N^2 k d): beyond this many positions a selection uses its first ones.
DEFAULT_MAX_POSITIONS = 100
MAX_POSITIONS = 500
# Eigenvectors read per spectrum for homogeneity and the average metric.
MAX_VECTORS = 128
MAX_SELECTIONS = 8


class Selection(BaseModel):
    """A job id, or a (model, distance, method) triple (distance may be left out for sefa)."""

    model_config = ConfigDict(extra="forbid")
    job_id: str | None = Field(default=None, pattern=UUID_PATTERN)
    model: str | None = Field(default=None, min_length=1, max_length=200, pattern=TEXT_PATTERN)
    distance: str | None = Field(default=None, min_length=1, max_length=100, pattern=TEXT_PATTERN)
    method: str | None = Field(default=None, min_length=1, max_length=50, pattern=TEXT_PATTERN)
    label: str | None = Field(default=None, max_length=100, pattern=TEXT_PATTERN)

    @model_validator(mode="after")
    def _job_or_triple(self) -> Selection:
        by_job = self.job_id is not None
        by_triple = self.model is not None or self.method is not None or self.distance is not None
        if by_job == by_triple:
            raise ValueError('give either "job_id" or "model" and "method" (and "distance")')
        if by_triple and (self.model is None or self.method is None):
            raise ValueError('a selection by model needs "model" and "method"')
        return self

    def describe(self) -> str:
        if self.label:
            return self.label
        if self.job_id is not None:
            return f"job {self.job_id[:8]}"
        return "/".join(p for p in (self.model, self.distance, self.method) if p)


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    selections: list[Selection] = Field(min_length=1, max_length=MAX_SELECTIONS)
    k: int = Field(default=10, ge=1, le=MAX_VECTORS, description="top-k for the alignments")
    max_positions: int = Field(default=DEFAULT_MAX_POSITIONS, ge=2, le=MAX_POSITIONS)


def parse_selection(text: str) -> Selection:
    """``JOB_ID`` or ``MODEL:DISTANCE:METHOD`` (the model may itself contain colons)."""
    parts = text.rsplit(":", 2)
    if len(parts) == 3 and all(parts):
        return Selection(model=parts[0], distance=parts[1], method=parts[2])
    if ":" in text:
        raise ValueError(f"selection {text!r}: use a job id or MODEL:DISTANCE:METHOD")
    return Selection(job_id=text)


@dataclass
class LoadedSelection:
    label: str
    selection: Selection
    spectrum_ids: list[str]
    eigenvalues: np.ndarray  # (N, k) descending
    eigenvectors: np.ndarray  # (n, d, kv) for the first n <= max_positions spectra
    model: str
    method: str
    distance: str
    codes: list[np.ndarray | None] = field(default_factory=list)


@dataclass
class Comparison:
    selections: list[LoadedSelection]
    anisotropy: list[dict[str, Any]]
    homogeneity: list[dict[str, Any] | None]
    alignments: list[dict[str, Any]]
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "selections": [
                {
                    "label": s.label,
                    "selection": s.selection.model_dump(exclude_none=True),
                    "model": s.model,
                    "distance": s.distance,
                    "method": s.method,
                    "n_spectra": int(s.eigenvalues.shape[0]),
                    "k": int(s.eigenvalues.shape[1]),
                    "d": int(s.eigenvectors.shape[1]),
                    "anisotropy": jsonable(a),
                    "homogeneity": None if h is None else jsonable(_drop_matrices(h)),
                }
                for s, a, h in zip(self.selections, self.anisotropy, self.homogeneity, strict=True)
            ],
            "alignments": [jsonable(a) for a in self.alignments],
            "notes": self.notes,
        }


def _drop_matrices(result: dict[str, Any]) -> dict[str, Any]:
    # The N x N matrices are for pictures; the JSON keeps the statistics.
    return {
        key: value
        for key, value in result.items()
        if not (isinstance(value, np.ndarray) and value.ndim >= 2)
    }


def _load(store: Store, selection: Selection, owner: str | None, max_positions: int) -> LoadedSelection:
    if selection.job_id is not None:
        job = store.get_job(selection.job_id, owner=owner)  # 404 if not visible
        eigenvalues, ids = store.eigenvalue_matrix(job_id=job.id, owner=owner)
    else:
        eigenvalues, ids = store.eigenvalue_matrix(
            model=selection.model, distance=selection.distance, method=selection.method, owner=owner
        )
    if not ids:
        raise NotFoundError(f"selection {selection.describe()!r} matches no stored spectra")
    first = store.get_spectrum(ids[0])
    kept = ids[:max_positions]
    vector_k = min(eigenvalues.shape[1], MAX_VECTORS)
    eigenvectors = store.top_k_eigenvectors(kept, vector_k)  # (n, d, kv)
    label = selection.label or (
        f"{first.model}/{first.distance}/{first.method}"
        + (f" ({selection.job_id[:8]})" if selection.job_id else "")
    )
    return LoadedSelection(
        label=label,
        selection=selection,
        spectrum_ids=ids,
        eigenvalues=eigenvalues,
        eigenvectors=eigenvectors,
        model=first.model,
        method=first.method,
        distance=first.distance,
    )


def _anisotropy(selection: LoadedSelection, notes: list[str]) -> dict[str, Any]:
    """The anisotropy table of the stored eigenvalues, with a note where they are top k of d
    (geometry.anisotropy then leaves out the trace-based figures)."""
    k, d = selection.eigenvalues.shape[1], selection.eigenvectors.shape[1]
    if k < d:
        notes.append(
            f"{selection.label}: spectra keep the top {k} of {d} eigenvalues, so the trace-based "
            "figures (dims for 99/99.9/99.99 %, participation ratio) are left out; each "
            "spectrum's stored summary has them for the whole spectrum"
        )
    return geometry.anisotropy(selection.eigenvalues, latent_dim=d)


def _pair_kind(a: LoadedSelection, b: LoadedSelection) -> str:
    if a.model == b.model and ("sefa" in (a.method, b.method)) and a.method != b.method:
        return "sefa-vs-hessian"
    if a.model != b.model:
        return "between-models"
    return "between-methods"


def compare(
    store: Store,
    selections: list[Selection],
    *,
    owner: str | None,
    k: int = 10,
    max_positions: int = DEFAULT_MAX_POSITIONS,
) -> Comparison:
    loaded = [_load(store, s, owner, max_positions) for s in selections]
    notes: list[str] = []
    anisotropies = [_anisotropy(s, notes) for s in loaded]
    homogeneities: list[dict[str, Any] | None] = []
    for s in loaded:
        n = s.eigenvectors.shape[0]
        if n < 2:
            homogeneities.append(None)
            notes.append(f"{s.label}: one spectrum, no homogeneity between positions")
            continue
        if s.eigenvalues.shape[0] > n:
            notes.append(f"{s.label}: homogeneity over the first {n} of {s.eigenvalues.shape[0]}")
        kv = s.eigenvectors.shape[2]
        homogeneities.append(geometry.homogeneity(s.eigenvalues[:n, :kv], s.eigenvectors))

    averages = []
    for s in loaded:
        n, _, kv = s.eigenvectors.shape
        averages.append(geometry.average_metric(s.eigenvalues[:n, :kv], s.eigenvectors))

    alignments: list[dict[str, Any]] = []
    for i in range(len(loaded)):
        for j in range(i + 1, len(loaded)):
            a, b = loaded[i], loaded[j]
            if a.eigenvectors.shape[1] != b.eigenvectors.shape[1]:
                notes.append(
                    f"{a.label} vs {b.label}: latent dimensions differ "
                    f"({a.eigenvectors.shape[1]} and {b.eigenvectors.shape[1]}), not aligned"
                )
                continue
            kind = _pair_kind(a, b)
            if kind == "sefa-vs-hessian" and a.method != "sefa":
                a, b = b, a  # SeFa directions first, measured under the Hessian's metric
                ia, ib = j, i
            else:
                ia, ib = i, j
            kk = min(k, a.eigenvectors.shape[2], b.eigenvectors.shape[2])
            _, _, vectors_a = averages[ia]
            metric_b, _, vectors_b = averages[ib]
            result = geometry.alignment(vectors_a[:, :kk], vectors_b[:, :kk], metric=metric_b, k=kk)
            alignments.append({"a": a.label, "b": b.label, "kind": kind, "k": kk, **result})
    return Comparison(loaded, anisotropies, homogeneities, alignments, notes)


# -- pictures ------------------------------------------------------------------------------


def spectrum_png(comparison: Comparison) -> bytes:
    return plots.spectrum_plot([(s.label, s.eigenvalues) for s in comparison.selections])


def homogeneity_png(comparison: Comparison) -> bytes:
    values: dict[str, np.ndarray] = {}
    for s, h in zip(comparison.selections, comparison.homogeneity, strict=True):
        if h is None:
            continue
        matrix = np.asarray(h["log"])
        off_diagonal = ~np.eye(matrix.shape[0], dtype=bool)
        values[s.label] = matrix[off_diagonal]
    if not values:
        raise InvalidDataError("homogeneity needs a selection with at least two spectra")
    return plots.homogeneity_histogram(values)


def montage_png(
    store: Store, spectrum_id: str, *, axes: int = 6, steps: int = 7, device: str = "cpu"
) -> bytes:
    """Images of the spectrum's code moved along its top ``axes`` eigenvectors."""
    from services.pipeline.cache import cached_generator

    record = store.get_spectrum(spectrum_id)
    axes = min(axes, record.k)
    generator = cached_generator(record.model, device)
    code = record.code if record.code is not None else np.zeros(record.d)
    vectors = store.eigenvectors(spectrum_id, k=axes)
    return plots.axis_walk_montage(generator.module, code, record.eigenvalues, vectors, steps=steps)


def render_plots(store: Store, comparison: Comparison) -> dict[str, bytes]:
    """Every picture a comparison has, by file name (for ``spectra compare --plots DIR``)."""
    pictures = {"spectrum.png": spectrum_png(comparison)}
    if any(h is not None for h in comparison.homogeneity):
        pictures["homogeneity.png"] = homogeneity_png(comparison)
    for index, s in enumerate(comparison.selections):
        try:
            pictures[f"montage-{index}.png"] = montage_png(store, s.spectrum_ids[0])
        except ValueError as error:  # a model this machine cannot load (imported results)
            comparison.notes.append(f"{s.label}: no montage ({error})")
    return pictures


# -- text ----------------------------------------------------------------------------------


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def format_report(comparison: Comparison) -> str:
    """The comparison as aligned text tables (what ``spectra compare`` prints)."""
    data = comparison.to_json()
    rows: list[tuple[str, ...]] = [("selection", "N", "d", "k", "dims_99", "dims_99.9",
                                    "dims_99.99", "PR", "homog. log", "homog. lin")]  # fmt: skip
    for s in data["selections"]:
        a, h = s["anisotropy"], s["homogeneity"] or {}
        rows.append((
            s["label"], str(s["n_spectra"]), str(s["d"]), str(s["k"]),
            _number(a["dims_99_mean"]), _number(a["dims_999_mean"]), _number(a["dims_9999_mean"]),
            _number(a["participation_ratio_mean"]),
            _number(h.get("log_offdiag_mean")), _number(h.get("linear_offdiag_mean")),
        ))  # fmt: skip
    lines = ["anisotropy (means over positions) and homogeneity (off-diagonal means)", _table(rows)]
    if data["alignments"]:
        rows = [("a", "b", "kind", "k", "matched |cos| (top 5)", "principal angles deg (top 5)",
                 "Rayleigh a/random")]  # fmt: skip
        for a in data["alignments"]:
            rows.append((
                a["a"], a["b"], a["kind"], str(a["k"]),
                " ".join(_number(x, 2) for x in a["matched_abs_cosine"][:5]),
                " ".join(_number(x, 3) for x in a["principal_angles_deg"][:5]),
                _number(a.get("rayleigh_a_topk_over_random")),
            ))  # fmt: skip
        lines += ["", "alignment of top-k average-metric eigenvectors", _table(rows)]
    lines += [f"note: {note}" for note in data["notes"]]
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
