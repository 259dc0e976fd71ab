"""The paper's claims table: the campaign recipe of docs/figures/make_claims.sh, run end to end
through the service (embedded store, the real CLI, the real comparison), on fewer models and
codes; and the per-model spaces that let one campaign hold models whose spaces differ."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.campaigns import CampaignSpec, plan_members
from services.claims import claim_rows, split_control

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "figures" / "make_claims.sh"


def test_model_spaces_give_one_campaign_models_whose_spaces_differ() -> None:
    spec = CampaignSpec(
        name="c",
        models=["dcgan-faces", "omniart-eye"],
        model_spaces={"omniart-eye": ["noise"]},
        directions=["sefa"],
        latents={"count": 2},  # type: ignore[arg-type]
    )
    planned = {p.name: p.spec for p in plan_members(spec)}
    assert list(planned) == [
        "dcgan-faces/mse/jacobian",
        "dcgan-faces/sefa",
        "omniart-eye[noise]/mse/jacobian",
        "omniart-eye[noise]/sefa",
    ]
    assert planned["dcgan-faces/mse/jacobian"].space == "z"  # the default, as without it
    assert planned["omniart-eye[noise]/sefa"].space == "noise"


def test_model_spaces_must_name_models_of_the_campaign() -> None:
    with pytest.raises(ValidationError, match="not in models: omniart-eye"):
        CampaignSpec(
            name="c",
            models=["dcgan-faces"],
            model_spaces={"omniart-eye": ["noise"]},
            latents={"count": 2},  # type: ignore[arg-type]
        )


def test_split_control_names_base_and_recipe() -> None:
    assert split_control("shuffled-published:3:omniart-eye") == (
        "omniart-eye",
        "shuffled-published:3",
    )
    assert split_control("random-init:0:stylegan2:/m/a.pt") == (
        "stylegan2:/m/a.pt",
        "random-init:0",
    )
    assert split_control("dcgan-faces") == ("dcgan-faces", None)


@pytest.mark.slow
def test_the_claims_recipe_reproduces_the_papers_contrasts(tmp_path: Path) -> None:
    """Trained dcgan-faces against its shuffled control at 2 codes: the trained metric is
    more anisotropic (lower participation ratio) and more homogeneous, and its SeFa top
    direction lies far closer to its Hessian's than the exact random baseline."""
    out, work = tmp_path / "claims", tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "CLAIMS_WORK": str(work),
        "CLAIMS_MODELS": "dcgan-faces,shuffled:0:dcgan-faces",
        "CLAIMS_DIRECTIONS": "sefa",
    }
    subprocess.run(["bash", str(SCRIPT), str(out), "2"], cwd=ROOT, env=env, check=True, timeout=600)
    table = (out / "claims.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| model |"))
    for column in ("participation ratio", "dims to 99 % (service / paper)", "homogeneity log"):
        assert column in header
    assert "| `dcgan-faces` |" in table and "| `shuffled:0:dcgan-faces` |" in table
    for figure in (
        "homogeneity-log.png",
        "homogeneity-log.svg",
        "spectrum-dcgan-faces.png",
        "spectrum-dcgan-faces.svg",
        "montage-dcgan-faces-hessian.png",
        "montage-dcgan-faces-sefa.png",
    ):
        assert (out / figure).stat().st_size > 0

    document = json.loads((out / "claims.json").read_text())
    rows = {row.model: row for row in claim_rows(document)}
    trained, control = rows["dcgan-faces"], rows["shuffled:0:dcgan-faces"]
    assert trained.positions == control.positions == 2
    assert trained.variation is not None and not trained.variation.degenerate
    assert control.variation is not None and not control.variation.degenerate
    assert trained.participation_ratio < control.participation_ratio
    assert trained.top10_share > control.top10_share
    assert trained.homogeneity_log is not None and control.homogeneity_log is not None
    assert trained.homogeneity_log > control.homogeneity_log
    assert trained.sefa is not None
    assert trained.sefa.top1_abs_cosine > 5 * trained.sefa.random_abs_cosine
    assert trained.dims_99_published is not None and 0 < trained.dims_99_published < trained.d
