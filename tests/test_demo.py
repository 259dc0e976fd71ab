"""The embedded main job end to end (SQLite, in-process runner): figures and pictures."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from services.config import Settings
from services.demo import run_demo


def test_demo_prints_figures_and_writes_pictures(tmp_path: Path, sqlite_url: str) -> None:
    out = io.StringIO()
    result = run_demo(
        tmp_path / "out", sqlite_url, count=3, seed=0, stream=out, settings=Settings()
    )
    text = out.getvalue()
    assert f"job {result.job_id}: 3 spectra" in text
    assert result.figures["positions"] == 3 and result.figures["latent dimension"] == 100
    # The published figure for this model: the top 10 of 100 eigenvalues hold 82-90 % of the trace.
    assert 0.75 < result.figures["share of trace in top 10 (mean)"] < 0.95
    assert 1 <= result.figures["dims for 99% of trace (mean)"] <= 100
    for path in result.pictures.values():
        assert str(path.resolve()) in text
        assert Image.open(path).format == "PNG"
    montage = Image.open(result.pictures["montage"])
    # Six axes of 64-pixel faces, seven steps each, drawn annotated (the one montage renderer)
    # at 150 dpi: taller than the bare 6 x 64 tiles, wider than high.
    assert 6 * 64 < montage.height < montage.width

    again = io.StringIO()
    assert (
        run_demo(
            tmp_path / "out", sqlite_url, count=3, seed=0, stream=again, settings=Settings()
        ).job_id
        == result.job_id
    )
    assert "already stored" in again.getvalue()
