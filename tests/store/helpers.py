"""Helpers shared by the store tests: a job with chunks, spectra with known arrays, row counts."""

from __future__ import annotations

import numpy as np
from sqlalchemy import text

from services.store import ChunkPlan, JobRecord, Store


def make_job(
    store: Store,
    *,
    owner: str = "alice",
    spec_hash: str = "spec-1",
    n_latents: int = 4,
    chunk_size: int = 2,
    model: str = "dcgan-faces",
) -> JobRecord:
    chunks = [
        ChunkPlan(index=i, latent_indices=list(range(start, min(start + chunk_size, n_latents))))
        for i, start in enumerate(range(0, n_latents, chunk_size))
    ]
    spec = {"model": model, "distance": "mse", "n": n_latents}
    job, created = store.create_job(owner, spec, spec, spec_hash, None, n_latents, chunks)
    assert created
    return job


def spectrum_arrays(
    d: int = 16, k: int = 8, dtype: type = np.float32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(code (d,), eigenvalues (k,) descending, eigenvectors (d, k) orthonormal columns)."""
    rng = np.random.default_rng(seed)
    code = rng.standard_normal(d)
    eigenvalues = np.sort(rng.exponential(size=k))[::-1].copy()
    vectors, _ = np.linalg.qr(rng.standard_normal((d, k)))
    return code, eigenvalues, vectors.astype(dtype)


def save(
    store: Store,
    job_id: str,
    latent_index: int,
    *,
    seed: int = 0,
    d: int = 16,
    k: int = 8,
    dtype: type = np.float32,
    **overrides: object,
) -> bool:
    code, eigenvalues, vectors = spectrum_arrays(d, k, dtype, seed)
    arguments: dict[str, object] = {
        "summary": {
            "top_eigenvalue": float(eigenvalues[0]),
            "trace": float(eigenvalues.sum()),
            "dims_99": k,
            "dims_999": k,
            "participation_ratio": 2.5,
        },
        "diagnostics": {"wall_time_s": 0.25, "converged": True},
        "model": "dcgan-faces",
        "distance": "mse",
        "method": "jacobian",
        "dtype": np.dtype(dtype).name,
    }
    arguments.update(overrides)
    return store.save_spectrum(job_id, latent_index, code, eigenvalues, vectors, **arguments)  # type: ignore[arg-type]


def count_rows(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
