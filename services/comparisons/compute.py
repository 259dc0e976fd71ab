"""Comparing selections of stored spectra (the computation): the one use case behind the HTTP compare and plot
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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from services import geometry
from services.across_members import (
    common_k,
    fitting_transport,
    paired_members,
    sefa_scale_notes,
    spectrum_generator,
    transported_alignment,
)
from services.comparability import SpacesDifferError, alignment_coordinates
from services.config import Settings
from services.jsonable import jsonable
from services.store import Store

from .requests import DEFAULT_MAX_POSITIONS, Selection
from .selection import LoadedSelection, load_selection


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
    # Members over the same codes compared position by position (services.across_members)
    paired: list[dict[str, Any]] = field(default_factory=list)
    # The eigenpairs per position every member's homogeneity uses (one k: it depends on k)
    common_k: int | None = None

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
            "paired": [jsonable(p) for p in self.paired],
            "homogeneity_common_k": self.common_k,
            "notes": self.notes,
        }


def _drop_matrices(result: dict[str, Any]) -> dict[str, Any]:
    # The N x N matrices are for pictures; the default JSON keeps the statistics.
    return {
        key: value
        for key, value in result.items()
        if not (isinstance(value, np.ndarray) and value.ndim >= 2)
    }


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
    transport: str | None = None,
) -> Comparison:
    started = time.perf_counter()
    loaded = [load_selection(store, s, owner, i) for i, s in enumerate(selections)]
    loading = time.perf_counter() - started
    result = compare_loaded(
        store,
        loaded,
        k=k,
        max_positions=max_positions,
        seed=seed,
        settings=settings,
        transport=transport,
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
    transport: str | None = None,
    on_progress: Callable[[float, str], None] | None = None,
) -> Comparison:
    """The analyses of loaded selections; eigenvectors are read from ``store`` as needed.
    Members in different spaces are aligned only through `transport` (across_members).
    ``on_progress(fraction, stage)`` is called between stages (a stored comparison records
    it; an exception it raises, e.g. on a cancel, stops the computation there)."""
    # Settings are read at the edges and passed in; without them, the documented defaults
    # (never the environment, read only at the edges).
    settings = settings if settings is not None else Settings.model_construct()
    report = on_progress or (lambda fraction, stage: None)
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
    report(0.1, "homogeneity")
    started = time.perf_counter()
    common = common_k(loaded, notes)
    homogeneities = [
        _homogeneity(
            store,
            s,
            notes,
            max_positions=max_positions,
            seed=seed,
            max_pairs=settings.homogeneity_max_pairs,
            device=device,
            k=common,
        )
        for s in loaded
    ]
    timings["homogeneity"] = time.perf_counter() - started
    report(0.6, "average metrics and alignments")
    paired = paired_members(loaded, seed)
    sefa_scale_notes(store, loaded, notes)

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
            report(0.6 + 0.35 * len(averages) / len(loaded), "average metrics and alignments")
        return averages[index]

    alignments: list[dict[str, Any]] = []
    for i in range(len(loaded)):
        for j in range(i + 1, len(loaded)):
            a, b = loaded[i], loaded[j]
            try:
                moved = alignment_coordinates(
                    a.key, b.key, transport=fitting_transport(transport, a.key, b.key)
                )["transport"]
                if moved is not None:
                    entry, pair = transported_alignment(
                        moved,
                        a,
                        b,
                        average_a=partial(average, i),
                        average_b=partial(average, j),
                        k=k,
                        store=store,
                        generator_of=partial(spectrum_generator, store),
                        max_positions=max_positions,
                    )
                    alignments.append(entry)
                    paired.extend([] if pair is None else [pair])
                    continue
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
    return Comparison(
        loaded, anisotropies, homogeneities, alignments, notes, timings, paired, common
    )


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
    k: int | None = None,
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
    kv = selection.vector_k if k is None else min(k, selection.vector_k)
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
