"""Figures fetched from a server for a set of selections, and writing figures into a folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.client import SpectraClient


def server_plots(
    server: SpectraClient, selections: list[str], result: dict[str, Any]
) -> dict[str, bytes]:
    """The spectrum figure, the homogeneity one where measured, and a montage per selection."""
    from api.client import SpectraError
    from api.client.calls import selection_json

    pictures = {"spectrum.png": server.figure("spectrum", selections=selections)}
    if any(s.get("homogeneity") for s in result["selections"]):
        pictures["homogeneity.png"] = server.figure("homogeneity", selections=selections)
    for index, text in enumerate(selections):
        query = selection_json(text)
        first = server.spectra(
            job_id=query.get("job_id"),
            model=query.get("model"),
            distance=query.get("distance"),
            method=query.get("method"),
            limit=1,
        ).items
        if not first:
            continue
        try:
            pictures[f"montage-{index}.png"] = server.figure("montage", spectrum_id=first[0].id)
        except SpectraError as error:  # e.g. an imported result of a model the server lacks
            print(f"no montage for {text}: {error}", file=sys.stderr)
    return pictures


def write_pictures(directory: str | None, pictures: dict[str, bytes]) -> None:
    if not directory:
        return
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in pictures.items():
        (out / name).write_bytes(data)
        print(f"wrote {out / name}")
