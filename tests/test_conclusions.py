"""What a comparison lets a reader conclude, on real jobs of a small random StyleGAN2 run
in-process (SQLite): spaces never mixed, one k for every member's homogeneity, paired
differences over shared codes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from api.cli.errors import LOCAL_OWNER
from services import geometry
from services.comparisons import Selection, compare, format_report
from services.config import Settings
from services.pipeline import JobSpec, run_job_inprocess, submit_job
from services.store import Store
from tests.support.checkpoints import write_random_checkpoint
from tests.support.stores import store_fixture

SMALL: dict[str, Any] = {"size": 8, "style_dim": 5, "n_mlp": 2, "channels": {4: 4, 8: 3}}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = write_random_checkpoint(
        tmp_path_factory.mktemp("conclusions") / "sg2.pt", **SMALL, seed=2
    )
    return f"stylegan2:{path}"


store = store_fixture("sqlite_url")


def _run(store: Store, model: str, **fields: Any) -> str:
    defaults = {
        "model": model,
        "distance": "mse",
        "method": "jacobian",
        "dtype": "float64",
        "latents": {"count": 4, "seed": 3},
        "chunk_size": 4,
    }
    # A field given as None is left out (directions take no codes, no chunk size).
    spec = JobSpec(**{k: v for k, v in {**defaults, **fields}.items() if v is not None})
    job, _ = submit_job(store, spec, LOCAL_OWNER, None, settings=Settings())
    return run_job_inprocess(store, job.id, None).id


def test_z_and_w_of_one_model_are_never_aligned_as_they_are(store: Store, model: str) -> None:
    z_job = _run(store, model, space="z")
    w_job = _run(store, model, space="w")
    result = compare(store, [Selection(job_id=z_job), Selection(job_id=w_job)], owner=None, k=3)
    assert result.alignments == []  # not "between methods"
    (note,) = [n for n in result.notes if "not aligned" in n]
    assert "'z'" in note and "'w'" in note and "w->z" in note
    # SeFa reads w: its directions are not set against z-space Hessians either.
    sefa_job = _run(store, model, space="w", method="sefa", latents=None, chunk_size=None, top_k=3)
    against_z = compare(
        store, [Selection(job_id=sefa_job), Selection(job_id=z_job)], owner=None, k=3
    )
    assert against_z.alignments == [] and any("not aligned" in n for n in against_z.notes)
    against_w = compare(
        store, [Selection(job_id=sefa_job), Selection(job_id=w_job)], owner=None, k=3
    )
    assert [a["kind"] for a in against_w.alignments] == ["sefa-vs-hessian"]
    # The default preset is named in the job's record: it is part of what makes it comparable.
    assert store.get_job(sefa_job).resolved["method_options"] == {"preset": "genforce-all"}
    assert "preset=genforce-all" in against_w.selections[0].label
    raw = _run(
        store,
        model,
        space="w",
        method="sefa",
        latents=None,
        chunk_size=None,
        preset="rosinality-cff",
    )
    noted = compare(store, [Selection(job_id=raw), Selection(job_id=w_job)], owner=None, k=3)
    assert any("1/5 of rosinality" in n and "x5" in n for n in noted.notes)  # style_dim 5


def test_homogeneity_uses_one_k_for_every_member(store: Store, model: str) -> None:
    full = _run(store, model, space="w")
    top = _run(store, model, space="w", top_k=2)
    result = compare(store, [Selection(job_id=full), Selection(job_id=top)], owner=None, k=2)
    assert result.common_k == 2
    assert [h["rank"] for h in result.homogeneity if h is not None] == [2, 2]
    assert any("top 2 eigenpairs" in n for n in result.notes)
    # The full-spectrum member's homogeneity is that of its own top-2 eigenpairs.
    ids = result.selections[0].spectrum_ids
    vectors = store.top_k_eigenvectors(ids, 2)
    expected = geometry.homogeneity(result.selections[0].eigenvalues[:, :2], vectors)
    assert result.homogeneity[0] is not None
    assert result.homogeneity[0]["log_offdiag_mean"] == pytest.approx(expected["log_offdiag_mean"])
    assert result.to_json()["homogeneity_common_k"] == 2


def test_a_model_and_its_control_over_the_same_codes_are_compared_position_by_position(
    store: Store, model: str
) -> None:
    trained = _run(store, model, space="z")
    control = _run(store, f"shuffled:0:{model}", space="z")
    result = compare(store, [Selection(job_id=trained), Selection(job_id=control)], owner=None, k=2)
    (paired,) = result.paired
    assert paired["n_matched"] == 4 and paired["matched_by"] == "code"
    top = paired["figures"]["top_eigenvalue"]
    a, b = (s.eigenvalues[:, 0] for s in result.selections)
    assert top["mean_difference"] == pytest.approx(float(np.mean(b - a)))
    assert top["ci"][0] <= top["mean_difference"] <= top["ci"][1]
    assert {"dims_99", "participation_ratio", "top10_share"} <= set(paired["figures"])
    assert result.to_json()["paired"][0]["figures"]["top_eigenvalue"]["n_pairs"] == 4


def test_w_and_z_at_the_same_codes_is_one_comparison_through_the_pull_back(
    store: Store, model: str
) -> None:
    z_job = _run(store, model, space="z")
    w_job = _run(store, model, space="w")
    selections = [Selection(job_id=z_job), Selection(job_id=w_job)]
    result = compare(store, selections, owner=None, k=3, transport="w->z")
    (alignment,) = result.alignments
    assert alignment["transport"] == "w->z" and alignment["n_matched"] == 4
    # H_z = Jᵀ H_w J at every code: the pulled-back average IS the z average, so its top
    # directions coincide with the z member's.
    assert alignment["largest_principal_angle_deg"] < 1e-4
    (paired,) = result.paired
    assert paired["matched_by"].startswith("mapping") and paired["n_matched"] == 4
    z_top, w_top = (s.eigenvalues[:, 0] for s in result.selections)
    top = paired["figures"]["top_eigenvalue"]
    assert top["mean_a"] == pytest.approx(float(z_top.mean()))
    assert top["mean_b"] == pytest.approx(float(w_top.mean()))
    assert {"dims_99", "participation_ratio", "top10_share"} <= set(paired["figures"])
    report = format_report(result)
    assert "across-spaces (w->z)" in report and "Paired over the same codes" in report
    assert "the paper's statistic" in report and "top 5 eigenpairs" in report


def test_a_wplus_member_folded_onto_w_aligns_with_the_w_member(store: Store, model: str) -> None:
    w_job = _run(store, model, space="w")
    wplus_job = _run(store, model, space="w+")
    selections = [Selection(job_id=w_job), Selection(job_id=wplus_job)]
    refused = compare(store, selections, owner=None, k=3)
    assert refused.alignments == [] and any("w+->w" in n for n in refused.notes)
    folded = compare(store, selections, owner=None, k=3, transport="w+->w")
    (alignment,) = folded.alignments
    assert alignment["transport"] == "w+->w" and alignment["layer_slots"] == 4
    # Σ_ij of each w+ metric's blocks is that code's w metric: the folded average is the w one.
    assert alignment["largest_principal_angle_deg"] < 1e-4
    lifted = compare(store, selections, owner=None, k=3, transport="w->w+")
    assert lifted.alignments[0]["coordinates"].startswith("w+")
