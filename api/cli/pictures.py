"""Writing a comparison's figures into a folder (the same names from either side)."""

from __future__ import annotations

from pathlib import Path


def write_pictures(directory: str | None, pictures: dict[str, bytes]) -> None:
    if not directory:
        return
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in pictures.items():
        (out / name).write_bytes(data)
        print(f"wrote {out / name}")
