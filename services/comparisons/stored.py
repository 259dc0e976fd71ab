"""Comparisons as a stored resource: submitted (answered at once), computed by a worker (or in
process by the embedded command line: the same function), kept with what makes them
reproducible and citable: the request, the exact spectra ids, seeds and sample counts (in the
document), the software version, and the figures.

The same owner asking the same request over the same spectra gets the same comparison: the
fingerprint is the request plus a census of the spectra each selection covers (by job: id,
status, count; stored spectra never change), read in one cheap query per selection, so a
submission of 10⁴ spectra is answered without reading them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from services.config import Settings
from services.figure_files import MEDIA_TYPES
from services.store import ConflictError, NotFoundError, Store
from services.store.comparisons import ComparisonFigure, ComparisonRecord
from services.store.status import Status

from .compute import compare_loaded
from .document import result_document, software_version
from .figures import render_plots
from .requests import ComparisonRequest, Selection
from .selection import load_selection, nothing_stored

# A synchronous POST /v1/compare computes at most this many spectra in the request; beyond it
# the request becomes a stored comparison (202 and its link), decided from counts before any
# computation.
SYNC_MAX_SPECTRA = 2000

ComparisonDispatch = Callable[[str], None]


class ComparisonCancelled(Exception):
    """The comparison was cancelled while it ran: stop and write nothing."""


def _census(store: Store, selection: Selection, owner: str | None) -> list[tuple[str, str, int]]:
    if selection.job_id is not None:
        return store.selection_census(job_ids=[selection.job_id], owner=owner)
    return store.selection_census(
        model=selection.model, distance=selection.distance, method=selection.method, owner=owner
    )


def census(
    store: Store, request: ComparisonRequest, owner: str | None
) -> list[list[tuple[str, str, int]]]:
    """Per selection: (job id, job status, spectra) of what it covers, by job."""
    return [_census(store, s, owner) for s in request.selections]


def spectra_count(counts: Sequence[Sequence[tuple[str, str, int]]]) -> int:
    return sum(n for per_selection in counts for _, _, n in per_selection)


def fingerprint(
    request: ComparisonRequest, counts: Sequence[Sequence[tuple[str, str, int]]]
) -> str:
    """sha256 of the request (canonical JSON) and the census of its spectra."""
    canonical = json.dumps(
        {"request": request.model_dump(mode="json"), "census": counts},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def with_full_job_ids(
    store: Store, request: ComparisonRequest, owner: str | None
) -> ComparisonRequest:
    """The request with every job id prefix resolved (the stored request names full ids)."""
    selections = [
        s.model_copy(update={"job_id": store.resolve_id("job", s.job_id, owner)})
        if s.job_id is not None
        else s
        for s in request.selections
    ]
    return request.model_copy(update={"selections": selections})


def submit_comparison(
    store: Store,
    request: ComparisonRequest,
    *,
    owner: str,
    visible_owner: str | None,
    dispatch: ComparisonDispatch,
) -> tuple[ComparisonRecord, bool]:
    """Store the comparison (or find the same one) and hand a new one to ``dispatch``:
    (record, created). Nothing is computed here."""
    request = with_full_job_ids(store, request, visible_owner)
    counts = census(store, request, visible_owner)
    for selection, found in zip(request.selections, counts, strict=True):
        if found:
            continue
        if selection.job_id is not None:
            store.get_job(selection.job_id, owner=visible_owner)  # not visible: 404
        raise NotFoundError(nothing_stored(selection))
    stored_request = {"compare": request.model_dump(mode="json"), "visible_owner": visible_owner}
    record, created = store.create_comparison(
        owner, fingerprint(request, counts), stored_request, software_version()
    )
    if created:
        dispatch(record.id)
    return record, created


def compare_in_process(
    store: Store, request: ComparisonRequest, *, owner: str, settings: Settings
) -> ComparisonRecord:
    """The embedded command line's comparison: the same use case and the same stored record
    as a server's, computed in this process (every spectrum of the store is visible)."""

    def compute(comparison_id: str) -> None:
        run_comparison(store, comparison_id, settings)

    record, _ = submit_comparison(store, request, owner=owner, visible_owner=None, dispatch=compute)
    if record.status == Status.QUEUED:  # left queued by an interrupted run: compute it now
        compute(record.id)
    return store.get_comparison(record.id)


def run_comparison(store: Store, comparison_id: str, settings: Settings) -> ComparisonRecord:
    """Compute a queued comparison and store its document, spectra ids and figures (or its
    failure). A comparison that is no longer queued (cancelled, or taken) is left as it is."""
    if not store.start_comparison(comparison_id):
        return store.get_comparison(comparison_id)
    record = store.get_comparison(comparison_id)

    def progress(fraction: float, stage: str) -> None:
        if not store.comparison_progress(comparison_id, fraction, stage):
            raise ComparisonCancelled(comparison_id)

    try:
        document, spectra, figures = _compute(store, record, settings, progress)
    except ComparisonCancelled:
        return store.get_comparison(comparison_id)
    except (ValueError, LookupError) as error:  # refusals (mixed selection, not found, ...)
        store.fail_comparison(comparison_id, str(error))
        return store.get_comparison(comparison_id)
    except Exception as error:  # noqa: BLE001 - recorded, then raised for the worker's log
        store.fail_comparison(comparison_id, f"{type(error).__name__}: {error}")
        raise
    store.finish_comparison(comparison_id, document=document, spectra=spectra, figures=figures)
    return store.get_comparison(comparison_id)


def _compute(
    store: Store,
    record: ComparisonRecord,
    settings: Settings,
    progress: Callable[[float, str], None],
) -> tuple[dict[str, Any], list[list[str]], list[ComparisonFigure]]:
    request = ComparisonRequest.model_validate(record.request["compare"])
    owner = record.request.get("visible_owner")
    loaded = [load_selection(store, s, owner, i) for i, s in enumerate(request.selections)]
    progress(0.05, "anisotropy")
    comparison = compare_loaded(
        store,
        loaded,
        k=request.k,
        max_positions=request.max_positions,
        seed=request.seed,
        settings=settings,
        transport=request.transport,
        on_progress=progress,
    )
    progress(0.95, "figures")
    pictures = render_plots(
        store,
        comparison,
        formats=tuple(request.formats),
        normalisation=request.normalise,
        montages=request.montages,
    )
    document = result_document(comparison)
    document["request"] = request.model_dump(mode="json")
    document["comparison_id"] = record.id
    document["figures"] = sorted(pictures)
    figures = [
        ComparisonFigure(name, MEDIA_TYPES[name.rsplit(".", 1)[1]], data)
        for name, data in pictures.items()
    ]
    return document, [list(s.spectrum_ids) for s in loaded], figures


def cancel_comparison(
    store: Store, comparison_id: str, visible_owner: str | None
) -> ComparisonRecord:
    """Cancel a queued or running comparison; one that has ended is a ConflictError (409)."""
    record = store.get_comparison(comparison_id, owner=visible_owner)
    if not store.cancel_comparison(comparison_id):
        raise ConflictError(
            f"comparison {comparison_id} has already ended ({record.status}); nothing to cancel"
        )
    return store.get_comparison(comparison_id)


def is_finished(record: ComparisonRecord) -> bool:
    return record.status in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
