"""Synthetic stored spectra with known arrays, for the analyses at scale (tests and
bench/bench_analysis_scale.py): each position is drawn from its own seeded stream, so any
position's arrays can be rebuilt without holding the others, and a job of them is written
through the store's own batch insert path (save_spectra, one transaction per batch)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from services.geometry import summary_of
from services.store import SpectrumToSave, Store

BATCH = 200  # spectra per transaction: one commit per batch, a bounded batch in memory

OWNER = "local"


@dataclass(frozen=True)
class Position:
    code: np.ndarray  # (d,) float64
    eigenvalues: np.ndarray  # (d,) float64, descending: the full spectrum
    eigenvectors: np.ndarray  # (d, k) orthonormal columns, float32


def position(seed: int, index: int, d: int, k: int) -> Position:
    """Position ``index`` of set ``seed``: a shared orientation (so that homogeneity is high
    but not 1) perturbed per position, and a decaying spectrum scaled per position."""
    shared = np.random.default_rng([seed, 2**31]).standard_normal((d, k))
    rng = np.random.default_rng([seed, index])
    vectors, _ = np.linalg.qr(shared + 0.3 * rng.standard_normal((d, k)))
    decay = np.exp(-np.arange(d) / max(2.0, d / 16)) * np.exp(rng.normal(0, 0.2, d))
    values = np.sort(decay * np.exp(rng.normal()))[::-1].copy()
    return Position(rng.standard_normal(d), values, vectors.astype(np.float32))


def positions(seed: int, n: int, d: int, k: int) -> Iterator[Position]:
    return (position(seed, i, d, k) for i in range(n))


def stored_vectors(seed: int, indices: Iterable[int], d: int, k: int) -> np.ndarray:
    """(len(indices), d, k) the eigenvectors of those positions, as stored (float32)."""
    return np.stack([position(seed, int(i), d, k).eigenvectors for i in indices])


def write_job(
    store: Store,
    *,
    n: int,
    d: int,
    k: int,
    seed: int,
    model: str = "synthetic",
    method: str = "jacobian",
    full: bool = True,
    without_full: tuple[int, ...] = (),
) -> str:
    """A succeeded job of ``n`` synthetic spectra keeping the top ``k`` of ``d`` eigenpairs;
    with ``full`` every eigenvalue is recorded in the diagnostics (as the full methods do),
    except for the positions in ``without_full`` (as Lanczos would)."""
    distance = "none" if method in ("sefa", "ganspace") else "mse"  # directions have none
    resolved = {
        "model": model,
        "distance": distance,
        "method": method,
        "top_k": k,
        "synthetic": {"seed": seed, "n": n, "d": d},
    }
    job, created = store.create_job(
        OWNER, resolved, resolved, f"synthetic-{model}-{method}-{seed}-{n}-{d}-{k}", None, n, []
    )
    assert created, "a synthetic job is written once per store"
    store.transition_job(job.id, ["queued"], "running")
    batch: list[SpectrumToSave] = []
    for index, p in enumerate(positions(seed, n, d, k)):
        keeps_all = full and index not in without_full
        batch.append(
            SpectrumToSave(
                job.id,
                index,
                None if distance == "none" else p.code,
                p.eigenvalues[:k],
                p.eigenvectors,
                summary=summary_of(p.eigenvalues)
                if keeps_all
                else {"top_eigenvalue": p.eigenvalues[0]},
                diagnostics={
                    "method": method,
                    **({"eigenvalues_all": p.eigenvalues.tolist()} if keeps_all and k < d else {}),
                },
                model=model,
                distance=distance,
                method=method,
                dtype="float32",
            )
        )
        if len(batch) == BATCH or index == n - 1:
            store.save_spectra(batch)
            batch = []
    return store.refresh_job_status(job.id).id
