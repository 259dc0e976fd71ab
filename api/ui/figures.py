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

BAND_LOW, BAND_HIGH = 5.0, 95.0
# Colour-blind-safe qualitative palette (Okabe & Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def _finite(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]


def _rgba(hex_colour: str, alpha: float) -> str:
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def _band_traces(label: str, eigenvalues: np.ndarray, colour: str) -> list[dict[str, Any]]:
    """Median line and the 5-95 % band over positions, by rank (1-based)."""
    ranks = list(range(1, eigenvalues.shape[1] + 1))
    low, median, high = np.percentile(eigenvalues, [BAND_LOW, 50.0, BAND_HIGH], axis=0)
    n = eigenvalues.shape[0]
    band = {"x": ranks, "mode": "lines", "line": {"width": 0}, "hoverinfo": "skip",
            "showlegend": False, "legendgroup": label, "type": "scatter"}  # fmt: skip
    return [
        {**band, "y": _finite(high), "name": f"{label} 95 %"},
        {**band, "y": _finite(low), "name": f"{label} 5-95 %", "fill": "tonexty",
         "fillcolor": _rgba(colour, 0.22)},
        {
            "x": ranks, "y": _finite(median), "type": "scatter", "mode": "lines",
            "name": f"{label} (median of {n})", "legendgroup": label,
            "line": {"color": colour, "width": 2},
            "customdata": [[lo, hi] for lo, hi in zip(_finite(low), _finite(high), strict=True)],
            "hovertemplate": "rank %{x}<br>median %{y:.4g}<br>5-95 %: "
                             "%{customdata[0]:.4g} - %{customdata[1]:.4g}<extra>" + label + "</extra>",
        },
    ]  # fmt: skip


def normalised(eigenvalues: np.ndarray) -> np.ndarray:
    """Each spectrum divided by its own top eigenvalue, so models with different distance
    scales share one axis (rank 1 is 1)."""
    top = eigenvalues[:, :1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(top > 0, eigenvalues / np.where(top > 0, top, 1.0), np.nan)


def spectrum_figure(series: Sequence[tuple[str, np.ndarray]], *, normalise: bool) -> dict[str, Any]:
    """Eigenvalue against rank, one median line with its 5-95 % band per selection."""
    data: list[dict[str, Any]] = []
    for index, (label, eigenvalues) in enumerate(series):
        values = normalised(eigenvalues) if normalise else eigenvalues
        data += _band_traces(label, values, PALETTE[index % len(PALETTE)])
    title = "eigenvalue / top eigenvalue" if normalise else "eigenvalue"
    return {
        "data": data,
        "layout": {
            "xaxis": {"title": {"text": "rank"}, "rangemode": "tozero"},
            "yaxis": {"title": {"text": title}, "type": "log", "exponentformat": "power"},
            "legend": {"orientation": "h", "y": -0.2},
            "margin": {"t": 20, "r": 20},
            "hovermode": "x",
        },
    }


def homogeneity_figure(matrix: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """The N x N log-scale homogeneity matrix: Pearson correlation of one position's spectrum
    with another's Rayleigh quotients (1 = the same axes everywhere)."""
    return {
        "data": [{
            "type": "heatmap", "z": [_finite(row) for row in np.asarray(matrix)],
            "x": list(labels), "y": list(labels), "zmin": -1, "zmax": 1,
            "colorscale": "RdBu", "reversescale": True,
            "colorbar": {"title": {"text": "correlation"}},
            "hovertemplate": "position %{y} vs %{x}<br>r = %{z:.3f}<extra></extra>",
        }],
        "layout": {
            "xaxis": {"title": {"text": "position (latent index)"}, "type": "category"},
            "yaxis": {"title": {"text": "position (latent index)"}, "type": "category",
                      "autorange": "reversed"},
            "margin": {"t": 20, "r": 20},
        },
    }  # fmt: skip


def single_spectrum_figure(eigenvalues: np.ndarray) -> dict[str, Any]:
    ranks = list(range(1, len(eigenvalues) + 1))
    return {
        "data": [{
            "x": ranks, "y": _finite(np.asarray(eigenvalues, dtype=np.float64)),
            "type": "scatter", "mode": "lines+markers", "marker": {"size": 4},
            "line": {"color": PALETTE[0]}, "name": "eigenvalue",
            "hovertemplate": "rank %{x}<br>%{y:.5g}<extra></extra>",
        }],
        "layout": {
            "xaxis": {"title": {"text": "rank"}},
            "yaxis": {"title": {"text": "eigenvalue"}, "type": "log", "exponentformat": "power"},
            "margin": {"t": 20, "r": 20},
        },
    }  # fmt: skip
