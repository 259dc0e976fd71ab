"""Comparing selections of stored spectra: the one use case behind the HTTP compare and plot
routes, the CLI and the UI.

- ``requests``: what is asked (Selection, CompareRequest, parse_selection, limits);
- ``selection``: loading a selection's comparable spectra (or a refusal saying how to narrow it);
- ``compute``: the analyses (anisotropy, homogeneity, alignments) -> Comparison;
- ``figures``: every figure of a comparison; ``report``: the text tables.
- ``document``: THE versioned result document; ``tables``: THE table renderer.

Loaded lazily (PEP 562): ``services.comparisons.tables`` (torch-free) loads without the
computation, so the Python client and ``--server`` commands start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .compute import Comparison, average_metric, compare, compare_loaded
    from .document import DOCUMENT_VERSION, result_document
    from .figures import (
        file_stem,
        heatmap_figure,
        homogeneity_figure,
        homogeneity_png,
        montage_figure,
        montage_png,
        render_plots,
        spectrum_figure,
        spectrum_png,
    )
    from .report import format_report
    from .requests import (
        DEFAULT_MAX_POSITIONS,
        KNOWN_DISTANCES,
        MAX_CAMPAIGN_SELECTIONS,
        MAX_POSITIONS,
        MAX_SELECTIONS,
        MAX_VECTORS,
        CompareRequest,
        Selection,
        parse_selection,
    )
    from .selection import LoadedSelection, MixedSelectionError, load_selection
    from .tables import TABLE_FORMATS, render_tables, table_frames

_HOMES: dict[str, str] = {
    "CompareRequest": "requests",
    "Comparison": "compute",
    "DEFAULT_MAX_POSITIONS": "requests",
    "DOCUMENT_VERSION": "document",
    "KNOWN_DISTANCES": "requests",
    "LoadedSelection": "selection",
    "MAX_CAMPAIGN_SELECTIONS": "requests",
    "MAX_POSITIONS": "requests",
    "MAX_SELECTIONS": "requests",
    "MAX_VECTORS": "requests",
    "MixedSelectionError": "selection",
    "Selection": "requests",
    "TABLE_FORMATS": "tables",
    "average_metric": "compute",
    "compare": "compute",
    "compare_loaded": "compute",
    "file_stem": "figures",
    "format_report": "report",
    "heatmap_figure": "figures",
    "homogeneity_figure": "figures",
    "homogeneity_png": "figures",
    "load_selection": "selection",
    "montage_figure": "figures",
    "montage_png": "figures",
    "parse_selection": "requests",
    "render_plots": "figures",
    "render_tables": "tables",
    "result_document": "document",
    "spectrum_figure": "figures",
    "spectrum_png": "figures",
    "table_frames": "tables",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "DEFAULT_MAX_POSITIONS",
    "DOCUMENT_VERSION",
    "TABLE_FORMATS",
    "KNOWN_DISTANCES",
    "MAX_CAMPAIGN_SELECTIONS",
    "MAX_POSITIONS",
    "MAX_SELECTIONS",
    "MAX_VECTORS",
    "CompareRequest",
    "Comparison",
    "LoadedSelection",
    "MixedSelectionError",
    "Selection",
    "average_metric",
    "compare",
    "compare_loaded",
    "file_stem",
    "format_report",
    "heatmap_figure",
    "homogeneity_figure",
    "homogeneity_png",
    "load_selection",
    "montage_figure",
    "montage_png",
    "parse_selection",
    "render_plots",
    "render_tables",
    "result_document",
    "table_frames",
    "spectrum_figure",
    "spectrum_png",
]
