"""Split a job into chunks: a few latent codes each, or column blocks of one large Hessian.

A chunk is the unit of retry and of parallelism. Small enough that a lost chunk costs little
and that several workers share a job; large enough that the queue's per-chunk overhead stays a
few per cent of the compute (see bench/bench_pipeline.py).
"""

from __future__ import annotations

import math

from services.method_registry import DIRECTION_METHODS
from services.pipeline.estimate import coarse_seconds_per_code
from services.store import ChunkPlan

# A chunk of about this much compute: little work lost when a worker dies, and the queue's
# per-chunk overhead stays a small share of it (bench/bench_pipeline.py).
_TARGET_CHUNK_SECONDS = 20.0
_MAX_CHUNK_SIZE = 64
# Keep at least this many chunks when the job has codes enough, so several workers share it.
_MIN_CHUNKS_FOR_PARALLELISM = 4


def choose_chunk_size(n_latents: int, method: str, latent_dim: int, device: str) -> int:
    """Codes per chunk when the spec does not say: ~20 s of work, but never so many that a
    job of a few dozen codes lands on one worker."""
    by_cost = math.ceil(_TARGET_CHUNK_SECONDS / coarse_seconds_per_code(method, latent_dim, device))
    by_parallelism = math.ceil(n_latents / _MIN_CHUNKS_FOR_PARALLELISM)
    return max(1, min(by_cost, by_parallelism, _MAX_CHUNK_SIZE))


def plan_latent_chunks(n_latents: int, chunk_size: int) -> list[ChunkPlan]:
    """Consecutive runs of `chunk_size` latent indices (the last one may be shorter)."""
    if n_latents < 1 or chunk_size < 1:
        raise ValueError(f"need n_latents >= 1 and chunk_size >= 1, got {n_latents}, {chunk_size}")
    return [
        ChunkPlan(index=i, latent_indices=list(range(start, min(start + chunk_size, n_latents))))
        for i, start in enumerate(range(0, n_latents, chunk_size))
    ]


def plan_column_blocks(n_latents: int, latent_dim: int, block_columns: int) -> list[ChunkPlan]:
    """One chunk per (latent, column block) of its d x d Hessian. The chunk that completes a
    latent's last block assembles and decomposes it (see chunks.py)."""
    if block_columns >= latent_dim:
        raise ValueError(
            f"block_columns={block_columns} must be smaller than the latent dimension "
            f"{latent_dim}; leave it out to compute each Hessian in one piece"
        )
    plans: list[ChunkPlan] = []
    for latent in range(n_latents):
        for start in range(0, latent_dim, block_columns):
            stop = min(start + block_columns, latent_dim)
            plans.append(
                ChunkPlan(index=len(plans), latent_indices=[latent], column_block=(start, stop))
            )
    return plans


def plan_sefa() -> list[ChunkPlan]:
    """A sefa job is one chunk with one result, stored at latent index 0 with no code."""
    return [ChunkPlan(index=0, latent_indices=[0])]


def chunk_plans(
    method: str, n_latents: int, latent_dim: int, block_columns: int | None, chunk_size: int | None
) -> list[ChunkPlan]:
    """A resolved job's chunks: at submission, or by the worker that plans a job accepted
    before its model's profile existed (the same counts give the same chunks)."""
    if method in DIRECTION_METHODS:
        return plan_sefa()
    if block_columns is not None:
        return plan_column_blocks(n_latents, latent_dim, block_columns)
    assert chunk_size is not None, "a resolved job of latent chunks records its chunk size"
    return plan_latent_chunks(n_latents, chunk_size)
