"""The command line against a live server (and the same list commands on the database):
`jobs`, `spectra`, `status`, `compare`, `export` and `plots` with --server; and the server
commands load neither torch, numpy nor SQLAlchemy."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.cli import LOCAL_OWNER, main
from api.client import SpectraClient
from services.store import Store
from tests.ui.conftest import LiveServer

MODEL = "dcgan-faces"


@pytest.fixture(scope="module")
def computed(live_server: LiveServer) -> dict[str, Any]:
    token = live_server.store.create_api_key("dora", ["read", "submit"])[1]
    with SpectraClient(live_server.url, token) as client:
        job = client.submit({"model": MODEL, "top_k": 6, "latents": {"count": 2, "seed": 5}})
        job = client.follow(job.id, progress=False, interval_s=0.2, timeout_s=180)
    assert job.status == "succeeded", job.error
    return {"token": token, "job": job.id}


@pytest.fixture
def server_in_env(
    live_server: LiveServer, computed: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment names the server and carries the token, as a user's shell would."""
    monkeypatch.setenv("SPECTRA_SERVER_URL", live_server.url)
    monkeypatch.setenv("SPECTRA_TOKEN", computed["token"])


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_lists_status_compare_export_plots_against_a_server(
    live_server: LiveServer,
    computed: dict[str, Any],
    tmp_path: Path,
    module_pg_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    server_in_env: None,
) -> None:
    job_id = computed["job"]

    code, out, _ = run(["jobs"], capsys)
    assert code == 0 and job_id in out and "succeeded" in out and MODEL in out
    code, out, _ = run(["jobs", "--status", "failed"], capsys)
    assert code == 0 and out.strip() == "no jobs"
    code, out, _ = run(["jobs", "--json"], capsys)
    assert [j["id"] for j in json.loads(out)] == [job_id]

    code, out, _ = run(["spectra", "--job", job_id, "--json", "--order-by=-top_eigenvalue"], capsys)
    listed = json.loads(out)
    stored = {s.id: s for s in live_server.store.list_spectra(job_id=job_id)}
    assert code == 0 and {s["id"] for s in listed} == set(stored)
    tops = [s.top_eigenvalue for s in stored.values()]
    assert None not in tops
    assert [s["top_eigenvalue"] for s in listed] == sorted(
        (t for t in tops if t is not None), reverse=True
    )

    code, out, _ = run(["status", job_id], capsys)
    assert code == 0 and out.startswith(f"job {job_id} succeeded, 2/2 done, 0 failed")

    plots = tmp_path / "plots"
    report = tmp_path / "compare.json"
    asked = [job_id, f"{MODEL}:mse:jacobian", "--k", "3", "--formats", "png,svg"]
    code, out, _ = run(["compare", *asked, "--plots", str(plots), "--json", str(report)], capsys)
    assert code == 0 and "dims 99 % median" in out and "between-methods" in out
    assert all(p.read_bytes()[:4] in (b"\x89PNG", b"<?xm") for p in plots.iterdir())
    document = json.loads(report.read_text())
    assert document["version"] == 1 and document["alignments"][0]["k"] == 3
    # The embedded path (the same database, in process): the same tables, flags and files.
    monkeypatch.delenv("SPECTRA_SERVER_URL")
    local_plots = tmp_path / "local-plots"
    code, local_out, _ = run(
        ["compare", *asked, "--plots", str(local_plots), "--database", module_pg_url], capsys
    )
    assert code == 0

    def tables(text: str) -> str:
        return text.split("\nwrote ")[0]  # the file lines name the directory

    assert tables(local_out) == tables(out)
    assert {p.name for p in local_plots.iterdir()} == {p.name for p in plots.iterdir()}
    assert {"spectrum.png", "spectrum.svg", "homogeneity-log.png", "homogeneity-linear.svg"} <= {
        p.name for p in plots.iterdir()
    }
    code, csv_out, _ = run(
        ["compare", *asked, "--table-format", "csv", "--database", module_pg_url], capsys
    )
    assert code == 0 and csv_out.startswith("table,member,")
    monkeypatch.setenv("SPECTRA_SERVER_URL", live_server.url)

    out_file = tmp_path / "job.npz"
    code, _, _ = run(["export", job_id, "-o", str(out_file)], capsys)
    with np.load(io.BytesIO(out_file.read_bytes())) as archive:
        ordered = sorted(stored.values(), key=lambda s: s.latent_index)
        np.testing.assert_allclose(
            archive["eva"][:, ::-1], [s.eigenvalues for s in ordered], rtol=1e-6
        )

    code, _, _ = run(["plots", job_id, "--out", str(tmp_path / "only")], capsys)
    assert code == 0 and (tmp_path / "only" / "spectrum.png").exists()
    code, _, err = run(
        ["plots", job_id, "--out", str(tmp_path / "local"), "--database", module_pg_url], capsys
    )
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "only").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "local").iterdir())  # the same files
    assert any(name.startswith("montage-") for name in names) and "homogeneity-log.png" in names

    code, _, err = run(["status", "00000000-0000-4000-8000-000000000000"], capsys)
    assert code == 1 and "HTTP 404" in err
    code, _, err = run(
        ["jobs", "--server", live_server.url, "--database", "sqlite:///x.db"], capsys
    )
    assert code == 2 and "not both" in err
    monkeypatch.delenv("SPECTRA_TOKEN")
    code, _, err = run(["jobs", "--server", live_server.url, "--token", ""], capsys)
    assert code == 2 and "SPECTRA_TOKEN" in err


