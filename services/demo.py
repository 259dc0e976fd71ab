"""The main job on the embedded default, end to end: spectra of `dcgan-faces` at 16 codes with
`mse` (SQLite file, in-process runner, no services), then the anisotropy figures, the spectrum
plot and an eigen-axis montage. `spectra demo` and `make demo` run this."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from services.config import Settings
from services.geometry import anisotropy, homogeneity, load_generator
from services.pipeline import JobSpec, run_job_inprocess, submit_job
from services.plots import (
    annotated_montage,
    axis_steps,
    axis_walk_images,
    homogeneity_histogram,
    spectrum_plot,
)
from services.store import Store

DEMO_OWNER = "local"


@dataclass(frozen=True)
class DemoResult:
    job_id: str
    figures: dict[str, float]
    pictures: dict[str, Path]


def demo_spec(count: int = 16, seed: int = 0) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": "dcgan-faces",
            "distance": "mse",
            "method": "jacobian",
            "latents": {"count": count, "seed": seed},
            "dtype": "float64",
        }
    )


def _figures(eigenvalues: np.ndarray, homogeneity_stats: dict[str, Any]) -> dict[str, float]:
    summary = anisotropy(eigenvalues)
    top10_share = eigenvalues[:, :10].sum(axis=1) / eigenvalues.sum(axis=1)
    return {
        "positions": float(eigenvalues.shape[0]),
        "latent dimension": float(eigenvalues.shape[1]),
        "top eigenvalue (median)": float(np.median(eigenvalues[:, 0])),
        "share of trace in top 10 (mean)": float(top10_share.mean()),
        "dims for 99% of trace (mean)": summary["dims_99_mean"],
        "dims for 99.9% of trace (mean)": summary["dims_999_mean"],
        "dims for 99.99% of trace (mean)": summary["dims_9999_mean"],
        "participation ratio (mean)": summary["participation_ratio_mean"],
        "homogeneity, log scale (off-diagonal mean)": homogeneity_stats["log_offdiag_mean"],
        "homogeneity, linear scale (off-diagonal mean)": homogeneity_stats["linear_offdiag_mean"],
    }


def _montage(store: Store, spectrum_id: str, code: np.ndarray, eigenvalues: np.ndarray) -> bytes:
    generator = load_generator("dcgan-faces").to("cpu", torch.float64)
    vectors = store.eigenvectors(spectrum_id, k=6)
    walk = axis_steps(np.asarray(eigenvalues[:6]), 7)
    images = axis_walk_images(generator.module, code, vectors, walk)
    return annotated_montage(
        images,
        eigenvalues=np.asarray(eigenvalues[:6]),
        steps=walk,
        title="dcgan-faces/mse/jacobian — code: latent 0",
    )


def run_demo(
    out_dir: Path,
    database_url: str,
    *,
    settings: Settings,
    count: int = 16,
    seed: int = 0,
    stream: TextIO = sys.stdout,
) -> DemoResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    store = Store(database_url)
    store.migrate()
    started = time.perf_counter()
    job, created = submit_job(
        store, demo_spec(count, seed), DEMO_OWNER, dispatch=None, settings=settings
    )
    job = run_job_inprocess(store, job.id)  # also finishes a job an earlier run left behind
    if job.status != "succeeded":
        raise RuntimeError(f"demo job {job.id} ended {job.status}: {job.error}")
    elapsed = time.perf_counter() - started

    eigenvalues, ids = store.eigenvalue_matrix(job_id=job.id)
    vectors = store.top_k_eigenvectors(ids, eigenvalues.shape[1])
    homogeneity_stats = homogeneity(eigenvalues, vectors)
    figures = _figures(eigenvalues, homogeneity_stats)
    first = store.get_spectrum(ids[0])
    assert first.code is not None

    pictures = {
        "spectrum": out_dir / "spectrum.png",
        "homogeneity": out_dir / "homogeneity.png",
        "montage": out_dir / "eigen-axes.png",
    }
    pictures["spectrum"].write_bytes(spectrum_plot([("dcgan-faces / mse", eigenvalues)]))
    off_diagonal = homogeneity_stats["log"][~np.eye(len(ids), dtype=bool)]
    pictures["homogeneity"].write_bytes(homogeneity_histogram({"log scale": off_diagonal}))
    pictures["montage"].write_bytes(_montage(store, ids[0], first.code, eigenvalues[0]))

    how = f"computed in {elapsed:.1f} s" if created else "already stored, read back"
    print(f"job {job.id}: {len(ids)} spectra of dcgan-faces with mse, {how}", file=stream)
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        shown = f"{value:.0f}" if value.is_integer() and value > 1 else f"{value:.4g}"
        print(f"  {name:<{width}}  {shown}", file=stream)
    for name, path in pictures.items():
        print(f"{name} plot: {path.resolve()}", file=stream)
    return DemoResult(job.id, figures, pictures)
