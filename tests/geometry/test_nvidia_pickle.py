"""stylegan2-ada:PKL on a small pickled generator of our own honouring NVIDIA's attribute
contract (z_dim, w_dim, num_ws, c_dim, mapping(z, c) with w_avg, synthesis(ws, noise_mode)).
Its classes live in a code directory that is importable only through the setting."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from services.config import get_settings
from services.geometry import (
    InvalidGeneratorError,
    compute_metric,
    load_distance,
    load_generator,
    sefa,
)

NETS = """
import torch, torch.nn.functional as F
from torch import nn

class Affine(nn.Module):
    def __init__(self, w_dim, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(channels, w_dim))
        self.bias = nn.Parameter(torch.ones(channels))
        self.weight_gain = 1 / w_dim ** 0.5
    def forward(self, w):
        return F.linear(w, self.weight * self.weight_gain, self.bias)

class Mapping(nn.Module):
    def __init__(self, z_dim, w_dim, num_ws):
        super().__init__()
        self.fc = nn.Linear(z_dim, w_dim)
        self.num_ws = num_ws
        self.register_buffer("w_avg", torch.randn(w_dim) * 0.1)
    def forward(self, z, c, truncation_psi=1):
        w = F.leaky_relu(self.fc(z), 0.2)
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

class Layer(nn.Module):
    def __init__(self, w_dim, channels):
        super().__init__()
        self.affine = Affine(w_dim, channels)
        self.weight = nn.Parameter(torch.randn(channels, channels, 3, 3) * 0.3)
        self.noise_strength = nn.Parameter(torch.tensor(0.2))
        self.register_buffer("noise_const", torch.randn(4, 4))
    def forward(self, x, w):
        x = F.conv2d(x * self.affine(w)[:, :, None, None], self.weight, padding=1)
        return F.leaky_relu(x + self.noise_strength * self.noise_const, 0.2)

class Synthesis(nn.Module):
    def __init__(self, w_dim, num_ws, channels):
        super().__init__()
        self.const = nn.Parameter(torch.randn(channels, 4, 4))
        self.layers = nn.ModuleList(Layer(w_dim, channels) for _ in range(num_ws - 1))
        self.torgb = nn.Conv2d(channels, 3, 1)
        self.rgb_affine = Affine(w_dim, channels)
    def forward(self, ws, noise_mode="random"):
        if noise_mode != "const":
            raise RuntimeError("this test network only has const noise")
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i])
        return self.torgb(x * self.rgb_affine(ws[:, -1])[:, :, None, None])

class TinyG(nn.Module):
    def __init__(self, z_dim=3, w_dim=3, num_ws=3, channels=2):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.c_dim = z_dim, w_dim, num_ws, 0
        self.mapping = Mapping(z_dim, w_dim, num_ws)
        self.synthesis = Synthesis(w_dim, num_ws, channels)
"""


@pytest.fixture(scope="module")
def pickled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    code_dir = tmp_path_factory.mktemp("nvidia_code")
    (code_dir / "tiny_nvidia_nets.py").write_text(NETS)
    sys.path.insert(0, str(code_dir))
    try:
        import tiny_nvidia_nets  # type: ignore[import-not-found,unused-ignore]

        torch.manual_seed(0)
        network = tiny_nvidia_nets.TinyG().eval()
        path = code_dir.parent / "network.pkl"
        path.write_bytes(pickle.dumps({"G": network, "G_ema": network, "D": None}))
    finally:
        sys.path.remove(str(code_dir))
        sys.modules.pop("tiny_nvidia_nets", None)
    return path, code_dir, network


@pytest.fixture
def code_dir_setting(pickled: tuple[Path, Path, Any]) -> str:
    """The setting SPECTRA_NVIDIA_CODE_DIR as an edge reads it and passes it to the core."""
    return str(pickled[1])


def test_without_the_code_directory_the_error_says_which_setting(
    pickled: tuple[Path, Path, Any],
) -> None:
    with pytest.raises(InvalidGeneratorError, match="SPECTRA_NVIDIA_CODE_DIR"):
        load_generator(f"stylegan2-ada:{pickled[0]}")


def test_the_core_reads_no_setting_of_its_own(
    pickled: tuple[Path, Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPECTRA_NVIDIA_CODE_DIR", str(pickled[1]))
    get_settings.cache_clear()
    try:  # the environment says where the code is, but only what is passed in counts
        with pytest.raises(InvalidGeneratorError, match="SPECTRA_NVIDIA_CODE_DIR"):
            load_generator(f"stylegan2-ada:{pickled[0]}")
    finally:
        get_settings.cache_clear()


def test_pickle_images_follow_the_contract_in_every_space(
    pickled: tuple[Path, Path, Any], code_dir_setting: str
) -> None:
    path, _, network = pickled
    name, code_dir = f"stylegan2-ada:{path}", code_dir_setting
    z_model = load_generator(name, nvidia_code_dir=code_dir)
    w_model = load_generator(name, space="w", psi=0.5, nvidia_code_dir=code_dir)
    wp_model = load_generator(name, space="w+", psi=0.5, nvidia_code_dir=code_dir)
    assert (z_model.latent_dim, w_model.latent_dim, wp_model.latent_dim) == (3, 3, 9)
    z = z_model.sample(2, seed=1)
    with torch.no_grad():
        expected = network.synthesis(
            network.mapping(torch.tensor(z, dtype=torch.float32), None),
            noise_mode="const",
        )
    assert torch.allclose(z_model.images(z), expected, atol=1e-6)
    w = w_model.sample(2, seed=1)
    w_avg = network.mapping.w_avg.double().numpy()
    with torch.no_grad():
        mapped = network.mapping(torch.tensor(z, dtype=torch.float32), None)[:, 0].double().numpy()
    assert np.allclose(w, w_avg + 0.5 * (mapped - w_avg), atol=1e-5)
    assert torch.equal(w_model.images(w), wp_model.images(np.tile(w, (1, 3))))


def test_pickle_metrics_match_bp_and_sefa_reads_the_affines(
    pickled: tuple[Path, Path, Any], code_dir_setting: str
) -> None:
    path, _, network = pickled
    generator = load_generator(
        f"stylegan2-ada:{path}", space="w+", nvidia_code_dir=code_dir_setting
    )
    code = generator.sample(1, seed=2)[0]
    mse = load_distance("mse")
    reference = compute_metric(generator, mse, code, method="bp", dtype="float64")
    metric = compute_metric(generator, mse, code, method="jacobian", dtype="float64")
    assert np.linalg.norm(metric - reference) <= 1e-9 * np.linalg.norm(reference)
    result = sefa(
        load_generator(f"stylegan2-ada:{path}", space="w", nvidia_code_dir=code_dir_setting)
    )
    # NVIDIA names every style affine `affine` (b4.conv1.affine, b4.torgb.affine, ...); the
    # test net's `rgb_affine` is not one by that contract.
    modules = network.synthesis.named_modules()
    rows = [m.weight.detach().double() for n, m in modules if n.split(".")[-1] == "affine"]
    assert len(rows) == 2
    a = torch.cat(rows).numpy()
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    assert np.allclose(result.eigenvalues, np.linalg.eigvalsh(a.T @ a)[::-1], rtol=1e-10)


def test_a_pickle_without_nvidias_contract_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "linear.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"G_ema": torch.nn.Linear(2, 2)}, handle)
    with pytest.raises(InvalidGeneratorError, match="Linear.*z_dim, w_dim, num_ws, mapping"):
        load_generator(f"stylegan2-ada:{path}")
