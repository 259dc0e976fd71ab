"""A comparison as text tables (what ``spectra compare`` prints): the result document through
THE table renderer, so the embedded and ``--server`` paths print the same thing."""

from __future__ import annotations

from .compute import Comparison
from .document import result_document
from .tables import render_tables


def format_report(comparison: Comparison, fmt: str = "text") -> str:
    """The comparison's tables in ``fmt`` (text, csv, markdown, latex)."""
    return render_tables(result_document(comparison), fmt)
