"""What optimisation jobs achieved: per-job statistics over targets, compared at equal budgets.

Shared by the HTTP routes and the command line. Intervals are percentile bootstraps over
targets (seeded), so a comparison of optimisers is reproducible to the digit.

Budgets: `step_budget` compares every job after the same number of steps (Adam steps, CMA-ES
generations: the smallest step count of the jobs unless given); `evaluation_budget` compares
them after the same number of distance evaluations per target and restart (a gradient step
counts one evaluation; a CMA-ES generation counts its population), which is how a
gradient-free search and a gradient one are set side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from services.geometry.optimise import bootstrap_median, steps_to_threshold
from services.pipeline.kinds import OPTIMISE_KIND, is_kind
from services.pipeline.resolved import ResolvedOptimisation
from services.store import JobRecord, NotFoundError, Store

MAX_JOBS = 8


class ReportError(ValueError):
    """A report that cannot be made as asked (names the field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


@dataclass(frozen=True)
class JobCurves:
    """One optimisation job's stored results, as arrays over its targets."""

    job: JobRecord
    label: str
    target_indices: np.ndarray  # (n,)
    curves: np.ndarray  # (n, steps + 1): best over restarts at each step
    evaluations: np.ndarray  # (steps + 1,) per target and restart
    final_codes: np.ndarray  # (n, d)
    true_codes: np.ndarray | None  # (n, d) when the targets were generated from codes

    @property
    def resolved(self) -> ResolvedOptimisation:
        return ResolvedOptimisation.from_document(self.job.resolved)


def job_label(job: JobRecord) -> str:
    return ResolvedOptimisation.from_document(job.resolved).label


def load_curves(store: Store, job_id: str, owner: str | None) -> JobCurves:
    job = store.get_job(job_id, owner)
    if not is_kind(job, OPTIMISE_KIND):
        raise ReportError("job", f"job {job_id} is not an optimisation job")
    results = store.optimisation_results(job.id)
    if not results:
        raise ReportError("job", f"job {job_id} has no stored results yet ({job.status})")
    indices = np.array([r.target_index for r in results])
    codes = store.target_codes(ResolvedOptimisation.from_document(job.resolved).targets.id)
    return JobCurves(
        job=job,
        label=job_label(job),
        target_indices=indices,
        curves=np.stack([r.curve for r in results]),
        evaluations=np.asarray(results[0].evaluations),
        final_codes=np.stack([r.final_code for r in results]),
        true_codes=None if codes is None else codes[indices],
    )


def report(
    store: Store,
    job_ids: list[str],
    owner: str | None,
    *,
    threshold: float | None = None,
    step_budget: int | None = None,
    evaluation_budget: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Per job: the median (95 % bootstrap interval) over targets of the steps and the
    evaluations to reach `threshold`, the share of targets that reached it, and the loss at
    the equal step and evaluation budgets; and, for generated targets, the distance of the
    final code from the code that made the target."""
    jobs = _jobs(store, job_ids, owner)
    threshold = threshold if threshold is not None else jobs[0].resolved.threshold
    if step_budget is None:
        step_budget = min(job.curves.shape[1] - 1 for job in jobs)
    if evaluation_budget is None:
        evaluation_budget = int(min(job.evaluations[-1] for job in jobs))
    for job in jobs:
        if step_budget > job.curves.shape[1] - 1:
            raise ReportError(
                "step_budget", f"{job.label} ran only {job.curves.shape[1] - 1} steps"
            )
        if evaluation_budget > job.evaluations[-1] or evaluation_budget < 0:
            raise ReportError(
                "evaluation_budget",
                f"{job.label} spent only {int(job.evaluations[-1])} evaluations",
            )
    return {
        "threshold": threshold,
        "step_budget": step_budget,
        "evaluation_budget": evaluation_budget,
        "interval": f"median over targets, 95 % percentile bootstrap (2000 resamples, seed {seed})",
        "jobs": [_job_stats(job, threshold, step_budget, evaluation_budget, seed) for job in jobs],
        "paired": _paired(jobs, step_budget, evaluation_budget, seed),
    }


def _paired(
    jobs: list[JobCurves], step_budget: int, evaluation_budget: int, seed: int
) -> list[dict[str, Any]]:
    """Each job against the first on the targets both finished (same targets, same starts):
    the median over targets of the ratio of their losses, with its bootstrap interval. A
    ratio below 1 means the job got closer than the first one did."""
    first = jobs[0]
    paired = []
    for job in jobs[1:]:
        common, mine, theirs = np.intersect1d(
            job.target_indices, first.target_indices, return_indices=True
        )
        if common.size == 0:
            continue
        at_steps = job.curves[mine, step_budget] / first.curves[theirs, step_budget]
        at_evaluations = (
            loss_at_evaluations(job, evaluation_budget)[mine]
            / loss_at_evaluations(first, evaluation_budget)[theirs]
        )
        paired.append(
            {
                "job_id": job.job.id,
                "label": job.label,
                "against": first.label,
                "n_targets": int(common.size),
                "loss_ratio_at_step_budget": bootstrap_median(at_steps, seed=seed),
                "loss_ratio_at_evaluation_budget": bootstrap_median(at_evaluations, seed=seed),
                "share_of_targets_better_at_step_budget": float(np.mean(at_steps < 1)),
            }
        )
    return paired


def loss_at_evaluations(job: JobCurves, budget: int) -> np.ndarray:
    """(n,) each target's loss after the last step that fits in `budget` evaluations."""
    step = int(np.searchsorted(job.evaluations, budget, side="right") - 1)
    return np.asarray(job.curves[:, max(step, 0)])


def _job_stats(
    job: JobCurves, threshold: float | None, step_budget: int, evaluation_budget: int, seed: int
) -> dict[str, Any]:
    resolved = job.resolved
    stats: dict[str, Any] = {
        "job_id": job.job.id,
        "label": job.label,
        "optimiser": resolved.optimiser,
        "k": resolved.optimiser_options.k,
        "status": job.job.status,
        "n_targets": int(job.curves.shape[0]),
        "steps": int(job.curves.shape[1] - 1),
        "evaluations_per_step": float(job.evaluations[1] - job.evaluations[0]),
        "loss_at_step_budget": bootstrap_median(job.curves[:, step_budget], seed=seed),
        "loss_at_evaluation_budget": bootstrap_median(
            loss_at_evaluations(job, evaluation_budget), seed=seed
        ),
        "final_loss": bootstrap_median(job.curves[:, -1], seed=seed),
    }
    if threshold is not None:
        steps = steps_to_threshold(job.curves, threshold)
        per_step = job.evaluations[1] - job.evaluations[0]
        stats["steps_to_threshold"] = bootstrap_median(steps, seed=seed)
        stats["evaluations_to_threshold"] = bootstrap_median(steps * per_step, seed=seed)
        stats["reached_threshold"] = float(np.isfinite(steps).mean())
    if job.true_codes is not None:
        d = job.true_codes.shape[1]
        errors = np.linalg.norm(job.final_codes - job.true_codes, axis=1) / np.sqrt(d)
        stats["code_rms_error"] = bootstrap_median(errors, seed=seed)
    return stats


def format_report(result: dict[str, Any]) -> str:
    """A plain-text table of a report (the command line prints it)."""

    def cell(stat: dict[str, float] | None, digits: str = ".3g") -> str:
        if stat is None:
            return "-"

        def show(v: float | None) -> str:
            if v is None:  # one target: no interval
                return "-"
            return "never" if not np.isfinite(v) else format(v, digits)

        return f"{show(stat['median'])} [{show(stat['low'])}, {show(stat['high'])}]"

    header = (
        f"{'optimiser':<24}{'targets':>8}  {'steps to ' + str(result['threshold']):<24}"
        f"{'reached':>8}  {'loss @ step ' + str(result['step_budget']):<30}"
        f"{'loss @ ' + str(result['evaluation_budget']) + ' evals':<30}{'code rms error':<26}"
    )
    lines = [header, "-" * len(header)]
    for job in result["jobs"]:
        reached = job.get("reached_threshold")
        lines.append(
            f"{job['label']:<24}{job['n_targets']:>8}  {cell(job.get('steps_to_threshold'), '.0f'):<24}"
            f"{'-' if reached is None else f'{reached:.0%}':>8}  {cell(job['loss_at_step_budget']):<30}"
            f"{cell(job['loss_at_evaluation_budget']):<30}{cell(job.get('code_rms_error')):<26}"
        )
    for pair in result.get("paired", []):
        lines.append(
            f"{pair['label']} / {pair['against']}: loss ratio @ step {result['step_budget']} "
            f"{cell(pair['loss_ratio_at_step_budget'])}, @ {result['evaluation_budget']} evals "
            f"{cell(pair['loss_ratio_at_evaluation_budget'])}; better on "
            f"{pair['share_of_targets_better_at_step_budget']:.0%} of {pair['n_targets']} targets"
        )
    lines.append(f"({result['interval']})")
    return "\n".join(lines)


def convergence_figure(
    store: Store,
    job_ids: list[str],
    owner: str | None,
    *,
    x_axis: str = "steps",
    threshold: float | None = None,
    fmt: str = "png",
) -> bytes:
    """The convergence plot of the jobs (one line each)."""
    from services.optimisation_plots import convergence_plot

    jobs = _jobs(store, job_ids, owner)
    threshold = threshold if threshold is not None else jobs[0].resolved.threshold
    model = jobs[0].resolved.model
    distance = jobs[0].resolved.distance
    return convergence_plot(
        [(job.label, job.curves, job.evaluations) for job in jobs],
        x_axis=x_axis,
        threshold=threshold,
        fmt=fmt,
        title=f"Inverting {model} images ({distance})",
    )


def montage_figure(
    store: Store,
    job_ids: list[str],
    owner: str | None,
    *,
    max_targets: int = 8,
    fmt: str = "png",
) -> bytes:
    """Targets beside each job's reconstructions; the jobs must share their targets."""
    from services.optimisation_plots import inversion_montage

    jobs = _jobs(store, job_ids, owner)
    target_sets = {job.resolved.targets.id for job in jobs}
    if len(target_sets) != 1:
        raise ReportError("job", "a montage needs jobs on the same targets (one target set)")
    shown = sorted(set.intersection(*(set(job.target_indices.tolist()) for job in jobs)))
    shown = shown[:max_targets]
    if not shown:
        raise ReportError("job", "the jobs have no target with a stored result in common")
    targets = store.target_images(target_sets.pop())[shown]
    panels = []
    for job in jobs:
        images = store.optimisation_images(job.job.id)
        rows = [int(np.flatnonzero(job.target_indices == i)[0]) for i in shown]
        panels.append((job.label, np.stack([images[i] for i in shown]), job.curves[rows, -1]))
    return inversion_montage(targets, panels, fmt=fmt)


def _jobs(store: Store, job_ids: list[str], owner: str | None) -> list[JobCurves]:
    if not 1 <= len(job_ids) <= MAX_JOBS:
        raise ReportError("job", f"give between 1 and {MAX_JOBS} optimisation jobs")
    try:
        return [load_curves(store, job_id, owner) for job_id in job_ids]
    except NotFoundError as error:
        raise ReportError("job", str(error)) from error
