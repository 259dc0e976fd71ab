"""Selections that never mix unlike data, on real spectra of dcgan-faces (SQLite, in-process),
and the README's compare examples run as written."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api import cli
from services import export
from services.comparisons import MixedSelectionError, Selection, compare, parse_selection
from services.config import Settings
from services.pipeline import JobSpec, run_job_inprocess, submit_job
from services.store import InvalidDataError, NotFoundError, Store
from tests.support.stores import store_fixture

REPO = Path(__file__).resolve().parents[1]
MODEL = "dcgan-faces"
BASE = {"model": MODEL, "distance": "mse", "method": "jacobian", "top_k": 12, "chunk_size": 1}

MAX_ARRAY_BYTES = Settings().max_array_bytes  # the default limit


store = store_fixture("sqlite_url")


def _run(store: Store, progress: Any = None, **fields: Any) -> str:
    spec = JobSpec(**{**BASE, "latents": {"count": 3, "seed": 5}, **fields})
    job, _ = submit_job(store, spec, cli.LOCAL_OWNER, None, settings=Settings())
    return run_job_inprocess(store, job.id, progress).id


def test_float32_and_float64_are_not_mixed_and_a_filter_picks_one(store: Store) -> None:
    f32 = _run(store)
    _run(store, dtype="float64")
    pooled = Selection(model=MODEL, distance="mse", method="jacobian")
    with pytest.raises(MixedSelectionError) as caught:
        compare(store, [pooled], owner=None)
    error = caught.value
    groups = error.extra["groups"]
    assert error.extra["differing"] == ["dtype"] and isinstance(groups, list) and len(groups) == 2
    assert '"dtype"' in str(error) and "float64" in str(error)
    result = compare(store, [pooled.model_copy(update={"dtype": "float32"})], owner=None)
    (chosen,) = result.selections
    assert chosen.job_ids == [f32] and chosen.key.dtype == "float32"


def test_top_k_and_full_spectra_are_not_mixed(store: Store) -> None:
    _run(store)
    _run(store, top_k=None)
    with pytest.raises(
        MixedSelectionError, match=r"command line: SELECTION@kept=(all|top-[0-9]+)\)"
    ):
        compare(store, [Selection(model=MODEL, distance="mse", method="jacobian")], owner=None)


def test_an_imported_copy_counts_once(store: Store) -> None:
    job_id = _run(store)
    published = export.export_job(store, job_id)
    data = export.to_npz_bytes(published)
    imported, _ = export.import_job(
        store,
        cli.LOCAL_OWNER,
        export.from_npz_bytes(data, max_array_bytes=MAX_ARRAY_BYTES),
        source_sha256=export.content_sha256(data),
    )
    alone = compare(store, [Selection(job_id=job_id)], owner=None)
    pooled = compare(store, [Selection(model=MODEL, distance="mse", method="jacobian")], owner=None)
    (selection,) = pooled.selections
    assert selection.eigenvalues.shape[0] == 3 and selection.duplicates_dropped == 3
    assert selection.job_ids == [job_id] and imported.id != job_id
    pooled_h, alone_h = pooled.homogeneity[0], alone.homogeneity[0]
    assert pooled_h is not None and alone_h is not None
    assert pooled_h["log_offdiag_mean"] == alone_h["log_offdiag_mean"]
    assert any("repeats of positions" in note for note in pooled.notes)


def test_a_cancelled_jobs_partial_results_are_left_out_unless_asked(store: Store) -> None:
    holder: dict[str, str] = {}

    def cancel_after_first(done: int, total: int) -> None:
        if done == 1:
            store.request_cancel(holder["id"])

    spec = JobSpec.model_validate({**BASE, "latents": {"count": 3, "seed": 9}})
    job, _ = submit_job(store, spec, cli.LOCAL_OWNER, None, settings=Settings())
    holder["id"] = job.id
    cancelled = run_job_inprocess(store, job.id, cancel_after_first)
    assert cancelled.status == "cancelled" and 1 <= cancelled.n_done < 3
    complete = _run(store)
    pooled = compare(store, [Selection(model=MODEL, distance="mse", method="jacobian")], owner=None)
    assert pooled.selections[0].job_ids == [complete]
    assert pooled.selections[0].partial_left_out == {"cancelled": cancelled.n_done}
    with pytest.raises(InvalidDataError, match="include_partial"):
        compare(store, [Selection(job_id=job.id)], owner=None)
    partial = compare(store, [Selection(job_id=job.id, include_partial=True)], owner=None)
    assert partial.selections[0].eigenvalues.shape[0] == cancelled.n_done


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dcgan-faces::sefa", (MODEL, None, "sefa")),
        ("dcgan-faces:sefa", (MODEL, None, "sefa")),
        ("shuffled:0:dcgan-faces::ganspace", ("shuffled:0:dcgan-faces", None, "ganspace")),
        ("dcgan-faces:mse:jacobian", (MODEL, "mse", "jacobian")),
        ("python:/x/gen.py:build:mse:hvp", ("python:/x/gen.py:build", "mse", "hvp")),
    ],
)
def test_selection_texts(text: str, expected: tuple[str, str | None, str]) -> None:
    selection = parse_selection(text)
    assert (selection.model, selection.distance, selection.method) == expected


def test_directions_with_a_distance_say_how_to_write_them() -> None:
    with pytest.raises(ValueError, match="dcgan-faces::sefa"):
        parse_selection("dcgan-faces:mse:sefa")


def _readme_compare_examples() -> list[list[str]]:
    """Every `spectra compare` line of the README's code blocks, split as a shell would; lines
    on shell variables ($W, ...) belong to the walk-through, which
    docs/figures/make_zoo_figures.sh runs as a whole."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [
        shlex.split(line)[1:]
        for line in lines
        if line.startswith("spectra compare ") and "$" not in line
    ]


