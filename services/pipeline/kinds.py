"""Job kinds: the one table of what differs between a spectra job and an optimisation job.

Every kind is a job like the others (one spec per job, resolved, hashed, split into chunks,
leased and retried by the same state machine); what a kind brings is its spec model, its
resolution, the work of one of its chunks and its report. The resolved spec records its
kind (`resolved["kind"]`; spectra jobs, the first kind, record none). A new kind is one
entry here: the chunk loop, the submission's storage and the refusals are shared.

The entries name their functions by import path, loaded on first use: the kinds' modules
import the pipeline's shared parts (jobs, chunks), which in turn look kinds up here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from services.store import ChunkRecord, JobRecord, Store

SPECTRUM_KIND = "spectra"
OPTIMISE_KIND = "optimise"


@dataclass(frozen=True)
class ChunkHooks:
    """What the chunk loop (services.pipeline.chunks) lends a kind's chunk runner, so every
    kind stops, retries and records failures alike: `check_continue` raises when the job
    was cancelled or the lease lost; exceptions in `passthrough` (that stop, the executor's
    own, lost connections) leave the chunk to the loop; `retry` wraps one store call."""

    check_continue: Callable[[], None]
    retry: Callable[..., Any]
    reason: Callable[[BaseException], str]
    passthrough: tuple[type[BaseException], ...]
    on_target: Callable[[int], None] | None = None


ChunkRunner = Callable[[Store, JobRecord, ChunkRecord, str, ChunkHooks], None]


@dataclass(frozen=True)
class JobKind:
    """One kind of job; each field an import path "module:attribute"."""

    name: str
    spec: str  # the pydantic model a request is checked against
    resolve: str  # (store, spec, owner, ...) -> ResolvedSpec; refuses with SpecError
    submit: str  # the use case the faces call
    # The work of one chunk; None: the chunk loop's own (spectra: services.pipeline.chunks).
    run_chunk: str | None
    report: str  # the kind's report over finished jobs

    def load(self, field: str) -> Any:
        module, _, attribute = str(getattr(self, field)).partition(":")
        return getattr(importlib.import_module(module), attribute)

    def chunk_runner(self) -> ChunkRunner | None:
        runner: ChunkRunner | None = None if self.run_chunk is None else self.load("run_chunk")
        return runner


JOB_KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind(
            name=SPECTRUM_KIND,
            spec="services.job_spec:JobSpec",
            resolve="services.pipeline.spec:resolve_spec",
            submit="services.pipeline.jobs:submit_job",
            run_chunk=None,
            report="services.pipeline.jobs:plan_and_measurement",
        ),
        JobKind(
            name=OPTIMISE_KIND,
            spec="services.optimise_job_spec:OptimiseSpec",
            resolve="services.pipeline.optimise_spec:resolve_optimisation",
            submit="services.pipeline.optimisation:submit_optimisation",
            run_chunk="services.pipeline.optimisation:run_optimisation_chunk",
            report="services.pipeline.optimise_report:report",
        ),
    )
}


def kind_of(resolved: Mapping[str, Any]) -> JobKind:
    """The kind a resolved spec records (none recorded: a spectra job)."""
    name = resolved.get("kind") or SPECTRUM_KIND
    try:
        return JOB_KINDS[str(name)]
    except KeyError:
        known = ", ".join(JOB_KINDS)
        raise ValueError(f"job kind {name!r} is not one of {known}") from None


def is_kind(job: JobRecord, name: str) -> bool:
    return kind_of(job.resolved).name == name
