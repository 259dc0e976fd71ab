"""The benchmarks' machinery: the one results writer, run_all's list, and every part of
bench/gpu.sh run on the CPU at small sizes (no GPU is needed to test them), with its refusal."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The rows' code paths on a small convolutional generator (the GPU call uses dcgan-faces).
TINY = f"python:{ROOT / 'tests' / 'geometry' / 'factories.py'}:tiny_dcgan"
sys.path.insert(0, str(ROOT / "bench"))

import gpu_rows  # noqa: E402
import results_io  # noqa: E402
import run_all  # noqa: E402
from gpu_rows import Row  # noqa: E402
from results_io import Table, write_results  # noqa: E402


def test_write_results_dates_and_places_each_table_and_gathers_the_latest(tmp_path: Path) -> None:
    table = Table("Store", ["path", "ms", "ratio"], [["write", 7.94321, None], ["read", 2, 1.5]])
    json_path, md_path = write_results("store", {"repeats": 5}, table, tmp_path)
    record = json.loads(json_path.read_text())
    assert record["benchmark"] == "store" and record["repeats"] == 5
    assert record["machine"]["cpus"] == os.cpu_count() and len(record["load_average"]) == 3
    markdown = md_path.read_text()
    date = record["measured_at"][:10]
    assert re.search(
        rf"Measured {date} \d\d:\d\d UTC on {os.cpu_count()} × .+; load average", markdown
    )
    assert "| path | ms | ratio |" in markdown
    assert "| write | 7.94 | – |" in markdown and "| read | 2 | 1.5 |" in markdown
    write_results("api", {}, Table("API", ["route"], [["GET /v1/jobs/{id}"]]), tmp_path)
    latest = (tmp_path / "latest.md").read_text()
    # Both tables, one heading level down, in name order; history and latest are not tables.
    assert latest.index("### API") < latest.index("### Store")
    (tmp_path / "history.md").write_text("# old notes\n")
    assert "old notes" not in results_io.write_latest(tmp_path).read_text()


def test_a_row_that_does_not_fit_its_columns_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a row of 1 cells under 2 columns"):
        write_results("x", {}, Table("X", ["a", "b"], [[1]]), tmp_path)
    assert not (tmp_path / "x.md").exists()


def test_run_all_finds_every_benchmark_and_its_quick_flags_exist() -> None:
    names = run_all.benchmarks()
    on_disk = {p.stem.removeprefix("bench_") for p in (ROOT / "bench").glob("bench_*.py")}
    assert set(names) == on_disk
    assert {"scale", "must_show", "analysis_scale", "geometry", "store", "api"} <= set(names)
    for name in names:
        source = (ROOT / "bench" / f"bench_{name}.py").read_text()
        for flag in (a for a in run_all.QUICK.get(name, []) if a.startswith("--")):
            assert f'"{flag}"' in source, f"bench_{name}.py has no {flag} option"
        assert run_all.command(name, quick=False)[2:] == []


def test_run_all_refuses_an_unknown_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_all.main(["nonesuch"])
    assert "no benchmark named nonesuch" in capsys.readouterr().err


# --------------------------------------------------------------------------- bench/gpu.sh


def _gpu_sh(tmp_path: Path, nvidia_smi: str | None) -> subprocess.CompletedProcess[str]:
    """bench/gpu.sh with a PATH holding bash's tools and, optionally, a fake nvidia-smi."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("bash", "dirname", "env", "cat"):
        found = shutil.which(tool)
        assert found is not None, f"{tool} is not installed"
        (tools / tool).symlink_to(found)
    if nvidia_smi is not None:
        (tools / "nvidia-smi").write_text(f"#!/usr/bin/env bash\n{nvidia_smi}\n")
        (tools / "nvidia-smi").chmod(0o755)
    env = {"PATH": str(tools), "VENV": str(tmp_path / "no-venv")}
    return subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("nvidia_smi", "reason"),
    [
        (None, "nvidia-smi is not installed"),
        ("exit 9", "lists no CUDA device"),
        ("true", "lists no CUDA device"),
    ],
)
def test_gpu_sh_refuses_clearly_without_a_cuda_device(
    tmp_path: Path, nvidia_smi: str | None, reason: str
) -> None:
    before = {p.name: p.stat().st_mtime for p in (ROOT / "bench" / "results").iterdir()}
    done = _gpu_sh(tmp_path, nvidia_smi)
    assert done.returncode == 2
    assert reason in done.stderr and "nothing was measured" in done.stderr
    assert not (tmp_path / "no-venv").exists()  # refused before installing anything
    after = {p.name: p.stat().st_mtime for p in (ROOT / "bench" / "results").iterdir()}
    assert after == before


