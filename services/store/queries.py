"""Reads of stored results: pages of spectra, one spectrum, eigenvector slices (one substr
read of the first k rows) and eigenvalue matrices of a selection."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, Unpack

import numpy as np
from psycopg.rows import namedtuple_row, tuple_row
from sqlalchemy import (
    LargeBinary,
    Select,
    bindparam,
    case,
    func,
    select,
)

from .codecs import (
    check_page,
    from_le,
    non_negative_int,
    readonly,
)
from .connection import StoreConnection, retry_read
from .errors import InvalidDataError, NotFoundError
from .prepared import PreparedRead, ReadPlan, prepare
from .records import (
    SpectrumRecord,
    SpectrumSummaryRecord,
)
from .results import SUMMARY_KEYS
from .tables import (
    EIGENVECTORS,
    JOBS,
    SPECTRA,
)

SPECTRUM_ORDERS = ("latent_index", "created_at", *SUMMARY_KEYS)
IDS_PER_QUERY = 500

_SPECTRUM_META = list(SPECTRA.c)  # eigenvalues and code are small (k and d float64)


_SPECTRUM_BY_ID = prepare(select(*_SPECTRUM_META).where(SPECTRA.c.id == bindparam("id")))
_SPECTRUM_OF_OWNER = prepare(
    select(*_SPECTRUM_META)
    .join(JOBS, JOBS.c.id == SPECTRA.c.job_id)
    .where(SPECTRA.c.id == bindparam("id"), JOBS.c.owner == bindparam("owner"))
)
_SPECTRUM_SUMMARY = [SPECTRA.c[field.name] for field in dataclasses.fields(SpectrumSummaryRecord)]


def _selected(query: Select[Any], filters: Sequence[str], by_owner: bool) -> Select[Any]:
    """``query`` over spectra narrowed by each named filter (job_id, model, distance, method)
    and, with ``by_owner``, by the owner of their job, all bound by name (see
    _selection_params)."""
    query = query.where(*(SPECTRA.c[f] == bindparam(f) for f in filters))
    if by_owner:
        query = query.join(JOBS, JOBS.c.id == SPECTRA.c.job_id).where(
            JOBS.c.owner == bindparam("owner")
        )
    return query


def _selection_params(
    job_id: str | None, model: str | None, distance: str | None, method: str | None
) -> dict[str, str]:
    """The filters a selection of spectra names (the ones not None), by name."""
    filters = {"job_id": job_id, "model": model, "distance": distance, "method": method}
    return {name: value for name, value in filters.items() if value is not None}


@functools.lru_cache(maxsize=1024)  # 2**4 filter sets x owner or not x 14 orders x 2
def _spectra_page_read(
    filters: tuple[str, ...], by_owner: bool, order_by: str, summaries: bool
) -> PreparedRead:
    """One page of spectra (whole rows, or the summary columns): each named filter (job_id,
    model, distance, method) and the owner of their job bound by name, as are limit and
    offset. ``order_by``: as in list_spectra."""
    columns = _SPECTRUM_SUMMARY if summaries else _SPECTRUM_META
    query = _selected(select(*columns), filters, by_owner)
    column = SPECTRA.c[order_by.removeprefix("-")]
    ordering = (column.desc() if order_by.startswith("-") else column.asc()).nulls_last()
    return prepare(
        query.order_by(ordering, SPECTRA.c.job_id, SPECTRA.c.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


def _vector_query(spectrum_ids: list[str], k: int | None) -> Select[Any]:
    """Eigenvector rows; with ``k`` only the first k·d·itemsize bytes of each blob (substr)."""
    itemsize = case((EIGENVECTORS.c.dtype == "float64", 8), else_=4)
    payload = (
        EIGENVECTORS.c.data
        if k is None
        else func.substr(
            EIGENVECTORS.c.data, 1, k * EIGENVECTORS.c.cols * itemsize, type_=LargeBinary
        )
    )
    return select(
        EIGENVECTORS.c.spectrum_id,
        EIGENVECTORS.c.dtype,
        EIGENVECTORS.c.rows,
        EIGENVECTORS.c.cols,
        payload.label("payload"),
    ).where(EIGENVECTORS.c.spectrum_id.in_(spectrum_ids))


# The same query as _vector_query, for psycopg's binary result format: bytea in text format is
# hex, twice the bytes to send and to decode (bench/bench_store.py measures the difference).
_VECTOR_SELECT_POSTGRES = """
SELECT spectrum_id, dtype, rows, cols,
       CASE WHEN %(k)s::int IS NULL THEN data
            ELSE substr(data, 1, %(k)s::int * cols * CASE WHEN dtype = 'float64' THEN 8 ELSE 4 END)
       END AS payload