def test_list_commands_on_the_database(
    live_server: LiveServer,
    computed: dict[str, Any],
    module_pg_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SPECTRA_SERVER_URL", raising=False)
    code, out, _ = run(["jobs", "--database", module_pg_url, "--json"], capsys)
    owners = {j["owner"] for j in json.loads(out)}
    assert code == 0 and "dora" in owners  # the database path sees every owner
    code, out, _ = run(["spectra", "--database", module_pg_url, "--job", computed["job"]], capsys)
    assert code == 0 and len(out.strip().splitlines()) == 3  # header and two spectra


def test_server_commands_load_no_torch_numpy_or_sqlalchemy(
    live_server: LiveServer, computed: dict[str, Any]
) -> None:
    probe = (
        "import sys\n"
        "from api.cli import main\n"
        "try:\n"
        "    code = main(sys.argv[1:])\n"
        "except SystemExit as stop:  # --help\n"
        "    code = stop.code\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'sqlalchemy', 'pydantic', 'fastapi') if m in sys.modules)\n"
        "print('HEAVY', heavy, 'httpx' in sys.modules)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "SPECTRA_SERVER_URL": live_server.url, "SPECTRA_TOKEN": computed["token"]}
    # The computed job has succeeded: its cancel is refused (409, exit 1) and says so.
    for args, needs_http, expected in (
        (["status", "--help"], False, 0),
        (["status", computed["job"]], True, 0),
        (["jobs"], True, 0),
        (["cancel", computed["job"]], True, 1),
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == expected, (args, done.stderr)
        assert f"HEAVY [] {needs_http}" in done.stdout, (args, done.stdout)
        if args[0] == "cancel":
            assert "HTTP 409 Job already finished" in done.stderr, done.stderr
            assert "already succeeded; nothing was changed" in done.stderr, done.stderr


def test_submit_help_and_submit_against_a_server_load_no_torch(
    live_server: LiveServer, computed: dict[str, Any]
) -> None:
    """The JobSpec flags and the spec's checks come from a torch-free module: `submit --help`
    and a submit to a server never import torch, the geometry core or SQLAlchemy."""
    probe = (
        "import sys\n"
        "from api.cli import main\n"
        "try:\n"
        "    code = main(sys.argv[1:])\n"
        "except SystemExit as stop:  # --help\n"
        "    code = stop.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sqlalchemy')\n"
        "               or m.startswith('services.geometry') or m.startswith('services.pipeline'))\n"
        "print('HEAVY', heavy[:5])\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "SPECTRA_SERVER_URL": live_server.url, "SPECTRA_TOKEN": computed["token"]}
    for args, shows in (
        (["submit", "--help"], "--top-k"),
        (
            ["submit", "--model", MODEL, "--latents", "1", "--seed", "77", "--top-k", "2"],
            "submitted",
        ),
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, (args, done.stderr)
        assert "HEAVY []" in done.stdout and shows in done.stdout, (args, done.stdout)


def test_publish_a_local_job_and_the_404_that_points_at_it(
    live_server: LiveServer,
    computed: dict[str, Any],
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    server_in_env: None,
) -> None:
    """A job computed embedded belongs to `local` in the local database; the server does not
    know it, and its 404 says where the job is and how to publish it; `publish` copies it
    (the same eigenvalues, the key's owner) and is idempotent."""
    monkeypatch.setenv("SPECTRA_DATABASE_URL", sqlite_url)
    from services.config import get_settings

    get_settings.cache_clear()
    try:
        # In its own process, as a user runs it: torch's forward-mode AD levels are global to
        # a process, and the live server's dispatcher thread may be computing at this moment.
        run_local = ["run", "--model", MODEL, "--latents", "2", "--seed", "9", "--top-k", "4"]
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", *run_local, "--database", sqlite_url],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        local_id = done.stdout.strip().splitlines()[-1]
        # Off a terminal the progress display prints a line per update, no carriage returns.
        assert "\r" not in done.stderr
        assert f"{MODEL} jacobian: 2/2 codes" in done.stderr.splitlines()
        local = Store(sqlite_url)
        assert local.get_job(local_id).owner == LOCAL_OWNER
        local_values = np.array([s.eigenvalues for s in local.list_spectra(job_id=local_id)])
        local.close()

        code, _, err = run(["status", local_id], capsys)
        assert code == 1 and "HTTP 404" in err
        assert f"job {local_id} is in the local database ({sqlite_url}, owner 'local')" in err
        assert f"`spectra publish {local_id} --server URL`" in err
        code, _, err = run(["status", "00000000-0000-4000-8000-000000000000"], capsys)
        assert code == 1 and "HTTP 404" in err and "local database" not in err

        # Ids as the tables print them: a unique prefix names the job, a malformed one is refused.
        code, out, err = run(["publish", local_id[:8]], capsys)
        assert code == 0, err
        assert f"job {local_id} published to {live_server.url}: 2 spectra, owner 'dora'" in out
        server_id = out.strip().splitlines()[-1]
        served = live_server.store.get_job(server_id)
        assert served.owner == "dora" and served.status == "succeeded"
        server_values = [s.eigenvalues for s in live_server.store.list_spectra(job_id=server_id)]
        np.testing.assert_allclose(np.array(server_values), local_values, rtol=1e-6)
        code, out, _ = run(["publish", local_id], capsys)
        assert code == 0 and "already published" in out
        assert out.strip().splitlines()[-1] == server_id
        code, _, err = run(["publish", "not-hex"], capsys)
        assert code == 2 and "spectra publish:" in err and "not-hex" in err
        exported = Path(sqlite_url.removeprefix("sqlite:///")).with_name("local.npz")
        code, out, err = run(
            ["export", local_id[:8], "-o", str(exported), "--database", sqlite_url], capsys
        )
        assert code == 0 and exported.is_file(), err
        code, out, _ = run(["status", server_id], capsys)
        assert code == 0 and "succeeded" in out
    finally:
        get_settings.cache_clear()


def test_campaign_commands_against_a_server(
    live_server: LiveServer,
    computed: dict[str, Any],
    module_pg_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    server_in_env: None,
) -> None:
    """`spectra campaign` works against a server as `compare` and `export` do, and prints
    the same status table as from the database."""
    submit = ["campaign", "submit", "--name", "cli-campaign", "--models", MODEL, "--latents", "2"]
    code, out, err = run([*submit, "--top-k", "4", "--directions", "", "--tags", "cli"], capsys)
    assert code == 0, err
    assert "campaign cli-campaign created: 1 members" in out
    campaign_id = out.strip().splitlines()[-1]
    with SpectraClient(live_server.url, computed["token"]) as client:
        deadline = time.monotonic() + 180
        while not (campaign := client.campaign(campaign_id)).finished:
            assert time.monotonic() < deadline, campaign
            time.sleep(0.2)
        assert [c.id for c in client.campaigns(tag="cli")] == [campaign_id]
    assert campaign.status == "succeeded" and campaign.created_at.tzinfo is not None
    job_id = campaign.members[0].job_id

    code, out, _ = run(["campaign", "status", campaign_id], capsys)
    assert code == 0 and out.startswith("campaign cli-campaign: succeeded\n") and job_id in out
    code, embedded, _ = run(
        ["campaign", "status", campaign_id, "--database", module_pg_url], capsys
    )
    assert code == 0 and embedded == out  # one table, from either side
    code, by_prefix, _ = run(
        ["campaign", "status", campaign_id[:8], "--database", module_pg_url], capsys
    )
    assert code == 0 and by_prefix == out

    plots = tmp_path / "campaign-plots"
    code, out, err = run(
        ["campaign", "compare", campaign_id, "--k", "2", "--plots", str(plots)], capsys
    )
    assert code == 0, err
    assert "anisotropy" in out and MODEL in out
    assert (plots / "spectrum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tables = "".join(line for line in out.splitlines(True) if not line.startswith("wrote "))
    with SpectraClient(live_server.url, computed["token"]) as client:
        stored = client.compare_campaign(campaign_id, k=2)  # the one the command stored
        assert stored.status == "succeeded" and stored.raw["skipped"] == []
        assert [m["label"] for m in (stored.document or {})["members"]] == [
            m.member for m in campaign.members
        ]
    # The same comparison again is the stored one, and the embedded path prints the same table.
    code, again, _ = run(["campaign", "compare", campaign_id, "--k", "2"], capsys)
    assert code == 0 and again == tables
    code, embedded, err = run(
        ["campaign", "compare", campaign_id, "--k", "2", "--database", module_pg_url], capsys
    )
    assert code == 0, err
    assert embedded == tables
    # Nothing left to cancel: a 409 as for a finished job, printed; the campaign stays succeeded.
    code, out, err = run(["campaign", "cancel", campaign_id], capsys)
    assert code == 1 and "HTTP 409" in err and "already ended" in err
    code, _, err = run(["campaign", "cancel", campaign_id, "--database", module_pg_url], capsys)
    assert code == 2 and "already ended (succeeded); nothing to cancel" in err
    code, _, err = run(["campaign", "status", "00000000-0000-4000-8000-000000000000"], capsys)
    assert code == 1 and "HTTP 404" in err


def test_compare_against_a_server_reads_direction_selections(
    live_server: LiveServer,
    computed: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    server_in_env: None,
) -> None:
    """`MODEL::sefa` is read by the service's selection parser on the client too (the CLI's own
    parser used to send it as a job id, and the server refused the pattern)."""
    with SpectraClient(live_server.url, computed["token"]) as client:
        sefa = client.submit({"model": MODEL, "method": "sefa", "top_k": 6})
        assert client.follow(sefa.id, progress=False, interval_s=0.2, timeout_s=120).status == (
            "succeeded"
        )
    code, out, err = run(["compare", computed["job"], f"{MODEL}::sefa", "--k", "2"], capsys)
    assert code == 0, err
    assert f"{MODEL}/sefa " in out and "sefa-vs-hessian" in out
