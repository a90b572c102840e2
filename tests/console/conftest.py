"""Browser fixtures: one seeded qcpulse server per module, Debian's Chromium driven by
Playwright, and a page that records every request (none may leave 127.0.0.1) and every
console warning (a missing translation is one)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.console import harness

CHROMIUM = os.environ.get("QCPULSE_CHROMIUM", "/usr/bin/chromium")
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("QCPULSE_TEST_DATABASE_URL")),
    reason="the console reads the same API on both databases; its browser tests run on SQLite",
)


# Package scope: torn down after tests/console, so that Playwright's event loop does not
# outlive it (later tests call asyncio.run()).
@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Server]:
    srv = harness.start(tmp_path_factory.mktemp("console") / "console.db")
    harness.wait_until_evaluated(srv)
    yield srv
    srv.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    # CI installs the browser and sets QCPULSE_REQUIRE_BROWSER (.ci/run): there a missing
    # browser fails the run. A developer's machine with only Python skips these tests,
    # saying why, so that the README's test command works there.
    if not Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is None:
        message = f"Chromium not found at {CHROMIUM}: apt-get install -y chromium"
        if os.environ.get("QCPULSE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


class Recorder:
    def __init__(self) -> None:
        self.urls: list[str] = []
        self.warnings: list[str] = []
        self.errors: list[str] = []
        #: A test that provokes an HTTP error (a wrong key) sets this.
        self.http_errors_expected = False

    def outside(self) -> list[str]:
        bad = []
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme in ("blob", "data"):
                continue
            if parts.hostname != "127.0.0.1":
                bad.append(url)
        return bad


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def page(browser, server, recorder) -> Iterator[object]:
    context = browser.new_context(
        accept_downloads=True, viewport={"width": 1360, "height": 900}, locale="zh-CN"
    )
    pg = context.new_page()
    pg.on("request", lambda r: recorder.urls.append(r.url))
    pg.on(
        "console",
        lambda m: (
            (recorder.warnings if m.type == "warning" else recorder.errors).append(m.text)
            if m.type in ("warning", "error")
            else None
        ),
    )
    pg.on("pageerror", lambda e: recorder.errors.append(str(e)))
    pg.set_default_timeout(15_000)
    yield pg
    context.close()
    assert recorder.urls, "the page made no request at all"
    assert not recorder.outside(), f"requests left 127.0.0.1: {recorder.outside()}"
    missing = [w for w in recorder.warnings if "i18n" in w]
    assert not missing, missing
    errors = [
        e
        for e in recorder.errors
        if not (recorder.http_errors_expected and e.startswith("Failed to load resource"))
    ]
    assert not errors, errors


def sign_in(page, server, key: str | None = None) -> None:
    page.goto(server.url + "/")
    page.get_by_label("访问密钥").fill(key or server.reader_key)
    page.get_by_role("button", name="登录").click()
    page.wait_for_selector("#cards .indicator-card:not(.loading)")


def axe_violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]
