"""THE table of figure formats and THE figure saver: every figure the service draws (spectra,
homogeneity, montages, optimisation curves) is written here, in the formats a paper takes, with
fixed metadata so the same figure gives the same bytes."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: workers and servers have no display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from services.figure_formats import FIGURE_FORMATS, MEDIA_TYPES, FigureFormat  # noqa: E402

__all__ = ["DPI", "FIGURE_FORMATS", "MEDIA_TYPES", "FigureFormat", "check_format", "save_figure"]
DPI = 150

# Text in SVG stays text (searchable, editable in a paper's figure), and PDF embeds TrueType.
matplotlib.rcParams["svg.fonttype"] = "none"
matplotlib.rcParams["pdf.fonttype"] = 42


def check_format(fmt: str) -> None:
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"figure format must be one of {', '.join(FIGURE_FORMATS)}, got {fmt!r}")


def save_figure(figure: Figure, fmt: str = "png") -> bytes:
    """The figure's bytes in ``fmt`` (the figure is closed)."""
    check_format(fmt)
    buffer = io.BytesIO()
    # Fixed metadata: the same figure gives the same bytes (no creation date in SVG / PDF).
    metadata = {"Date": None} if fmt == "svg" else {"CreationDate": None} if fmt == "pdf" else {}
    figure.savefig(buffer, format=fmt, dpi=DPI, bbox_inches="tight", metadata=metadata)
    plt.close(figure)
    return buffer.getvalue()
