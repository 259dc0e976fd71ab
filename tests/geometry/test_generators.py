"""Generator registry and loaders: dcgan-faces, torchscript:, python:, biggan-deep:."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from services.geometry import (
    Generator,
    GeometryError,
    InvalidGeneratorError,
    InvalidLatentError,
    InvalidOptionError,
    MissingWeightsError,
    NonFiniteOutputError,
    UnknownModelError,
    compute_metric,
    list_models,
    load_distance,
    load_generator,
    sefa,
)
from services.geometry.models import FoldableFirstLayer, SefaWeights
from services.geometry.models.dcgan import DCGAN, dcgan_faces_weights_path, tutorial_dcgan
from services.geometry.models.generator import file_sha256

from .conftest import python_generator

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- dcgan-faces


def test_registry_lists_dcgan_faces() -> None:
    (entry,) = [m for m in list_models() if m.name == "dcgan-faces"]
    assert (entry.family, entry.latent_dim) == ("dcgan", 100)


def test_dcgan_faces_loads_the_packaged_weights(dcgan: Generator) -> None:
    assert dcgan.latent_dim == 100 and not dcgan.module.training
    assert dcgan.facts["weights_sha256"] == file_sha256(dcgan_faces_weights_path())
    assert dcgan.facts["output_shape"] == [3, 64, 64]
    assert all(not p.requires_grad for p in dcgan.module.parameters())
    images = dcgan.images(dcgan.sample(4, seed=0))
    assert images.shape == (4, 3, 64, 64)
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0.1


def test_folded_dcgan_equals_the_tutorial_network_in_eval_mode(dcgan: Generator) -> None:
    checkpoint = torch.load(dcgan_faces_weights_path(), map_location="cpu")["netG_state_dict"]
    reference = tutorial_dcgan(100, 64, 3)
    reference.load_state_dict({k.removeprefix("main."): v for k, v in checkpoint.items()})
    reference.eval()
    codes = torch.as_tensor(dcgan.sample(3, seed=4), dtype=torch.float32)
    with torch.no_grad():
        expected = reference(codes[:, :, None, None])
        assert (dcgan.module(codes) - expected).abs().max() < 1e-5


class _CodesAsImages(nn.Module):
    """The tutorial network (codes as 1x1 images), for a Generator built around it."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        images: torch.Tensor = self.net(codes[:, :, None, None])
        return images


def test_float64_dcgan_folds_in_float64_and_agrees_with_autograd_to_1e_12(dcgan: Generator) -> None:
    checkpoint = torch.load(dcgan_faces_weights_path(), map_location="cpu")["netG_state_dict"]
    reference = tutorial_dcgan(100, 64, 3)
    reference.load_state_dict({k.removeprefix("main."): v for k, v in checkpoint.items()})
    reference = reference.double().eval()
    double = dcgan.to("cpu", torch.float64)
    assert double.facts["batchnorm_folded_in"] == "float64"
    assert dcgan.facts["batchnorm_folded_in"] == "float32"
    codes = torch.as_tensor(dcgan.sample(3, seed=4), dtype=torch.float64)
    with torch.no_grad():
        expected = reference(codes[:, :, None, None])
        assert (double.module(codes) - expected).abs().max() < 1e-12
    unfolded = Generator(
        name="unfolded",
        family="dcgan",
        latent_dim=100,
        module=_CodesAsImages(reference),
        facts={},
    )
    for parameter in unfolded.module.parameters():
        parameter.requires_grad_(False)
    mse = load_distance("mse")
    code = dcgan.sample(1, seed=2)[0]
    fast = compute_metric(double, mse, code, dtype="float64")
    # Autograd through the unfolded network (BatchNorm as BatchNorm), float64 throughout.
    slow = compute_metric(unfolded, mse, code, method="hvp", dtype="float64")
    assert np.linalg.norm(fast - slow) / np.linalg.norm(slow) < 1e-12


