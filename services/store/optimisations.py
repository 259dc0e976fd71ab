"""Optimisation jobs in the store: target sets (images to invert, with the codes that made
them when known) and one result per (job, target), written once, atomically.

The job and its chunks are ordinary jobs and chunks (same state machine); a target is the
job's "latent" for counting (``n_latents`` = targets, ``n_done`` counts stored results) and
a target that fails is recorded in ``latent_failures`` like a failed latent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    select,
)

from .codecs import (
    float_array,
    from_le,
    json_document,
    le_bytes,
    new_id,
    non_negative_int,
    readonly,
    sha256_hex,
)
from .connection import StoreConnection, retry_read
from .errors import InvalidDataError
from .failures import count_done, record_failure_once
from .jobs import require_open_job
from .models import TARGET_SOURCES, utcnow
from .tables import LATENT_FAILURES, OPTIMISATION_RESULTS, TARGET_SETS


@dataclass(frozen=True)
class TargetSetRecord:
    id: str
    owner: str
    source: str
    model: str | None
    n: int
    channels: int
    height: int
    width: int
    d: int | None
    sha256: str
    created_at: datetime


@dataclass(frozen=True)
class OptimisationResultRecord:
    job_id: str
    target_index: int
    optimiser: str
    steps: int
    restarts: int
    d: int
    best_restart: int
    final_loss: float
    diagnostics: dict[str, Any]
    created_at: datetime
    losses: np.ndarray = field(compare=False, repr=False)  # (restarts, steps + 1)
    evaluations: np.ndarray = field(compare=False, repr=False)  # (steps + 1,)
    final_code: np.ndarray = field(compare=False, repr=False)  # (d,)

    @property
    def curve(self) -> np.ndarray:
        """Loss per step of the restarts run side by side (the best so far over restarts)."""
        return np.asarray(self.losses.min(axis=0))


_TARGET_META = [c for c in TARGET_SETS.c if c.name not in ("images", "codes")]
_RESULT_META = [
    c for c in OPTIMISATION_RESULTS.c if c.name not in ("id", "final_image", "image_shape")
]


class OptimisationStore(StoreConnection):
    """Mixed into ``Store``: the optimisation tables, in the connection's transactions."""

    # -- target sets ------------------------------------------------------------------------

    def create_target_set(
        self,
        owner: str,
        images: np.ndarray,
        *,
        codes: np.ndarray | None = None,
        source: str = "uploaded",
        model: str | None = None,
    ) -> TargetSetRecord:
        """Store target images (n, C, H, W) as float32 once per owner (deduplicated by
        content, codes included); generated targets keep their codes (n, d)."""

        if source not in TARGET_SOURCES:
            raise InvalidDataError(f"unknown target source {source!r}; expected {TARGET_SOURCES}")
        array = float_array(images, "target images", ndim=4)
        n, channels, height, width = array.shape
        data = le_bytes(array, "float32")
        code_data: bytes | None = None
        d: int | None = None
        if codes is not None:
            code_array = float_array(codes, "target codes", ndim=2)
            if code_array.shape[0] != n:
                raise InvalidDataError(f"{code_array.shape[0]} codes for {n} target images")
            d = int(code_array.shape[1])
            code_data = le_bytes(code_array, "float64")
        digest = sha256_hex(f"{array.shape}:{d}:".encode() + data + (code_data or b""))
        row = self._insert_once_per_owner(
            TARGET_SETS,
            _TARGET_META,
            dict(
                id=new_id(),
                owner=owner,
                source=source,
                model=model,
                n=n,
                channels=channels,
                height=height,
                width=width,
                d=d,
                sha256=digest,
                images=data,
                codes=code_data,
                created_at=utcnow(),
            ),
        )
        return TargetSetRecord(**row)

    @retry_read
    def get_target_set(self, set_id: str, owner: str | None = None) -> TargetSetRecord:
        row = self._owned_row(TARGET_SETS, _TARGET_META, set_id, owner, "target set")
        return TargetSetRecord(**row)

    @retry_read
    def target_images(self, set_id: str) -> np.ndarray:
        """(n, C, H, W) float32, as stored."""

        meta = self.get_target_set(set_id)
        with self._read() as conn:
            data = conn.execute(
                select(TARGET_SETS.c.images).where(TARGET_SETS.c.id == set_id)
            ).scalar_one()
        shape = (meta.n, meta.channels, meta.height, meta.width)
        return np.array(from_le(data, "float32", shape))

    @retry_read
    def target_codes(self, set_id: str) -> np.ndarray | None:
        """(n, d) float64 codes that generated the targets, or None for uploaded images."""

        meta = self.get_target_set(set_id)
        with self._read() as conn:
            data = conn.execute(
                select(TARGET_SETS.c.codes).where(TARGET_SETS.c.id == set_id)
            ).scalar_one()
        if data is None or meta.d is None:
            return None
        return np.array(from_le(data, "float64", (meta.n, meta.d)))

    # -- results ----------------------------------------------------------------------------

    def save_optimisation_result(
        self,
        job_id: str,
        target_index: int,
        *,
        optimiser: str,
        losses: np.ndarray,
        evaluations: np.ndarray,
        final_code: np.ndarray,
        final_image: np.ndarray,
        best_restart: int,
        diagnostics: dict[str, Any],
    ) -> bool:
        """Store one target's result and count it on its job, in one transaction. True if
        stored; False if (job, target) was already there (the first write wins)."""

        target_index = non_negative_int(target_index, "target_index")
        loss_array = float_array(losses, "losses", ndim=2)
        restarts, columns = loss_array.shape
        evaluation_array = float_array(evaluations, "evaluations", ndim=1)
        if evaluation_array.shape != (columns,):
            raise InvalidDataError(f"evaluations must have shape ({columns},)")
        code = float_array(final_code, "final code", ndim=1)
        image = float_array(final_image, "final image", ndim=3)
        best_restart = non_negative_int(best_restart, "best_restart")
        if best_restart >= restarts or columns < 2:
            raise InvalidDataError("best_restart must index a restart; losses need 2+ steps")
        values = {
            "job_id": job_id,
            "target_index": target_index,
            "optimiser": optimiser,
            "steps": columns - 1,
            "restarts": restarts,
            "d": int(code.shape[0]),
            "best_restart": best_restart,
            "final_loss": float(loss_array[best_restart, -1]),
            "losses": le_bytes(loss_array, "float64"),
            "evaluations": le_bytes(evaluation_array, "float64"),
            "final_code": le_bytes(code, "float64"),
            "final_image": le_bytes(image, "float32"),
            "image_shape": list(image.shape),
            "diagnostics": json_document(diagnostics, "diagnostics"),
            "created_at": utcnow(),
        }
        statement = (
            self._insert(OPTIMISATION_RESULTS)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["job_id", "target_index"])
            .returning(OPTIMISATION_RESULTS.c.id)
        )
        done = select(OPTIMISATION_RESULTS.c.id).where(
            OPTIMISATION_RESULTS.c.job_id == job_id,
            OPTIMISATION_RESULTS.c.target_index == target_index,
        )
        with self._write() as conn:
            if require_open_job(conn, job_id, stored=done) is None:
                return False
            if conn.execute(statement).scalar_one_or_none() is None:
                return False
            count_done(conn, job_id, target_index)  # a target that failed before: uncounted
            return True

    def record_target_failure(self, job_id: str, target_index: int, reason: str) -> bool:
        """Record once that a target could not be optimised; False if a result or a failure
        is already stored for it."""

        target_index = non_negative_int(target_index, "target_index")
        if not reason:
            raise InvalidDataError("a target failure needs a reason")
        result = select(OPTIMISATION_RESULTS.c.id).where(
            OPTIMISATION_RESULTS.c.job_id == job_id,
            OPTIMISATION_RESULTS.c.target_index == target_index,
        )
        with self._write() as conn:
            return record_failure_once(conn, self._insert, job_id, target_index, reason, result)

    @retry_read
    def stored_target_indices(self, job_id: str) -> set[int]:
        """Targets with a result or a recorded failure (a re-run skips them)."""
        failures = LATENT_FAILURES
        done = select(OPTIMISATION_RESULTS.c.target_index).where(
            OPTIMISATION_RESULTS.c.job_id == job_id
        )
        failed = select(failures.c.latent_index).where(failures.c.job_id == job_id)
        with self._read() as conn:
            return set(conn.execute(done.union(failed)).scalars())

    @retry_read
    def optimisation_results(self, job_id: str) -> list[OptimisationResultRecord]:
        """Every stored result of the job, by target index (arrays read-only)."""
        with self._read() as conn:
            rows = (
                conn.execute(
                    select(*_RESULT_META)
                    .where(OPTIMISATION_RESULTS.c.job_id == job_id)
                    .order_by(OPTIMISATION_RESULTS.c.target_index)
                )
                .mappings()
                .all()
            )
        return [_result(row) for row in rows]

    @retry_read
    def optimisation_images(self, job_id: str) -> dict[int, np.ndarray]:
        """Final images (C, H, W) float32 by target index."""

        query = (
            select(
                OPTIMISATION_RESULTS.c.target_index,
                OPTIMISATION_RESULTS.c.image_shape,
                OPTIMISATION_RESULTS.c.final_image,
            )
            .where(OPTIMISATION_RESULTS.c.job_id == job_id)
            .order_by(OPTIMISATION_RESULTS.c.target_index)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return {
            row.target_index: np.array(from_le(row.final_image, "float32", tuple(row.image_shape)))
            for row in rows
        }


def _result(row: Any) -> OptimisationResultRecord:

    values = dict(row)
    restarts, steps, d = values["restarts"], values["steps"], values["d"]
    values["losses"] = readonly(
        np.array(from_le(values["losses"], "float64", (restarts, steps + 1)))
    )
    values["evaluations"] = readonly(
        np.array(from_le(values["evaluations"], "float64", (steps + 1,)))
    )
    values["final_code"] = readonly(np.array(from_le(values["final_code"], "float64", (d,))))
    return OptimisationResultRecord(**values)
