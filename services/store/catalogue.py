"""The catalogue: generators the service has seen, and latent sets (codes stored once per
owner, deduplicated by their bytes)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import (
    select,
)

from .codecs import (
    check_page,
    check_status,
    float_array,
    from_le,
    json_document,
    le_bytes,
    new_id,
    non_negative_int,
    sha256_hex,
)
from .connection import StoreConnection, retry_read
from .errors import InvalidDataError, NotFoundError
from .models import utcnow
from .records import (
    LATENT_SOURCES,
    GeneratorRecord,
    LatentSetRecord,
)
from .tables import (
    GENERATORS,
    LATENT_SETS,
)

_LATENT_SET_META = [c for c in LATENT_SETS.c if c.name != "codes"]


class CatalogueStore(StoreConnection):
    # -- generators ------------------------------------------------------------------------

    def upsert_generator(
        self,
        name: str,
        family: str,
        latent_dim: int,
        weights_sha256: str | None,
        options: dict[str, Any],
    ) -> None:
        """Record a generator (or update what is known about it)."""
        if non_negative_int(latent_dim, "latent_dim") == 0:
            raise InvalidDataError("latent_dim must be positive")
        now = utcnow()
        values = {
            "family": family,
            "latent_dim": int(latent_dim),
            "weights_sha256": weights_sha256,
            "options": json_document(options, "generator options"),
            "updated_at": now,
        }
        statement = self._insert(GENERATORS).values(name=name, created_at=now, **values)
        statement = statement.on_conflict_do_update(index_elements=["name"], set_=values)
        with self._write() as conn:
            conn.execute(statement)

    @retry_read
    def list_generators(self) -> list[GeneratorRecord]:
        columns = [c for c in GENERATORS.c if c.name != "created_at"]
        with self._read() as conn:
            rows = conn.execute(select(*columns).order_by(GENERATORS.c.name)).mappings()
            return [GeneratorRecord(**row) for row in rows]

    # -- latent sets -----------------------------------------------------------------------

    def create_latent_set(
        self,
        owner: str,
        codes: np.ndarray,
        *,
        name: str | None = None,
        source: str = "uploaded",
        model: str | None = None,
        seed: int | None = None,
    ) -> LatentSetRecord:
        """Store (n, d) codes as float64 once per owner: the same codes (same shape and bytes)
        stored again return the existing set, whatever name they are given the second time."""
        check_status(source, LATENT_SOURCES, "latent set source")
        if source == "sampled" and (model is None or seed is None):
            raise InvalidDataError("a sampled latent set must record the model and the seed")
        array = float_array(codes, "latent codes", ndim=2)
        n, d = array.shape
        data = le_bytes(array, "float64")
        digest = sha256_hex(f"{n}x{d}:".encode() + data)
        row = self._insert_once_per_owner(
            LATENT_SETS,
            _LATENT_SET_META,
            dict(
                id=new_id(),
                owner=owner,
                name=name,
                source=source,
                model=model,
                seed=None if seed is None else int(seed),
                n=n,
                d=d,
                sha256=digest,
                codes=data,
                created_at=utcnow(),
            ),
        )
        return LatentSetRecord(**row)

    @retry_read
    def get_latent_set(self, set_id: str, owner: str | None = None) -> LatentSetRecord:
        """The set's metadata; NotFoundError if it does not exist or ``owner`` does not own it."""
        row = self._owned_row(LATENT_SETS, _LATENT_SET_META, set_id, owner, "latent set")
        return LatentSetRecord(**row)

    @retry_read
    def latent_codes(self, set_id: str) -> np.ndarray:
        """(n, d) float64 codes, bit for bit as stored."""
        query = select(LATENT_SETS.c.n, LATENT_SETS.c.d, LATENT_SETS.c.codes).where(
            LATENT_SETS.c.id == set_id
        )
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            raise NotFoundError(f"latent set {set_id!r} not found")
        return np.array(from_le(row.codes, "float64", (row.n, row.d)))

    @retry_read
    def list_latent_sets(
        self, owner: str, limit: int = 50, offset: int = 0
    ) -> list[LatentSetRecord]:
        check_page(limit, offset)
        query = (
            select(*_LATENT_SET_META)
            .where(LATENT_SETS.c.owner == owner)
            .order_by(LATENT_SETS.c.created_at.desc(), LATENT_SETS.c.id)
            .limit(limit)
            .offset(offset)
        )
        with self._read() as conn:
            return [LatentSetRecord(**row) for row in conn.execute(query).mappings()]
