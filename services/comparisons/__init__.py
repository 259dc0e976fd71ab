"""Comparing selections of stored spectra: the one use case behind the HTTP compare and plot
routes, the CLI and the UI.

- ``requests``: what is asked (Selection, CompareRequest, parse_selection, limits);
- ``selection``: loading a selection's comparable spectra (or a refusal saying how to narrow it);
- ``compute``: the analyses (anisotropy, homogeneity, alignments) -> Comparison;
- ``figures``: every figure of a comparison; ``report``: the text tables.
"""

from .compute import Comparison, average_metric, compare, compare_loaded
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

__all__ = [
    "DEFAULT_MAX_POSITIONS",
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
    "spectrum_figure",
    "spectrum_png",
]
