"""THE result of a comparison as one versioned JSON document: what the HTTP API returns, what a
stored comparison keeps, and the only input of the table and figure renderers, the CLI (embedded
or ``--server``), the web UI and the Python client. A face renders this document; none computes
its own version of a number.

Version 1 (``DOCUMENT_VERSION``):

- ``members``: one per selection: what it is (model, distance, method, space, dtype, kept),
  the exact spectra ids, the anisotropy statistics of one number per position (mean, median,
  bootstrap 95 % interval of the mean), the homogeneity (off-diagonal mean, median and
  interval, the positions used), per-rank spectrum bands under each normalisation (so every
  chart draws the same numbers), and whether its generator's images are degenerate.
- ``alignments``: one per pair of members in the same latent dimension: the same-rank |cos|
  (rank i of one against rank i of the other), the best-match |cos| (each direction of the
  first against its closest of the second), principal angles, each beside its random baseline
  (exact where a closed form exists, else sampled and said so).
- ``conventions``: the statements a reader needs (interval, quantiles, normalisation, |cos|).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services import plots
from services.geometry import statistics
from services.jsonable import jsonable

from .compute import Comparison
from .selection import LoadedSelection

DOCUMENT_SCHEMA = "latent-spectra/comparison"
DOCUMENT_VERSION = 1
# Anisotropy statistics in the order tables show them: (key, readable name).
ANISOTROPY_STATISTICS: tuple[tuple[str, str], ...] = (
    ("top_eigenvalue", "top eigenvalue λ₁"),
    ("top10_share", "share of trace in top 10"),
    ("dims_99", "dims to 99 % of trace"),
    ("dims_999", "dims to 99.9 %"),
    ("dims_9999", "dims to 99.99 %"),
    ("dims_99999", "dims to 99.999 %"),
    ("participation_ratio", "participation ratio"),
)
SAMPLE_KEYS = (
    "sampled",
    "seed",
    "n_positions_total",
    "n_positions_used",
    "n_pairs",
    "n_pairs_total",
    "limited_by",
)
CONVENTIONS = {
    "interval": "95 % percentile bootstrap of the mean over positions (positions resampled with "
    f"replacement, {statistics.DEFAULT_BOOTSTRAP_RESAMPLES} resamples, seed 0); homogeneity's "
    "interval resamples positions, not pairs",
    "quantiles": statistics.QUANTILE_CONVENTION,
    "normalisation": "λ/λ₁ (top) or λ/trace (trace) per spectrum; a spectrum whose λ₁ (or "
    "trace) is not positive cannot be normalised and is left out of normalised bands",
    "same_rank_abs_cosine": "|cos| between direction i of one member and direction i of the "
    "other (equal ranks only); its random baseline is E|u·v| for uniform unit vectors, exact",
    "best_match_abs_cosine": "for each of the first member's top-k directions, the largest "
    "|cos| with any of the second's top-k; its random baseline is sampled",
    "principal_angles": "between the two top-k subspaces; random baseline sampled",
}


def software_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("latent-spectra")
    except metadata.PackageNotFoundError:
        return "unknown"


def result_document(comparison: Comparison) -> dict[str, Any]:
    """The comparison as the version-1 document (JSON-able: NaN is null)."""
    members = [
        _member(s, a, h)
        for s, a, h in zip(
            comparison.selections, comparison.anisotropy, comparison.homogeneity, strict=True
        )
    ]
    document: dict[str, Any] = jsonable(
        {
            "schema": DOCUMENT_SCHEMA,
            "version": DOCUMENT_VERSION,
            "software_version": software_version(),
            "members": members,
            "alignments": [_alignment(a) for a in comparison.alignments],
            # across_members: paired comparisons over shared codes and the common homogeneity k
            "paired": list(comparison.paired),
            "homogeneity_common_k": comparison.common_k,
            "default_normalisation": default_normalisation(comparison.selections),
            "notes": list(comparison.notes) + _degenerate_notes(comparison.selections),
            "conventions": CONVENTIONS,
        }
    )
    return document


def default_normalisation(selections: list[LoadedSelection]) -> str:
    """The one default every spectrum chart uses: λ/λ₁ when Hessians and directions (whose units
    differ) are drawn together, raw λ otherwise."""
    kinds = {s.is_directions() for s in selections}
    return "top" if len(kinds) > 1 else "none"


def _member(s: LoadedSelection, a: dict[str, Any], h: dict[str, Any] | None) -> dict[str, Any]:
    variation = s.image_variation
    return {
        "label": s.label,
        "kind": "directions" if s.is_directions() else "hessian",
        "selection": s.selection.model_dump(exclude_none=True),
        "key": s.key.to_json(),
        "model": s.model,
        "distance": s.distance,
        "distance_label": s.key.distance_label(),
        "method": s.method,
        "space": s.key.space or "z",
        "dtype": s.key.dtype,
        "kept": s.key.kept,
        "n_spectra": int(s.eigenvalues.shape[0]),
        "k": int(s.eigenvalues.shape[1]),
        "d": s.d,
        "spectrum_ids": list(s.spectrum_ids),
        "job_ids": list(s.job_ids),
        "duplicates_dropped": s.duplicates_dropped,
        "partial_left_out": dict(s.partial_left_out),
        "image_variation": variation,
        "degenerate_generator": None
        if variation is None or variation.get("degenerate") is None
        else bool(variation["degenerate"]),
        "anisotropy": _anisotropy(a),
        "homogeneity": None if h is None else _homogeneity(h),
        "spectrum_bands": {
            name: plots.spectrum_bands(s.eigenvalues, name) for name in plots.NORMALISATIONS
        },
    }


def _anisotropy(a: dict[str, Any]) -> dict[str, Any]:
    stats = a.get("statistics", {})
    return {
        "n_positions": a.get("n_positions"),
        "statistics": {key: stats.get(key) for key, _ in ANISOTROPY_STATISTICS},
        # the paper's dims statistic (on the mean spectrum), beside ours (first rank reaching)
        "published_dims_on_mean_spectrum": a.get("published_dims_on_mean_spectrum"),
    }


def _homogeneity(h: dict[str, Any]) -> dict[str, Any]:
    return {
        scale: {
            "mean": h.get(f"{scale}_offdiag_mean"),
            "median": h.get(f"{scale}_offdiag_median"),
            "ci95": h.get(f"{scale}_offdiag_mean_ci95"),
        }
        for scale in ("log", "linear")
    } | {
        "n_positions": h.get("n_positions"),
        "rank": h.get("rank"),
        "sample": {key: h.get(key) for key in SAMPLE_KEYS},
    }


def _alignment(a: dict[str, Any]) -> dict[str, Any]:
    k = int(a["k"])
    cosines = np.asarray(a["abs_cosine"])[:k, :k]
    best = cosines.max(axis=1)
    baseline = a["baseline"]
    same_rank = np.asarray(a["matched_abs_cosine"])[:k]
    return {
        "a": a["a"],
        "b": a["b"],
        "kind": a["kind"],
        "k": k,
        "same_rank_abs_cosine": same_rank,
        "same_rank_abs_cosine_mean": float(same_rank.mean()),
        "best_match_abs_cosine": best,
        "best_match_abs_cosine_mean": float(best.mean()),
        "abs_cosine": cosines,  # k x k: row i of a against column j of b
        "principal_angles_deg": a["principal_angles_deg"],
        "smallest_principal_angle_deg": a["smallest_principal_angle_deg"],
        "largest_principal_angle_deg": a["largest_principal_angle_deg"],
        "rayleigh_a_topk_over_random": a.get("rayleigh_a_topk_over_random"),
        "baselines": {
            "same_rank_abs_cosine": baseline["abs_cosine"],
            "best_match_abs_cosine": baseline["best_match_abs_cosine"],
            "principal_angles_deg": baseline["principal_angles_deg"],
        },
    }


def _degenerate_notes(selections: list[LoadedSelection]) -> list[str]:
    notes = []
    for s in selections:
        variation = s.image_variation or {}
        if variation.get("degenerate"):
            notes.append(
                f"{s.label}: DEGENERATE GENERATOR: its images barely vary (pixel std "
                f"{variation.get('pixel_std')} below {variation.get('threshold')}); its spectra "
                "describe a near-constant image, not a model of data"
            )
    return notes
