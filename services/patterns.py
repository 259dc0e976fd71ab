"""Patterns every edge checks before anything reaches the store: ids are UUIDs, free text
has no control characters (PostgreSQL text cannot even hold a NUL byte)."""

from __future__ import annotations

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# Printable text only: names of models, distances and methods, labels.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
