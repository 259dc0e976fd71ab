"""The web interface's session and form rules, over HTTP without a browser (fast): the cookie's
flags, CSRF on every POST, no open redirect, a forged cookie, scopes, security headers."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner

from api.app import create_app
from services.config import DEFAULT_SECRET, Settings, UnsafeSettingsError
from services.store import Store
from tests.api.conftest import RecordingDispatcher, bearer, make_settings

JOB = {"model": "dcgan-faces", "top_k": 4, "latents": {"count": 1, "seed": 0}}


def ui_client(store: Store, settings: Settings) -> TestClient:
    app = create_app(settings=settings, store=store, dispatcher=RecordingDispatcher())
    return TestClient(app, base_url="http://testserver")


@pytest.fixture
def client(store: Store, pg_url: str) -> Iterator[TestClient]:
    with ui_client(store, make_settings(pg_url)) as test_client:
        yield test_client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "every form carries the CSRF token"
    return match.group(1)


def sign_in(client: TestClient, token: str) -> str:
    csrf = csrf_of(client.get("/ui/login").text)
    response = client.post(
        "/ui/login", data={"api_key": token, "csrf_token": csrf}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/ui/jobs"
    return csrf_of(client.get("/ui/jobs").text)


@pytest.fixture
def make_token(store: Store) -> Callable[..., str]:
    return lambda owner="alice", scopes="read,submit": store.create_api_key(
        owner, scopes.split(",")
    )[1]


def test_session_cookie_flags_and_headers(
    client: TestClient, make_token: Callable[..., str]
) -> None:
    login = client.get("/ui/login")
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/ui" in cookie
    assert "secure" not in cookie  # development over http; production sets it (below)
    assert "default-src 'self'" in login.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in login.headers["content-security-policy"]
    assert login.headers["cache-control"] == "no-store"
    token = make_token()
    sign_in(client, token)
    assert token not in str(client.cookies.get("spectra_session"))
    # The JSON API is untouched: no session cookie there, and a cookie does not authenticate it.
    api = client.get("/v1/jobs")
    assert api.status_code == 401 and "set-cookie" not in api.headers


def test_production_cookie_is_secure(store: Store, pg_url: str) -> None:
    settings = make_settings(pg_url, mode="production", secret_key="s" * 48)
    with ui_client(store, settings) as client:
        assert "secure" in client.get("/ui/login").headers["set-cookie"].lower()


def test_posts_without_the_session_csrf_token_are_refused(
    client: TestClient, store: Store, make_token: Callable[..., str]
) -> None:
    token = make_token()
    client.get("/ui/login")
    refused = client.post("/ui/login", data={"api_key": token, "csrf_token": "forged"})
    assert refused.status_code == 403 and "Form expired" in refused.text
    assert client.get("/ui/jobs", follow_redirects=False).status_code == 303  # still signed out
    csrf = sign_in(client, token)
    job = client.post("/v1/jobs", json=JOB, headers=bearer(token)).json()
    for data in ({}, {"csrf_token": "x" * len(csrf)}):
        response = client.post(f"/ui/jobs/{job['id']}/cancel", data=data, follow_redirects=False)
        assert response.status_code == 403
    assert store.get_job(job["id"]).status == "queued"  # nothing changed
    done = client.post(
        f"/ui/jobs/{job['id']}/cancel", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert done.status_code == 303 and store.get_job(job["id"]).status == "cancelled"
    # A second cancel (e.g. from a page drawn before the job finished) shows the reason.
    again = client.post(
        f"/ui/jobs/{job['id']}/cancel", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert again.status_code == 409 and "is already cancelled; nothing was changed" in again.text
    # Signing out needs the token too, and ends the session.
    assert client.post("/ui/logout", data={}).status_code == 403
    client.post("/ui/logout", data={"csrf_token": csrf})
    assert client.get("/ui/jobs", follow_redirects=False).status_code == 303


def test_no_open_redirect_and_forged_cookie(
    client: TestClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    csrf = csrf_of(client.get("/ui/login").text)
    for target in ("https://evil.example/", "//evil.example/ui/", "/v1/jobs"):
        response = client.post(
            "/ui/login",
            data={"api_key": token, "csrf_token": csrf, "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/ui/jobs", target
        csrf = csrf_of(client.get("/ui/jobs").text)
    # A cookie not signed with this server's secret is no session.
    client.cookies.clear()
    client.cookies.set("spectra_session", "eyJvd25lciI6ICJhbGljZSJ9.forged.sig", path="/ui")
    assert client.get("/ui/jobs", follow_redirects=False).status_code == 303


def test_read_only_key_cannot_cancel(
    client: TestClient, store: Store, make_token: Callable[..., str]
) -> None:
    job = client.post("/v1/jobs", json=JOB, headers=bearer(make_token())).json()
    csrf = sign_in(client, make_token("alice", "read"))
    page = client.get(f"/ui/jobs/{job['id']}")
    assert page.status_code == 200 and "cancel-button" not in page.text
    response = client.post(f"/ui/jobs/{job['id']}/cancel", data={"csrf_token": csrf})
    assert response.status_code == 403 and store.get_job(job["id"]).status == "queued"


def test_pages_take_the_short_ids_they_print_and_only_the_users_own(
    client: TestClient, make_token: Callable[..., str]
) -> None:
    job = client.post("/v1/jobs", json=JOB, headers=bearer(make_token())).json()
    sign_in(client, make_token())
    page = client.get(f"/ui/jobs/{job['id'][:8]}")
    assert page.status_code == 200 and job["id"] in page.text
    assert client.get(f"/ui/jobs/{job['id'][:8]}.json").json()["id"] == job["id"]
    assert client.get("/ui/jobs/not-an-id!").status_code == 422
    sign_in(client, make_token("bob"))
    assert client.get(f"/ui/jobs/{job['id'][:8]}").status_code == 404


def test_bad_selection_is_a_clear_page_not_a_500(
    client: TestClient, make_token: Callable[..., str]
) -> None:
    sign_in(client, make_token())
    response = client.get("/ui/spectra", params={"selection": "a:b"})
    assert response.status_code == 422 and "MODEL:DISTANCE:METHOD" in response.text
    missing = client.get("/ui/spectra", params={"selection": "dcgan-faces:mse:jacobian"})
    assert missing.status_code == 404 and "matches no stored spectra" in missing.text


def test_revoking_the_key_ends_its_sessions(
    client: TestClient, store: Store, make_token: Callable[..., str]
) -> None:
    token = make_token()
    sign_in(client, token)
    assert client.get("/ui/jobs.json").status_code == 200
    record = store.verify_api_key(token)
    assert record is not None and store.revoke_api_key(record.id)
    response = client.get("/ui/jobs.json", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/ui/login")


def _cookie_signed_with(secret: str, session: Mapping[str, object]) -> str:
    """A session cookie as Starlette's SessionMiddleware signs one (what anyone who knows the
    secret can make)."""
    payload = base64.b64encode(json.dumps(session).encode())
    return TimestampSigner(secret).sign(payload).decode()


def test_a_cookie_resigned_with_the_default_secret_grants_nothing(
    client: TestClient, store: Store, make_token: Callable[..., str]
) -> None:
    # The attack: a read-only key holder re-signs the cookie as admin (the default
    # secret is public) and cancels another owner's job.
    bobs_job = client.post("/v1/jobs", json=JOB, headers=bearer(make_token("bob"))).json()
    reader = make_token("alice", "read")
    csrf = sign_in(client, reader)
    record = store.verify_api_key(reader)
    assert record is not None
    session = json.loads(base64.b64decode(client.cookies["spectra_session"].split(".")[0]))
    for forged in (
        # what the cookie held before this change: owner and scopes, trusted as written
        {"key_id": record.id, "owner": "bob", "scopes": ["admin"], "csrf": csrf},
        # the live session's own token, with an owner and scopes added
        {**session, "key_id": record.id, "owner": "bob", "scopes": ["admin"]},
    ):
        client.cookies.clear()
        client.cookies.set(
            "spectra_session", _cookie_signed_with(DEFAULT_SECRET, forged), path="/ui"
        )
        response = client.post(
            f"/ui/jobs/{bobs_job['id']}/cancel", data={"csrf_token": csrf}, follow_redirects=False
        )
        assert response.status_code in (303, 403, 404), response.text
        assert store.get_job(bobs_job["id"]).status == "queued"
        listing = client.get("/ui/jobs.json", follow_redirects=False)
        assert listing.status_code == 303 or bobs_job["id"] not in listing.text


def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(
    client: TestClient, make_token: Callable[..., str]
) -> None:
    csrf = sign_in(client, make_token())
    copied = client.cookies["spectra_session"]
    assert client.get("/ui/jobs.json").status_code == 200
    client.post("/ui/logout", data={"csrf_token": csrf}, follow_redirects=False)
    client.cookies.clear()
    client.cookies.set("spectra_session", copied, path="/ui")
    response = client.get("/ui/jobs.json", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/ui/login")


@pytest.mark.parametrize("mode", ["embedded", "development", "production"])
def test_a_server_beyond_loopback_refuses_the_default_secret(mode: str) -> None:
    settings = Settings(mode=mode, secret_key=DEFAULT_SECRET)  # type: ignore[arg-type]
    for host in ("0.0.0.0", "::", "192.168.1.10", "spectra.example.org"):
        with pytest.raises(UnsafeSettingsError, match="SPECTRA_SECRET_KEY"):
            settings.check_serving_ready(host)
    if mode != "production":  # production refuses the default secret anywhere
        for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
            settings.check_serving_ready(host)
    Settings(mode=mode, secret_key="s" * 48).check_serving_ready("0.0.0.0")  # type: ignore[arg-type]


def test_spectra_serve_on_all_interfaces_refuses_the_default_secret(tmp_path: Path) -> None:
    # The README's own example: it must stop before serving, saying what to set.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPECTRA_")}
    env["SPECTRA_DATABASE_URL"] = f"sqlite:///{tmp_path / 'spectra.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode != 0
    assert "SPECTRA_SECRET_KEY" in result.stderr and "Traceback" not in result.stderr, result.stderr