FROM eigenvectors WHERE spectrum_id"""
_VECTOR_SQL_POSTGRES = _VECTOR_SELECT_POSTGRES + " = ANY(%(ids)s)\n"
# One spectrum's (the API's and the comparisons' usual read): an equality, where adapting a
# one-element array parameter would cost more than the rest of the client's side of the read.
_ONE_VECTOR_SQL_POSTGRES = _VECTOR_SELECT_POSTGRES + " = %(id)s\n"


def _check_k(k: int | None, *, required: bool = False) -> None:
    """A positive k, or None (all) where it is not ``required``."""
    if (k is None and required) or (k is not None and non_negative_int(k, "k") == 0):
        raise InvalidDataError("k must be a positive integer")


def _vectors_of(
    spectrum_id: str, k: int | None, dtype: str, stored: int, cols: int, payload: bytes
) -> np.ndarray:
    """The (d, k) columns of one stored blob of ``stored`` rows of ``cols`` (its top ``k``)."""
    rows = stored if k is None else k
    if rows > stored:
        raise InvalidDataError(
            f"asked for the top {k} eigenvectors but spectrum {spectrum_id} stores only {stored}"
        )
    # A copy makes the result writable; the transpose is a view: (k, d) rows -> (d, k).
    matrix = np.array(from_le(payload, dtype, (rows, cols)))
    return matrix.T


class SpectraQuery(TypedDict, total=False):
    """A page of stored spectra: each filter given narrows the selection (``owner``: only that
    owner's jobs); ``order_by`` is one of SPECTRUM_ORDERS (default latent_index), prefixed
    with "-" for descending (e.g. "-top_eigenvalue"), ties broken by job and id so pages are
    stable; ``limit`` (default 50) and ``offset`` (default 0) page through it."""

    job_id: str | None
    model: str | None
    distance: str | None
    method: str | None
    owner: str | None
    order_by: str
    limit: int
    offset: int


class ResultQueryStore(StoreConnection):
    # -- spectra ---------------------------------------------------------------------------

    @staticmethod
    def _spectrum(row: Mapping[str, Any]) -> SpectrumRecord:
        values = dict(row)
        values["eigenvalues"] = readonly(from_le(values["eigenvalues"], "float64", (row["k"],)))
        if values["code"] is not None:
            values["code"] = readonly(from_le(values["code"], "float64", (row["d"],)))
        return SpectrumRecord(**values)

    def list_spectra(self, **query: Unpack[SpectraQuery]) -> list[SpectrumRecord]:
        """Metadata and eigenvalues, never eigenvectors (see SpectraQuery for the filters,
        the order and the page)."""
        return self._run_read(self._spectra_page(False, query))

    def list_spectrum_summaries(self, **query: Unpack[SpectraQuery]) -> list[SpectrumSummaryRecord]:
        """list_spectra without the arrays and diagnostics: what a listing shows."""
        return self._run_read(self._spectra_page(True, query))

    async def list_spectrum_summaries_async(
        self, **query: Unpack[SpectraQuery]
    ) -> list[SpectrumSummaryRecord]:
        """list_spectrum_summaries, awaitable (see open_async_reads)."""
        return await self._async_reads.run(self._spectra_page(True, query))

    @classmethod
    def _spectra_page(cls, summaries: bool, query: SpectraQuery) -> ReadPlan[Any]:
        """One page of spectra: SpectrumSummaryRecords, or with ``summaries`` False whole
        SpectrumRecords (arrays, diagnostics)."""
        unknown = set(query) - set(SpectraQuery.__annotations__)
        if unknown:  # a misspelt filter must not widen the selection silently
            raise TypeError(f"unknown spectra query arguments: {', '.join(sorted(unknown))}")
        owner = query.get("owner")
        order_by = query.get("order_by", "latent_index")
        limit, offset = query.get("limit", 50), query.get("offset", 0)
        check_page(limit, offset)
        if order_by.removeprefix("-") not in SPECTRUM_ORDERS:
            raise InvalidDataError(
                f"cannot order spectra by {order_by!r}; use one of {', '.join(SPECTRUM_ORDERS)} "
                "(prefix '-' for descending)"
            )
        filters = _selection_params(
            query.get("job_id"), query.get("model"), query.get("distance"), query.get("method")
        )
        params: dict[str, Any] = dict(filters)
        read = _spectra_page_read(tuple(filters), owner is not None, order_by, summaries)
        if owner is not None:
            params["owner"] = owner
        params.update(limit=limit, offset=offset)

        def finish(rows: list[dict[str, Any]]) -> list[Any]:
            if summaries:
                return [SpectrumSummaryRecord(**row) for row in rows]
            return [cls._spectrum(row) for row in rows]

        return ReadPlan(read, params, finish)

    def get_spectrum(self, spectrum_id: str, owner: str | None = None) -> SpectrumRecord:
        """The spectrum; NotFoundError if it does not exist or ``owner`` does not own its job."""
        return self._run_read(self._spectrum_read(spectrum_id, owner))

    async def get_spectrum_async(
        self, spectrum_id: str, owner: str | None = None
    ) -> SpectrumRecord:
        """get_spectrum, awaitable (see open_async_reads)."""
        return await self._async_reads.run(self._spectrum_read(spectrum_id, owner))

    @classmethod
    def _spectrum_read(cls, spectrum_id: str, owner: str | None) -> ReadPlan[SpectrumRecord]:
        def finish(rows: list[dict[str, Any]]) -> SpectrumRecord:
            if not rows:
                raise NotFoundError(f"spectrum {spectrum_id!r} not found")
            return cls._spectrum(rows[0])

        if owner is None:
            return ReadPlan(_SPECTRUM_BY_ID, {"id": spectrum_id}, finish)
        return ReadPlan(_SPECTRUM_OF_OWNER, {"id": spectrum_id, "owner": owner}, finish)

    def eigenvectors(self, spectrum_id: str, k: int | None = None) -> np.ndarray:
        """(d, k) eigenvectors as columns in their stored dtype, the top ``k`` (all when None).
        Reads only the first k·d·itemsize bytes of the blob."""
        if self._postgres:
            return self._one_spectrum_vectors(spectrum_id, k)
        return self._read_vectors([spectrum_id], k)[0]

    @retry_read
    def _one_spectrum_vectors(self, spectrum_id: str, k: int | None) -> np.ndarray:
        """eigenvectors on PostgreSQL: one row, without the many-spectra read's batching (the
        API's, the comparisons' and the plots' usual read)."""
        _check_k(k)
        with self._driver_read() as reads:
            found = reads.rows(
                _ONE_VECTOR_SQL_POSTGRES,
                {"k": k, "id": spectrum_id},
                row_factory=tuple_row,
                binary=True,
            )
        if not found:
            raise NotFoundError(f"no eigenvectors stored for spectrum {spectrum_id!r}")
        _, dtype, stored, cols, payload = found[0]
        return _vectors_of(spectrum_id, k, dtype, stored, cols, payload)

    def top_k_eigenvectors(self, spectrum_ids: Sequence[str], k: int) -> np.ndarray:
        """(n, d, k): the top-k eigenvectors of each spectrum, in the order given. All must
        share d; float32 and float64 together come back as float64."""
        _check_k(k, required=True)
        if not spectrum_ids:
            raise InvalidDataError("give at least one spectrum id")
        blocks = self._read_vectors(list(spectrum_ids), k)
        dims = {block.shape[0] for block in blocks}
        if len(dims) > 1:
            raise InvalidDataError(
                f"spectra have different latent dimensions {sorted(dims)}; select one model's"
            )
        return np.stack(blocks).astype(np.result_type(*blocks), copy=False)

    @retry_read
    def _read_vectors(self, spectrum_ids: list[str], k: int | None) -> list[np.ndarray]:
        _check_k(k)
        found: dict[str, Any] = {}
        batches = [
            spectrum_ids[start : start + IDS_PER_QUERY]
            for start in range(0, len(spectrum_ids), IDS_PER_QUERY)
        ]
        if self._postgres:
            with self._driver_read() as reads:
                for batch in batches:
                    rows = reads.rows(
                        _VECTOR_SQL_POSTGRES,
                        {"k": k, "ids": batch},
                        row_factory=namedtuple_row,
                        binary=True,
                    )
                    found.update((row.spectrum_id, row) for row in rows)
        else:
            with self._read() as conn:
                for batch in batches:
                    found.update(
                        (row.spectrum_id, row) for row in conn.execute(_vector_query(batch, k))
                    )
        arrays = []
        for spectrum_id in spectrum_ids:
            row = found.get(spectrum_id)
            if row is None:
                raise NotFoundError(f"no eigenvectors stored for spectrum {spectrum_id!r}")
            arrays.append(_vectors_of(spectrum_id, k, row.dtype, row.rows, row.cols, row.payload))
        return arrays

    @retry_read
    def eigenvalue_matrix(
        self,
        *,
        job_id: str | None = None,
        model: str | None = None,
        distance: str | None = None,
        method: str | None = None,
        owner: str | None = None,
        k: int | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """(N, k) float64 eigenvalues (descending) of the selected spectra, ordered by job and
        latent index, with their ids. ``k`` defaults to the smallest k in the selection (each
        row truncated to its top k); asking for more than a spectrum stores is an error."""
        if k is not None and non_negative_int(k, "k") == 0:
            raise InvalidDataError("k must be a positive integer (or None for the smallest k)")
        params: dict[str, Any] = _selection_params(job_id, model, distance, method)
        query = _selected(
            select(SPECTRA.c.id, SPECTRA.c.k, SPECTRA.c.eigenvalues),
            list(params),
            owner is not None,
        ).order_by(SPECTRA.c.job_id, SPECTRA.c.latent_index)
        if owner is not None:
            params["owner"] = owner
        with self._read() as conn:
            rows = conn.execute(query, params).all()
        if not rows:
            return np.zeros((0, k or 0)), []
        width = min(row.k for row in rows) if k is None else int(k)
        if any(row.k < width for row in rows):
            raise InvalidDataError(
                f"k={width} but the selection holds spectra with only {min(r.k for r in rows)} "
                "eigenvalues; ask for fewer"
            )
        matrix = np.stack([from_le(row.eigenvalues, "float64", (row.k,))[:width] for row in rows])
        return matrix, [row.id for row in rows]
