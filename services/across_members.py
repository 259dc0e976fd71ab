"""What a comparison concludes across its members (the use case's part; the numbers come from
services.geometry): one k for every member's homogeneity, paired comparisons over shared
positions, and alignments across spaces through an exact transport.

- Homogeneity depends on k (the same codes give different values from every eigenpair and
  from the top 20): `common_k` is the k every member has, used for all and stated.
- Members over the same codes (a model and its control over one set of z codes, two
  distances at one code) are compared position by position: `paired_members`.
- Members in different spaces are aligned only through a transport
  (services.geometry.transports) the request names:
  ``w+->w``: the w+ member's average metric folded onto w (the sum of its L × L blocks: the
  mean of folded metrics is the folded mean), aligned with the w member's, in w;
  ``w->w+``: the w member's directions repeated in every layer slot, aligned with the w+
  member's average metric, in w+;
  ``w->z``: positions matched by the mapping (a w code is the mapped z code: the same draws),
  each w metric pulled back to z through the Jacobian at its z code (truncation ψ included),
  averaged and aligned with the z member's average over the same positions; the matched
  positions are also compared position by position, so "is the geometry of W simpler than Z
  at the same codes" is this one comparison.
  Pushed-forward directions (``z->w``) exist per code only (J differs from code to code): a
  comparison of averages asks for ``w->z``, which is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from services import geometry
from services.comparability import ComparabilityKey, SpacesDifferError, space_of
from services.geometry import paired as geometry_paired
from services.geometry import transports
from services.patterns import names_a_file
from services.store import InvalidDataError, Store

COMPARISON_TRANSPORTS = ("w+->w", "w->w+", "w->z")
_SPACES = {"w+->w": ("w", "w+"), "w->w+": ("w", "w+"), "w->z": ("z", "w"), "z->w": ("z", "w")}

Average = Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]


class Member(Protocol):
    """What a transported alignment reads of a loaded selection."""

    label: str
    key: ComparabilityKey
    d: int
    spectrum_ids: list[str]
    vector_k: int
    eigenvalues: np.ndarray
    full_eigenvalues: np.ndarray | None
    code_digests: list[str | None]

    def is_directions(self) -> bool: ...


def common_k(members: Sequence[Member], notes: list[str]) -> int | None:
    """The k of eigenpairs per position every member's homogeneity uses: the smallest any of
    them has, said in the notes where it cuts some."""
    ks = [m.vector_k for m in members if m.eigenvalues.shape[0] >= 2 and not m.is_directions()]
    if not ks:
        return None
    common = min(ks)
    if len(ks) > 1 and max(ks) > common:
        notes.append(
            f"homogeneity of every member over its top {common} eigenpairs per position, the "
            "k they all have (homogeneity depends on k: members are compared at one k)"
        )
    return common


def paired_members(members: Sequence[Member], seed: int) -> list[dict[str, Any]]:
    """Every two members holding two or more of the same codes, compared position by
    position (paired differences of the per-position figures, bootstrap intervals)."""
    results: list[dict[str, Any]] = []
    for i, a in enumerate(members):
        for b in members[i + 1 :]:
            if a.is_directions() or b.is_directions():
                continue
            result = geometry_paired.paired_comparison(
                _all_eigenvalues(a),
                _all_eigenvalues(b),
                a.code_digests,
                b.code_digests,
                full_a=_full(a),
                full_b=_full(b),
                seed=seed,
            )
            if result is not None:
                results.append({"a": a.label, "b": b.label, "matched_by": "code", **result})
    return results


def _all_eigenvalues(member: Member) -> np.ndarray:
    return member.eigenvalues if member.full_eigenvalues is None else member.full_eigenvalues


def _full(member: Member) -> bool:
    return member.full_eigenvalues is not None or member.key.kept == "all"


def spectrum_generator(store: Store, spectrum_id: str, device: str = "cpu") -> Any:
    """The generator a stored spectrum was computed on, in its job's space (z, or a
    StyleGAN2's w / w+) with its ψ: the codes and eigenvectors live there. In float32 (the
    moves copy what they need to float64). An imported job whose model names a file is refused
    (InvalidDataError): its label came with someone's file and is kept as data, never loaded
    (loading would run or unpickle whatever it names on this machine)."""
    from services.pipeline.cache import cached_generator

    record = store.get_spectrum(spectrum_id)
    resolved = store.get_job(record.job_id).resolved
    if resolved.get("imported") and names_a_file(record.model):
        raise InvalidDataError(
            f"job {record.job_id[:8]} was imported: its model {record.model!r} names a file "
            "and is kept as data only, never loaded; compute the spectra here to draw them"
        )
    space = resolved.get("space") or "z"
    return cached_generator(record.model, device, "float32", space, resolved.get("psi"))


def sefa_scale_notes(store: Store, members: Sequence[Member], notes: list[str]) -> None:
    """Where a SeFa member's eigenvalues are not at the published scale (raw rows keep the
    equal-lr scale 1/√in_dim in A), say the factor beside them."""
    for member in members:
        if member.key.method != "sefa" or not member.spectrum_ids:
            continue
        diagnostics = store.get_spectrum(member.spectrum_ids[0]).diagnostics or {}
        factor = diagnostics.get("published_scale_factor")
        if isinstance(factor, int | float) and factor != 1:
            notes.append(
                f"{member.label}: SeFa eigenvalues keep the equal-lr scale "
                f"{diagnostics.get('equal_lr_scale')} of the style weights, so they are 1/{factor:g} "
                f"of rosinality's closed_form_factorization (x{factor:g} for the published scale; "
                f"preset {diagnostics.get('preset')}, layers {diagnostics.get('layer_names')})"
            )


def fitting_transport(
    transport: str | None, a: ComparabilityKey, b: ComparabilityKey
) -> str | None:
    """The requested transport where it joins these two keys' spaces, else None."""
    if transport is None:
        return None
    spaces = {space_of(a), space_of(b)}
    return transport if len(spaces) == 2 and spaces == set(_SPACES[transport]) else None


