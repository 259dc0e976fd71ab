"""THE table of figure formats, without matplotlib: the command line checks ``--formats``
before it loads anything heavy, and the figure saver (services/figure_files.py) writes them."""

from __future__ import annotations

from typing import Literal

FigureFormat = Literal["png", "svg", "pdf"]
FIGURE_FORMATS: tuple[FigureFormat, ...] = ("png", "svg", "pdf")
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
