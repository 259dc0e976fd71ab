"""Comparing selections of stored spectra: the one use case behind the HTTP compare and plot
routes, the CLI and the UI.

A selection is a job, or every visible spectrum of one (model, distance, method), narrowed by
optional filters (dtype, kept eigenpairs, space). Its spectra must agree on what makes them
comparable (`services.comparability`): otherwise it is refused, listing the groups found and
how to pick one. Partial results of cancelled or failed jobs are left out unless asked for,
and each position (same key, same code) counts once however many jobs or imports hold it.

For each selection: the anisotropy table and the homogeneity statistics, with medians and
bootstrap intervals. For each pair whose latent spaces have the same dimension: the alignment
of the top-k eigenvectors of their average metrics against the random-subspace baseline
(SeFa / GANSpace against a Hessian method on the same model is one such pair). All numbers
come from services.geometry; this module only selects, loads and labels.

Memory stays bounded whatever the selection's size (a campaign is 10⁴ positions at d = 512):
only eigenvalues are held for every position (N·d floats); eigenvectors are read from the
store in chunks (`Settings.analysis_chunk_mb`) for the average metric, and for homogeneity
only those of the positions it uses: all of them when their N(N−1) pairs fit
`Settings.homogeneity_max_pairs` and `max_positions`, else a seeded random sample of
positions (the result and the notes say so, with the seed). Homogeneity and the average
metric run on `Settings.analysis_device`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services import geometry, plots
from services.comparability import (
    DIRECTION_METHODS,
    SEFA_DISTANCE,
    ComparabilityKey,
    Group,
    SelectedRow,
    SpacesDifferError,
    alignment_coordinates,
    code_digest,
    comparability_key,
    differing_fields,
    group_rows,
)
from services.config import Settings, get_settings
from services.jsonable import jsonable
from services.patterns import TEXT_PATTERN, UUID_PATTERN
from services.store import InvalidDataError, NotFoundError, Store
from services.store.selections import SelectionRow

# Homogeneity is O(N^2 k d): beyond this many positions (or the pairs the settings allow) a
# selection uses a seeded random sample of its positions.
DEFAULT_MAX_POSITIONS = 100
MAX_POSITIONS = 500
# Eigenvectors read per spectrum for homogeneity and the average metric.
MAX_VECTORS = 128
MAX_SELECTIONS = 8
MAX_CAMPAIGN_SELECTIONS = 32
KNOWN_DISTANCES = ("mse", "lpips-alex", "lpips-vgg", "lpips-squeeze")


class Selection(BaseModel):
    """A job id, or a (model, distance, method) triple (directions have no distance), with
    optional filters that pick one comparable group."""

    model_config = ConfigDict(extra="forbid")
    job_id: str | None = Field(default=None, pattern=UUID_PATTERN)
    model: str | None = Field(default=None, min_length=1, max_length=200, pattern=TEXT_PATTERN)
    distance: str | None = Field(default=None, min_length=1, max_length=100, pattern=TEXT_PATTERN)
    method: str | None = Field(default=None, min_length=1, max_length=50, pattern=TEXT_PATTERN)
    label: str | None = Field(default=None, max_length=100, pattern=TEXT_PATTERN)
    dtype: Literal["float32", "float64"] | None = Field(default=None, description="filter")
    kept: str | None = Field(
        default=None, pattern=r"^(all|top-[1-9][0-9]*)$",
        description='filter: "all" eigenpairs or "top-K"',
    )  # fmt: skip
    space: str | None = Field(default=None, max_length=10, pattern=TEXT_PATTERN,
                              description="filter: latent space (z, w, w+)")  # fmt: skip
    include_partial: bool = Field(
        default=False, description="also use spectra of cancelled, failed or running jobs"
    )

    @model_validator(mode="after")
    def _job_or_triple(self) -> Selection:
        by_job = self.job_id is not None
        by_triple = self.model is not None or self.method is not None or self.distance is not None
        if by_job == by_triple:
            raise ValueError('give either "job_id" or "model" and "method" (and "distance")')
        if by_triple and (self.model is None or self.method is None):
            raise ValueError('a selection by model needs "model" and "method"')
        if self.method in DIRECTION_METHODS and self.distance not in (None, SEFA_DISTANCE):
            raise ValueError(
                f"{self.method} directions have no distance: select them as "
                f'{self.model}::{self.method} (or {{"model": ..., "method": "{self.method}"}})'
            )
        return self

    def describe(self) -> str:
        if self.label:
            return self.label
        if self.job_id is not None:
            return f"job {self.job_id[:8]}"
        return ":".join([self.model or "", self.distance or "", self.method or ""])


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    selections: list[Selection] = Field(min_length=1, max_length=MAX_SELECTIONS)
    k: int = Field(default=10, ge=1, le=MAX_VECTORS, description="top-k for the alignments")
    max_positions: int = Field(
        default=DEFAULT_MAX_POSITIONS, ge=2, le=MAX_POSITIONS,
        description="the most positions a homogeneity matrix uses; a larger selection (or one "
        "whose pairs exceed the server's limit) uses a seeded random sample of its positions",
    )  # fmt: skip
    seed: int = Field(default=0, ge=0, le=2**63 - 1,
                      description="seed of the homogeneity's sample of positions (recorded)")  # fmt: skip


def parse_selection(text: str) -> Selection:
    """``JOB_ID``, ``MODEL:DISTANCE:METHOD``, or directions ``MODEL::METHOD`` /
    ``MODEL:METHOD`` (sefa, ganspace). The model may itself contain colons."""
    if ":" not in text:
        return Selection(job_id=text)
    head, _, method = text.rpartition(":")
    if method in DIRECTION_METHODS:
        model = head.removesuffix(":")
        if head.endswith(":") and not model:
            raise ValueError(f"selection {text!r}: name the model, e.g. dcgan-faces::{method}")
        last = model.rpartition(":")[2]
        if not head.endswith(":") and last in KNOWN_DISTANCES:
            raise ValueError(
                f"selection {text!r}: {method} directions have no distance; write "
                f"{model.rpartition(':')[0]}::{method}"
            )
        return Selection(model=model, method=method)
    parts = text.rsplit(":", 2)
    if len(parts) == 3 and all(parts):
        return Selection(model=parts[0], distance=parts[1], method=parts[2])
    raise ValueError(
        f"selection {text!r}: use a job id, MODEL:DISTANCE:METHOD or, for directions, MODEL::sefa"
    )


class MixedSelectionError(InvalidDataError):
    """A selection whose spectra are not comparable: the groups found and how to pick one."""

    def __init__(self, selection: Selection, groups: list[Group], index: int) -> None:
        keys = [g.key for g in groups]
        fields = differing_fields(keys)
        listing = "; ".join(
            f"{g.key.label()} [dtype {g.key.dtype}, {g.key.kept}, weights "
            f"{(g.key.weights_sha256 or 'unknown')[:12]}]: {len(g.rows)} spectra"
            for g in groups
        )
        hint = ", ".join(f'"{f}"' for f in fields if f in ("dtype", "kept", "space")) or None
        how = (
            f"narrow it with {hint} in the selection, or select one job by its id"
            if hint else "select one job by its id (e.g. one of " + ", ".join(
                g.job_ids[0] for g in groups if g.job_ids) + ")"
        )  # fmt: skip
        super().__init__(
            f"selection {selection.describe()!r} mixes spectra that are not comparable "
            f"(they differ in {', '.join(fields) or 'their records'}): {listing}. {how}"
        )
        self.field = f"selections.{index}"
        self.extra = {"groups": [g.describe() for g in groups], "differing": fields}


@dataclass
class LoadedSelection:
    label: str
    selection: Selection
    key: ComparabilityKey
    spectrum_ids: list[str]
    job_ids: list[str]
    eigenvalues: np.ndarray  # (N, k) descending, as stored
    d: int
    vector_k: int  # eigenvectors per position the analyses read (at most MAX_VECTORS)
    model: str
    method: str
    distance: str
    duplicates_dropped: int = 0
    partial_left_out: dict[str, int] = field(default_factory=dict)
    # (N, d) every eigenvalue, where spectra keep the top k < d and all of them recorded theirs
    full_eigenvalues: np.ndarray | None = None
    full_missing: int = 0  # spectra of a top-k selection with no full spectrum stored

    def is_directions(self) -> bool:
        return self.key.is_directions()


@dataclass
class Comparison:
    """The result: one definition for HTTP, CLI and UI; `to_json` is the full result
    (``matrices=True`` adds the N x N homogeneity and k x k |cosine| matrices)."""

    selections: list[LoadedSelection]
    anisotropy: list[dict[str, Any]]
    homogeneity: list[dict[str, Any] | None]
    alignments: list[dict[str, Any]]
    notes: list[str]
    # Seconds per stage (load, anisotropy, homogeneity, average_metric, alignment), for
    # benchmarks and logs; not part of the result's JSON.
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self, *, matrices: bool = False) -> dict[str, Any]:
        keep = (lambda r: r) if matrices else _drop_matrices
        return {
            "selections": [
                {
                    "label": s.label,
                    "selection": s.selection.model_dump(exclude_none=True),
                    "key": s.key.to_json(),
                    "model": s.model,
                    "distance": s.distance,
                    "distance_label": s.key.distance_label(),
                    "method": s.method,
                    "n_spectra": int(s.eigenvalues.shape[0]),
                    "k": int(s.eigenvalues.shape[1]),
                    "d": s.d,
                    "job_ids": s.job_ids,
                    "duplicates_dropped": s.duplicates_dropped,
                    "partial_left_out": s.partial_left_out,
                    "anisotropy": jsonable(a),
                    "homogeneity": None if h is None else jsonable(keep(h)),
                }
                for s, a, h in zip(self.selections, self.anisotropy, self.homogeneity, strict=True)
            ],
            "alignments": [jsonable(keep(a)) for a in self.alignments],
            "notes": self.notes,
        }


def _drop_matrices(result: dict[str, Any]) -> dict[str, Any]:
    # The N x N matrices are for pictures; the default JSON keeps the statistics.
    return {
        key: value
        for key, value in result.items()
        if not (isinstance(value, np.ndarray) and value.ndim >= 2)
    }


def _selected(row: SelectionRow) -> SelectedRow:
    key = comparability_key(
        row.job_resolved, model=row.model, distance=row.distance, method=row.method,
        dtype=row.dtype, k=row.k, d=row.d,
    )  # fmt: skip
    code = None if row.method in DIRECTION_METHODS else code_digest(row.code)
    return SelectedRow(row.spectrum_id, row.job_id, row.job_status, row.latent_index, key, code)


def _matches(key: ComparabilityKey, selection: Selection) -> bool:
    return (
        (selection.dtype is None or key.dtype == selection.dtype)
        and (selection.kept is None or key.kept == selection.kept)
        and (selection.space is None or (key.space or "z") == selection.space)
    )


def load_selection(
    store: Store, selection: Selection, owner: str | None, index: int
) -> LoadedSelection:
    """The selection's comparable spectra: ids, eigenvalues (and every eigenvalue where they
    keep the top k of d), never eigenvectors (the analyses read those in chunks)."""
    if selection.job_id is not None:
        job = store.get_job(selection.job_id, owner=owner)  # 404 if not visible
        raw = store.selection_rows(job_ids=[job.id], owner=owner)
    else:
        raw = store.selection_rows(
            model=selection.model, distance=selection.distance,
            method=selection.method, owner=owner,
        )  # fmt: skip
    by_id = {row.spectrum_id: row for row in raw}
    rows = [r for r in map(_selected, raw) if _matches(r.key, selection)]
    grouping = group_rows(rows, include_partial=selection.include_partial)
    groups = [g for g in grouping.groups if g.rows]
    if not groups:
        if grouping.partial_left_out:
            left = ", ".join(
                f"{n} of {status} jobs" for status, n in grouping.partial_left_out.items()
            )
            raise InvalidDataError(
                f"selection {selection.describe()!r} has only partial results ({left}); add "
                '"include_partial": true to use them'
            )
        raise NotFoundError(f"selection {selection.describe()!r} matches no stored spectra")
    if len(groups) > 1:
        raise MixedSelectionError(selection, groups, index)
    (group,) = groups
    ids = [r.spectrum_id for r in group.rows]
    first = by_id[ids[0]]
    k = min(by_id[i].k for i in ids)
    eigenvalues = np.stack([
        np.frombuffer(by_id[i].eigenvalues, dtype="<f8")[:k] for i in ids
    ]).astype(np.float64)  # fmt: skip
    full, missing = None, 0
    if k < first.d:
        every, without = store.full_eigenvalues(ids, first.d)
        full, missing = (every, 0) if not without else (None, len(without))
    label = selection.label or (
        group.key.label() + (f" (job {selection.job_id[:8]})" if selection.job_id else "")
    )
    return LoadedSelection(
        label=label, selection=selection, key=group.key, spectrum_ids=ids,
        job_ids=group.job_ids, eigenvalues=eigenvalues, d=first.d,
        vector_k=min(k, MAX_VECTORS), model=first.model, method=first.method,
        distance=first.distance, duplicates_dropped=group.duplicates,
        partial_left_out=grouping.partial_left_out, full_eigenvalues=full, full_missing=missing,
    )  # fmt: skip


def _anisotropy(selection: LoadedSelection, notes: list[str]) -> dict[str, Any]:
    """The anisotropy table of every position. Where spectra keep the top k of d, of the full
    spectra stored with them, so the trace-based figures are exact; where some have none
    (Lanczos sees only its top k), of the stored top k, the trace-based figures left out."""
    k, d = selection.eigenvalues.shape[1], selection.d
    if k < d and selection.full_eigenvalues is not None:
        notes.append(
            f"{selection.label}: spectra keep the top {k} of {d} eigenpairs; the anisotropy "
            "table is of the full spectra stored with them (every eigenvalue), so the "
            "trace-based figures are exact"
        )
        return geometry.anisotropy(selection.full_eigenvalues, latent_dim=d)
    if k < d:
        n = selection.eigenvalues.shape[0]
        notes.append(
            f"{selection.label}: spectra keep the top {k} of {d} eigenvalues and "
            f"{selection.full_missing} of {n} recorded no full spectrum (e.g. Lanczos sees only "
            "its top k), so the trace-based figures (dims for 99/99.9/99.99/99.999 %, "
            "participation ratio, top-10 share) are left out; each spectrum's stored summary "
            "has them where they are known"
        )
    return geometry.anisotropy(selection.eigenvalues, latent_dim=d)


def _pair_kind(a: LoadedSelection, b: LoadedSelection) -> str:
    if a.is_directions() and b.is_directions():
        return f"{a.method}-vs-{b.method}" if a.model == b.model else "between-models"
    if a.model == b.model and (a.is_directions() or b.is_directions()):
        directions = a if a.is_directions() else b
        return f"{directions.method}-vs-hessian"
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
    seed: int = 0,
    settings: Settings | None = None,
) -> Comparison:
    started = time.perf_counter()
    loaded = [load_selection(store, s, owner, i) for i, s in enumerate(selections)]
    loading = time.perf_counter() - started
    result = compare_loaded(
        store, loaded, k=k, max_positions=max_positions, seed=seed, settings=settings
    )
    result.timings = {"load": loading, **result.timings}
    return result


def compare_loaded(
    store: Store,
    loaded: list[LoadedSelection],
    *,
    k: int = 10,
    max_positions: int = DEFAULT_MAX_POSITIONS,
    seed: int = 0,
    settings: Settings | None = None,
) -> Comparison:
    """The analyses of loaded selections; eigenvectors are read from ``store`` as needed."""
    settings = settings or get_settings()
    device = _device(settings)
    notes: list[str] = []
    for s in loaded:
        if s.duplicates_dropped:
            notes.append(
                f"{s.label}: {s.duplicates_dropped} spectra left out as repeats of positions "
                "already selected (the same code under the same key, e.g. an imported copy)"
            )
        for status, count in s.partial_left_out.items():
            notes.append(f"{s.label}: {count} spectra of {status} jobs left out (partial results)")
    timings = dict.fromkeys(("anisotropy", "homogeneity", "average_metric", "alignment"), 0.0)
    started = time.perf_counter()
    anisotropies = [_anisotropy(s, notes) for s in loaded]
    timings["anisotropy"] = time.perf_counter() - started
    started = time.perf_counter()
    homogeneities = [
        _homogeneity(store, s, notes, max_positions=max_positions, seed=seed,
                     max_pairs=settings.homogeneity_max_pairs, device=device)
        for s in loaded
    ]  # fmt: skip
    timings["homogeneity"] = time.perf_counter() - started

    # Only alignments need the average metrics: each is one streamed pass over the
    # selection's eigenvectors, computed the first time a pair asks for it.
    averages: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def average(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if index not in averages:
            started = time.perf_counter()
            averages[index] = average_metric(
                store, loaded[index], device=device, chunk_mb=settings.analysis_chunk_mb
            )
            timings["average_metric"] += time.perf_counter() - started
        return averages[index]

    alignments: list[dict[str, Any]] = []
    for i in range(len(loaded)):
        for j in range(i + 1, len(loaded)):
            a, b = loaded[i], loaded[j]
            try:
                alignment_coordinates(a.key, b.key)
            except SpacesDifferError as refusal:
                notes.append(f"{a.label} vs {b.label}: not aligned: {refusal}")
                continue
            if a.d != b.d:
                notes.append(
                    f"{a.label} vs {b.label}: latent dimensions differ ({a.d} and {b.d}), "
                    "not aligned"
                )
                continue
            kind = _pair_kind(a, b)
            ia, ib = i, j
            if kind.endswith("-vs-hessian") and not a.is_directions():
                a, b = b, a  # the directions first, measured under the Hessian's metric
                ia, ib = j, i
            kk = min(k, a.vector_k, b.vector_k)
            _, _, vectors_a = average(ia)
            metric_b, _, vectors_b = average(ib)
            started = time.perf_counter()
            result = geometry.alignment(vectors_a[:, :kk], vectors_b[:, :kk], metric=metric_b, k=kk)
            timings["alignment"] += time.perf_counter() - started
            alignments.append({"a": a.label, "b": b.label, "kind": kind, "k": kk, **result})
    return Comparison(loaded, anisotropies, homogeneities, alignments, notes, timings)


def _device(settings: Settings) -> str:
    try:
        return geometry.analysis_device(settings.analysis_device)
    except geometry.InvalidOptionError as error:
        raise geometry.InvalidOptionError(
            f"SPECTRA_ANALYSIS_DEVICE={settings.analysis_device!r}: {error}; set "
            "SPECTRA_ANALYSIS_DEVICE=cpu, or auto (the GPU where there is one, else the CPU)"
        ) from None


def _homogeneity(
    store: Store,
    selection: LoadedSelection,
    notes: list[str],
    *,
    max_positions: int,
    seed: int,
    max_pairs: int,
    device: str,
) -> dict[str, Any] | None:
    """Homogeneity over every position, or over a seeded sample of them where the pairs
    exceed ``max_pairs`` or the positions ``max_positions``; only those positions'
    eigenvectors are read."""
    n = selection.eigenvalues.shape[0]
    if n < 2:
        if not selection.is_directions():
            notes.append(f"{selection.label}: one spectrum, no homogeneity between positions")
        return None
    sample = geometry.sample_positions(
        n, max_pairs=max_pairs, max_positions=max_positions, seed=seed
    )
    ids = [selection.spectrum_ids[p] for p in sample.positions]
    kv = selection.vector_k
    vectors = store.top_k_eigenvectors(ids, kv)
    result = geometry.homogeneity_of_sample(
        selection.eigenvalues[sample.positions, :kv], vectors, sample, device=device
    )
    if sample.sampled:
        limit = (
            f"SPECTRA_HOMOGENEITY_MAX_PAIRS = {max_pairs} pairs"
            if sample.limited_by == "max_pairs"
            else f"max_positions = {max_positions}"
        )
        notes.append(
            f"{selection.label}: homogeneity over a random sample of {sample.n_positions_used} "
            f"of {n} positions (seed {seed}; {sample.n_pairs} of the {n * (n - 1)} ordered "
            f"pairs), as {limit} allows; the positions used are recorded with the result"
        )
    return result


def average_metric(
    store: Store, selection: LoadedSelection, *, device: str = "cpu", chunk_mb: float = 64.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """H̄ over every position of the selection (its top ``vector_k`` eigenpairs), its
    eigenvalues and eigenvectors: the eigenvectors read from the store in chunks of at most
    ``chunk_mb`` (as float64), so memory does not grow with the number of positions."""
    kv, d = selection.vector_k, selection.d
    chunk = max(1, int(chunk_mb * 2**20) // (8 * d * kv))
    total = geometry.AverageMetric(d, device=device)
    for start in range(0, len(selection.spectrum_ids), chunk):
        ids = selection.spectrum_ids[start : start + chunk]
        values = selection.eigenvalues[start : start + len(ids), :kv]
        total.add(values, store.top_k_eigenvectors(ids, kv))
    return total.result()


# -- pictures ------------------------------------------------------------------------------


def spectrum_figure(
    comparison: Comparison, *, normalisation: str | None = None, fmt: str = "png"
) -> bytes:
    """Spectra of every selection on one axis; normalised by λ₁ by default when Hessians and
    directions (whose units differ) are drawn together."""
    if normalisation is None:
        kinds = {s.is_directions() for s in comparison.selections}
        normalisation = "top" if len(kinds) > 1 else "none"
    return plots.spectrum_plot(
        [(s.label, s.eigenvalues) for s in comparison.selections],
        normalisation=normalisation, fmt=fmt,
    )  # fmt: skip


def spectrum_png(comparison: Comparison) -> bytes:
    return spectrum_figure(comparison)


def homogeneity_figure(comparison: Comparison, *, scale: str = "log", fmt: str = "png") -> bytes:
    values: dict[str, np.ndarray] = {}
    for s, h in zip(comparison.selections, comparison.homogeneity, strict=True):
        if h is None:
            continue
        matrix = np.asarray(h[scale])
        off_diagonal = ~np.eye(matrix.shape[0], dtype=bool)
        values[s.label] = matrix[off_diagonal]
    if not values:
        raise InvalidDataError("homogeneity needs a selection with at least two spectra")
    return plots.homogeneity_histogram(values, scale=scale, fmt=fmt)


def homogeneity_png(comparison: Comparison) -> bytes:
    return homogeneity_figure(comparison)


def heatmap_figure(
    comparison: Comparison, index: int, *, scale: str = "log", fmt: str = "png"
) -> bytes:
    h = comparison.homogeneity[index]
    if h is None:
        raise InvalidDataError("homogeneity needs a selection with at least two spectra")
    return plots.homogeneity_heatmap(
        np.asarray(h[scale]), label=comparison.selections[index].label, scale=scale, fmt=fmt
    )


def montage_figure(
    store: Store,
    spectrum_id: str,
    *,
    axes: int = 6,
    steps: int = 7,
    code_from: str | None = None,
    code_seed: int = 0,
    label: str | None = None,
    device: str = "cpu",
    fmt: str = "png",
) -> bytes:
    """Images of a code moved along the spectrum's top ``axes`` eigenvectors, annotated (λ and
    step per row, the code in the title). The code is the spectrum's own, or that of spectrum
    ``code_from``; directions (no code of their own) start from a code sampled from the model
    with ``code_seed``, never from zero."""
    record = store.get_spectrum(spectrum_id)
    axes = min(axes, record.k)
    generator = _generator_of(store, record, device)
    if code_from is not None:
        source = store.get_spectrum(code_from)
        if source.code is None or source.d != record.d:
            raise InvalidDataError(
                f"spectrum {code_from} has no code of dimension {record.d} to start from"
            )
        code, described = (
            source.code,
            f"code of spectrum {code_from[:8]} (latent {source.latent_index})",
        )
    elif record.code is not None:
        code, described = record.code, f"code: latent {record.latent_index}"
    else:
        code = generator.sample(1, seed=code_seed)[0]
        described = f"code sampled from {record.model} with seed {code_seed}"
    vectors = store.eigenvectors(spectrum_id, k=axes)
    walk = plots.axis_steps(np.asarray(record.eigenvalues[:axes]), steps)
    images = plots.axis_walk_images(generator.module, code, vectors, walk)
    title = f"{label or record.model + '/' + record.method} — {described}"
    return plots.annotated_montage(
        images, eigenvalues=np.asarray(record.eigenvalues[:axes]), steps=walk, title=title,
        fmt=fmt,
    )  # fmt: skip


def montage_png(
    store: Store,
    spectrum_id: str,
    *,
    axes: int = 6,
    steps: int = 7,
    device: str = "cpu",
    code_seed: int = 0,
) -> bytes:
    """The pixel-exact montage (64 px tiles, rank labels): the spectrum's code moved along
    its top ``axes`` eigenvectors; directions start from a sampled code, not zero."""
    record = store.get_spectrum(spectrum_id)
    axes = min(axes, record.k)
    generator = _generator_of(store, record, device)
    code = record.code if record.code is not None else generator.sample(1, seed=code_seed)[0]
    vectors = store.eigenvectors(spectrum_id, k=axes)
    return plots.axis_walk_montage(generator.module, code, record.eigenvalues, vectors, steps=steps)


def _generator_of(store: Store, record: Any, device: str) -> Any:
    """The generator a spectrum was computed on, in its job's latent space (z, or a
    StyleGAN2's w / w+, with its ψ): the codes and eigenvectors live there."""
    from services.pipeline.cache import cached_generator

    resolved = store.get_job(record.job_id).resolved
    return cached_generator(
        record.model, device, "float32", resolved.get("space") or "z", resolved.get("psi")
    )


