"""The web interface in a real headless Chromium against a live server.

One story, in order (the steps share the browser and the database): sign-in with a wrong and
a right key; a job submitted through the Python client appearing in the list and finishing
live; the band plot drawing exactly the stored spectra's median; the heatmap; a comparison
with its table and figures; a montage; a failed code with its reason; cancelling a waiting
job; another owner seeing nothing; sign-out. Screenshots of each page are saved for a person
to look at, and each photographed page passes the accessibility checks in conftest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from api.client import SpectraClient
from services.geometry.statistics import expected_abs_cosine
from tests.pipeline.toy_generators import LATENT_DIM, TRIGGER
from tests.ui.conftest import NAN_MODEL, LiveServer

MODEL = "dcgan-faces"
N_CODES = 3
LATENT_DIM_DCGAN = 100
TOP_K = 12
WAIT_S = 60


def wait_for(browser: Any, condition: Callable[[Any], Any], timeout_s: float = WAIT_S) -> Any:
    return WebDriverWait(browser, timeout_s, poll_frequency=0.1).until(condition)


def sign_in(browser: Any, server: LiveServer, token: str) -> None:
    browser.get(f"{server.url}/ui/login")
    field = browser.find_element(By.ID, "api_key")
    field.clear()
    field.send_keys(token)
    field.submit()


@pytest.fixture(scope="module")
def alice(live_server: LiveServer) -> str:
    return live_server.store.create_api_key("alice", ["read", "submit"])[1]


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    return {}


def test_sign_in(browser: Any, live_server: LiveServer, alice: str, screenshot: Any) -> None:
    browser.get(f"{live_server.url}/ui/jobs")
    wait_for(browser, ec.url_contains("/ui/login"))  # signed out: sent to the sign-in page
    sign_in(browser, live_server, "not-a-key")
    error = wait_for(browser, ec.visibility_of_element_located((By.ID, "login-error")))
    assert "not valid" in error.text
    screenshot("01-sign-in-refused")
    sign_in(browser, live_server, alice)
    wait_for(browser, ec.url_contains("/ui/jobs"))
    assert browser.find_element(By.CSS_SELECTOR, "[data-testid=owner]").text == "alice"
    cookie = browser.get_cookie("spectra_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert alice not in cookie["value"]  # the session names the key; it never holds the token
    assert browser.execute_script("return document.cookie") == ""  # invisible to scripts


def test_job_appears_and_finishes(
    browser: Any, live_server: LiveServer, alice: str, state: dict[str, Any], screenshot: Any
) -> None:
    browser.get(f"{live_server.url}/ui/jobs")
    assert browser.find_element(By.ID, "jobs-empty").is_displayed()
    with SpectraClient(live_server.url, alice) as client:
        job = client.submit(
            {
                "model": MODEL,
                "method": "jacobian",
                "top_k": TOP_K,
                "chunk_size": 1,
                "latents": {"count": N_CODES, "seed": 3},
            }
        )
    state["job"] = job.id
    row = f"tr[data-job='{job.id}']"
    wait_for(browser, ec.presence_of_element_located((By.CSS_SELECTOR, row)))  # appears live
    screenshot("02-job-appeared")
    wait_for(
        browser,
        ec.presence_of_element_located((By.CSS_SELECTOR, f"{row}[data-status='succeeded']")),
    )
    cells = browser.find_element(By.CSS_SELECTOR, row).find_elements(By.TAG_NAME, "td")
    assert cells[1].text == MODEL and "jacobian" in cells[2].text
    assert f"{N_CODES}/{N_CODES}" in cells[4].text and "codes/s" in cells[5].text
    screenshot("03-job-finished")

    browser.find_element(By.CSS_SELECTOR, f"{row} a").click()
    wait_for(browser, ec.text_to_be_present_in_element((By.ID, "job-status"), "succeeded"))
    facts = browser.find_element(By.ID, "model-facts").text
    assert "dcgan" in facts and "100" in facts  # family and latent dimension
    assert '"top_k": 12' in browser.find_element(By.ID, "job-spec").text
    assert not browser.find_elements(By.ID, "cancel-button")  # a finished job has no cancel
    screenshot("04-job-page")


def test_plot_draws_the_stored_spectra(
    browser: Any, live_server: LiveServer, state: dict[str, Any], screenshot: Any
) -> None:
    job_id = state["job"]
    browser.get(f"{live_server.url}/ui/jobs/{job_id}")
    browser.find_element(By.ID, "spectra-link").click()
    plot = wait_for(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#bands .main-svg")))
    traces = browser.execute_script(
        "return document.getElementById('bands').data.map(t => ({name: t.name, y: t.y}))"
    )
    stored = np.array([s.eigenvalues for s in live_server.store.list_spectra(job_id=job_id)])
    assert stored.shape == (N_CODES, TOP_K)
    high, low, median = (np.array(t["y"], dtype=float) for t in traces)
    np.testing.assert_allclose(median, np.median(stored, axis=0), rtol=1e-9)
    np.testing.assert_allclose(low, np.percentile(stored, 5, axis=0), rtol=1e-9)
    np.testing.assert_allclose(high, np.percentile(stored, 95, axis=0), rtol=1e-9)
    assert f"median of {N_CODES}" in traces[2]["name"]
    assert plot.find_elements(By.CSS_SELECTOR, ".scatterlayer path.js-line")  # drawn, not only data
    assert (
        browser.execute_script("return document.getElementById('bands').layout.yaxis.type") == "log"
    )

    # Hover shows the values: move to the middle of the plot area and read the hover label.
    from selenium.webdriver.common.action_chains import ActionChains

    area = browser.find_element(By.CSS_SELECTOR, "#bands .nsewdrag")
    ActionChains(browser).move_to_element(area).perform()
    label = wait_for(
        browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#bands .hovertext"))
    )
    assert "median" in label.text and "5-95 %" in label.text

    assert browser.find_element(By.ID, "bands").get_attribute("data-drawn") == "none"  # one kind: λ
    browser.find_element(By.CSS_SELECTOR, "input[name=bands-normalise][value=top]").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "bands").get_attribute("data-drawn") == "top")
    normalised = browser.execute_script("return document.getElementById('bands').data[2].y")
    np.testing.assert_allclose(normalised, np.median(stored / stored[:, :1], axis=0), rtol=1e-9)
    assert normalised[0] == pytest.approx(1.0)
    browser.find_element(By.CSS_SELECTOR, "input[name=bands-scale][value=linear]").click()
    wait_for(
        browser,
        lambda b: (
            b.execute_script("return document.getElementById('bands').layout.yaxis.type")
            == "linear"
        ),
    )

    heatmap = browser.execute_script("return document.getElementById('heatmap').data[0].z")
    matrix = np.array(heatmap, dtype=float)
    assert matrix.shape == (N_CODES, N_CODES)
    assert np.all(np.abs(matrix) <= 1 + 1e-9)
    screenshot("05-spectra-page")

    browser.find_element(By.CSS_SELECTOR, "#spectra-table a").click()
    wait_for(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#eigenvalues .main-svg")))
    drawn = browser.execute_script("return document.getElementById('eigenvalues').data[0].y")
    np.testing.assert_allclose(drawn, stored[0], rtol=1e-9)
    screenshot("06-spectrum-page")


def test_comparison_page(
    browser: Any, live_server: LiveServer, alice: str, state: dict[str, Any], screenshot: Any
) -> None:
    with SpectraClient(live_server.url, alice) as client:
        sefa = client.follow(
            client.submit({"model": MODEL, "method": "sefa", "top_k": TOP_K}).id,
            interval_s=0.2,
            progress=False,
            timeout_s=WAIT_S,
        )
    assert sefa.status == "succeeded", sefa.error
    browser.get(f"{live_server.url}/ui/compare")
    for job_id in (state["job"], sefa.id):
        browser.find_element(By.CSS_SELECTOR, f"input[name=selection][value='{job_id}']").click()
    browser.find_element(By.ID, "compare-button").click()
    table = wait_for(browser, ec.presence_of_element_located((By.ID, "hessians-table")))
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 1 and "jacobian" in rows[0].text
    directions = browser.find_element(By.ID, "directions-table").find_elements(
        By.CSS_SELECTOR, "tbody tr"
    )
    assert len(directions) == 1 and "sefa" in directions[0].text  # a table apart from Hessians
    alignment = browser.find_element(By.ID, "alignments-table").text
    assert "sefa-vs-hessian" in alignment and "same-rank |cos| mean" in alignment
    # The exact baseline the command line reports, never "near √(k/d)".
    exact = f"{expected_abs_cosine(LATENT_DIM_DCGAN):.4g}"
    assert exact in browser.find_element(By.ID, "baselines").text
    assert "√(k/d)" not in browser.page_source
    wait_for(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#bands .main-svg")))
    # Hessians and directions together: the chart's default is λ/λ₁, as the PNG below it.
    assert browser.find_element(By.ID, "bands").get_attribute("data-drawn") == "top"
    assert browser.find_element(
        By.CSS_SELECTOR, "input[name=bands-normalise][value=top]"
    ).is_selected()
    wait_for(
        browser,
        lambda b: b.execute_script(
            "const i = document.getElementById('figure-spectrum-png'); return i.complete && i.naturalWidth > 0"
        ),
    )
    assert browser.find_element(By.ID, "download-json").get_attribute("href").endswith("k=10")
    screenshot("07-comparison")
    state["sefa"] = sefa.id


def test_stored_comparison_page(
    browser: Any, live_server: LiveServer, alice: str, state: dict[str, Any], screenshot: Any
) -> None:
    """A stored comparison submitted over HTTP, shown by the UI with THE tables: the numbers in
    the page are those of the stored document, formatted as every text format formats them."""
    import httpx

    from services.comparisons.tables import comparison_tables, format_cell

    body = {"selections": [{"job_id": state["job"]}, {"job_id": state["sefa"]}], "k": 5}
    headers = {"Authorization": f"Bearer {alice}"}
    submitted = httpx.post(
        f"{live_server.url}/v1/comparisons", json=body, headers=headers, timeout=WAIT_S
    )
    assert submitted.status_code in (200, 202), submitted.text
    comparison_id = submitted.json()["id"]
    for _ in range(int(WAIT_S / 0.2)):
        stored = httpx.get(
            f"{live_server.url}/v1/comparisons/{comparison_id}", headers=headers
        ).json()
        if stored["status"] == "succeeded":
            break
        time.sleep(0.2)
    assert stored["status"] == "succeeded", stored
    browser.get(f"{live_server.url}/ui/comparisons/{comparison_id}")
    assert browser.find_element(By.ID, "comparison-status").text == "succeeded"
    table = comparison_tables(stored["document"])[0]
    shown = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#hessians-table tbody tr > *")]
    assert shown == [format_cell(cell) for cell in table.rows[0]]
    wait_for(
        browser,
        lambda b: b.execute_script(
            "const i = document.getElementById('figure-spectrum-png'); return i.complete && i.naturalWidth > 0"
        ),
    )
    screenshot("07b-stored-comparison")


def test_montage_page(
    browser: Any, live_server: LiveServer, state: dict[str, Any], screenshot: Any
) -> None:
    browser.get(f"{live_server.url}/ui/montage?job_id={state['job']}")
    codes = browser.find_elements(By.CSS_SELECTOR, "#spectrum_id option")
    assert [c.text for c in codes] == [f"latent {i}" for i in range(N_CODES)]
    codes[1].click()
    for name, value in (("axes", "3"), ("steps", "5")):
        field = browser.find_element(By.ID, name)
        field.clear()
        field.send_keys(value)
    field.submit()
    wait_for(
        browser,
        lambda b: b.execute_script(
            "const i = document.getElementById('montage-img'); return i && i.complete && i.naturalWidth > 0"
        ),
    )
    size = browser.execute_script(
        "const i = document.getElementById('montage-img'); return [i.naturalWidth, i.naturalHeight]"
    )
    assert size[0] > size[1] > 0  # 5 steps wide, 3 axes high
    screenshot("08-montage")


def test_failures_with_reasons(
    browser: Any, live_server: LiveServer, alice: str, screenshot: Any
) -> None:
    codes = np.random.default_rng(1).standard_normal((3, LATENT_DIM))
    codes[1, 0] = TRIGGER  # the toy generator's images are NaN for this code only
    with SpectraClient(live_server.url, alice) as client:
        job = client.submit_codes(codes, {"model": NAN_MODEL, "top_k": 3})
        job = client.follow(job.id, progress=False, interval_s=0.2, timeout_s=WAIT_S)
    assert (job.status, job.n_done, job.n_failed) == ("succeeded", 2, 1)
    browser.get(f"{live_server.url}/ui/jobs/{job.id}")
    cells = browser.find_elements(By.CSS_SELECTOR, "#failures tbody td")
    assert cells[0].text == "1" and "NonFiniteOutputError" in cells[1].text
    assert "2/3, 1 failed" in browser.find_element(By.ID, "job-count").text
    assert '"values": "<3 codes of dimension 6>"' in browser.find_element(By.ID, "job-spec").text
    screenshot("09-job-with-a-failure")


def test_cancel(
    browser: Any, live_server: LiveServer, alice: str, state: dict[str, Any], screenshot: Any
) -> None:
    live_server.dispatcher.hold()  # nothing runs it: the job waits, queued
    try:
        with SpectraClient(live_server.url, alice) as client:
            waiting = client.submit(
                {"model": MODEL, "top_k": TOP_K, "latents": {"count": 2, "seed": 9}}
            )
    finally:
        live_server.dispatcher.hold(False)
    state["waiting"] = waiting.id
    browser.get(f"{live_server.url}/ui/jobs/{waiting.id}")
    assert browser.find_element(By.ID, "job-status").text == "queued"
    screenshot("10-job-waiting")
    browser.find_element(By.ID, "cancel-button").click()
    wait_for(browser, ec.text_to_be_present_in_element((By.ID, "job-status"), "cancelled"))
    assert live_server.store.get_job(waiting.id).status == "cancelled"
    screenshot("11-job-cancelled")


def test_another_owner_sees_nothing(
    browser: Any, live_server: LiveServer, state: dict[str, Any], screenshot: Any
) -> None:
    bob = live_server.store.create_api_key("bob", ["read", "submit"])[1]
    browser.find_element(By.CSS_SELECTOR, ".signout button").click()
    wait_for(browser, ec.url_contains("/ui/login"))
    assert browser.get_cookie("spectra_session") is None or "owner" not in str(
        browser.get_cookie("spectra_session")
    )
    sign_in(browser, live_server, bob)
    wait_for(browser, ec.url_contains("/ui/jobs"))
    assert browser.find_element(By.CSS_SELECTOR, "[data-testid=owner]").text == "bob"
    assert not browser.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr")
    assert browser.find_element(By.ID, "jobs-empty").is_displayed()
    time.sleep(2.5)  # one live refresh later, still nothing of alice's
    assert not browser.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr")
    screenshot("12-other-owner-jobs")
    for path in (f"/ui/jobs/{state['job']}", f"/ui/spectra?selection={state['job']}"):
        browser.get(f"{live_server.url}{path}")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Not found", path
    screenshot("13-other-owner-not-found")
    browser.get(f"{live_server.url}/ui/compare")
    assert not browser.find_elements(By.CSS_SELECTOR, "input[name=selection][type=checkbox]")
