"""Loading a selection: its comparable spectra (ids and eigenvalues), or a refusal naming the
groups found and how to pick one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.comparability import (
    DIRECTION_METHODS,
    ComparabilityKey,
    Group,
    SelectedRow,
    code_digest,
    comparability_key,
    differing_fields,
    group_rows,
)
from services.store import InvalidDataError, NotFoundError, Store
from services.store.selections import SelectionRow

from .requests import MAX_VECTORS, Selection


class MixedSelectionError(InvalidDataError):
    """A selection whose spectra are not comparable: the groups found and how to pick one."""

    def __init__(self, selection: Selection, groups: list[Group], index: int) -> None:
        keys = [g.key for g in groups]
        fields = differing_fields(keys)
        listing = "; ".join(
            f"{g.key.label()} [dtype {g.key.dtype}, {g.key.kept}, weights "
            f"{(g.key.weights_sha256 or 'unknown')[:12]}]: {len(g.rows)} spectra"
            for g in groups
        )
        hint = ", ".join(f'"{f}"' for f in fields if f in ("dtype", "kept", "space")) or None
        example = ",".join(
            f"{f}={getattr(groups[0].key, f) or 'z'}"
            for f in fields
            if f in ("dtype", "kept", "space")
        )
        how = (
            f"narrow it with {hint} in the selection (on the command line: SELECTION@{example}), "
            "or select one job by its id"
            if hint
            else "select one job by its id (e.g. one of "
            + ", ".join(g.job_ids[0] for g in groups if g.job_ids)
            + ")"
        )
        super().__init__(
            f"selection {selection.describe()!r} mixes spectra that are not comparable "
            f"(they differ in {', '.join(fields) or 'their records'}): {listing}. {how}"
        )
        self.field = f"selections.{index}"
        self.extra = {"groups": [g.describe() for g in groups], "differing": fields}


@dataclass
class LoadedSelection:
    label: str
    selection: Selection
    key: ComparabilityKey
    spectrum_ids: list[str]
    job_ids: list[str]
    eigenvalues: np.ndarray  # (N, k) descending, as stored
    d: int
    vector_k: int  # eigenvectors per position the analyses read (at most MAX_VECTORS)
    model: str
    method: str
    distance: str
    duplicates_dropped: int = 0
    partial_left_out: dict[str, int] = field(default_factory=dict)
    # (N, d) every eigenvalue, where spectra keep the top k < d and all of them recorded theirs
    full_eigenvalues: np.ndarray | None = None
    full_missing: int = 0  # spectra of a top-k selection with no full spectrum stored
    # the generator's recorded image variation ({pixel_std, degenerate, threshold}), if any
    image_variation: dict[str, Any] | None = None
    # One per position: the code's digest (None for directions), what paired comparisons match
    code_digests: list[str | None] = field(default_factory=list)

    def is_directions(self) -> bool:
        return self.key.is_directions()

    def is_degenerate(self) -> bool:
        """Its generator's images barely vary (the job's recorded image variation says so)."""
        return bool((self.image_variation or {}).get("degenerate"))


def _selected(row: SelectionRow) -> SelectedRow:
    key = comparability_key(
        row.job_resolved,
        model=row.model,
        distance=row.distance,
        method=row.method,
        dtype=row.dtype,
        k=row.k,
        d=row.d,
    )
    code = None if row.method in DIRECTION_METHODS else code_digest(row.code)
    return SelectedRow(row.spectrum_id, row.job_id, row.job_status, row.latent_index, key, code)


def _matches(key: ComparabilityKey, selection: Selection) -> bool:
    return (
        (selection.dtype is None or key.dtype == selection.dtype)
        and (selection.kept is None or key.kept == selection.kept)
        and (selection.space is None or (key.space or "z") == selection.space)
    )


def load_selection(
    store: Store, selection: Selection, owner: str | None, index: int
) -> LoadedSelection:
    """The selection's comparable spectra: ids, eigenvalues (and every eigenvalue where they
    keep the top k of d), never eigenvectors (the analyses read those in chunks)."""
    if selection.job_id is not None:
        job_id = store.resolve_id("job", selection.job_id, owner)  # a prefix names one job
        job = store.get_job(job_id, owner=owner)  # 404 if not visible
        raw = store.selection_rows(job_ids=[job.id], owner=owner)
    else:
        raw = store.selection_rows(
            model=selection.model,
            distance=selection.distance,
            method=selection.method,
            owner=owner,
        )
    by_id = {row.spectrum_id: row for row in raw}
    rows = [r for r in map(_selected, raw) if _matches(r.key, selection)]
    grouping = group_rows(rows, include_partial=selection.include_partial)
    groups = [g for g in grouping.groups if g.rows]
    if not groups:
        if grouping.partial_left_out:
            left = ", ".join(
                f"{n} of {status} jobs" for status, n in grouping.partial_left_out.items()
            )
            raise InvalidDataError(
                f"selection {selection.describe()!r} has only partial results ({left}); add "
                '"include_partial": true to use them'
            )
        raise NotFoundError(nothing_stored(selection))
    if len(groups) > 1:
        raise MixedSelectionError(selection, groups, index)
    (group,) = groups
    ids = [r.spectrum_id for r in group.rows]
    first = by_id[ids[0]]
    k = min(by_id[i].k for i in ids)
    eigenvalues = np.stack(
        [np.frombuffer(by_id[i].eigenvalues, dtype="<f8")[:k] for i in ids]
    ).astype(np.float64)
    full, missing = None, 0
    if k < first.d:
        every, without = store.full_eigenvalues(ids, first.d)
        full, missing = (every, 0) if not without else (None, len(without))
    label = selection.label or (
        group.key.label() + (f" (job {selection.job_id[:8]})" if selection.job_id else "")
    )
    return LoadedSelection(
        label=label,
        selection=selection,
        key=group.key,
        spectrum_ids=ids,
        job_ids=group.job_ids,
        eigenvalues=eigenvalues,
        d=first.d,
        vector_k=min(k, MAX_VECTORS),
        model=first.model,
        method=first.method,
        distance=first.distance,
        duplicates_dropped=group.duplicates,
        partial_left_out=grouping.partial_left_out,
        full_eigenvalues=full,
        full_missing=missing,
        image_variation=_image_variation(first.job_resolved),
        code_digests=[r.code_sha256 for r in group.rows],
    )


def nothing_stored(selection: Selection) -> str:
    """What a selection that matches nothing should do next: closed-form directions are one
    command away (they take a second)."""
    message = f"selection {selection.describe()!r} matches no stored spectra"
    if selection.job_id is None and selection.method in DIRECTION_METHODS:
        message += (
            f"; {selection.method} directions are computed from the weights in about a second: "
            f"spectra run --model {selection.model} --method {selection.method}"
        )
    return message


def _image_variation(resolved: dict[str, Any]) -> dict[str, Any] | None:
    """What the job recorded about its generator's image variation (degenerate generators
    are flagged in every table and figure)."""
    generator = resolved.get("generator")
    facts = generator.get("facts") if isinstance(generator, dict) else None
    variation = facts.get("image_variation") if isinstance(facts, dict) else None
    return dict(variation) if isinstance(variation, dict) else None
