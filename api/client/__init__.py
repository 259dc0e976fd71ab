"""A typed Python client for the latent-spectra HTTP API, for notebooks and the command line.

    from api.client import SpectraClient
    with SpectraClient("http://127.0.0.1:8000", token) as client:
        job = client.submit({"model": "dcgan-faces", "latents": {"count": 8}, "top_k": 20})
        job = client.follow(job.id)                 # progress display until it ends
        eigenvalues = client.eigenvalues(job.id)    # (N, k) numpy array, descending

Every error the server answers is raised as a ``SpectraError`` subclass chosen by the status
(``NotFound``, ``InvalidRequest``, ...) that carries the server's problem document, so a
notebook can catch exactly what it expects. ``AsyncSpectraClient`` offers every operation of
``SpectraClient`` with ``await``. The package imports neither torch nor the server at start:
only httpx, and numpy when an array is asked for (so that the command line starts at once).

Modules: ``views`` (what the server answers), ``errors``, ``settings`` (SPECTRA_SERVER_URL,
SPECTRA_TOKEN), ``calls`` (each operation once), ``sync`` and ``asynchronous`` (the two
clients), ``progress`` (the display ``follow`` draws).
"""

from __future__ import annotations

from api.client.asynchronous import AsyncSpectraClient
from api.client.calls import FigureKind
from api.client.comparisons import StoredComparison
from api.client.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServerError,
    ServerUnreachable,
    SpectraError,
    Unauthorized,
    error_for,
)
from api.client.settings import DEFAULT_SERVER, ClientSettings
from api.client.sync import SpectraClient
from api.client.views import (
    TERMINAL_STATUSES,
    Campaign,
    CampaignMember,
    Comparison,
    Failure,
    Job,
    ModelInfo,
    Page,
    PageInfo,
    Progress,
    Spectrum,
    SpectrumSummary,
    Timings,
)

__all__ = [
    "DEFAULT_SERVER",
    "TERMINAL_STATUSES",
    "AsyncSpectraClient",
    "Campaign",
    "CampaignMember",
    "ClientSettings",
    "Comparison",
    "Conflict",
    "Failure",
    "FigureKind",
    "Forbidden",
    "InvalidRequest",
    "Job",
    "ModelInfo",
    "NotFound",
    "Page",
    "PageInfo",
    "PayloadTooLarge",
    "Progress",
    "ServerError",
    "ServerUnreachable",
    "SpectraClient",
    "SpectraError",
    "Spectrum",
    "StoredComparison",
    "SpectrumSummary",
    "Timings",
    "Unauthorized",
    "error_for",
]
