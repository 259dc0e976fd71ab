"""The paper's claims as one table, read from one campaign comparison's result document.

Wang & Ponce (ICLR 2021) claim that the pull-back metric of a trained generator is anisotropic
(a few directions carry most of the image change), homogeneous (the top eigenvectors agree
across the latent space) and close to SeFa's weight-only directions; each claim is a claim about
what training did, so each is read against controls of the same architecture. This module
selects, for every Hessian member of the comparison, the numbers that carry those claims and
renders them as Markdown. It computes nothing of its own: every number is the comparison's
(services/comparisons, result document version 1), so the table, the CLI and the figures
cannot disagree; that includes each member's degenerate-generator flag (docs/controls.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Document = Mapping[str, Any]
CONTROL_KINDS = ("shuffled-published", "shuffled", "random-init")


@dataclass(frozen=True)
class Variation:
    pixel_std: float
    degenerate: bool


@dataclass(frozen=True)
class Alignment:
    top1_abs_cosine: float  # first direction against the metric's first eigenvector
    random_abs_cosine: float  # exact expectation for uniform unit vectors in R^d
    top1_best_match: float  # first direction against its closest of the top k eigenvectors
    random_best_match: float  # the same for random directions (sampled, seeded)
    smallest_angle_deg: float  # between the top-k subspaces
    random_smallest_angle_deg: float  # the same for random k-dim subspaces (sampled, seeded)
    rayleigh_over_random: float  # mean vᵀHv of the top-k directions / of random directions


@dataclass(frozen=True)
class ClaimRow:
    label: str
    model: str
    base: str
    control: str | None  # None for the trained model
    space: str
    d: int
    positions: int
    variation: Variation | None
    top10_share: float
    participation_ratio: float
    participation_ratio_ci95: tuple[float, float] | None
    dims_99: float  # mean over positions, first rank reaching 99 % (the service's count)
    dims_99_published: int | None  # the paper's: on the mean spectrum, ranks still below 99 %
    homogeneity_log: float | None
    homogeneity_linear: float | None
    homogeneity_k: int | None
    sefa: Alignment | None
    ganspace: Alignment | None


def split_control(model: str) -> tuple[str, str | None]:
    """``KIND:SEED:BASE`` -> (BASE, ``KIND:SEED``); a trained model -> (model, None)."""
    kind, _, rest = model.partition(":")
    if kind in CONTROL_KINDS and rest:
        seed, _, base = rest.partition(":")
        return base, f"{kind}:{seed}"
    return model, None


def _variation(member: Mapping[str, Any]) -> Variation | None:
    recorded = member.get("image_variation")
    if not isinstance(recorded, Mapping) or recorded.get("pixel_std") is None:
        return None  # not recorded, or not measured (a model too large to render at planning)
    return Variation(float(recorded["pixel_std"]), bool(recorded["degenerate"]))


def _alignment(document: Document, kind: str, hessian: Mapping[str, Any]) -> Alignment | None:
    """The ``kind`` alignment of this Hessian member with the direction member of the same
    model and space."""
    origins = {m["label"]: (m["model"], m["space"]) for m in document["members"]}
    for entry in document["alignments"]:
        same_origin = origins.get(entry["a"]) == (hessian["model"], hessian["space"])
        if entry["kind"] == kind and entry["b"] == hessian["label"] and same_origin:
            baselines = entry["baselines"]
            return Alignment(
                top1_abs_cosine=float(entry["same_rank_abs_cosine"][0]),
                random_abs_cosine=float(baselines["same_rank_abs_cosine"]["mean"]),
                top1_best_match=float(entry["best_match_abs_cosine"][0]),
                random_best_match=float(baselines["best_match_abs_cosine"]["mean"]),
                smallest_angle_deg=float(entry["smallest_principal_angle_deg"]),
                random_smallest_angle_deg=float(baselines["principal_angles_deg"]["mean"][0]),
                rayleigh_over_random=float(entry["rayleigh_a_topk_over_random"]),
            )
    return None


def _mean(statistics: Mapping[str, Any], key: str) -> float:
    return float(statistics[key]["mean"])


def claim_rows(document: Document) -> list[ClaimRow]:
    """One row per Hessian member of a comparison's result document (version 1), in its
    order; direction members appear as their alignment with that Hessian."""
    rows = []
    for member in document["members"]:
        if member["kind"] != "hessian" or not member.get("homogeneity"):
            continue
        anisotropy = member["anisotropy"]
        statistics = anisotropy["statistics"]
        pr_ci = statistics["participation_ratio"].get("ci95")
        published = anisotropy.get("published_dims_on_mean_spectrum") or {}
        homogeneity = member["homogeneity"]
        base, control = split_control(member["model"])
        rows.append(
            ClaimRow(
                label=member["label"],
                model=member["model"],
                base=base,
                control=control,
                space=member["space"],
                d=int(member["d"]),
                positions=int(member["n_spectra"]),
                variation=_variation(member),
                top10_share=_mean(statistics, "top10_share"),
                participation_ratio=_mean(statistics, "participation_ratio"),
                participation_ratio_ci95=(float(pr_ci[0]), float(pr_ci[1])) if pr_ci else None,
                dims_99=_mean(statistics, "dims_99"),
                dims_99_published=published.get("dims_99"),
                homogeneity_log=homogeneity["log"]["mean"],
                homogeneity_linear=homogeneity["linear"]["mean"],
                homogeneity_k=homogeneity.get("rank"),
                sefa=_alignment(document, "sefa-vs-hessian", member),
                ganspace=_alignment(document, "ganspace-vs-hessian", member),
            )
        )
    return rows


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _alignment_cells(alignment: Alignment | None) -> list[str]:
    if alignment is None:
        return ["–", "–", "–", "–"]
    return [
        f"{alignment.top1_abs_cosine:.2f} ({alignment.random_abs_cosine:.3f})",
        f"{alignment.top1_best_match:.2f} ({alignment.random_best_match:.2f})",
        f"{alignment.smallest_angle_deg:.1f}° ({alignment.random_smallest_angle_deg:.0f}°)",
        f"{alignment.rayleigh_over_random:.2f}",
    ]


def _model_cell(row: ClaimRow) -> str:
    name = f"`{row.model}`" + (f" ({row.space})" if row.space not in (None, "z") else "")
    if row.variation is not None and row.variation.degenerate:
        return f"{name} **(degenerate)**"
    return name


HEADER = (
    "| model | d | codes | image pixel std | top-10 share | participation ratio (95 % CI) "
    "| dims to 99 % (service / paper) | homogeneity log / linear "
    "| SeFa top-1 \\|cos\\| (random) | SeFa 1st: best \\|cos\\| in top 10 (random) "
    "| SeFa top-10 smallest angle (random) "
    "| SeFa Rayleigh ÷ random | GANSpace top-1 \\|cos\\| (random) |\n"
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
)


def markdown_table(rows: list[ClaimRow]) -> str:
    lines = [HEADER.rstrip("\n")]
    for row in rows:
        ci = row.participation_ratio_ci95
        pr = _number(row.participation_ratio) + (
            f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci is not None else ""
        )
        dims = f"{row.dims_99:.1f} / {_number(row.dims_99_published)}"
        homogeneity = f"{_number(row.homogeneity_log)} / {_number(row.homogeneity_linear)}"
        std = "–" if row.variation is None else f"{row.variation.pixel_std:.3g}"
        cells = [
            _model_cell(row),
            str(row.d),
            str(row.positions),
            std,
            f"{row.top10_share:.3f}",
            pr,
            dims,
            homogeneity,
            *_alignment_cells(row.sefa),
            _alignment_cells(row.ganspace)[0],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


RULES = """
Rules (every number is the campaign comparison's; where the service's rule differs from the
published code's, both are given):
- top-10 share, participation ratio (Σλ)²/Σλ² and dims to 99 %: means over the codes of the
  per-code values; the participation ratio's interval is a 95 % percentile bootstrap over codes.
- dims to 99 %: "service" is the first rank whose cumulative share of the trace reaches 99 %,
  per code, averaged; "paper" is GAN-Geometry's statistic, the number of ranks still below 99 %
  on the mean spectrum (one fewer than the first rank reaching it).
- homogeneity: off-diagonal mean of the published position-pair correlation of log10 a_ij[k]
  with log10 λ_j,k (eigenvalues or quotients ≤ 0 left out of that pair, as GAN-Geometry does)
  and of the linear version, every member at the same k (the k all members have).
- SeFa / GANSpace top-1 |cos|: |cosine| between the model's first direction and the first
  eigenvector of its average metric (mean of the codes' H); in brackets the exact expected
  |cos| of two uniform random unit vectors in R^d, Γ(d/2) / (√π Γ((d+1)/2)). Ranks can swap
  where two eigenvalues are close, so "SeFa 1st: best |cos| in top 10" is the largest |cos| of
  SeFa's first direction with any of the top-10 eigenvectors (in brackets the same for random
  directions, sampled), and the next two columns compare the top-10 sets as a whole:
  the smallest principal angle between the two top-10 subspaces (in brackets the mean over 500
  seeded pairs of random 10-dim subspaces), and the mean Rayleigh quotient vᵀH̄v of the top-10
  SeFa directions over that of random unit directions (1 = no better than random).
- image pixel std: per pixel value, the standard deviation of the generator's images over 8
  codes (seed 0), averaged; below 0.02 the generator is flagged **degenerate**: its images
  barely change, so its metric is tiny and near isotropic everywhere and its "homogeneity"
  means nothing. A contrast against a degenerate control is no evidence for or against a claim.
"""


def render_claims(document: Document) -> str:
    rows = claim_rows(document)
    k = document.get("homogeneity_common_k")
    heading = f"Homogeneity at the common k = {k}.\n\n" if k is not None else ""
    return heading + markdown_table(rows) + RULES
