"""Pictures of optimisation jobs: convergence curves (median and band over targets, one line
per optimiser) and a montage of targets beside their reconstructions. PNG, SVG or PDF bytes.

Rendering only; the numbers come from services.pipeline.optimise_report.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: workers and servers have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from services.figure_files import save_figure  # noqa: E402
from services.geometry.optimise import curve_band  # noqa: E402

X_AXES = ("steps", "evaluations")


def convergence_plot(
    series: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    x_axis: str = "steps",
    threshold: float | None = None,
    fmt: str = "png",
    title: str = "Inversion: loss against budget",
) -> bytes:
    """Log loss against steps (or distance evaluations): the median over targets as a line and
    the 25–75 % band, one line per (label, curves (n, T), evaluations (T,))."""
    if not series:
        raise ValueError("convergence_plot needs at least one series")
    if x_axis not in X_AXES:
        raise ValueError(f"x_axis must be one of {', '.join(X_AXES)}")
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, curves, evaluations in series:
        band = curve_band(curves)
        x = np.arange(curves.shape[1]) if x_axis == "steps" else np.asarray(evaluations)
        (line,) = axes.plot(x, band["median"], label=f"{label} (n={curves.shape[0]})")
        axes.fill_between(
            x, band["low"], band["high"], color=line.get_color(), alpha=0.2, linewidth=0
        )
    if threshold is not None:
        axes.axhline(
            threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}"
        )
    axes.set_yscale("log")
    axes.set_xlabel(
        "step (Adam step / CMA-ES generation)"
        if x_axis == "steps"
        else "distance evaluations per target (gradient step = 1, generation = population)"
    )
    axes.set_ylabel("loss (median, 25–75 % band over targets)")
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize="small")
    return save_figure(figure, fmt)


def inversion_montage(
    targets: np.ndarray,
    reconstructions: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    fmt: str = "png",
    title: str = "Targets and reconstructions",
) -> bytes:
    """A grid: one row per target, its image first, then each optimiser's final image with its
    final loss. targets (n, C, H, W) in [-1, 1]; reconstructions (label, images (n, C, H, W),
    final losses (n,))."""
    n = targets.shape[0]
    columns = 1 + len(reconstructions)
    figure, grid = plt.subplots(
        n, columns, figsize=(1.6 * columns, 1.75 * n + 0.4), squeeze=False, layout="constrained"
    )
    for row in range(n):
        panels = [("target", targets[row], None)] + [
            (label, images[row], losses[row]) for label, images, losses in reconstructions
        ]
        for column, (label, image, loss) in enumerate(panels):
            axes = grid[row][column]
            axes.imshow(_displayable(image), interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title(label, fontsize=8)
            if loss is not None:
                axes.set_xlabel(f"{loss:.2g}", fontsize=7)
    figure.suptitle(f"{title} (loss under each image)", fontsize=10)
    return save_figure(figure, fmt)


def _displayable(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, 3) in [0, 1]."""
    array = np.clip((np.asarray(image, dtype=np.float64) + 1) / 2, 0, 1)
    if array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    return np.asarray(array[:3].transpose(1, 2, 0))