def file_stem(label: str) -> str:
    """A label as a file-name part: letters, digits, '.', '-' and '_' only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")[:80] or "selection"


def render_plots(
    store: Store,
    comparison: Comparison,
    *,
    formats: tuple[str, ...] = ("png",),
    normalisation: str | None = None,
    axes: int = 6,
    steps: int = 7,
) -> dict[str, bytes]:
    """Every figure a comparison has, by file name, in each of ``formats``: the spectra, the
    homogeneity histograms (log and linear) and heatmaps, and one montage per selection (its
    name carries the selection's label)."""
    pictures: dict[str, bytes] = {}
    for fmt in formats:
        pictures[f"spectrum.{fmt}"] = spectrum_figure(
            comparison, normalisation=normalisation, fmt=fmt
        )
        if any(h is not None for h in comparison.homogeneity):
            for scale in ("log", "linear"):
                pictures[f"homogeneity-{scale}.{fmt}"] = homogeneity_figure(
                    comparison, scale=scale, fmt=fmt
                )
        stems = _unique_stems([file_stem(s.label) for s in comparison.selections])
        for index, s in enumerate(comparison.selections):
            stem = stems[index]
            if comparison.homogeneity[index] is not None:
                pictures[f"heatmap-{stem}.{fmt}"] = heatmap_figure(comparison, index, fmt=fmt)
            code_from = _code_source(comparison, s)
            try:
                pictures[f"montage-{stem}.{fmt}"] = montage_figure(
                    store, s.spectrum_ids[0], axes=axes, steps=steps, label=s.label,
                    code_from=code_from, fmt=fmt,
                )  # fmt: skip
            except ValueError as error:  # a model this machine cannot load (imported results)
                comparison.notes.append(f"{s.label}: no montage ({error})")
    return pictures


def _unique_stems(stems: list[str]) -> list[str]:
    """File-name stems, a repeated one numbered (two selections may share a label)."""
    seen: dict[str, int] = {}
    unique = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        unique.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return unique


def _code_source(comparison: Comparison, selection: LoadedSelection) -> str | None:
    """Directions are walked from a real code: the first code of a Hessian selection of the
    same model and dimension, when the comparison has one."""
    if not selection.is_directions():
        return None
    for other in comparison.selections:
        same_space = other.d == selection.d
        if not other.is_directions() and other.model == selection.model and same_space:
            return other.spectrum_ids[0]
    return None


# -- text ----------------------------------------------------------------------------------


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _interval(stats: dict[str, Any] | None, digits: int = 3) -> str:
    if not stats or stats.get("ci95") is None:
        return "-"
    low, high = stats["ci95"]
    return f"[{low:.{digits}g}, {high:.{digits}g}]"


def format_report(comparison: Comparison) -> str:
    """The comparison as aligned text tables (what ``spectra compare`` prints)."""
    data = comparison.to_json()
    rows: list[tuple[str, ...]] = [("selection", "N", "d", "k", "top-10 share", "dims_99",
                                    "dims_99.9", "dims_99.99", "dims_99.999", "PR (median)",
                                    "PR 95% CI", "homog. log", "log 95% CI",
                                    "homog. lin")]  # fmt: skip
    for s in data["selections"]:
        a, h = s["anisotropy"], s["homogeneity"] or {}
        stats = a.get("statistics", {})
        pr = stats.get("participation_ratio")
        log_ci = h.get("log_offdiag_mean_ci95")
        rows.append((
            s["label"], str(s["n_spectra"]), str(s["d"]), str(s["k"]),
            _number(a.get("top10_share_mean")),
            _number(a["dims_99_mean"]), _number(a["dims_999_mean"]), _number(a["dims_9999_mean"]),
            _number(a.get("dims_99999_mean")),
            "-" if a["participation_ratio_mean"] is None else
            f"{a['participation_ratio_mean']:.4g} ({pr['median']:.4g})" if pr else "-",
            _interval(pr),
            _number(h.get("log_offdiag_mean")),
            "-" if not log_ci else f"[{log_ci[0]:.3g}, {log_ci[1]:.3g}]",
            _number(h.get("linear_offdiag_mean")),
        ))  # fmt: skip
    lines = [
        "anisotropy (means over positions, median in brackets, bootstrap 95 % intervals) and "
        "homogeneity (off-diagonal means)",
        _table(rows),
    ]
    if data["alignments"]:
        rows = [("a", "b", "kind", "k", "matched |cos| (top 5)", "random |cos|",
                 "angles deg: smallest, largest", "random angles", "Rayleigh a/random")]  # fmt: skip
        for a in data["alignments"]:
            base = a["baseline"]
            random_angles = base["principal_angles_deg"]["mean"]
            rows.append((
                a["a"], a["b"], a["kind"], str(a["k"]),
                " ".join(_number(x, 2) for x in a["matched_abs_cosine"][:5]),
                f"{base['abs_cosine']['mean']:.3f} (exact)",
                f"{a['smallest_principal_angle_deg']:.3g}, {a['largest_principal_angle_deg']:.3g}",
                f"{random_angles[0]:.3g}, {random_angles[-1]:.3g} "
                f"(sampled, {base['principal_angles_deg']['samples']})",
                _number(a.get("rayleigh_a_topk_over_random")),
            ))  # fmt: skip
        lines += ["", "alignment of top-k average-metric eigenvectors", _table(rows)]
    lines += [f"note: {note}" for note in data["notes"]]
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
