"""The Store: the one facade over the only code in the service that speaks SQL.

Every public method opens its own short transaction and returns plain frozen records.
State changes of jobs and chunks are guarded compare-and-set updates
(``UPDATE ... WHERE id = :id AND status IN (...)``) that report whether a row changed, so a
message delivered twice does nothing the second time. Writes of results are idempotent on
(job_id, latent_index) through ``INSERT ... ON CONFLICT DO NOTHING``.

The parts live by concept (see docs/architecture.md, "Store"): connection.py (engines,
transactions, retries, migrations), codecs.py, catalogue.py, jobs.py (the job state machine), leases.py (the chunk lease protocol),
results.py (writes of results), queries.py (reads of results), access.py (API keys,
Idempotency-Key records), profiles.py (the planner's cost profiles). Callers only ever see
this class.
"""

from __future__ import annotations

from .access import AccessStore
from .campaigns import CampaignStore
from .catalogue import CatalogueStore
from .comparisons import ComparisonStore
from .connection import alembic_config
from .ids import IdStore
from .jobs import JobStore
from .leases import ChunkLeaseStore
from .optimisations import OptimisationStore
from .profiles import ProfileStore
from .queries import SPECTRUM_ORDERS, ResultQueryStore, SpectraQuery
from .results import SUMMARY_KEYS, ResultStore
from .selections import SelectionQueryStore
from .ui_sessions import UiSessionStore

__all__ = ["SPECTRUM_ORDERS", "SUMMARY_KEYS", "SpectraQuery", "Store", "alembic_config"]


class Store(
    CatalogueStore,
    JobStore,
    ChunkLeaseStore,
    ResultStore,
    ResultQueryStore,
    SelectionQueryStore,
    CampaignStore,
    AccessStore,
    OptimisationStore,
    IdStore,
    UiSessionStore,
    ProfileStore,
    ComparisonStore,
):
    """Results, jobs, chunks, latent sets, generators and API keys in one SQL database.

    ``url``: ``sqlite:///path.db`` (embedded) or ``postgresql+psycopg://user@host/db``.
    """
