"""The tables the store's queries name (from the models' metadata)."""

from __future__ import annotations

from sqlalchemy import Table

from .models import Base

_T = Base.metadata.tables
GENERATORS: Table = _T["generators"]
LATENT_SETS: Table = _T["latent_sets"]
JOBS: Table = _T["jobs"]
CHUNKS: Table = _T["chunks"]
SPECTRA: Table = _T["spectra"]
EIGENVECTORS: Table = _T["eigenvectors"]
LATENT_FAILURES: Table = _T["latent_failures"]
COLUMN_BLOCKS: Table = _T["column_blocks"]
API_KEYS: Table = _T["api_keys"]
IDEMPOTENCY_KEYS: Table = _T["idempotency_keys"]
TARGET_SETS: Table = _T["target_sets"]
OPTIMISATION_RESULTS: Table = _T["optimisation_results"]
COST_PROFILES: Table = _T["cost_profiles"]
