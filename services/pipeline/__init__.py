"""Jobs: the spec, planning, the chunk function and the executors' glue. No SQL here: every
read and write goes through services.store.Store."""

from services.pipeline.chunks import run_chunk
from services.pipeline.inprocess import run_job_inprocess
from services.pipeline.jobs import cancel_job, dry_run_job, plan_and_measurement, submit_job
from services.pipeline.spec import JobSpec, ResolvedSpec, SpecError, resolve_spec, spec_hash

__all__ = [
    "JobSpec",
    "ResolvedSpec",
    "SpecError",
    "cancel_job",
    "dry_run_job",
    "plan_and_measurement",
    "resolve_spec",
    "run_chunk",
    "run_job_inprocess",
    "spec_hash",
    "submit_job",
]
