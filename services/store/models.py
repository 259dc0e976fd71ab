"""SQLAlchemy 2 models: the schema, and the only place it is described.

The Alembic migrations in ``migrations/versions`` create exactly this schema (a test runs
``alembic check`` against PostgreSQL and SQLite). Large binary columns (eigenvectors, latent
codes, column blocks) are ``deferred`` and eigenvectors live in their own table, so no query
loads them by accident with metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from .records import CHUNK_STATUSES, JOB_STATUSES, LATENT_SOURCES, VECTOR_DTYPES

# Stable constraint names, so that migrations and `alembic check` agree on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 36  # UUID strings; plain strings so a malformed id is "not found", not a DB error
SHA256_LENGTH = 64


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones and hands back naive values,
    which are UTC because only UTC is ever written.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _in_list(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class GeneratorRow(Base):
    __tablename__ = "generators"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    family: Mapped[str] = mapped_column(String(100))
    latent_dim: Mapped[int] = mapped_column(Integer)
    weights_sha256: Mapped[str | None] = mapped_column(String(SHA256_LENGTH))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (CheckConstraint("latent_dim > 0", name="latent_dim_positive"),)


class LatentSetRow(Base):
    __tablename__ = "latent_sets"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    name: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(20))
    model: Mapped[str | None] = mapped_column(String(200))
    seed: Mapped[int | None] = mapped_column(BigInteger)
    n: Mapped[int] = mapped_column(Integer)
    d: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH))
    codes: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # (n, d) float64 little-endian
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("owner", "sha256"),
        CheckConstraint(_in_list("source", LATENT_SOURCES), name="source_known"),
        CheckConstraint("n > 0 AND d > 0", name="shape_positive"),
        Index(None, "owner", "created_at"),
    )


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    resolved: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_hash: Mapped[str] = mapped_column(String(128))
    latent_set_id: Mapped[str | None] = mapped_column(
        ForeignKey("latent_sets.id", ondelete="RESTRICT"), index=True
    )
    model: Mapped[str | None] = mapped_column(String(200))
    n_latents: Mapped[int] = mapped_column(Integer)
    n_done: Mapped[int] = mapped_column(Integer)
    n_failed: Mapped[int] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The planner's whole estimate, times included (resolved["plan"] keeps its deterministic
    # part, which the spec hash covers).
    estimate: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        UniqueConstraint("owner", "spec_hash"),
        CheckConstraint(_in_list("status", JOB_STATUSES), name="status_known"),
        CheckConstraint(
            "n_latents >= 0 AND n_done >= 0 AND n_failed >= 0", name="counts_non_negative"
        ),
        Index(None, "owner", "created_at"),
        Index(None, "status"),
        Index(None, "model"),
    )


class CostProfileRow(Base):
    """A model's measured costs (the planner's probe) for one (weights, space, distance,
    route, device kind, thread count): measured once by a worker, read by every plan after
    (services/store/profiles.py)."""

    __tablename__ = "cost_profiles"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    key_sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH), unique=True)
    key: Mapped[dict[str, Any]] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(String(200), index=True)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    probe_seconds: Mapped[float] = mapped_column(Float(precision=53))
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ChunkRow(Base):
    __tablename__ = "chunks"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    latent_indices: Mapped[list[int]] = mapped_column(JSON)
    block_start: Mapped[int | None] = mapped_column(Integer)
    block_stop: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The latent being computed, and how many runs ended while computing it (see claim_chunk).
    current_latent: Mapped[int | None] = mapped_column(Integer)
    current_latent_deaths: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (
        UniqueConstraint("job_id", "index"),
        CheckConstraint(_in_list("status", CHUNK_STATUSES), name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        CheckConstraint(
            "(block_start IS NULL AND block_stop IS NULL) OR "
            "(block_start >= 0 AND block_stop > block_start)",
            name="column_block_valid",
        ),
        Index(None, "status", "heartbeat_at"),
    )


class SpectrumRow(Base):
    __tablename__ = "spectra"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    latent_index: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    distance: Mapped[str] = mapped_column(String(100))
    method: Mapped[str] = mapped_column(String(50))
    dtype: Mapped[str] = mapped_column(String(20))
    k: Mapped[int] = mapped_column(Integer)
    d: Mapped[int] = mapped_column(Integer)
    eigenvalues: Mapped[bytes] = mapped_column(LargeBinary)  # (k,) float64 little-endian
    code: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)  # (d,) float64 LE
    top_eigenvalue: Mapped[float | None] = mapped_column(Float(precision=53), index=True)
    trace: Mapped[float | None] = mapped_column(Float(precision=53))
    dims_99: Mapped[int | None] = mapped_column(Integer, index=True)
    dims_999: Mapped[int | None] = mapped_column(Integer)
    participation_ratio: Mapped[float | None] = mapped_column(Float(precision=53), index=True)
    wall_time_s: Mapped[float | None] = mapped_column(Float(precision=53))
    diagnostics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("job_id", "latent_index"),
        CheckConstraint("latent_index >= 0", name="latent_index_non_negative"),
        CheckConstraint("k > 0 AND d > 0 AND k <= d", name="shape_valid"),
        Index(None, "model", "distance", "method"),
    )


class EigenvectorsRow(Base):
    """Eigenvectors as rows of a (k, d) matrix, raw little-endian, so the top-k vectors are the
    first ``k * d * itemsize`` bytes. On PostgreSQL ``data`` has STORAGE EXTERNAL (set by the
    migration): uncompressed TOAST, so ``substr`` fetches only the chunks it needs."""

    __tablename__ = "eigenvectors"

    spectrum_id: Mapped[str] = mapped_column(
        ForeignKey("spectra.id", ondelete="CASCADE"), primary_key=True
    )
    dtype: Mapped[str] = mapped_column(String(20))
    rows: Mapped[int] = mapped_column(Integer)  # k
    cols: Mapped[int] = mapped_column(Integer)  # d
    sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)

    __table_args__ = (CheckConstraint(_in_list("dtype", VECTOR_DTYPES), name="dtype_known"),)


class LatentFailureRow(Base):
    __tablename__ = "latent_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    latent_index: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("job_id", "latent_index"),)


class ColumnBlockRow(Base):
    """Columns H[:, start:stop] of one large Hessian, computed by one chunk of a split job."""

    __tablename__ = "column_blocks"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    latent_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(Integer, primary_key=True)
    stop: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)  # d
    dtype: Mapped[str] = mapped_column(String(20))
    sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # (d, stop-start) C order, LE
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # What computing the block cost its chunk (None: not measured, e.g. an older row).
    seconds: Mapped[float | None] = mapped_column(Float(precision=53))
    peak_bytes: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("start >= 0 AND stop > start", name="range_valid"),
        CheckConstraint(_in_list("dtype", VECTOR_DTYPES), name="dtype_known"),
    )


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    token_sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean)


class UiSessionRow(Base):
    """A web interface session: the cookie holds only its random token (its sha256 here); the
    owner and scopes are read from the API key on every request, and signing out ends it."""

    __tablename__ = "ui_sessions"

    token_sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotencyKeyRow(Base):
    """The job an owner's ``Idempotency-Key`` submitted, and a hash of the request it came
    with: the same key again, on any API process, returns that job; with a different request
    it is refused. Kept 24 hours (an older record of a key is replaced by its next use)."""

    __tablename__ = "idempotency_keys"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CampaignRow(Base):
    """A named, tagged set of jobs submitted in one request (models x spaces x distances x
    methods, plus each model's directions). Every member is an ordinary job."""

    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    tags: Mapped[list[str]] = mapped_column(JSON)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("owner", "name"), Index(None, "owner", "created_at"))