def transported_alignment(
    transport: str,
    a: Member,
    b: Member,
    *,
    average_a: Average,
    average_b: Average,
    k: int,
    store: Store,
    generator_of: Callable[[str], Any],
    max_positions: int,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the alignment entry, the paired comparison or None) of `a` and `b` through
    `transport`. `generator_of(spectrum_id)` loads the generator a spectrum was computed on."""
    if transport == "z->w":
        raise SpacesDifferError(
            "z->w pushes directions forward code by code (J differs between codes); to align "
            "averages ask for w->z, the w metrics pulled back to z, which is exact"
        )
    if transport in ("w+->w", "w->w+"):
        w, wplus = (a, b) if space_of(a.key) == "w" else (b, a)
        average_w, average_wplus = (average_a, average_b) if w is a else (average_b, average_a)
        return _w_and_wplus(transport, w, wplus, average_w, average_wplus, k), None
    z, w = (a, b) if space_of(a.key) == "z" else (b, a)
    return _z_and_w(z, w, k=k, store=store, generator_of=generator_of, limit=max_positions)


def _w_and_wplus(
    transport: str, w: Member, wplus: Member, average_w: Average, average_wplus: Average, k: int
) -> dict[str, Any]:
    if wplus.d % w.d:
        raise SpacesDifferError(f"{wplus.label} (d = {wplus.d}) is not w+ of {w.label} (d = {w.d})")
    layers = wplus.d // w.d
    metric_w, _, vectors_w = average_w()
    metric_wplus, _, vectors_wplus = average_wplus()
    kk = min(k, w.vector_k, wplus.vector_k)
    if transport == "w+->w":
        folded = transports.fold_metric(metric_wplus, layers)
        values, vectors = np.linalg.eigh(folded)
        order = np.argsort(values)[::-1]
        result = geometry.alignment(vectors_w[:, :kk], vectors[:, order[:kk]], metric=folded, k=kk)
        coordinates = "w (the w+ average metric folded onto w: the sum of its L x L blocks)"
        names = (w.label, f"{wplus.label} folded onto w")
    else:
        lifted = transports.repeat_directions(vectors_w[:, :kk], layers)
        result = geometry.alignment(lifted, vectors_wplus[:, :kk], metric=metric_wplus, k=kk)
        coordinates = "w+ (each w direction repeated in every layer slot)"
        names = (f"{w.label} repeated in w+", wplus.label)
    return {
        "a": names[0],
        "b": names[1],
        "kind": f"across-spaces ({transport})",
        "k": kk,
        "transport": transport,
        "coordinates": coordinates,
        "layer_slots": layers,
        **result,
    }


def _z_and_w(
    z: Member,
    w: Member,
    *,
    k: int,
    store: Store,
    generator_of: Callable[[str], Any],
    limit: int,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    if (z.key.psi or 1.0) != (w.key.psi or 1.0):
        raise SpacesDifferError(
            f"{z.label} has psi {z.key.psi or 1.0:g}, {w.label} psi {w.key.psi or 1.0:g}: the "
            "mapping that joins them must be one (select jobs of one truncation)"
        )
    generator = generator_of(z.spectrum_ids[0])
    module = transports.style_module(generator.module, z.label)
    z_ids, w_ids = z.spectrum_ids[:limit], w.spectrum_ids
    z_codes, w_codes = _codes(store, z_ids), _codes(store, w_ids)
    index_z, index_w = transports.match_mapped_codes(module, z_codes, w_codes)
    if index_z.size == 0:
        raise SpacesDifferError(
            f"no code of {w.label} is the mapped code of one of {z.label}: w->z needs the two "
            "jobs to hold the same draws (the same latents seed and count)"
        )
    kv_z, kv_w = z.vector_k, w.vector_k
    matched_z = [z_ids[i] for i in index_z]
    matched_w = [w_ids[i] for i in index_w]
    pulled = transports.pulled_back_average(
        module,
        z_codes[index_z],
        w.eigenvalues[index_w, :kv_w],
        store.top_k_eigenvectors(matched_w, kv_w),
    )
    _, _, vectors_z = geometry.average_metric(
        z.eigenvalues[index_z, :kv_z], store.top_k_eigenvectors(matched_z, kv_z)
    )
    values, vectors = np.linalg.eigh(pulled)
    order = np.argsort(values)[::-1]
    kk = min(k, kv_z, kv_w)
    result = geometry.alignment(vectors_z[:, :kk], vectors[:, order[:kk]], metric=pulled, k=kk)
    alignment = {
        "a": z.label,
        "b": f"{w.label} pulled back to z",
        "kind": "across-spaces (w->z)",
        "k": kk,
        "transport": "w->z",
        "n_matched": int(index_z.size),
        "coordinates": "z (each w metric pulled back through the mapping's Jacobian at its "
        "code, H_z = J^T H_w J, truncation included)",
        **result,
    }
    positions = list(range(int(index_z.size)))
    paired = geometry_paired.paired_comparison(
        _all_eigenvalues(z)[index_z],
        _all_eigenvalues(w)[index_w],
        positions,
        positions,
        full_a=_full(z),
        full_b=_full(w),
    )
    if paired is not None:
        paired = {"a": z.label, "b": w.label, "matched_by": "mapping (w = f(z))", **paired}
    return alignment, paired


def _codes(store: Store, spectrum_ids: list[str]) -> np.ndarray:
    codes = []
    for spectrum_id in spectrum_ids:
        code = store.get_spectrum(spectrum_id).code
        if code is None:
            raise SpacesDifferError(f"spectrum {spectrum_id} has no code: nothing to transport")
        codes.append(np.asarray(code, dtype=np.float64))
    return np.stack(codes)
