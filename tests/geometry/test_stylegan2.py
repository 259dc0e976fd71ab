"""StyleGAN2 from tiny rosinality checkpoints the tests write: layout, maths, spaces, methods.

The reference forward below follows rosinality's *fused* path (one grouped convolution with
per-sample modulated weights, upfirdn2d by explicit zero insertion and padding), written
independently of the service's unfused implementation, so an error in either shows.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from services.geometry import (
    Generator,
    InvalidGeneratorError,
    InvalidOptionError,
    MissingWeightsError,
    compute_metric,
    compute_spectrum,
    load_distance,
    load_generator,
)
from services.geometry.models.stylegan2 import StyleGAN2Architecture
from tests.support.checkpoints import random_state_dict, write_random_checkpoint

StateDict = dict[str, torch.Tensor]

TINY: dict[str, Any] = {"size": 8, "style_dim": 4, "n_mlp": 2, "channels": {4: 4, 8: 3}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("sg2") / "tiny.pt", **TINY, seed=3)


def model(checkpoint: Path, space: str = "z", psi: float | None = None) -> Generator:
    return load_generator(f"stylegan2:{checkpoint}", space=space, psi=psi)


# --------------------------------------------------------------------------- layout


def test_random_checkpoint_has_rosinality_keys_and_shapes() -> None:
    # Written out by hand from rosinality's Generator(8, 4, n_mlp=1) with widths 4 -> 3.
    expected = {
        "style.1.weight": (4, 4),
        "style.1.bias": (4,),
        "input.input": (1, 4, 4, 4),
        "conv1.conv.weight": (1, 4, 4, 3, 3),
        "conv1.conv.modulation.weight": (4, 4),
        "conv1.conv.modulation.bias": (4,),
        "conv1.noise.weight": (1,),
        "conv1.activate.bias": (4,),
        "to_rgb1.bias": (1, 3, 1, 1),
        "to_rgb1.conv.weight": (1, 3, 4, 1, 1),
        "to_rgb1.conv.modulation.weight": (4, 4),
        "to_rgb1.conv.modulation.bias": (4,),
        "convs.0.conv.weight": (1, 3, 4, 3, 3),
        "convs.0.conv.blur.kernel": (4, 4),
        "convs.0.conv.modulation.weight": (4, 4),
        "convs.0.conv.modulation.bias": (4,),
        "convs.0.noise.weight": (1,),
        "convs.0.activate.bias": (3,),
        "convs.1.conv.weight": (1, 3, 3, 3, 3),
        "convs.1.conv.modulation.weight": (3, 4),
        "convs.1.conv.modulation.bias": (3,),
        "convs.1.noise.weight": (1,),
        "convs.1.activate.bias": (3,),
        "to_rgbs.0.bias": (1, 3, 1, 1),
        "to_rgbs.0.upsample.kernel": (4, 4),
        "to_rgbs.0.conv.weight": (1, 3, 3, 1, 1),
        "to_rgbs.0.conv.modulation.weight": (3, 4),
        "to_rgbs.0.conv.modulation.bias": (3,),
        "noises.noise_0": (1, 1, 4, 4),
        "noises.noise_1": (1, 1, 8, 8),
        "noises.noise_2": (1, 1, 8, 8),
    }
    state = random_state_dict(size=8, style_dim=4, n_mlp=1, channels={4: 4, 8: 3})
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert list(state) == list(expected)  # rosinality's state-dict order
    kernel = state["convs.0.conv.blur.kernel"]
    assert torch.allclose(kernel, torch.outer(*[torch.tensor([1.0, 3, 3, 1])] * 2) / 16)


def test_architecture_is_read_from_the_state_dict() -> None:
    arch = StyleGAN2Architecture.from_state_dict(
        random_state_dict(
            size=64, style_dim=6, n_mlp=3, channels={16: 5, 32: 4, 64: 2}, const_size=16
        )
    )
    assert (arch.size, arch.style_dim, arch.n_mlp, arch.widths) == (64, 6, 3, (5, 4, 2))
    assert arch.num_ws == 6  # two upsampling stages from the 16 x 16 constant
    default = StyleGAN2Architecture.from_state_dict(
        random_state_dict(size=256, style_dim=2, n_mlp=0)
    )
    assert default.widths == (512, 512, 512, 512, 512, 256, 128)  # config-f, m = 2
    assert default.num_ws == 14  # rosinality's n_latent at 256 px


# --------------------------------------------------------------------------- maths


def _fir(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """upfirdn2d (down = 1) the way rosinality's native op does it."""
    n, c, h, w = x.shape
    if up > 1:
        big = x.new_zeros(n, c, h * up, w * up)
        big[:, :, ::up, ::up] = x
        x = big
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = torch.flip(kernel, [0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, k, groups=c)


def _fused_conv(
    state: StateDict,
    prefix: str,
    x: torch.Tensor,
    w: torch.Tensor,
    *,
    demodulate: bool = True,
    upsample: bool = False,
) -> torch.Tensor:
    weight = state[f"{prefix}.weight"]  # (1, out, in, k, k)
    _, out_c, in_c, k, _ = weight.shape
    style = F.linear(
        w,
        state[f"{prefix}.modulation.weight"] / math.sqrt(w.shape[1]),
        state[f"{prefix}.modulation.bias"],
    )
    batch = x.shape[0]
    weight = weight / math.sqrt(in_c * k * k) * style.view(batch, 1, in_c, 1, 1)
    if demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(
            batch, out_c, 1, 1, 1
        )
    if upsample:
        weight = weight.transpose(1, 2).reshape(batch * in_c, out_c, k, k)
        out = F.conv_transpose2d(
            x.reshape(1, batch * in_c, *x.shape[2:]), weight, stride=2, groups=batch
        )
        out = out.view(batch, out_c, *out.shape[2:])
        return _fir(out, state[f"{prefix}.blur.kernel"], 1, (1, 1))
    out = F.conv2d(
        x.reshape(1, batch * in_c, *x.shape[2:]),
        weight.reshape(batch * out_c, in_c, k, k),
        padding=k // 2,
        groups=batch,
    )
    return out.view(batch, out_c, *out.shape[2:])


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


def reference_image(state: StateDict, z: torch.Tensor, n_mlp: int, stages: int) -> torch.Tensor:
    x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        x = _lrelu(
            F.linear(x, state[f"style.{i}.weight"] * 0.01 / math.sqrt(x.shape[1]))
            + state[f"style.{i}.bias"] * 0.01
        )
    w = x

    def styled(prefix: str, h: torch.Tensor, noise: int, upsample: bool = False) -> torch.Tensor:
        h = _fused_conv(state, f"{prefix}.conv", h, w, upsample=upsample)
        h = h + state[f"{prefix}.noise.weight"] * state[f"noises.noise_{noise}"]
        return _lrelu(h + state[f"{prefix}.activate.bias"].view(1, -1, 1, 1))

    def rgb(prefix: str, h: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        out = _fused_conv(state, f"{prefix}.conv", h, w, demodulate=False) + state[f"{prefix}.bias"]
        if skip is not None:
            out = out + _fir(skip, state[f"{prefix}.upsample.kernel"], 2, (2, 1))
        return out

    h = styled("conv1", state["input.input"].repeat(z.shape[0], 1, 1, 1), 0)
    skip = rgb("to_rgb1", h, None)
    for s in range(stages):
        h = styled(f"convs.{2 * s}", h, 2 * s + 1, upsample=True)
        h = styled(f"convs.{2 * s + 1}", h, 2 * s + 2)
        skip = rgb(f"to_rgbs.{s}", h, skip)
    return skip


def test_forward_matches_rosinalitys_fused_maths(checkpoint: Path) -> None:
    state = {k: v.double() for k, v in torch.load(checkpoint)["g_ema"].items()}
    generator = model(checkpoint).to("cpu", torch.float64)
    z = generator.sample(3, seed=5)
    expected = reference_image(state, torch.from_numpy(z), n_mlp=2, stages=1)
    got = generator.images(z)
    assert got.shape == (3, 3, 8, 8)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
    assert float(expected.std()) > 0.1  # a real image, not a constant


def test_noise_is_fixed_and_images_are_not_clamped(checkpoint: Path) -> None:
    generator = model(checkpoint)
    z = generator.sample(2, seed=1)
    assert torch.equal(generator.images(z), generator.images(z))
    big = generator.images(z * 40)  # nothing clips the synthesis output to [-1, 1]
    assert float(big.abs().max()) > 1.0


def test_a_checkpoint_without_noise_buffers_gets_seeded_maps(tmp_path: Path) -> None:
    path = write_random_checkpoint(tmp_path / "nonoise.pt", **TINY, noise_buffers=False)
    first, second = model(path), model(path)
    z = first.sample(2, seed=0)
    assert torch.equal(first.images(z), second.images(z))
    assert "seed" in first.facts["noise"]


# --------------------------------------------------------------------------- spaces


def test_spaces_have_their_dimensions_and_wplus_with_equal_rows_is_w(checkpoint: Path) -> None:
    z_model, w_model, wp_model = (model(checkpoint, s, psi=0.7) for s in ("z", "w", "w+"))
    assert (z_model.latent_dim, w_model.latent_dim, wp_model.latent_dim) == (4, 4, 4 * 4)
    w = w_model.sample(3, seed=9)
    w_plus = wp_model.sample(3, seed=9)
    assert np.array_equal(w_plus, np.tile(w, (1, 4)))
    assert torch.equal(w_model.images(w), wp_model.images(np.tile(w, (1, 4))))
    # The w a seed gives is the truncated mapping of the z that seed gives.
    assert torch.allclose(z_model.images(z_model.sample(3, seed=9)), w_model.images(w), atol=1e-5)
    assert w_model.facts["space"] == "w" and w_model.facts["psi"] == 0.7
    # Changing one slot of w+ changes the image: the slots are separate coordinates.
    moved = np.tile(w, (1, 4))
    moved[:, 12:] += 1.0
    assert not torch.allclose(wp_model.images(moved), wp_model.images(np.tile(w, (1, 4))))


def test_psi_truncates_toward_w_avg(checkpoint: Path) -> None:
    full, half = model(checkpoint, "w"), model(checkpoint, "w", psi=0.5)
    w_avg = torch.load(checkpoint)["latent_avg"].double().numpy()
    assert np.allclose(half.sample(4, seed=2) - w_avg, 0.5 * (full.sample(4, seed=2) - w_avg))


@pytest.mark.parametrize("space", ["z", "w", "w+"])
def test_exact_methods_match_bp_in_float64(checkpoint: Path, space: str) -> None:
    generator = model(checkpoint, space, psi=0.8)
    mse = load_distance("mse")
    code = generator.sample(1, seed=4)[0]
    reference = compute_metric(generator, mse, code, method="bp", dtype="float64")
    assert np.linalg.norm(reference) > 1e-6
    for method in ("jacobian", "hvp"):
        metric = compute_metric(generator, mse, code, method=method, dtype="float64")
        assert np.linalg.norm(metric - reference) / np.linalg.norm(reference) <= 1e-9, method
    top = compute_spectrum(generator, mse, code, method="lanczos", top_k=2, tol=1e-12)
    exact = np.linalg.eigvalsh(reference)[::-1][:2]
    assert np.allclose(top.eigenvalues, exact, rtol=1e-9)


def test_stored_code_renders_identically_in_another_process(checkpoint: Path) -> None:
    generator = model(checkpoint, "w", psi=0.7)
    code = generator.sample(1, seed=21)
    script = (
        "import sys, numpy as np, torch\n"
        "from services.geometry import load_generator\n"
        f"g = load_generator({f'stylegan2:{checkpoint}'!r}, space='w', psi=0.7)\n"
        "code = g.sample(1, seed=21)\n"
        "sys.stdout.buffer.write(code.tobytes() + g.images(code).numpy().tobytes())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True).stdout
    ours = code.tobytes() + generator.images(code).numpy().tobytes()
    assert out == ours


# --------------------------------------------------------------------------- bad input


def test_a_missing_key_is_named(tmp_path: Path) -> None:
    state = random_state_dict(**TINY)
    del state["convs.1.noise.weight"]
    torch.save({"g_ema": state}, tmp_path / "bad.pt")
    with pytest.raises(InvalidGeneratorError, match=r"missing key 'convs\.1\.noise\.weight'"):
        load_generator(f"stylegan2:{tmp_path / 'bad.pt'}")


def test_an_unexpected_or_misshapen_key_is_named(tmp_path: Path) -> None:
    state = random_state_dict(**TINY)
    state["convs.0.conv.extra"] = torch.zeros(2)
    torch.save({"g_ema": state}, tmp_path / "extra.pt")
    with pytest.raises(InvalidGeneratorError, match=r"unexpected key 'convs\.0\.conv\.extra'"):
        load_generator(f"stylegan2:{tmp_path / 'extra.pt'}")
    state = random_state_dict(**TINY)
    state["to_rgbs.0.bias"] = torch.zeros(1, 4, 1, 1)
    torch.save(state, tmp_path / "shape.pt")  # a bare g_ema state dict is accepted too
    with pytest.raises(InvalidGeneratorError, match=r"'to_rgbs\.0\.bias' has shape \(1, 4, 1, 1\)"):
        load_generator(f"stylegan2:{tmp_path / 'shape.pt'}")


def test_bad_spaces_and_psi_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidOptionError, match="exists only for StyleGAN2"):
        load_generator("dcgan-faces", space="w+")
    with pytest.raises(InvalidOptionError, match="psi"):
        load_generator("dcgan-faces", psi=0.5)
    for psi in (0.0, 1.5, -1.0):
        with pytest.raises(InvalidOptionError, match=r"\(0, 1\]"):
            model(checkpoint, "w", psi=psi)
    with pytest.raises(InvalidOptionError, match="unknown space"):
        model(checkpoint, "s")
    with pytest.raises(MissingWeightsError, match="no StyleGAN2 checkpoint"):
        load_generator(f"stylegan2:{tmp_path / 'absent.pt'}")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidGeneratorError, match="not a torch checkpoint"):
        load_generator(f"stylegan2:{tmp_path / 'junk.pt'}")
