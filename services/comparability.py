"""What makes two stored spectra comparable, and what makes two of them the same position.

A comparison may only pool spectra that agree on everything that shapes the numbers: the
model's weights (sha256), its latent space and truncation (``space``, ``psi``) when the job
has them, the distance with its options (a random LPIPS backbone is its own distance, and its
label says so), the method with its options, the dtype, and how many eigenpairs are kept.
`ComparabilityKey` is that record; `group_rows` splits a selection by it and drops repeats of
one position (the same key and the same code, however many jobs or imports hold it).

`alignment_coordinates` says whether two keys' spectra live in the same coordinates (only then
may directions be aligned): the same latent space and, for learned spaces (a mapping network's
w, w+), the same weights. Different spaces are refused, naming them, unless the request names a
transport the core does exactly (services.geometry.transports: w ↔ w+, z ↔ w at the same code).

Pure: it reads the job's resolved spec and a spectrum's columns, never the store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.job_spec import RANDOM_BACKBONE_SUFFIX
from services.model_catalogue import canonical_space
from services.store.errors import InvalidDataError

# Job statuses whose spectra are a complete run; the others are left out unless asked for.
COMPLETE_STATUSES = ("succeeded",)
SEFA_DISTANCE = "none"  # how the pipeline stores direction methods' (absent) distance
DIRECTION_METHODS = ("sefa", "ganspace")


@dataclass(frozen=True)
class ComparabilityKey:
    model: str
    weights_sha256: str | None
    space: str | None
    psi: float | None
    distance: str
    distance_options: tuple[tuple[str, Any], ...]
    method: str
    method_options: tuple[tuple[str, Any], ...]
    dtype: str
    kept: str  # "all" or "top-<k>"

    def distance_label(self) -> str:
        """The distance as it must be shown: options in brackets, a random LPIPS backbone
        named (its spectra are not those of the real LPIPS)."""
        options = dict(self.distance_options)
        named = RANDOM_BACKBONE_SUFFIX in self.distance  # stored so since the name says it
        random = options.pop("random_backbone", False)
        parts = ["random backbone"] if random and not named else []
        parts += [f"{name}={value}" for name, value in sorted(options.items())]
        return self.distance + (f" ({', '.join(parts)})" if parts else "")

    def label(self) -> str:
        """model[space, ψ]/distance/method[options] — never a file path."""
        model = display_model(self.model)
        extras = [f"space={self.space}"] if self.space and self.space != "z" else []
        if self.psi is not None and self.psi != 1:
            extras.append(f"psi={self.psi:g}")
        if extras:
            model += f" [{', '.join(extras)}]"
        method = self.method
        if self.method_options:
            method += " (" + ", ".join(f"{k}={v}" for k, v in self.method_options) + ")"
        pieces = [model] + ([] if self.is_directions() else [self.distance_label()]) + [method]
        return "/".join(pieces)

    def is_directions(self) -> bool:
        return self.method in DIRECTION_METHODS or self.distance == SEFA_DISTANCE

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "weights_sha256": self.weights_sha256,
            "space": self.space,
            "psi": self.psi,
            "distance": self.distance,
            "distance_label": self.distance_label(),
            "distance_options": dict(self.distance_options),
            "method": self.method,
            "method_options": dict(self.method_options),
            "dtype": self.dtype,
            "kept": self.kept,
            "label": self.label(),
        }


_PATH_SCHEMES = ("python:", "torchscript:", "biggan-deep:", "stylegan2:", "stylegan2-ada:")


def display_model(model: str) -> str:
    """A model name as labels show it: file-based names keep their scheme and the file's
    name, not its directories (``python:/a/b/gen.py:build`` -> ``python:gen.py:build``);
    control prefixes (``shuffled:0:``) are kept."""
    prefix = ""
    for control in ("shuffled:", "random-init:"):
        if model.startswith(control):
            seed, _, base = model.removeprefix(control).partition(":")
            prefix, model = f"{control}{seed}:", base
            break
    for scheme in _PATH_SCHEMES:
        if model.startswith(scheme):
            rest = model.removeprefix(scheme)
            if scheme == "python:" and ":" in rest:
                location, _, factory = rest.rpartition(":")
                return f"{prefix}{scheme}{location.rsplit('/', 1)[-1]}:{factory}"
            return f"{prefix}{scheme}{rest.rstrip('/').rsplit('/', 1)[-1]}"
    return prefix + model


def _options(value: Any) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, dict):
        return ()
    return tuple(sorted((str(k), _hashable(v)) for k, v in value.items() if v is not None))


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    return value


def comparability_key(
    resolved: dict[str, Any],
    *,
    model: str,
    distance: str,
    method: str,
    dtype: str,
    k: int,
    d: int,
) -> ComparabilityKey:
    """The key of one stored spectrum, from its job's resolved spec and its own columns. An
    imported job carries the resolved spec of the job it was exported from, when the file
    said it (``source_resolved``); otherwise only what the file named is known."""
    source = resolved.get("source_resolved") if resolved.get("imported") else resolved
    spec: dict[str, Any] = source if isinstance(source, dict) else {}
    generator: dict[str, Any] = spec.get("generator") or {}
    facts: dict[str, Any] = generator.get("facts") or {} if isinstance(generator, dict) else {}
    psi = spec.get("psi")
    return ComparabilityKey(
        model=model,
        weights_sha256=facts.get("weights_sha256") if isinstance(facts, dict) else None,
        space=canonical_space(
            generator.get("family") if isinstance(generator, dict) else None, spec["space"]
        )
        if isinstance(spec.get("space"), str)
        else None,
        psi=float(psi) if isinstance(psi, int | float) and not isinstance(psi, bool) else None,
        distance=distance,
        distance_options=_options(spec.get("distance_options")),
        method=method,
        method_options=_options(spec.get("method_options")),
        dtype=dtype,
        kept="all" if k >= d else f"top-{k}",
    )


@dataclass(frozen=True)
class SelectedRow:
    """One stored spectrum as a selection sees it (no arrays beyond the code's digest)."""

    spectrum_id: str
    job_id: str
    job_status: str
    latent_index: int
    key: ComparabilityKey
    code_sha256: str | None  # None for direction methods (no code)


def code_digest(code: bytes | None) -> str | None:
    return None if code is None else hashlib.sha256(code).hexdigest()


@dataclass
class Group:
    """Spectra of one comparability key: the rows kept (one per position) and what was left
    out."""

    key: ComparabilityKey
    rows: list[SelectedRow] = field(default_factory=list)
    duplicates: int = 0
    job_ids: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            **self.key.to_json(),
            "n_spectra": len(self.rows),
            "duplicates_dropped": self.duplicates,
            "job_ids": self.job_ids,
        }