def test_gpu_rows_refuses_cuda_where_torch_sees_none(tmp_path: Path) -> None:
    if gpu_rows.torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the refusal cannot be shown here")
    assert gpu_rows.main(["--device", "cuda", "--out-dir", str(tmp_path)]) == 2
    assert list(tmp_path.iterdir()) == []


def test_jacobian_row_is_its_time_over_the_forward_floor() -> None:
    (row,) = gpu_rows.jacobian_rows("cpu", codes=2, distances=["mse"], repeats=1, model=TINY)
    assert row.seconds is not None and row.floor_s is not None and row.ratio is not None
    assert row.ratio == pytest.approx(row.seconds / row.floor_s)
    assert row.meets == (row.ratio <= 2.0) and row.target == "≤ 2× floor"
    # One exact metric takes d products, each at least a forward pass's share: it cannot be
    # far below one forward pass over a batch of d codes.
    assert row.ratio > 0.3


def test_worker_rate_row_runs_a_real_job_through_the_chunk_function() -> None:
    row = gpu_rows.worker_rate_row("cpu", codes=4, chunk_size=2, model=TINY)
    assert row.seconds is not None and row.floor_s is not None and row.ratio is not None
    assert row.ratio == pytest.approx(row.floor_s / row.seconds) and row.meets == (row.ratio >= 0.9)
    assert "4 codes in chunks of 2" in row.detail


def test_stylegan2_rows_take_w_by_jacobian_and_w_plus_by_lanczos(tmp_path: Path) -> None:
    rows = gpu_rows.stylegan2_rows(
        "cpu", tmp_path, sizes=[8], style_dim=8, n_mlp=1, channels={8: {4: 4, 8: 4}}, top_k=3
    )
    assert [r.row for r in rows] == [
        "StyleGAN2 8 px, w, jacobian",
        "StyleGAN2 8 px, w+, lanczos top-3",
    ]
    # W: d = style_dim, one product per coordinate; W+ at 8 px: 4 style slots of 8.
    assert rows[0].detail.startswith("d = 8, 8 products")
    assert rows[1].detail.startswith("d = 32, ")
    assert all(r.ratio == pytest.approx(r.seconds / r.floor_s) for r in rows)


def test_homogeneity_row_floor_is_its_flop_at_the_measured_gemm_rate() -> None:
    row = gpu_rows.homogeneity_row("cpu", n=6, d=8, repeats=1)
    assert row.seconds is not None and row.floor_s is not None
    match = re.search(r"GEMM ([\d.e+]+) GFLOP/s", row.detail)
    assert match is not None, row.detail
    flop = 2 * 6 * (8 * 9 // 2) * 6 * 8  # 2·N·T·N·d, T = d(d+1)/2
    assert row.floor_s == pytest.approx(flop / (float(match.group(1)) * 1e9), rel=1e-3)


def test_compile_rows_record_a_variant_that_fails_and_measure_the_others() -> None:
    def broken(module: gpu_rows.torch.nn.Module) -> gpu_rows.torch.nn.Module:
        raise RuntimeError("cannot trace jvp")

    rows = gpu_rows.compile_rows(
        "cpu", codes=1, repeats=1, variants={"identity": lambda m: m, "broken": broken}, model=TINY
    )
    eager, identity, failed = rows
    assert eager.ratio == 1.0 and identity.floor_s == eager.seconds
    assert identity.ratio == pytest.approx(identity.seconds / eager.seconds)
    assert failed.seconds is None and failed.detail == "fails: RuntimeError: cannot trace jvp"


def test_run_rows_keeps_to_its_budget_and_records_failures() -> None:
    def slow() -> list[Row]:
        time.sleep(0.2)
        return [Row("slow", 0.2)]

    def failing() -> list[Row]:
        raise ValueError("out of memory")

    rows = gpu_rows.run_rows([("failing", failing), ("slow", slow), ("late", slow)], 0.1)
    assert [r.row for r in rows] == ["failing", "slow", "late"]
    assert rows[0].detail == "fails: ValueError: out of memory"
    assert rows[1].seconds == 0.2 and rows[2].detail == "not run: the 0.1 s budget was spent"
    table = gpu_rows.table(rows, "cpu")
    assert [len(r) for r in table.rows] == [len(table.columns)] * 3