def test_the_readme_compare_examples_run_as_written(
    store: Store,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    examples = _readme_compare_examples()
    assert len(examples) >= 3
    job_id = _run(store, top_k=None)
    sefa, _ = submit_job(
        store, JobSpec(model=MODEL, method="sefa"), cli.LOCAL_OWNER, None, settings=Settings()
    )
    run_job_inprocess(store, sefa.id)
    monkeypatch.chdir(tmp_path)
    for argv in examples:
        names = {"JOB_A": job_id, "JOB_ID": job_id, "JOB": job_id, "JOB_B": sefa.id}
        argv = [names.get(word, word) for word in argv]
        assert cli.main([*argv, "--database", sqlite_url]) == 0, capsys.readouterr().err
    output = capsys.readouterr().out
    assert "sefa-vs-hessian" in output and "(exact)" in output
    result = json.loads((tmp_path / "result.json").read_text())
    pair = result["alignments"][0]  # the result document (version 1)
    assert result["version"] == 1 and pair["kind"] == "sefa-vs-hessian"
    assert np.asarray(pair["abs_cosine"]).shape == (10, 10)  # the k x k |cos| matrix
    assert result["members"][0]["homogeneity"]["n_positions"] == 3
    for name in ("spectrum.png", "spectrum.svg", "spectrum.pdf", "homogeneity-log.pdf"):
        assert (tmp_path / "figures" / name).stat().st_size > 1000
    assert any(
        p.name.startswith("montage-dcgan-faces_sefa") for p in (tmp_path / "plots").iterdir()
    )


def test_a_random_lpips_backbone_is_its_own_label_where_spectra_are_listed(store: Store) -> None:
    job_id = _run(store, distance="lpips-alex", random_backbone=True, top_k=4)
    (row,) = {s.distance for s in store.list_spectrum_summaries(job_id=job_id)}
    assert row == "lpips-alex[random-backbone]"
    # The real LPIPS's name selects none of them; the labelled name selects them all.
    assert store.list_spectrum_summaries(model=MODEL, distance="lpips-alex") == []
    labelled = store.list_spectrum_summaries(model=MODEL, distance="lpips-alex[random-backbone]")
    assert len(labelled) == 3
    result = compare(
        store, [parse_selection(f"{MODEL}:lpips-alex[random-backbone]:jacobian")], owner=None
    )
    label = result.selections[0].label
    assert label.count("random") == 1 and "lpips-alex" in label, label


def test_every_narrowing_a_refusal_suggests_can_be_written_as_text() -> None:
    selection = parse_selection("dcgan-faces:mse:jacobian@kept=top-20,dtype=float32,space=w")
    assert (selection.model, selection.distance, selection.method) == (
        "dcgan-faces",
        "mse",
        "jacobian",
    )
    assert (selection.kept, selection.dtype, selection.space) == ("top-20", "float32", "w")
    assert parse_selection("dcgan-faces::sefa@include_partial=true").include_partial is True
    assert parse_selection("0a1b2c3d@kept=all").job_id == "0a1b2c3d"  # a job id prefix too
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_selection("dcgan-faces:mse:jacobian@colour=red")
    with pytest.raises(ValueError):
        parse_selection("dcgan-faces:mse:jacobian@kept=twenty")  # the field's own rule


def test_directions_not_stored_yet_name_the_command(store: Store) -> None:
    from services.comparisons.selection import nothing_stored

    message = nothing_stored(Selection(model="stylegan2:ffhq.pt", method="sefa"))
    assert "spectra run --model stylegan2:ffhq.pt --method sefa" in message
    with pytest.raises(NotFoundError, match="spectra run --model dcgan-faces --method ganspace"):
        compare(store, [Selection(model=MODEL, method="ganspace")], owner=None)
