"""``spectra optimise`` and ``spectra optimise-report``: optimisation jobs from the command line
(embedded store, in-process runner), their comparison table and figures.

The options of ``optimise`` are generated from ``OptimiseSpec`` (``--learning-rate`` is
``learning_rate``, ...), plus the ways to name targets and a basis.
"""

from __future__ import annotations

import argparse
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.cli.connect import open_store
from api.cli.errors import LOCAL_OWNER, CliError
from api.cli.options import database_option
from api.cli.registry import Commands
from api.cli.spec_options import unwrap_optional
from services.figure_formats import FIGURE_FORMATS

if TYPE_CHECKING:
    import numpy as np

    from services.optimise_job_spec import OptimiseSpec

OpenStore = Callable[[str | None], Any]
SPECIAL_FIELDS = ("kind", "targets", "basis")


def register(commands: Commands) -> None:
    """Add the two commands to the `spectra` parser (embedded store, owner `local`)."""

    def optimise(args: argparse.Namespace) -> int:
        return cmd_optimise(args, open_store(args.database), LOCAL_OWNER)

    def optimisation_report(args: argparse.Namespace) -> int:
        return cmd_report(args, open_store)

    run = commands.add(
        "optimise",
        optimise,
        "invert target images with an optimiser that may "
        "use a stored eigenbasis (embedded); prints the job id last",
    )
    if commands.optimise_options:
        # Generated from OptimiseSpec, whose module loads the geometry core (torch): only
        # when this command runs.
        add_optimise_options(run)
    database_option(run)

    rep = commands.add(
        "optimise-report",
        optimisation_report,
        "compare optimisation jobs: steps to a loss "
        "threshold and loss at equal budgets (medians, 95 %% bootstrap intervals)",
    )
    rep.add_argument("jobs", nargs="+", metavar="JOB_ID")
    rep.add_argument("--threshold", type=float, default=None, help="loss threshold")
    rep.add_argument("--step-budget", type=int, default=None, help="compare after this many steps")
    rep.add_argument(
        "--evaluation-budget",
        type=int,
        default=None,
        help="compare after this many distance evaluations per target",
    )
    rep.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    rep.add_argument(
        "--plots", metavar="DIR", help="write convergence and montage figures into DIR"
    )
    rep.add_argument(
        "--formats", default="png", help="figure formats, comma-separated: png,svg,pdf"
    )
    rep.add_argument("--max-targets", type=int, default=8, help="targets in the montage")
    rep.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    database_option(rep)


def add_optimise_options(run: argparse.ArgumentParser) -> None:
    """One option per OptimiseSpec field, plus the ways to name targets and a basis."""
    from services.optimise_job_spec import OptimiseSpec

    group = run.add_argument_group("optimisation spec (the fields of the HTTP spec, one to one)")
    for name, info in OptimiseSpec.model_fields.items():
        if name in SPECIAL_FIELDS:
            continue
        kwargs: dict[str, Any] = {"default": None, "dest": name, "help": info.description or name}
        annotation = unwrap_optional(info.annotation)
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(annotation) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(annotation))
        group.add_argument("--" + name.replace("_", "-"), **kwargs)
    targets = run.add_argument_group("targets (exactly one)")
    targets.add_argument(
        "--targets",
        metavar="N | FILE.png|FILE.npy ...",
        nargs="+",
        help="N images generated from sampled codes, or image files",
    )
    targets.add_argument("--target-seed", type=int, default=0, help="seed of the sampled codes")
    targets.add_argument("--target-set", metavar="ID", help="a stored target set")
    targets.add_argument("--latent-set", metavar="ID", help="images generated from a latent set")
    basis = run.add_argument_group("basis (adam-eigenbasis, adam-topk, cma-topk)")
    basis.add_argument("--basis-job", metavar="ID", help="average metric of a spectra job")
    basis.add_argument("--basis-spectrum", metavar="ID", help="one stored spectrum")
    run.add_argument("--quiet", action="store_true", help="no progress display (default: off)")


