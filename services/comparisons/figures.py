"""A comparison's figures: spectra, homogeneity histograms and heatmaps, montages; and the
set of files a comparison writes."""

from __future__ import annotations

import re

import numpy as np

from services import plots
from services.across_members import spectrum_generator
from services.store import InvalidDataError, Store

from .compute import Comparison
from .selection import LoadedSelection
from .tables import marked_label


def legend_label(selection: LoadedSelection) -> str:
    """The member's name in a figure, marked as the tables mark it when its generator is
    degenerate."""
    return marked_label(selection.label, selection.is_degenerate())


def spectrum_figure(
    comparison: Comparison, *, normalisation: str | None = None, fmt: str = "png"
) -> bytes:
    """Spectra of every selection on one axis; normalised by λ₁ by default when Hessians and
    directions (whose units differ) are drawn together."""
    if normalisation is None:
        kinds = {s.is_directions() for s in comparison.selections}
        normalisation = "top" if len(kinds) > 1 else "none"
    return plots.spectrum_plot(
        [(legend_label(s), s.eigenvalues) for s in comparison.selections],
        normalisation=normalisation,
        fmt=fmt,
    )


def spectrum_png(comparison: Comparison) -> bytes:
    return spectrum_figure(comparison)


def homogeneity_figure(comparison: Comparison, *, scale: str = "log", fmt: str = "png") -> bytes:
    values: dict[str, np.ndarray] = {}
    for s, h in zip(comparison.selections, comparison.homogeneity, strict=True):
        if h is None:
            continue
        matrix = np.asarray(h[scale])
        off_diagonal = ~np.eye(matrix.shape[0], dtype=bool)
        values[legend_label(s)] = matrix[off_diagonal]
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
        np.asarray(h[scale]), label=legend_label(comparison.selections[index]), scale=scale, fmt=fmt
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
    generator = spectrum_generator(store, spectrum_id, device)
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
        images,
        eigenvalues=np.asarray(record.eigenvalues[:axes]),
        steps=walk,
        title=title,
        fmt=fmt,
    )


def montage_png(
    store: Store,
    spectrum_id: str,
    *,
    axes: int = 6,
    steps: int = 7,
    device: str = "cpu",
    code_seed: int = 0,
) -> bytes:
    """The annotated montage as PNG (the one montage every face draws: ``montage_figure``)."""
    return montage_figure(
        store, spectrum_id, axes=axes, steps=steps, device=device, code_seed=code_seed, fmt="png"
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
    montages: bool = True,
) -> dict[str, bytes]:
    """Every figure a comparison has, by file name, in each of ``formats``: the spectra, the
    homogeneity histograms (log and linear) and heatmaps, and (``montages``) one montage per
    selection (its name carries the selection's label)."""
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
            if not montages:
                continue
            code_from = _code_source(comparison, s)
            try:
                pictures[f"montage-{stem}.{fmt}"] = montage_figure(
                    store,
                    s.spectrum_ids[0],
                    axes=axes,
                    steps=steps,
                    label=legend_label(s),
                    code_from=code_from,
                    fmt=fmt,
                )
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