def test_sampling_is_deterministic_across_processes(dcgan: Generator) -> None:
    script = textwrap.dedent(
        """
        import json
        from services.geometry import load_generator
        print(json.dumps(load_generator("dcgan-faces").sample(3, seed=7).tolist()))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=True,
    ).stdout
    assert np.array_equal(np.array(json.loads(out)), dcgan.sample(3, seed=7))
    assert not np.array_equal(dcgan.sample(3, seed=7), dcgan.sample(3, seed=8))
    assert dcgan.sample(3, seed=7).dtype == np.float64


def test_to_returns_a_converted_copy(dcgan: Generator) -> None:
    double = dcgan.to("cpu", torch.float64)
    assert double.dtype == torch.float64 and dcgan.dtype == torch.float32
    assert dcgan.to("cpu", torch.float32) is dcgan


def _convolution_weights(module: nn.Module) -> list[torch.Tensor]:
    return [p for p in module.parameters() if p.dim() == 4]


def test_convolutional_generators_run_channels_last_on_the_cpu(
    dcgan: Generator, linear: Generator
) -> None:
    for generator in (dcgan, dcgan.to("cpu", torch.float64)):
        weights = _convolution_weights(generator.module)
        assert len(weights) == 4  # the first layer is a linear map
        assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
        assert not all(w.is_contiguous() for w in weights)  # a real layout change
        images = generator.images(generator.sample(2, seed=0))
        assert images.is_contiguous(memory_format=torch.channels_last)
    assert all(p.is_contiguous() for p in linear.module.parameters())  # no 4-D weights


def test_a_generator_that_cannot_run_channels_last_keeps_its_own_layout() -> None:
    generator = python_generator("view_after_convolution")
    assert not generator.channels_last
    for copy in (generator, generator.to("cpu", torch.float64)):
        assert all(p.is_contiguous() for p in copy.module.parameters())
        assert copy.images(copy.sample(2, seed=0)).shape == (2, 3, 4, 4)
    with pytest.raises(RuntimeError, match="view"):  # what channels_last would have done
        generator.module.to(memory_format=torch.channels_last)(  # type: ignore[call-overload]
            torch.as_tensor(generator.sample(2, seed=0), dtype=torch.float32)
        )


# --------------------------------------------------------------------------- torchscript


class _Scriptable(nn.Module):
    def __init__(self, latent_dim: int = 5) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.layer = nn.Linear(latent_dim, 3 * 4 * 4)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.layer(codes)).reshape(-1, 3, 4, 4)


def test_torchscript_with_latent_dim_attribute(tmp_path: Path) -> None:
    module = _Scriptable()
    path = tmp_path / "gen.pt"
    torch.jit.save(torch.jit.script(module), str(path))
    generator = load_generator(f"torchscript:{path}")
    assert generator.latent_dim == 5 and generator.family == "torchscript"
    assert generator.facts["weights_sha256"] == file_sha256(path)
    codes = generator.sample(2, seed=1)
    with torch.no_grad():
        expected = module(torch.as_tensor(codes, dtype=torch.float32))
    assert torch.allclose(generator.images(codes), expected)
    # The derivative machinery works through a scripted module too.
    metric = compute_metric(generator, load_distance("mse"), codes[0], dtype="float64")
    reference = compute_metric(
        generator, load_distance("mse"), codes[0], method="bp", dtype="float64"
    )
    assert np.allclose(metric, reference, rtol=1e-10, atol=1e-14)


def test_torchscript_latent_dim_from_extra_file(tmp_path: Path) -> None:
    traced = torch.jit.trace(_Scriptable(7), torch.zeros(1, 7))  # type: ignore[no-untyped-call]
    path = tmp_path / "traced.pt"
    torch.jit.save(traced, str(path), _extra_files={"latent_dim": "7"})
    assert load_generator(f"torchscript:{path}").latent_dim == 7


def test_torchscript_contract_violations(tmp_path: Path) -> None:
    path = tmp_path / "nodim.pt"
    traced = torch.jit.trace(_Scriptable(), torch.zeros(1, 5))  # type: ignore[no-untyped-call]
    torch.jit.save(traced, str(path))
    with pytest.raises(InvalidGeneratorError, match="latent_dim"):
        load_generator(f"torchscript:{path}")
    with pytest.raises(UnknownModelError, match="no TorchScript file"):
        load_generator(f"torchscript:{tmp_path / 'missing.pt'}")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(InvalidGeneratorError, match="not a loadable TorchScript"):
        load_generator(f"torchscript:{junk}")


# --------------------------------------------------------------------------- python factory


def test_python_factory_from_file_and_module() -> None:
    from_file = python_generator("style_like")
    from_module = load_generator("python:tests.geometry.factories:style_like")
    for generator in (from_file, from_module):
        assert generator.latent_dim == 5 and generator.family == "stylegan-like"
        assert generator.facts["toy"] == "style-like"
        assert generator.facts["latent_distribution"] == "custom sampler"
    codes = from_file.sample(100, seed=0)
    assert codes.min() >= -1 and codes.max() <= 1  # the factory's uniform sampler, not N(0, I)
    assert from_file.facts["weights_sha256"] == from_module.facts["weights_sha256"]


def test_python_factory_contract_violations() -> None:
    with pytest.raises(InvalidGeneratorError, match=r"\(module, latent_dim\)"):
        python_generator("not_a_tuple")
    with pytest.raises(InvalidGeneratorError, match=r"\(2, C, H, W\)"):
        python_generator("wrong_output")
    with pytest.raises(NonFiniteOutputError):
        python_generator("always_nan")
    with pytest.raises(UnknownModelError, match="no callable"):
        python_generator("does_not_exist")
    with pytest.raises(UnknownModelError, match="no Python file"):
        load_generator("python:/nowhere/gen.py:build")
    with pytest.raises(UnknownModelError, match="cannot import"):
        load_generator("python:no_such_module_here:build")


def test_python_factory_with_batchnorm_loads_and_hashes_its_buffers(tmp_path: Path) -> None:
    # A 0-d buffer (BatchNorm's num_batches_tracked) once broke the weights hash at load time.
    source = tmp_path / "bn_gan.py"
    source.write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def build(tracked=0):
                torch.manual_seed(0)
                net = nn.Sequential(
                    nn.Linear(4, 2 * 3 * 3), nn.Unflatten(1, (2, 3, 3)), nn.BatchNorm2d(2),
                    nn.Tanh(),
                )
                net[2].num_batches_tracked.fill_(tracked)
                return net, 4

            def build_tracked():
                return build(tracked=7)
            """
        )
    )
    generator = load_generator(f"python:{source}:build")
    assert generator.module.get_buffer("2.num_batches_tracked").ndim == 0
    assert generator.images(generator.sample(3, seed=0)).shape == (3, 2, 3, 3)
    other = load_generator(f"python:{source}:build_tracked")
    assert generator.facts["weights_sha256"] != other.facts["weights_sha256"]  # buffers count


