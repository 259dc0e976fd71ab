"""Pictures of results: the spectrum plot, the homogeneity heatmap and histograms and the
eigen-axis montage (a code moved along its top eigenvectors) — what researchers look at first,
in the figure formats a paper takes (PNG, SVG, PDF: every figure function has ``fmt``).

Rendering only; the numbers come from `services.geometry`. No file or network I/O here: the
callers (API, CLI, demo) decide where the bytes go.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")  # headless: workers and servers have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from services.figure_files import (  # noqa: E402
    check_format,
    save_figure,
)

# Eigenvalues at or below this fraction of a spectrum's largest are drawn at the floor: a log
# axis cannot show zero, and float round-off puts the tail of exact spectra around 1e-16.
LOG_FLOOR_RATIO = 1e-14


Normalisation = Literal["none", "top", "trace"]
NORMALISATIONS: tuple[Normalisation, ...] = ("none", "top", "trace")
_NORMALISED_LABEL = {
    "none": "eigenvalue λ",
    "top": "λ / λ₁",
    "trace": "λ / trace",
}


def normalise_spectra(values: np.ndarray, normalisation: str) -> np.ndarray:
    """THE spectrum normalisation (every chart and document uses it): (N, k) eigenvalues
    divided per row by λ₁ ("top") or by their sum ("trace"). A row whose λ₁ (or trace) is not
    positive has no meaningful normalised form: it becomes NaN (left out of bands, never drawn
    as if it were normalised)."""
    if normalisation not in NORMALISATIONS:
        raise ValueError(
            f"normalisation must be one of {', '.join(NORMALISATIONS)}, got {normalisation!r}"
        )
    values = np.asarray(values, dtype=np.float64)
    if normalisation == "none":
        return values
    scale = values[:, :1] if normalisation == "top" else values.sum(axis=1, keepdims=True)
    usable = scale > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(usable, values / np.where(usable, scale, 1.0), np.nan)


BAND_PERCENTILES = (5.0, 50.0, 95.0)


def spectrum_bands(eigenvalues: np.ndarray, normalisation: str) -> dict[str, Any]:
    """Per rank: the 5th, 50th and 95th percentiles over positions of the normalised
    eigenvalues (positions that cannot be normalised left out) and how many positions were
    used: what every spectrum chart (PNG, SVG, PDF, the UI's) draws."""
    values = normalise_spectra(
        np.atleast_2d(np.asarray(eigenvalues, dtype=np.float64)), normalisation
    )
    usable = np.isfinite(values[:, 0])
    if not usable.any():
        return {"p5": None, "median": None, "p95": None, "n": 0}
    low, median, high = np.percentile(values[usable], BAND_PERCENTILES, axis=0)
    return {"p5": low, "median": median, "p95": high, "n": int(usable.sum())}


def _legend_outside(axes: Any) -> None:
    """The legend beside the axes, never over the data (``bbox_inches="tight"`` keeps it)."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def spectrum_plot(
    selections: Sequence[tuple[str, np.ndarray]],
    *,
    title: str = "Spectrum of the metric tensor",
    normalisation: str = "none",
    fmt: str = "png",
) -> bytes:
    """Log eigenvalue against rank: the median over positions as a line and the 5–95 % band,
    one line per selection. Each array is (N positions, k) with eigenvalues descending.
    ``normalisation`` "top" (λ/λ₁) or "trace" (λ/trace) puts Hessians and directions, whose
    units differ, on one axis."""
    if not selections:
        raise ValueError("spectrum_plot needs at least one (label, eigenvalues) selection")
    check_format(fmt)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, eigenvalues in selections:
        bands = spectrum_bands(eigenvalues, normalisation)
        if bands["n"] == 0:
            continue  # nothing normalisable: said by the legend of the others and the notes
        low, median, high = (np.asarray(bands[key]) for key in ("p5", "median", "p95"))
        floor = LOG_FLOOR_RATIO * max(float(np.nanmax(high)), np.finfo(np.float64).tiny)
        low, median, high = (np.maximum(v, floor) for v in (low, median, high))
        ranks = np.arange(1, median.size + 1)
        (line,) = axes.plot(ranks, median, label=f"{label} (n={bands['n']})")
        axes.fill_between(ranks, low, high, color=line.get_color(), alpha=0.25, linewidth=0)
    axes.set_yscale("log")
    axes.set_xlabel("rank")
    axes.set_ylabel(f"{_NORMALISED_LABEL[normalisation]} (median, 5–95 % band)")
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    _legend_outside(axes)
    return save_figure(figure, fmt)


_SCALE_AXIS = {
    "log": "corr(log uᵢᵀHⱼuᵢ, log λⱼ)",
    "linear": "corr(uᵢᵀHⱼuᵢ, λⱼ)",
}


def homogeneity_histogram(
    values_by_label: dict[str, np.ndarray],
    *,
    title: str = "Homogeneity between positions",
    scale: str = "log",
    fmt: str = "png",
) -> bytes:
    """Histogram of pairwise homogeneity correlations (off-diagonal entries), one per label,
    for the log- or linear-scale definition (``scale``), mean and median marked."""
    if not values_by_label:
        raise ValueError("homogeneity_histogram needs at least one labelled set of values")
    if scale not in _SCALE_AXIS:
        raise ValueError(f"scale must be 'log' or 'linear', got {scale!r}")
    check_format(fmt)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    everything = np.concatenate(
        [np.asarray(v, dtype=np.float64).ravel() for v in values_by_label.values()]
    )
    everything = everything[np.isfinite(everything)]
    low = min(-0.2, float(everything.min())) if everything.size else -1.0
    bins = np.linspace(low, 1.0, 61).tolist()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, values) in enumerate(values_by_label.items()):
        finite = np.asarray(values, dtype=np.float64).ravel()
        finite = finite[np.isfinite(finite)]
        if finite.size == 0:
            continue
        color = colors[index % len(colors)]
        axes.hist(
            finite,
            bins=bins,
            alpha=0.5,
            density=True,
            color=color,
            label=f"{label}: mean {finite.mean():.3f}, median {np.median(finite):.3f}",
        )
        axes.axvline(float(finite.mean()), color=color, linestyle="--", linewidth=1)
        axes.axvline(float(np.median(finite)), color=color, linestyle=":", linewidth=1)
    axes.set_xlabel(f"{_SCALE_AXIS[scale]}  ({scale} scale; dashed: mean, dotted: median)")
    axes.set_ylabel("density of position pairs")
    axes.set_title(title)
    _legend_outside(axes)
    return save_figure(figure, fmt)


def heatmap_range(off_diagonal: np.ndarray) -> tuple[float, float]:
    """The colour range of a homogeneity heatmap: its finite off-diagonal values' min and max
    (widened a little when they are all equal)."""
    finite = np.asarray(off_diagonal, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return -1.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if high - low < 1e-6:
        low, high = low - 0.01, high + 0.01
    return low, high


def homogeneity_heatmap(
    matrix: np.ndarray, *, label: str, scale: str = "log", fmt: str = "png"
) -> bytes:
    """The (N, N) homogeneity matrix as a heatmap, with its off-diagonal mean and median in
    the title (the published figure)."""
    if scale not in _SCALE_AXIS:
        raise ValueError(f"scale must be 'log' or 'linear', got {scale!r}")
    check_format(fmt)
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"a homogeneity matrix must be (N, N), got shape {values.shape}")
    off = values[~np.eye(values.shape[0], dtype=bool)]
    off = off[np.isfinite(off)]
    figure, axes = plt.subplots(figsize=(5.5, 4.8))
    # The colour scale spans the data's off-diagonal range (the diagonal is 1 by definition):
    # a fixed [0, 1] scale paints 0.8-1.0 as one colour.
    low, high = heatmap_range(off)
    image = axes.imshow(values, vmin=low, vmax=high, cmap="viridis", interpolation="nearest")
    figure.colorbar(
        image,
        ax=axes,
        label=f"{_SCALE_AXIS[scale]}\n(colours span the off-diagonal range; diagonal = 1)",
    )
    axes.set_xlabel("position j")
    axes.set_ylabel("position i")
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))  # positions are whole numbers
    stats = f"off-diagonal mean {off.mean():.3f}, median {np.median(off):.3f}" if off.size else ""
    axes.set_title(
        f"{label}\nhomogeneity, {scale} scale, N = {values.shape[0]}\n{stats}", fontsize="medium"
    )
    return save_figure(figure, fmt)


def axis_steps(eigenvalues: np.ndarray, n_steps: int, *, max_step: float = 8.0) -> np.ndarray:
    """Latent step sizes per axis, (n_axes, n_steps), symmetric about 0.

    Steps are scaled by 1/sqrt(λ) so every row changes the image by about the same amount
    (D ≈ λ t²), with the top axis reaching ±2 and no step beyond ±max_step."""
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    if n_steps < 2:
        raise ValueError("an axis walk needs at least 2 steps")
    top = max(float(eigenvalues[0]), np.finfo(np.float64).tiny)
    reach = 2.0 * np.sqrt(top / np.maximum(eigenvalues, top * 1e-12))
    reach = np.minimum(reach, max_step)
    return np.asarray(reach[:, None] * np.linspace(-1.0, 1.0, n_steps)[None, :])


@torch.no_grad()
def axis_walk_images(
    module: torch.nn.Module,
    code: np.ndarray,
    eigenvectors: np.ndarray,
    steps: np.ndarray,
) -> np.ndarray:
    """Images G(code + t·u_k) for each axis k (columns of `eigenvectors`) and step t in
    `steps[k]`: (n_axes, n_steps, C, H, W) in the generator's output range."""
    n_axes, n_steps = steps.shape
    directions = np.asarray(eigenvectors, dtype=np.float64)[:, :n_axes].T  # (n_axes, d)
    codes = (
        np.asarray(code, dtype=np.float64)[None, None, :]
        + steps[:, :, None] * directions[:, None, :]
    )
    parameter = next(module.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    device = parameter.device if parameter is not None else torch.device("cpu")
    batch = torch.as_tensor(codes.reshape(n_axes * n_steps, -1), dtype=dtype, device=device)
    images = module(batch).detach().cpu().to(torch.float64).numpy()
    return np.asarray(images.reshape(n_axes, n_steps, *images.shape[1:]))


def annotated_montage(
    images: np.ndarray,
    *,
    eigenvalues: np.ndarray,
    steps: np.ndarray,
    title: str,
    row_names: Sequence[str] | None = None,
    fmt: str = "png",
) -> bytes:
    """THE eigen-axis montage (every face draws this one): the tiles composed pixel-exact
    (``montage_grid``), one row per axis labelled with its rank (or ``row_names``) and λ on the
    left and its steps on the right, the reference code's column (t = 0) framed and named, and
    the title naming the selection, the code and which axes were chosen. (rows, cols, C, H, W)
    images in [-1, 1]; ``steps`` (rows, cols)."""
    check_format(fmt)
    if np.asarray(images).ndim != 5:
        raise ValueError(
            f"montage expects (rows, cols, C, H, W) images, got shape {np.shape(images)}"
        )
    rows, cols, _, height, width = np.shape(images)
    gap = max(2, width // 16)
    canvas = montage_grid(images, gap=gap)
    scale = 1.1 / max(height, width)
    figure, axes = plt.subplots(
        figsize=(cols * 1.1 * width * scale + 3.2, rows * 1.1 * height * scale + 1.2)
    )
    axes.imshow(canvas, interpolation="nearest")
    centres_y = [r * (height + gap) + height / 2 for r in range(rows)]
    centres_x = [c * (width + gap) + width / 2 for c in range(cols)]
    names = list(row_names) if row_names else [f"axis {r + 1}" for r in range(rows)]
    axes.set_yticks(
        centres_y, [f"{names[r]}\nλ={float(eigenvalues[r]):.3g}" for r in range(rows)], fontsize=7
    )
    axes.set_xticks(centres_x, [f"{c - cols // 2:+d}" for c in range(cols)], fontsize=6)
    axes.set_xlabel("step index along the axis (0: the reference code)", fontsize=7)
    side = axes.secondary_yaxis("right")
    side.set_yticks(
        centres_y,
        [f"t=[{float(steps[r, 0]):+.2g} … {float(steps[r, -1]):+.2g}]" for r in range(rows)],
        fontsize=6,
    )
    reference = int(np.argmin(np.abs(np.asarray(steps)[0])))
    left = reference * (width + gap) - gap / 2
    axes.add_patch(
        Rectangle(
            (left, -gap / 2),
            width + gap,
            rows * (height + gap),
            fill=False,
            edgecolor="#D55E00",
            linewidth=1.5,
        )
    )
    axes.text(
        left + (width + gap) / 2,
        -gap,
        "reference code",
        ha="center",
        va="bottom",
        fontsize=6,
        color="#D55E00",
    )
    for spine in axes.spines.values():
        spine.set_visible(False)
    axes.set_title(
        f"{title}\naxes: the top {rows} eigenvectors (ranks 1-{rows}), step ∝ 1/√λ",
        fontsize=8,
        pad=14,
    )
    return save_figure(figure, fmt)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] channel-first images to uint8 channel-last (the montage's pixel values)."""
    scaled = np.clip((np.asarray(images, dtype=np.float64) + 1.0) * 127.5, 0.0, 255.0)
    return np.moveaxis(np.rint(scaled).astype(np.uint8), -3, -1)


def montage_grid(images: np.ndarray, *, gap: int = 2) -> np.ndarray:
    """The montage's tiles composed pixel-exact: (rows, cols, C, H, W) in [-1, 1] to an RGB
    uint8 canvas where tile (r, c) starts at (r·(H+gap), c·(W+gap)), white between tiles."""
    tiles = to_uint8(images)
    if tiles.ndim != 5:
        raise ValueError(
            f"montage expects (rows, cols, C, H, W) images, got shape {np.shape(images)}"
        )
    rows, cols, height, width, channels = tiles.shape
    if channels == 1:
        tiles = np.repeat(tiles, 3, axis=-1)
    canvas = np.full((rows * (height + gap) - gap, cols * (width + gap) - gap, 3), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            top, left = r * (height + gap), c * (width + gap)
            canvas[top : top + height, left : left + width] = tiles[r, c, :, :, :3]
    return canvas