def spec_from_args(args: argparse.Namespace) -> tuple[OptimiseSpec, np.ndarray | None]:
    """The spec, and the images read from target files (or None)."""
    import numpy as np
    from pydantic import ValidationError

    from services.pipeline.optimise_spec import OptimiseSpec, decode_target_file

    fields: dict[str, Any] = {
        name: getattr(args, name)
        for name in OptimiseSpec.model_fields
        if name not in SPECIAL_FIELDS and getattr(args, name, None) is not None
    }
    given = [flag for flag in ("targets", "target_set", "latent_set") if getattr(args, flag)]
    if len(given) != 1:
        raise CliError("give the targets exactly one way: --targets, --target-set or --latent-set")
    images = None
    if args.target_set:
        fields["targets"] = {"target_set": args.target_set}
    elif args.latent_set:
        fields["targets"] = {"set": args.latent_set}
    elif len(args.targets) == 1 and args.targets[0].isdigit():
        fields["targets"] = {"count": int(args.targets[0]), "seed": args.target_seed}
    else:
        arrays = []
        for name in args.targets:
            path = Path(name)
            if not path.is_file():
                raise CliError(f"--targets {name!r} is neither a number nor an image file")
            arrays.append(decode_target_file(path.read_bytes(), path.name))
        if len({a.shape[1:] for a in arrays}) != 1:
            raise CliError("the target files differ in image shape")
        images = np.concatenate(arrays)
    if args.basis_job and args.basis_spectrum:
        raise CliError("give either --basis-job or --basis-spectrum, not both")
    if args.basis_job:
        fields["basis"] = {"job": args.basis_job}
    elif args.basis_spectrum:
        fields["basis"] = {"spectrum": args.basis_spectrum}
    try:
        return OptimiseSpec.model_validate(fields), images
    except ValidationError as error:
        reasons = "; ".join(
            f"--{'.'.join(str(p) for p in e['loc']).replace('_', '-') or 'spec'}: {e['msg']}"
            for e in error.errors()
        )
        raise CliError(f"invalid optimisation spec: {reasons}") from None


def cmd_optimise(args: argparse.Namespace, store: Any, owner: str) -> int:
    from api.client.progress import ProgressDisplay
    from services.config import get_settings  # the edge reads the settings
    from services.pipeline import run_job_inprocess
    from services.pipeline.optimisation import submit_optimisation
    from services.pipeline.optimise_report import format_report, report

    spec, images = spec_from_args(args)
    job, created = submit_optimisation(
        store, spec, owner, None, images=images, settings=get_settings()
    )
    print(
        f"job {job.id} {'created' if created else 'already exists'} ({job.n_latents} targets, "
        f"{spec.optimiser})"
    )
    display = ProgressDisplay(
        job.n_latents, unit="target", desc=spec.optimiser, enabled=not args.quiet
    )
    job = run_job_inprocess(store, job.id, display.update)
    display.close()
    print(
        f"status {job.status}: {job.n_done} done, {job.n_failed} failed"
        + (f" ({job.error})" if job.error else "")
    )
    if job.n_done:
        print(format_report(report(store, [job.id], None)))
    print(job.id)
    return 0 if job.status == "succeeded" else 1


def cmd_report(args: argparse.Namespace, open_store: OpenStore) -> int:
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FIGURE_FORMATS))
    if unknown:
        raise CliError(f"unknown figure formats {unknown}; choose from {', '.join(FIGURE_FORMATS)}")
    from services.pipeline.optimise_report import (
        convergence_figure,
        format_report,
        montage_figure,
        report,
    )

    store = open_store(args.database)
    result = report(
        store,
        args.jobs,
        None,
        threshold=args.threshold,
        step_budget=args.step_budget,
        evaluation_budget=args.evaluation_budget,
        seed=args.seed,
    )
    print(format_report(result))
    if args.plots:
        out = Path(args.plots)
        out.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            figures = {
                f"convergence-steps.{fmt}": convergence_figure(
                    store, args.jobs, None, x_axis="steps", threshold=result["threshold"], fmt=fmt
                ),
                f"convergence-evaluations.{fmt}": convergence_figure(
                    store,
                    args.jobs,
                    None,
                    x_axis="evaluations",
                    threshold=result["threshold"],
                    fmt=fmt,
                ),
                f"inversions.{fmt}": montage_figure(
                    store, args.jobs, None, max_targets=args.max_targets, fmt=fmt
                ),
            }
            for name, data in figures.items():
                (out / name).write_bytes(data)
                print(f"wrote {out / name}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 0
