"""Pictures of results, as PNG bytes: the spectrum plot, the homogeneity histogram and the
eigen-axis montage (a code moved along its top eigenvectors) — what researchers look at first.

Rendering only; the numbers come from `services.geometry`. No file or network I/O here: the
callers (API, CLI, demo) decide where the bytes go.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: workers and servers have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

# Eigenvalues at or below this fraction of a spectrum's largest are drawn at the floor: a log
# axis cannot show zero, and float round-off puts the tail of exact spectra around 1e-16.
LOG_FLOOR_RATIO = 1e-14


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def spectrum_plot(
    selections: Sequence[tuple[str, np.ndarray]], *, title: str = "Spectrum of the metric tensor"
) -> bytes:
    """Log eigenvalue against rank: the median over positions as a line and the 5–95 % band,
    one line per selection. Each array is (N positions, k) with eigenvalues descending."""
    if not selections:
        raise ValueError("spectrum_plot needs at least one (label, eigenvalues) selection")
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, eigenvalues in selections:
        values = np.atleast_2d(np.asarray(eigenvalues, dtype=np.float64))
        floor = LOG_FLOOR_RATIO * max(float(np.max(values)), np.finfo(np.float64).tiny)
        values = np.maximum(values, floor)
        ranks = np.arange(1, values.shape[1] + 1)
        low, median, high = np.percentile(values, [5, 50, 95], axis=0)
        (line,) = axes.plot(ranks, median, label=f"{label} (n={values.shape[0]})")
        axes.fill_between(ranks, low, high, color=line.get_color(), alpha=0.25, linewidth=0)
    axes.set_yscale("log")
    axes.set_xlabel("rank")
    axes.set_ylabel("eigenvalue (median, 5–95 % band)")
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize="small")
    return _png(figure)


def homogeneity_histogram(
    values_by_label: dict[str, np.ndarray], *, title: str = "Homogeneity between positions"
) -> bytes:
    """Histogram of pairwise homogeneity correlations (off-diagonal entries), one per label."""
    if not values_by_label:
        raise ValueError("homogeneity_histogram needs at least one labelled set of values")
    figure, axes = plt.subplots(figsize=(7, 4.5))
    bins = np.linspace(-1.0, 1.0, 81).tolist()
    for label, values in values_by_label.items():
        finite = np.asarray(values, dtype=np.float64).ravel()
        finite = finite[np.isfinite(finite)]
        axes.hist(finite, bins=bins, alpha=0.5, label=f"{label} (mean {finite.mean():.3f})")
    axes.set_xlabel("correlation")
    axes.set_ylabel("pairs")
    axes.set_title(title)
    axes.legend(fontsize="small")
    return _png(figure)


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
    return reach[:, None] * np.linspace(-1.0, 1.0, n_steps)[None, :]


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
    codes = np.asarray(code, dtype=np.float64)[None, None, :] + steps[:, :, None] * directions[:, None, :]
    parameter = next(module.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    device = parameter.device if parameter is not None else torch.device("cpu")
    batch = torch.as_tensor(codes.reshape(n_axes * n_steps, -1), dtype=dtype, device=device)
    images = module(batch).detach().cpu().to(torch.float64).numpy()
    return images.reshape(n_axes, n_steps, *images.shape[1:])


def axis_walk_montage(
    module: torch.nn.Module,
    code: np.ndarray,
    eigenvalues: np.ndarray,
    eigenvectors: np.ndarray,
    *,
    steps: int = 7,
    label: str = "",
    label_width: int = 16,
) -> bytes:
    """The eigen-axis montage: one row per column of `eigenvectors` (top first), `steps`
    images each, rows labelled f"{label}{rank}" in a left margin of `label_width` pixels."""
    axes = eigenvectors.shape[1]
    walk = axis_steps(np.asarray(eigenvalues[:axes]), steps)
    images = axis_walk_images(module, code, eigenvectors, walk)
    labels = [f"{label}{rank + 1}" for rank in range(axes)]
    return eigen_axis_montage(images, row_labels=labels, label_width=label_width)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] channel-first images to uint8 channel-last (the montage's pixel values)."""
    scaled = np.clip((np.asarray(images, dtype=np.float64) + 1.0) * 127.5, 0.0, 255.0)
    return np.moveaxis(np.rint(scaled).astype(np.uint8), -3, -1)


def eigen_axis_montage(
    images: np.ndarray,
    *,
    row_labels: Sequence[str] | None = None,
    gap: int = 2,
    label_width: int = 0,
) -> bytes:
    """Grid of images (rows, cols, C, H, W) in [-1, 1] as a PNG, pixel-exact: tile (r, c)
    starts at (r·(H+gap), label_width + c·(W+gap)). Optional row labels are drawn in a
    left margin of `label_width` pixels (0 = no margin)."""
    tiles = to_uint8(images)
    if tiles.ndim != 5:
        raise ValueError(f"montage expects (rows, cols, C, H, W) images, got shape {images.shape}")
    rows, cols, height, width, channels = tiles.shape
    if channels == 1:
        tiles = np.repeat(tiles, 3, axis=-1)
    canvas = np.full(
        (rows * (height + gap) - gap, label_width + cols * (width + gap) - gap, 3), 255, np.uint8
    )
    for r in range(rows):
        for c in range(cols):
            top, left = r * (height + gap), label_width + c * (width + gap)
            canvas[top : top + height, left : left + width] = tiles[r, c, :, :, :3]
    picture = Image.fromarray(canvas)
    if row_labels and label_width:
        draw = ImageDraw.Draw(picture)
        for r, label in enumerate(row_labels[:rows]):
            draw.text((2, r * (height + gap) + height // 2 - 5), label, fill=(0, 0, 0))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