@dataclass
class Grouping:
    groups: list[Group]
    partial_left_out: dict[str, int]  # status -> number of spectra left out


def group_rows(rows: Iterable[SelectedRow], *, include_partial: bool = False) -> Grouping:
    """Split rows by comparability key (in first-seen order), keeping each position once:
    rows come ordered by job creation and latent index, so the first job's copy is kept."""
    groups: dict[ComparabilityKey, Group] = {}
    seen: set[tuple[ComparabilityKey, str | None]] = set()
    partial: dict[str, int] = {}
    for row in rows:
        if row.job_status not in COMPLETE_STATUSES and not include_partial:
            partial[row.job_status] = partial.get(row.job_status, 0) + 1
            continue
        group = groups.setdefault(row.key, Group(row.key))
        # A position is its code under this key; directions (no code) are one per key.
        position = (row.key, row.code_sha256)
        if position in seen:
            group.duplicates += 1
            continue
        seen.add(position)
        group.rows.append(row)
        if row.job_id not in group.job_ids:
            group.job_ids.append(row.job_id)
    return Grouping([g for g in groups.values() if g.rows or g.duplicates], partial)


def differing_fields(keys: Sequence[ComparabilityKey]) -> list[str]:
    """The key fields on which these keys disagree (what a user must pin down)."""
    if len(keys) < 2:
        return []
    first = keys[0].to_json()
    names = [n for n in first if n not in ("label", "distance_label")]
    return [n for n in names if any(k.to_json()[n] != first[n] for k in keys[1:])]


def canonical(key: ComparabilityKey) -> str:
    """A stable string form of a key (for campaign member names, caches)."""
    return json.dumps(key.to_json(), sort_keys=True, default=str)


# Spaces that a network computes from the input noise: their coordinates belong to the weights.
LEARNED_SPACES = ("w", "w+")
# space pairs -> the exact transports between them (services.geometry.transports.TRANSPORTS)
SPACE_TRANSPORTS: dict[frozenset[str], tuple[str, ...]] = {
    frozenset({"w", "w+"}): ("w->w+", "w+->w"),
    frozenset({"z", "w"}): ("z->w", "w->z"),
}


class SpacesDifferError(InvalidDataError):
    """Two spectra in different coordinates asked to be aligned: the spaces named, and the
    exact transports that would make them comparable (if any)."""


def space_of(key: ComparabilityKey) -> str:
    """The latent space a key's spectra live in (jobs without a space are in z)."""
    return key.space or "z"


def alignment_coordinates(
    a: ComparabilityKey, b: ComparabilityKey, *, transport: str | None = None
) -> dict[str, Any]:
    """The coordinates two keys' directions are aligned in: {"space_a", "space_b",
    "transport"} (transport None: the same coordinates as they are). Raises SpacesDifferError
    naming both spaces where they differ and no fitting exact transport was asked for, or where
    one learned space (w, w+) belongs to different weights."""
    space_a, space_b = space_of(a), space_of(b)
    described = f"{a.label()} is in {space_a!r}, {b.label()} in {space_b!r}"
    if space_a == space_b:
        if transport is not None:
            raise SpacesDifferError(
                f"transport {transport!r} asked for, but both are in {space_a!r}: leave it out"
            )
        if space_a in LEARNED_SPACES and a.weights_sha256 != b.weights_sha256:
            raise SpacesDifferError(
                f"{described}, but of different weights: a learned space's coordinates are its "
                "own mapping network's, so their directions are not aligned"
            )
        return {"space_a": space_a, "space_b": space_b, "transport": None}
    exact = SPACE_TRANSPORTS.get(frozenset({space_a, space_b}), ())
    if not exact:
        raise SpacesDifferError(
            f"{described}: different coordinates, and no exact transport joins them; compare "
            "spectra of one space"
        )
    if a.weights_sha256 is None or a.weights_sha256 != b.weights_sha256:
        raise SpacesDifferError(
            f"{described}: a transport ({', '.join(exact)}) is exact only within one model's "
            "weights, and these differ or are unknown"
        )
    if transport not in exact:
        raise SpacesDifferError(
            f"{described}: different coordinates, not aligned as they are; ask for one of the "
            f"exact transports {', '.join(exact)}"
            + (f" (not {transport!r})" if transport is not None else "")
        )
    return {"space_a": space_a, "space_b": space_b, "transport": transport}
