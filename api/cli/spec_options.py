"""The job-spec options, generated from ``JobSpec`` itself so they mirror the HTTP spec one to
one: ``--top-k`` is ``top_k``, ``--chunk-size`` is ``chunk_size``, and so on."""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.cli.errors import CliError

if TYPE_CHECKING:
    import numpy as np

    from services.job_spec import JobSpec


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def names_or_indices(text: str) -> list[int | str]:
    """``conv1,convs.0`` or ``0,2``: names stay text, numbers become indices (JobSpec checks
    them, with its messages)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    return [int(part) if part.isdigit() else part for part in parts]


def unwrap_optional(annotation: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def add_spec_options(parser: argparse.ArgumentParser) -> None:
    """One option per JobSpec field; ``latents`` becomes --latents N|FILE.npy, --seed,
    --latent-set (the three ways a spec names its codes)."""
    from services.job_spec import JobSpec

    group = parser.add_argument_group("job spec (the fields of the HTTP spec, one to one)")
    for name, info in JobSpec.model_fields.items():
        if name == "latents":
            group.add_argument(
                "--latents",
                metavar="N|FILE.npy",
                help='codes: a number to sample (latents {"count": N}) or a .npy file of codes '
                '(latents {"values": ...}); Hessian methods need them, sefa and ganspace take '
                "none (default: unset)",
            )
            group.add_argument(
                "--seed", type=int, help="seed of the sampled codes (latents.seed) (default: 0)"
            )
            group.add_argument(
                "--latent-set",
                metavar="ID",
                help='a stored latent set (latents {"set": ID}) (default: unset)',
            )
            continue
        annotation = unwrap_optional(info.annotation)
        text = option_help(name, info.description, info.default)
        kwargs: dict[str, Any] = {"default": None, "help": text, "dest": name}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(annotation) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(annotation))
        elif typing.get_origin(annotation) is list:
            kwargs["type"] = names_or_indices
            kwargs["metavar"] = "NAME,NAME,...|I,J,..."
        # Everything else is passed as text; JobSpec parses and checks it, with its messages.
        group.add_argument(flag(name), **kwargs)


def option_help(name: str, description: str | None, default: Any) -> str:
    """The field's description, the methods it applies to, and its default. The option's own
    default stays None (JobSpec fills in its defaults, so the spec hash is the HTTP one); the
    text shows what a run gets without the option."""
    from services.method_registry import METHOD_REGISTRY

    methods = [m for m, info in METHOD_REGISTRY.items() if name in info.job_options]
    parts = [description or name.replace("_", " ")]
    if methods:
        parts.append(f"[{', '.join(methods)} only]")
    shown = "unset" if default is None else str(default)
    parts.append(f"(default: {shown})")
    return " ".join(parts).replace("%", "%%")


def spec_fields_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], np.ndarray | None]:
    """The spec as a dict (without codes read from a file) and the codes from --latents FILE."""
    from services.job_spec import JobSpec

    fields: dict[str, Any] = {
        name: getattr(args, name)
        for name in JobSpec.model_fields
        if name != "latents" and getattr(args, name, None) is not None
    }
    codes = None
    chosen = [
        option
        for option, value in (("--latents", args.latents), ("--latent-set", args.latent_set))
        if value
    ]
    if len(chosen) > 1:
        raise CliError("give either --latents or --latent-set, not both")
    if args.latent_set:
        fields["latents"] = {"set": args.latent_set}
    elif args.latents:
        text = str(args.latents)
        if text.isdigit():
            fields["latents"] = {"count": int(text), "seed": 0 if args.seed is None else args.seed}
        else:
            codes = read_codes(text)
    if args.seed is not None and "latents" in fields and "count" not in fields["latents"]:
        raise CliError("--seed applies only to sampled codes (--latents N)")
    return fields, codes


def read_codes(text: str) -> np.ndarray:
    """The codes of ``--latents FILE.npy``, one per row."""
    path = Path(text)
    if not path.is_file():
        raise CliError(f"--latents {text!r} is neither a number of codes nor a .npy file")
    import numpy as np

    try:
        codes = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise CliError(f"cannot read codes from {path}: {error}") from None
    return np.atleast_2d(np.asarray(codes, dtype=np.float64))


def build_spec(fields: dict[str, Any], codes: np.ndarray | None) -> JobSpec:
    from pydantic import ValidationError

    from services.job_spec import JobSpec

    if codes is not None:
        fields = {**fields, "latents": {"values": codes.tolist()}}
    try:
        return JobSpec.model_validate(fields)
    except ValidationError as error:
        reasons = "; ".join(_reason(e["loc"], e["msg"]) for e in error.errors())
        raise CliError(f"invalid job spec: {reasons}") from None


def _reason(location: tuple[int | str, ...], message: str) -> str:
    """``--latents.count: ...``: the option of the field, then the path inside it."""
    head = flag(str(location[0])) if location else "spec"
    tail = "." + ".".join(str(p) for p in location[1:]) if len(location) > 1 else ""
    return f"{head}{tail}: {message}"
