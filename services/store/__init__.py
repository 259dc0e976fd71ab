"""The result store: the only SQL in the service. See docs/architecture.md ("Store")."""

from .errors import (
    ConflictError,
    IdempotencyConflictError,
    InvalidDataError,
    JobClosedError,
    NotFoundError,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from .ids import ID_KINDS, AmbiguousIdError, MalformedIdError
from .optimisations import OptimisationResultRecord, TargetSetRecord
from .profiles import CostProfileRecord
from .records import (
    CHUNK_STATUSES,
    JOB_STATUSES,
    ApiKeyRecord,
    ChunkPlan,
    ChunkRecord,
    GeneratorRecord,
    JobProgress,
    JobRecord,
    LatentFailureRecord,
    LatentSetRecord,
    SpectrumRecord,
    SpectrumSummaryRecord,
)
from .results import SpectrumToSave
from .status import ACTIVE_STATUSES, TERMINAL_STATUSES, Status, StatusName
from .store import SPECTRUM_ORDERS, SUMMARY_KEYS, Store, alembic_config

__all__ = [
    "ID_KINDS",
    "AmbiguousIdError",
    "MalformedIdError",
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "Status",
    "StatusName",
    "CHUNK_STATUSES",
    "JOB_STATUSES",
    "SPECTRUM_ORDERS",
    "SUMMARY_KEYS",
    "ApiKeyRecord",
    "ChunkPlan",
    "ChunkRecord",
    "ConflictError",
    "CostProfileRecord",
    "GeneratorRecord",
    "IdempotencyConflictError",
    "InvalidDataError",
    "JobClosedError",
    "JobProgress",
    "JobRecord",
    "LatentFailureRecord",
    "LatentSetRecord",
    "NotFoundError",
    "OptimisationResultRecord",
    "SpectrumRecord",
    "SpectrumSummaryRecord",
    "SpectrumToSave",
    "Store",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "TargetSetRecord",
    "alembic_config",
]
