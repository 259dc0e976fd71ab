"""Plotly figure specifications (plain JSON: data + layout) for the web interface's charts.

The browser draws them with the plotly.js that the ``plotly`` wheel ships, served by the API
itself (no CDN). Numbers are computed here, on the server, from the stored spectra; the page
only switches between the views it was sent (log / linear axis, raw / normalised values).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.plots import NORMALISATIONS, heatmap_range, spectrum_bands

# Colour-blind-safe qualitative palette (Okabe & Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def _finite(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]


def _rgba(hex_colour: str, alpha: float) -> str:
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def _band_traces(label: str, bands: dict[str, Any], colour: str) -> list[dict[str, Any]]:
    """Median line and the 5-95 % band over positions, by rank (1-based), as THE bands of the
    result document (``services.plots.spectrum_bands``): the PNG draws the same numbers."""
    if not bands.get("n"):
        return []
    low, median, high = (
        np.asarray(bands[key], dtype=np.float64) for key in ("p5", "median", "p95")
    )
    ranks = list(range(1, median.size + 1))
    band = {
        "x": ranks,
        "mode": "lines",
        "line": {"width": 0},
        "hoverinfo": "skip",
        "showlegend": False,
        "legendgroup": label,
        "type": "scatter",
    }
    return [
        {**band, "y": _finite(high), "name": f"{label} 95 %"},
        {
            **band,
            "y": _finite(low),
            "name": f"{label} 5-95 %",
            "fill": "tonexty",
            "fillcolor": _rgba(colour, 0.22),
        },
        {
            "x": ranks,
            "y": _finite(median),
            "type": "scatter",
            "mode": "lines",
            "name": f"{label} (median of {bands['n']})",
            "legendgroup": label,
            "line": {"color": colour, "width": 2},
            "customdata": [[lo, hi] for lo, hi in zip(_finite(low), _finite(high), strict=True)],
            "hovertemplate": "rank %{x}<br>median %{y:.4g}<br>5-95 %: "
            "%{customdata[0]:.4g} - %{customdata[1]:.4g}<extra>" + label + "</extra>",
        },
    ]


AXIS_TITLES = {"none": "eigenvalue λ", "top": "λ / λ₁", "trace": "λ / trace"}


def spectrum_figure(
    series: Sequence[tuple[str, dict[str, Any]]], normalisation: str
) -> dict[str, Any]:
    """Eigenvalue against rank, one median line with its 5-95 % band per member, under one
    normalisation; ``series`` is (label, the member's ``spectrum_bands``) pairs."""
    data: list[dict[str, Any]] = []
    for index, (label, bands) in enumerate(series):
        data += _band_traces(label, bands[normalisation], PALETTE[index % len(PALETTE)])
    return {
        "data": data,
        "layout": {
            "xaxis": {"title": {"text": "rank"}, "rangemode": "tozero"},
            "yaxis": {
                "title": {"text": f"{AXIS_TITLES[normalisation]} (median, 5-95 % band)"},
                "type": "log",
                "exponentformat": "power",
            },
            # Outside the data, never over it (below: beside it the tool bar covers it).
            "legend": {"orientation": "h", "x": 0, "y": -0.25, "yanchor": "top"},
            "margin": {"t": 20, "r": 20},
            "hovermode": "x",
        },
    }


def spectrum_variants(series: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The chart under every normalisation (the page switches between them)."""
    return {name: spectrum_figure(series, name) for name in NORMALISATIONS}


def bands_of(eigenvalues: np.ndarray) -> dict[str, Any]:
    """Every normalisation's bands of (N, k) eigenvalues (THE rule, ``services.plots``)."""
    return {name: spectrum_bands(eigenvalues, name) for name in NORMALISATIONS}


def homogeneity_figure(matrix: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """The N x N log-scale homogeneity matrix: Pearson correlation of one position's spectrum
    with another's Rayleigh quotients (1 = the same axes everywhere). Colours span the
    off-diagonal values' range, as in the PNG."""
    values = np.asarray(matrix, dtype=np.float64)
    low, high = heatmap_range(values[~np.eye(values.shape[0], dtype=bool)])
    return {
        "data": [
            {
                "type": "heatmap",
                "z": [_finite(row) for row in np.asarray(matrix)],
                "x": list(labels),
                "y": list(labels),
                "zmin": low,
                "zmax": high,
                "colorscale": "Viridis",
                "colorbar": {"title": {"text": "correlation"}},
                "hovertemplate": "position %{y} vs %{x}<br>r = %{z:.3f}<extra></extra>",
            }
        ],
        "layout": {
            "xaxis": {"title": {"text": "position (latent index)"}, "type": "category"},
            "yaxis": {
                "title": {"text": "position (latent index)"},
                "type": "category",
                "autorange": "reversed",
            },
            "margin": {"t": 20, "r": 20},
        },
    }


def single_spectrum_figure(eigenvalues: np.ndarray) -> dict[str, Any]:
    ranks = list(range(1, len(eigenvalues) + 1))
    return {
        "data": [
            {
                "x": ranks,
                "y": _finite(np.asarray(eigenvalues, dtype=np.float64)),
                "type": "scatter",
                "mode": "lines+markers",
                "marker": {"size": 4},
                "line": {"color": PALETTE[0]},
                "name": "eigenvalue",
                "hovertemplate": "rank %{x}<br>%{y:.5g}<extra></extra>",
            }
        ],
        "layout": {
            "xaxis": {"title": {"text": "rank"}},
            "yaxis": {"title": {"text": "eigenvalue"}, "type": "log", "exponentformat": "power"},
            "margin": {"t": 20, "r": 20},
        },
    }