class CampaignMemberRow(Base):
    """One job of a campaign, under the member name comparisons and figures show."""

    __tablename__ = "campaign_members"

    campaign_id: Mapped[str] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    member: Mapped[str] = mapped_column(String(300), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="RESTRICT"), index=True)


TARGET_SOURCES = ("uploaded", "generated")


class TargetSetRow(Base):
    """Images (n, C, H, W) float32 in [-1, 1], and for generated targets the codes (n, d)."""

    __tablename__ = "target_sets"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(20))
    model: Mapped[str | None] = mapped_column(String(200))
    n: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    d: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH))
    images: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    codes: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("owner", "sha256"),
        CheckConstraint(_in_list("source", TARGET_SOURCES), name="source_known"),
        CheckConstraint(
            "n > 0 AND channels > 0 AND height > 0 AND width > 0", name="shape_positive"
        ),
    )


class OptimisationResultRow(Base):
    """One target's optimisation: losses (restarts, steps + 1) float64, evaluations
    (steps + 1,) float64, final code (d,) float64, final image (C, H, W) float32."""

    __tablename__ = "optimisation_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    target_index: Mapped[int] = mapped_column(Integer)
    optimiser: Mapped[str] = mapped_column(String(50))
    steps: Mapped[int] = mapped_column(Integer)
    restarts: Mapped[int] = mapped_column(Integer)
    d: Mapped[int] = mapped_column(Integer)
    best_restart: Mapped[int] = mapped_column(Integer)
    final_loss: Mapped[float] = mapped_column(Float(precision=53))
    losses: Mapped[bytes] = mapped_column(LargeBinary)
    evaluations: Mapped[bytes] = mapped_column(LargeBinary)
    final_code: Mapped[bytes] = mapped_column(LargeBinary)
    final_image: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    image_shape: Mapped[list[int]] = mapped_column(JSON)
    diagnostics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("job_id", "target_index"),
        CheckConstraint("target_index >= 0", name="target_index_non_negative"),
        CheckConstraint("steps > 0 AND restarts > 0 AND d > 0", name="shape_positive"),
    )
