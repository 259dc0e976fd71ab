"""Pictures: valid PNGs whose content is what was asked for."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from services.plots import (
    axis_steps,
    axis_walk_images,
    homogeneity_histogram,
    montage_grid,
    spectrum_plot,
    to_uint8,
)


def _open(png: bytes) -> Image.Image:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(png))


def test_montage_places_every_tile_pixel_exact() -> None:
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(3, 4, 3, 8, 6))
    picture = montage_grid(images, gap=2)
    assert picture.shape == (3 * 10 - 2, 4 * 8 - 2, 3)
    expected = to_uint8(images)
    for r in range(3):
        for c in range(4):
            tile = picture[r * 10 : r * 10 + 8, c * 8 : c * 8 + 6]
            np.testing.assert_array_equal(tile, expected[r, c])
    assert (picture[8:10] == 255).all() and (picture[:, 6:8] == 255).all()  # white gaps


def test_to_uint8_maps_the_output_range_end_points() -> None:
    values = to_uint8(np.array([-1.0, 0.0, 1.0, 7.0]).reshape(1, 1, 1, 4))
    np.testing.assert_array_equal(values.ravel(), [0, 128, 255, 255])


def test_montage_rejects_a_flat_array() -> None:
    with pytest.raises(ValueError, match="rows, cols, C, H, W"):
        montage_grid(np.zeros((4, 3, 8, 8)))


def test_axis_steps_equalise_image_change_and_respect_the_cap() -> None:
    eigenvalues = np.array([4.0, 1.0, 1e-9])
    steps = axis_steps(eigenvalues, 5, max_step=8.0)
    np.testing.assert_allclose(steps[:, 2], 0.0)  # the middle column is the code itself
    np.testing.assert_allclose(steps[0, -1], 2.0)
    np.testing.assert_allclose(steps[1, -1], 4.0)  # λ·t² equal to the top axis's: 1·16 = 4·4
    np.testing.assert_allclose(steps[2, -1], 8.0)  # capped


def test_axis_walk_moves_the_code_along_each_axis() -> None:
    # Identity "generator" on 3-d codes shaped as 1×1×3 images: output = code exactly.
    module = torch.nn.Sequential(torch.nn.Unflatten(1, (3, 1, 1))).double()
    module.register_parameter("anchor", torch.nn.Parameter(torch.zeros(1, dtype=torch.float64)))
    code = np.array([0.1, -0.2, 0.3])
    axes = np.eye(3)[:, [2, 0]]  # first axis e3, second e1
    steps = np.array([[-1.0, 0.0, 1.0], [-0.5, 0.0, 0.5]])
    images = axis_walk_images(module, code, axes, steps)
    assert images.shape == (2, 3, 3, 1, 1)
    np.testing.assert_allclose(images[0, 2, :, 0, 0], code + [0, 0, 1.0])
    np.testing.assert_allclose(images[1, 0, :, 0, 0], code + [-0.5, 0, 0])


def test_spectrum_plot_and_histogram_render() -> None:
    rng = np.random.default_rng(1)
    spectra = np.sort(rng.exponential(size=(10, 20)), axis=1)[:, ::-1]
    spectra[:, -1] = 0.0  # zeros must not break the log axis
    image = _open(spectrum_plot([("a", spectra), ("b", spectra * 2)]))
    assert image.width > 300 and image.height > 200
    assert _open(homogeneity_histogram({"a": rng.uniform(-1, 1, 50)})).width > 300
    with pytest.raises(ValueError):
        spectrum_plot([])


# -- paper figures: formats, normalisation, heatmap, annotated montage -------------------------

from services.plots import (  # noqa: E402
    annotated_montage,
    homogeneity_heatmap,
    normalise_spectra,
)


def test_normalisation_puts_units_on_one_axis() -> None:
    values = np.array([[4.0, 2.0, 2.0], [10.0, 5.0, 5.0]])
    np.testing.assert_allclose(normalise_spectra(values, "top"), [[1, 0.5, 0.5]] * 2)
    np.testing.assert_allclose(normalise_spectra(values, "trace"), [[0.5, 0.25, 0.25]] * 2)
    assert normalise_spectra(values, "none") is values
    with pytest.raises(ValueError, match="normalisation"):
        normalise_spectra(values, "max")


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_every_figure_renders_in_every_format(fmt: str) -> None:
    rng = np.random.default_rng(0)
    spectra = np.sort(rng.uniform(0, 1, (5, 10)), axis=1)[:, ::-1]
    matrix = rng.uniform(0.6, 1, (6, 6))
    images = rng.uniform(-1, 1, (2, 3, 3, 8, 8))
    steps = np.array([[-1.0, 0, 1], [-2, 0, 2]])
    outputs = [
        spectrum_plot([("dcgan-faces/mse/jacobian", spectra)], normalisation="top", fmt=fmt),
        homogeneity_histogram({"a": matrix.ravel()}, scale="linear", fmt=fmt),
        homogeneity_heatmap(matrix, label="dcgan-faces/mse/jacobian", fmt=fmt),
        annotated_montage(
            images,
            eigenvalues=np.array([2.0, 1.0]),
            steps=steps,
            title="selection, code 0",
            fmt=fmt,
        ),
    ]
    magic = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}[fmt]
    for data in outputs:
        assert data.startswith(magic)
    if fmt == "svg":  # labels stay text, readable in the file
        assert b"dcgan-faces/mse/jacobian" in outputs[0] and "λ / λ₁".encode() in outputs[0]
        assert "λ=2".encode() in outputs[3] and b"+2" in outputs[3]
        assert b"reference code" in outputs[3] and b"top 2 eigenvectors" in outputs[3]


def test_figures_refuse_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="png, svg, pdf"):
        spectrum_plot([("a", np.ones((1, 3)))], fmt="jpg")