def test_worked_example_in_the_docs_loads_and_runs(tmp_path: Path) -> None:
    # The first python block of docs/custom-generators.md, saved as the file it says it is.
    text = (REPO / "docs" / "custom-generators.md").read_text()
    example = text.split("```python\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "my_generator.py"
    path.write_text(example)
    generator = load_generator(f"python:{path}:build")
    assert generator.latent_dim == 16 and generator.facts["architecture"] == "mlp-16-192"
    code = generator.sample(1, seed=0)[0]
    result = compute_metric(generator, load_distance("mse"), code, dtype="float64")
    reference = compute_metric(generator, load_distance("mse"), code, method="bp", dtype="float64")
    assert np.allclose(result, reference, rtol=1e-10, atol=1e-15)


# --------------------------------------------------------------------------- bad names and codes


def test_unknown_model_names() -> None:
    for name in ("stylegan9", "", "dcgan"):
        with pytest.raises(UnknownModelError):
            load_generator(name)
    with pytest.raises(UnknownModelError) as error:
        load_generator("stylegan9")
    assert "dcgan-faces" in str(error.value)
    with pytest.raises(InvalidOptionError, match="truncation"):
        load_generator("dcgan-faces", truncation=0.5)


def test_code_validation_names_the_problem(dcgan: Generator) -> None:
    with pytest.raises(InvalidLatentError, match="dimension 50 but dcgan-faces expects 100"):
        dcgan.validate_codes(np.zeros(50))
    bad = np.zeros(100)
    bad[3] = np.nan
    with pytest.raises(InvalidLatentError, match="NaN or inf"):
        dcgan.validate_codes(bad)
    bad[3] = np.inf
    with pytest.raises(InvalidLatentError, match="NaN or inf"):
        dcgan.validate_codes(bad)
    with pytest.raises(InvalidLatentError):
        dcgan.validate_codes(np.zeros((2, 3, 100)))
    with pytest.raises(InvalidLatentError, match="must be numbers"):
        dcgan.validate_codes(["a"] * 100)
    with pytest.raises(InvalidOptionError):
        dcgan.sample(-1, seed=0)
    assert issubclass(InvalidLatentError, GeometryError) and issubclass(GeometryError, ValueError)


# --------------------------------------------------------------------------- BigGAN-deep


def _write_tiny_biggan(directory: Path, *, drop_key: str | None = None) -> None:
    from pytorch_pretrained_biggan import BigGAN, BigGANConfig

    config = BigGANConfig(
        output_dim=16,
        z_dim=16,
        class_embed_dim=16,
        channel_width=4,
        num_classes=10,
        layers=[(True, 16, 8), (False, 8, 4), (True, 4, 2), (False, 2, 1)],  # 4 -> 16 px
        attention_layer_position=1,
        n_stats=51,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BigGAN(config)
        state = model.state_dict()
        for key, value in state.items():
            if "running_vars" in key:
                state[key] = 0.5 + torch.rand_like(value)
            elif "running_means" in key:
                state[key] = 0.1 * torch.randn_like(value)
            elif key.endswith("gamma"):
                state[key] = torch.full_like(value, 0.3)  # switch the attention on
            elif key in ("generator.bn.weight", "generator.bn.bias"):  # left uninitialised
                state[key] = (
                    torch.ones_like(value) if key.endswith("weight") else torch.zeros_like(value)
                )
    if drop_key:
        state.pop(drop_key)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(config.to_json_string())
    torch.save(state, directory / "pytorch_model.bin")


@pytest.fixture(scope="module")
def biggan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("biggan")
    _write_tiny_biggan(directory)
    return directory


def test_biggan_loads_with_noise_plus_embedding_latent(biggan_dir: Path) -> None:
    from pytorch_pretrained_biggan import BigGAN

    generator = load_generator(f"biggan-deep:{biggan_dir}", truncation=0.4)
    assert generator.latent_dim == 32 and generator.family == "biggan-deep"
    assert generator.facts["truncation"] == 0.4
    assert generator.facts["weights_sha256"] == file_sha256(biggan_dir / "pytorch_model.bin")
    codes = generator.sample(3, seed=1)
    assert np.abs(codes[:, :16]).max() <= 2 * 0.4  # truncated noise, scaled
    assert np.array_equal(codes, generator.sample(3, seed=1))
    # The class part is an embedding column of a real class.
    reference = BigGAN.from_pretrained(str(biggan_dir)).eval()
    embeddings = reference.embeddings.weight.detach().double().numpy().T  # (classes, z_dim)
    assert all(np.isclose(embeddings, row[16:]).all(axis=1).any() for row in codes)
    # Same images as the package's own model for (noise, one-hot class) at this truncation.
    classes = [int(np.isclose(embeddings, row[16:]).all(axis=1).argmax()) for row in codes]
    one_hot = torch.nn.functional.one_hot(torch.tensor(classes), 10).float()
    with torch.no_grad():
        expected = reference(torch.as_tensor(codes[:, :16], dtype=torch.float32), one_hot, 0.4)
    images = generator.images(codes)
    assert images.shape == (3, 3, 16, 16)
    assert (images - expected).abs().max() < 1e-5


def test_biggan_metric_matches_bp_and_sefa_uses_noise_columns(biggan_dir: Path) -> None:
    generator = load_generator(f"biggan-deep:{biggan_dir}")
    assert generator.facts["truncation"] == 0.7
    code = generator.sample(1, seed=2)[0]
    mse = load_distance("mse")
    exact = compute_metric(generator, mse, code, dtype="float64")
    reference = compute_metric(generator, mse, code, method="bp", dtype="float64")
    assert np.linalg.norm(exact - reference) <= 1e-6 * np.linalg.norm(reference)
    directions = sefa(generator)
    assert directions.eigenvectors.shape == (32, 16)
    assert np.all(directions.eigenvectors[16:] == 0)
    weight = generator.module.get_parameter("generator.gen_z.weight").double().numpy()[:, :16]
    assert np.allclose(
        directions.eigenvalues, np.linalg.eigvalsh(weight.T @ weight)[::-1], rtol=1e-10
    )


def test_biggan_bad_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match="pytorch_model.bin"):
        load_generator(f"biggan-deep:{tmp_path}")
    broken = tmp_path / "broken"
    _write_tiny_biggan(broken, drop_key="generator.gen_z.bias")
    with pytest.raises(InvalidGeneratorError, match="lacks 1 weights"):
        load_generator(f"biggan-deep:{broken}")
    with pytest.raises(InvalidOptionError, match="truncation"):
        load_generator(f"biggan-deep:{broken}", truncation=1.5)


def test_biggan_spaces_noise_class_and_both(biggan_dir: Path) -> None:
    name = f"biggan-deep:{biggan_dir}"
    both = load_generator(name, space="both", truncation=0.4)
    legacy = load_generator(name, truncation=0.4)  # space "z": the older name of both
    assert both.space == legacy.space == "both" and both.spaces == ("both", "noise", "class")
    assert both.facts == legacy.facts and "space" not in both.facts  # old facts, old hashes
    noise = load_generator(name, space="noise", truncation=0.4)
    klass = load_generator(name, space="class", truncation=0.4)
    assert noise.latent_dim == klass.latent_dim == 16 and noise.space == "noise"
    # The fixed halves are those of the both code sampled with seed 0, recorded.
    base = both.sample(1, seed=0)[0]
    assert np.array_equal(noise.facts["fixed_class_embedding"], base[16:])
    assert np.array_equal(klass.facts["fixed_noise"], base[:16])
    assert 0 <= noise.facts["fixed_class"] < 10
    # A noise code plus its fixed class part renders the both concatenation's image; likewise
    # class codes with the fixed noise; sampled codes come from the matching halves.
    codes = noise.sample(3, seed=5)
    assert codes.shape == (3, 16) and np.abs(codes).max() <= 2 * 0.4
    assert np.array_equal(codes, both.sample(3, seed=5)[:, :16])
    joined = np.concatenate([codes, np.tile(noise.facts["fixed_class_embedding"], (3, 1))], 1)
    for generator in (noise, both):
        generator64 = generator.to("cpu", torch.float64)
        assert generator64.module.fixed_half.dtype == torch.float64
    image_noise = noise.to("cpu", torch.float64).images(codes)
    image_both = both.to("cpu", torch.float64).images(joined)
    assert torch.equal(image_noise, image_both)
    class_codes = klass.sample(2, seed=6)
    assert np.array_equal(class_codes, both.sample(2, seed=6)[:, 16:])
    joined = np.concatenate([np.tile(klass.facts["fixed_noise"], (2, 1)), class_codes], 1)
    assert torch.equal(
        klass.to("cpu", torch.float64).images(class_codes),
        both.to("cpu", torch.float64).images(joined),
    )
    with pytest.raises(InvalidOptionError, match="no space 'w'"):
        load_generator(name, space="w")
    with pytest.raises(InvalidOptionError, match="psi"):
        load_generator(name, space="noise", psi=0.5)
    with pytest.raises(InvalidOptionError, match="only for BigGAN"):
        load_generator("dcgan-faces", space="noise")


@pytest.mark.parametrize("space", ["both", "noise", "class"])
def test_biggan_exact_methods_match_bp_in_each_space(biggan_dir: Path, space: str) -> None:
    generator = load_generator(f"biggan-deep:{biggan_dir}", space=space)
    code = generator.sample(1, seed=2)[0]
    mse = load_distance("mse")
    reference = compute_metric(generator, mse, code, method="bp", dtype="float64")
    for method in ("jacobian", "hvp"):
        exact = compute_metric(generator, mse, code, method=method, dtype="float64")
        assert np.linalg.norm(exact - reference) <= 1e-9 * np.linalg.norm(reference), method


def test_biggan_sefa_per_space(biggan_dir: Path) -> None:
    name = f"biggan-deep:{biggan_dir}"
    noise = load_generator(name, space="noise")
    weight = noise.module.get_parameter("generator.gen_z.weight").double().numpy()[:, :16]
    directions = sefa(noise)
    assert directions.eigenvectors.shape == (16, 16)
    assert np.allclose(
        directions.eigenvalues, np.linalg.eigvalsh(weight.T @ weight)[::-1], rtol=1e-10
    )
    # The same directions as in both, where the class columns are zero.
    in_both = sefa(load_generator(name, space="both"))
    assert np.allclose(np.abs(in_both.eigenvectors[:16]), np.abs(directions.eigenvectors))
    with pytest.raises(InvalidOptionError, match="space 'class' has none"):
        sefa(load_generator(name, space="class"))


def test_dcgan_first_layer_matrix_with_and_without_the_batchnorm_folded(dcgan: Generator) -> None:
    checkpoint = torch.load(dcgan_faces_weights_path(), map_location="cpu")["netG_state_dict"]
    module = dcgan.module
    assert isinstance(module, FoldableFirstLayer) and isinstance(module, SefaWeights)
    raw = module.first_layer_matrix(batchnorm_folded=False).double()
    folded = module.first_layer_matrix(batchnorm_folded=True).double()
    assert torch.equal(raw, checkpoint["main.0.weight"].reshape(100, -1).T.double())
    scale = checkpoint["main.1.weight"] / torch.sqrt(checkpoint["main.1.running_var"] + 1e-5)
    expected = raw * scale.double().repeat_interleave(16)[:, None]  # one scale per channel
    assert torch.allclose(folded, expected, rtol=1e-5, atol=1e-8)
    assert isinstance(module, DCGAN)
    (default,) = module.sefa_weights()
    (as_run,) = module.sefa_weights(fold_batchnorm=True)
    assert torch.equal(default.double(), raw) and torch.equal(as_run.double(), folded)
    # The folding rescales rows unevenly, so SeFa's directions move (several degrees).
    top = [np.linalg.eigh((a.T @ a).numpy())[1][:, -1] for a in (raw, folded)]
    assert abs(float(top[0] @ top[1])) < np.cos(np.radians(0.1))


def test_the_catalogue_imports_without_torch() -> None:
    script = (
        "import sys\n"
        "from services.model_catalogue import list_models, list_schemes\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules\n"
        "print(sorted(m.name for m in list_models()), len(list_schemes()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("['dcgan-faces', 'omniart-eye']")
