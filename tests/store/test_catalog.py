"""Latent sets, generators, API keys and idempotency keys."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import text, update

from services.store import IdempotencyConflictError, InvalidDataError, NotFoundError, Store
from services.store.models import utcnow
from services.store.tables import IDEMPOTENCY_KEYS

from .helpers import count_rows, make_job


def test_latent_sets_round_trip_and_dedupe_per_owner(store: Store) -> None:
    codes = np.random.default_rng(0).standard_normal((5, 7))
    codes[0, 0] = -0.0
    record = store.create_latent_set(
        "alice", codes, name="faces", source="sampled", model="dcgan-faces", seed=42
    )
    assert (record.n, record.d, record.seed, record.source) == (5, 7, 42, "sampled")
    assert store.latent_codes(record.id).tobytes() == codes.tobytes()
    again = store.create_latent_set("alice", codes, name="another name")
    assert again == record  # same codes, same owner: the existing set
    reshaped = store.create_latent_set("alice", codes.reshape(7, 5))
    assert reshaped.id != record.id  # same bytes, different shape: different set
    theirs = store.create_latent_set("bob", codes)
    assert theirs.id != record.id
    assert store.get_latent_set(record.id, owner="alice") == record
    with pytest.raises(NotFoundError):
        store.get_latent_set(record.id, owner="bob")
    assert [s.id for s in store.list_latent_sets("alice")] == [reshaped.id, record.id]
    assert [s.id for s in store.list_latent_sets("alice", limit=1, offset=1)] == [record.id]
    from_float32 = store.create_latent_set("carol", codes.astype(np.float32))
    assert store.latent_codes(from_float32.id).dtype == np.float64


@pytest.mark.parametrize(
    ("codes", "options", "message"),
    [
        (np.ones(4), {}, "must be 2-D"),
        (np.full((2, 3), np.nan), {}, "NaN"),
        (np.ones((2, 3)), {"source": "dreamt"}, "unknown latent set source"),
        (np.ones((2, 3)), {"source": "sampled"}, "model and the seed"),
        (np.array([["a", "b"]]), {}, "real numeric"),
    ],
)
def test_bad_latent_sets_are_refused(
    sqlite_url: str, codes: np.ndarray, options: dict[str, object], message: str
) -> None:
    with Store(sqlite_url) as store:
        store.migrate()
        with pytest.raises(InvalidDataError, match=message):
            store.create_latent_set("alice", codes, **options)  # type: ignore[arg-type]
        assert count_rows(store, "latent_sets") == 0


def test_generators_upsert(store: Store) -> None:
    store.upsert_generator("dcgan-faces", "dcgan", 100, "ab" * 32, {"nz": 100})
    store.upsert_generator("dcgan-faces", "dcgan", 100, "cd" * 32, {"nz": 100, "eval": True})
    [generator] = store.list_generators()
    assert generator.weights_sha256 == "cd" * 32 and generator.options == {"nz": 100, "eval": True}
    with pytest.raises(InvalidDataError):
        store.upsert_generator("broken", "dcgan", 0, None, {})


def test_api_keys_store_only_a_hash_and_can_be_revoked(store: Store) -> None:
    record, token = store.create_api_key("alice", ["jobs:write", "jobs:read"])
    assert len(token) >= 40 and record.scopes == ("jobs:write", "jobs:read")
    verified = store.verify_api_key(token)
    assert verified is not None and verified.owner == "alice" and verified.id == record.id
    assert store.verify_api_key(token + "x") is None
    assert store.verify_api_key("") is None
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT token_sha256 FROM api_keys")).scalar_one()
        dump = conn.execute(text("SELECT * FROM api_keys")).all()
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(dump)
    _, other_token = store.create_api_key("alice", [])
    assert other_token != token
    assert store.revoke_api_key(record.id) is True
    assert store.revoke_api_key(record.id) is False
    assert store.verify_api_key(token) is None
    assert store.verify_api_key(other_token) is not None
    with pytest.raises(InvalidDataError):
        store.create_api_key("alice", "jobs:write")  # type: ignore[arg-type]


def test_ping_says_what_to_check_when_the_server_is_unreachable(tmp_path: object) -> None:
    from services.store import StoreUnavailable

    with (
        Store("postgresql+psycopg://postgres@127.0.0.1:1/nothing") as store,
        pytest.raises(StoreUnavailable, match="SPECTRA_DATABASE_URL") as raised,
    ):
        store.ping()
    assert "Connection refused" in str(raised.value) and not raised.value.connection_lost


def test_idempotency_keys_hold_a_day_per_owner_and_refuse_another_request(store: Store) -> None:
    job = make_job(store)
    other = make_job(store, spec_hash="spec-2")
    assert store.job_for_idempotency_key("alice", "k", "a" * 64) is None
    store.remember_idempotency_key("alice", "k", "a" * 64, job.id)
    store.remember_idempotency_key("alice", "k", "a" * 64, job.id)  # a retry: no change
    assert store.job_for_idempotency_key("alice", "k", "a" * 64) == store.get_job(job.id)
    assert store.job_for_idempotency_key("bob", "k", "a" * 64) is None  # keys are per owner
    with pytest.raises(IdempotencyConflictError, match="different request"):
        store.job_for_idempotency_key("alice", "k", "b" * 64)
    with pytest.raises(IdempotencyConflictError):  # and the record is left as it was
        store.remember_idempotency_key("alice", "k", "b" * 64, other.id)
    assert store.job_for_idempotency_key("alice", "k", "a" * 64) == store.get_job(job.id)
    with pytest.raises(NotFoundError):
        store.remember_idempotency_key("alice", "k2", "a" * 64, "no-such-job")
    assert count_rows(store, "idempotency_keys") == 1

    # A day later the key is free again: forgotten by lookups, replaced by its next use.
    with store.engine.begin() as conn:
        conn.execute(
            update(IDEMPOTENCY_KEYS).values(created_at=utcnow() - timedelta(hours=24, seconds=1))
        )
    assert store.job_for_idempotency_key("alice", "k", "b" * 64) is None
    store.remember_idempotency_key("alice", "k", "b" * 64, other.id)
    assert store.job_for_idempotency_key("alice", "k", "b" * 64) == store.get_job(other.id)
    assert count_rows(store, "idempotency_keys") == 1
