"""Access records: hashed API keys, and Idempotency-Key records (per owner, 24 hours)."""

from __future__ import annotations

import secrets

from sqlalchemy import (
    RowMapping,
    select,
    update,
)

from .codecs import (
    new_id,
    sha256_hex,
)
from .connection import StoreConnection, retry_read
from .errors import InvalidDataError
from .idempotency import IDEMPOTENCY_TTL, check_same_request, record_idempotency_key
from .jobs import job_read, require_job
from .models import utcnow
from .records import (
    ApiKeyRecord,
    JobRecord,
)
from .tables import (
    API_KEYS,
    IDEMPOTENCY_KEYS,
)

# How long an Idempotency-Key holds its job; an older record is replaced by the key's next use.


class AccessStore(StoreConnection):
    # -- API keys --------------------------------------------------------------------------

    @staticmethod
    def _api_key(row: RowMapping) -> ApiKeyRecord:
        values = dict(row)
        values["scopes"] = tuple(values["scopes"])
        return ApiKeyRecord(**values)

    def create_api_key(self, owner: str, scopes: list[str]) -> tuple[ApiKeyRecord, str]:
        """A new key for ``owner``. The token is returned once; only its sha256 is stored."""
        if not owner:
            raise InvalidDataError("an API key needs an owner")
        if isinstance(scopes, str) or not all(isinstance(s, str) and s for s in scopes):
            raise InvalidDataError(f"scopes must be a list of non-empty strings, got {scopes!r}")
        token = secrets.token_urlsafe(32)
        row = {
            "id": new_id(),
            "owner": owner,
            "token_sha256": sha256_hex(token.encode()),
            "scopes": list(scopes),
            "created_at": utcnow(),
            "revoked": False,
        }
        with self._write() as conn:
            conn.execute(API_KEYS.insert().values(**row))
        del row["token_sha256"]
        return self._api_key(row), token  # type: ignore[arg-type]

    @retry_read
    def verify_api_key(self, token: str) -> ApiKeyRecord | None:
        """The key's record if ``token`` is a live key, else None. Lookup is by the token's
        sha256 (a unique index), so timing reveals nothing about stored tokens."""
        if not token:
            return None
        query = select(
            API_KEYS.c.id,
            API_KEYS.c.owner,
            API_KEYS.c.scopes,
            API_KEYS.c.created_at,
            API_KEYS.c.revoked,
        ).where(
            API_KEYS.c.token_sha256 == sha256_hex(token.encode()), API_KEYS.c.revoked.is_(False)
        )
        with self._read() as conn:
            row = conn.execute(query).mappings().one_or_none()
        return None if row is None else self._api_key(row)

    def revoke_api_key(self, key_id: str) -> bool:
        """Revoke a key for good. True if it was live."""
        with self._write() as conn:
            result = conn.execute(
                update(API_KEYS)
                .where(API_KEYS.c.id == key_id, API_KEYS.c.revoked.is_(False))
                .values(revoked=True)
            )
            return result.rowcount == 1

    # -- idempotency keys ------------------------------------------------------------------

    @retry_read
    def job_for_idempotency_key(
        self, owner: str, key: str, request_sha256: str
    ) -> JobRecord | None:
        """The job this owner's Idempotency-Key submitted in the last 24 hours, or None.
        IdempotencyConflictError if the key came then with a different request."""
        cutoff = utcnow() - IDEMPOTENCY_TTL
        query = select(IDEMPOTENCY_KEYS.c.request_sha256, IDEMPOTENCY_KEYS.c.job_id).where(
            IDEMPOTENCY_KEYS.c.owner == owner,
            IDEMPOTENCY_KEYS.c.key == key,
            IDEMPOTENCY_KEYS.c.created_at >= cutoff,
        )
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            return None
        check_same_request(row.request_sha256, request_sha256)
        return self._run_read(job_read(row.job_id, owner))

    def remember_idempotency_key(
        self, owner: str, key: str, request_sha256: str, job_id: str
    ) -> None:
        """Record that the key submitted ``job_id`` (replacing a record older than 24 hours).
        IdempotencyConflictError if the key is meanwhile recorded with a different request
        (two concurrent submissions under one key with different bodies: the later one)."""
        with self._write() as conn:
            require_job(conn, job_id)
            record_idempotency_key(conn, self._insert, owner, key, request_sha256, job_id)
