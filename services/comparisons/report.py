"""A comparison as aligned text tables (what ``spectra compare`` prints)."""

from __future__ import annotations

from typing import Any

from .compute import Comparison


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _interval(stats: dict[str, Any] | None, digits: int = 3) -> str:
    if not stats or stats.get("ci95") is None:
        return "-"
    low, high = stats["ci95"]
    return f"[{low:.{digits}g}, {high:.{digits}g}]"


def format_report(comparison: Comparison) -> str:
    """The comparison as aligned text tables (what ``spectra compare`` prints)."""
    data = comparison.to_json()
    rows: list[tuple[str, ...]] = [
        (
            "selection",
            "N",
            "d",
            "k",
            "top-10 share",
            "dims_99",
            "dims_99.9",
            "dims_99.99",
            "dims_99.999",
            "PR (median)",
            "PR 95% CI",
            "homog. log",
            "log 95% CI",
            "homog. lin",
        )
    ]
    for s in data["selections"]:
        a, h = s["anisotropy"], s["homogeneity"] or {}
        stats = a.get("statistics", {})
        pr = stats.get("participation_ratio")
        log_ci = h.get("log_offdiag_mean_ci95")
        rows.append(
            (
                s["label"],
                str(s["n_spectra"]),
                str(s["d"]),
                str(s["k"]),
                _number(a.get("top10_share_mean")),
                _number(a["dims_99_mean"]),
                _number(a["dims_999_mean"]),
                _number(a["dims_9999_mean"]),
                _number(a.get("dims_99999_mean")),
                "-"
                if a["participation_ratio_mean"] is None
                else f"{a['participation_ratio_mean']:.4g} ({pr['median']:.4g})"
                if pr
                else "-",
                _interval(pr),
                _number(h.get("log_offdiag_mean")),
                "-" if not log_ci else f"[{log_ci[0]:.3g}, {log_ci[1]:.3g}]",
                _number(h.get("linear_offdiag_mean")),
            )
        )
    lines = [
        "anisotropy (means over positions, median in brackets, bootstrap 95 % intervals) and "
        "homogeneity (off-diagonal means)",
        _table(rows),
    ]
    if data["alignments"]:
        rows = [
            (
                "a",
                "b",
                "kind",
                "k",
                "matched |cos| (top 5)",
                "random |cos|",
                "angles deg: smallest, largest",
                "random angles",
                "Rayleigh a/random",
            )
        ]
        for a in data["alignments"]:
            base = a["baseline"]
            random_angles = base["principal_angles_deg"]["mean"]
            rows.append(
                (
                    a["a"],
                    a["b"],
                    a["kind"],
                    str(a["k"]),
                    " ".join(_number(x, 2) for x in a["matched_abs_cosine"][:5]),
                    f"{base['abs_cosine']['mean']:.3f} (exact)",
                    f"{a['smallest_principal_angle_deg']:.3g}, {a['largest_principal_angle_deg']:.3g}",
                    f"{random_angles[0]:.3g}, {random_angles[-1]:.3g} "
                    f"(sampled, {base['principal_angles_deg']['samples']})",
                    _number(a.get("rayleigh_a_topk_over_random")),
                )
            )
        lines += ["", "alignment of top-k average-metric eigenvectors", _table(rows)]
    lines += _conventions(data)
    lines += _paired_rows(data["paired"])
    lines += [f"note: {note}" for note in data["notes"]]
    return "\n".join(lines)


def _conventions(data: dict[str, Any]) -> list[str]:
    """What the numbers above depend on: the homogeneity's k and log rule, and the paper's
    dims statistic beside ours (docs/conventions.md)."""
    lines = []
    if data.get("homogeneity_common_k") is not None:
        lines.append(
            f"homogeneity over the top {data['homogeneity_common_k']} eigenpairs of every member; "
            "log scale by the published rule (values <= 0 left out of that pair's correlation)"
        )
    published = [
        f"{s['label']}: {s['anisotropy']['published_dims_on_mean_spectrum']['dims_99']}"
        for s in data["selections"]
        if s["anisotropy"].get("published_dims_on_mean_spectrum")
    ]
    if published:
        lines.append(
            "dims_99 above: per position, the first rank reaching 99 %; the paper's statistic "
            "(ranks still below 99 % on the mean spectrum, GAN-Geometry): " + "; ".join(published)
        )
    return [""] + lines if lines else []


def _paired_rows(paired: list[dict[str, Any]]) -> list[str]:
    if not paired:
        return []
    rows: list[tuple[str, ...]] = [
        ("a", "b", "matched by", "pairs", "figure", "mean a", "mean b", "mean b - a", "95% CI")
    ]
    for pair in paired:
        for name, figure in pair["figures"].items():
            ci = figure["ci"]
            rows.append(
                (
                    pair["a"],
                    pair["b"],
                    pair["matched_by"],
                    str(figure["n_pairs"]),
                    name,
                    _number(figure["mean_a"]),
                    _number(figure["mean_b"]),
                    _number(figure["mean_difference"]),
                    "-" if ci is None else f"[{ci[0]:.3g}, {ci[1]:.3g}]",
                )
            )
    return [
        "",
        "paired over the same codes, position by position (bootstrap 95 % CI)",
        _table(rows),
    ]


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
