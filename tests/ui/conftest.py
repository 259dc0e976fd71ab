"""A live API server (uvicorn in a thread, real PostgreSQL) and a real headless Chromium.

The browser is Debian's ``chromium`` driven through its ``chromedriver`` by Selenium; nothing
is downloaded at run time. A missing browser fails the tests (CI installs it: .ci/run), it
never skips them. Screenshots go to SPECTRA_SCREENSHOT_DIR (default .artifacts/screenshots).
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from api.app import create_app
from services.pipeline import run_chunk
from services.store import Store
from tests.api.conftest import make_settings
from tests.pipeline import toy_generators
from tests.support.net import free_port

NAN_MODEL = f"python:{Path(toy_generators.__file__).resolve()}:nan_at_trigger"

SCREENSHOTS = Path(os.environ.get("SPECTRA_SCREENSHOT_DIR", ".artifacts/screenshots"))
WORKER_ID = "ui-test-worker"


class BackgroundDispatcher:
    """Runs chunks one after another in a thread, as a worker would: a request returns at
    once and the job advances while the page watches. ``hold()`` keeps new chunks queued
    (nothing runs them) so that a job can be cancelled while it waits."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.held = False
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="ui-test-worker", daemon=True)
        self._thread.start()

    def hold(self, held: bool = True) -> None:
        self.held = held

    def dispatch(self, chunk_ids: list[str]) -> None:
        if not self.held:
            for chunk_id in chunk_ids:
                self._queue.put(("chunk", chunk_id))

    def dispatch_comparison(self, comparison_id: str) -> None:
        self._queue.put(("comparison", comparison_id))

    def revoke(self, chunk_ids: list[str]) -> None:
        return None  # the store's cancel flag closes queued chunks

    def ping(self, timeout_s: float) -> None:
        return None

    def _run(self) -> None:
        from services.comparisons.stored import run_comparison
        from services.config import Settings

        while (item := self._queue.get()) is not None:
            kind, item_id = item
            if kind == "chunk":
                run_chunk(self.store, item_id, WORKER_ID)
            else:
                run_comparison(self.store, item_id, Settings(analysis_device="cpu"))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)


@dataclass
class LiveServer:
    url: str
    store: Store
    dispatcher: BackgroundDispatcher


@pytest.fixture(scope="module")
def live_server(module_pg_url: str) -> Iterator[LiveServer]:
    store = Store(module_pg_url)
    store.migrate()
    dispatcher = BackgroundDispatcher(store)
    # The toy generator that fails on one code is served, so a job page can show a failure.
    settings = make_settings(module_pg_url, extra_models=NAN_MODEL)
    app = create_app(settings=settings, store=store, dispatcher=dispatcher)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="ui-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", store, dispatcher)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        dispatcher.close()
        store.close()


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail(
            "the browser tests need Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver; .ci/run installs them)"
        )
    return browser, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1000", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshot(browser: Any) -> Any:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(name: str) -> Path:
        assert_accessible(browser, name)
        path = SCREENSHOTS / f"{name}.png"
        # The whole page, not only the window: set the window to the document's height.
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, max(1000, min(int(height) + 200, 4000)))
        browser.save_screenshot(str(path))
        browser.set_window_size(1280, 1000)
        return path

    return save


ACCESSIBILITY_PROBE = """
const problems = [];
if (!document.documentElement.lang) problems.push('html has no lang');
if (document.querySelectorAll('h1').length !== 1) problems.push('not exactly one h1');
if (!document.querySelector('main')) problems.push('no main landmark');
for (const input of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
  const named = input.labels && input.labels.length || input.getAttribute('aria-label');
  if (!named) problems.push('unlabelled ' + input.outerHTML.slice(0, 80));
}
for (const img of document.querySelectorAll('img')) {
  if (!img.getAttribute('alt')) problems.push('img without alt ' + img.src);
}
for (const button of document.querySelectorAll('button, a')) {
  if (!button.textContent.trim() && !button.getAttribute('aria-label')) problems.push('unnamed ' + button.outerHTML.slice(0, 80));
}
for (const fig of document.querySelectorAll('.figure')) {
  if (fig.getAttribute('role') !== 'img' || !fig.getAttribute('aria-label')) problems.push('chart without a text alternative');
}
for (const table of document.querySelectorAll('table')) {
  if (!table.querySelector('th')) problems.push('table without headers');
}
return problems;
"""


def assert_accessible(browser: Any, page: str) -> None:
    """The checks a screen reader depends on, on every page a test photographs: a language,
    one h1 and a main landmark, labelled controls, alt text, named links and buttons, a text
    alternative for each chart, header cells in tables."""
    problems = browser.execute_script(ACCESSIBILITY_PROBE)
    assert not problems, f"{page}: {problems}"
