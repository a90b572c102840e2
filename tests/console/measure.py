"""Page weight and first render of the console: ``python -m tests.console.measure``.

Starts the seeded test server, signs in (the key set in sessionStorage before load),
and prints what the overview transfers (gzip as served) and how long until the first
indicator card and all cards are drawn, cold cache."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.console import harness
from tests.console.conftest import CHROMIUM


def main() -> None:
    server = harness.start(Path(tempfile.mkdtemp()) / "measure.db")
    harness.wait_until_evaluated(server)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
            context = browser.new_context(viewport={"width": 1360, "height": 900})
            context.add_init_script(
                f"sessionStorage.setItem('qcpulse.key', {json.dumps(server.reader_key)})"
            )
            page = context.new_page()
            started = time.perf_counter()
            page.goto(server.url + "/")
            page.wait_for_selector("#cards .indicator-card:not(.loading)")
            first_card = time.perf_counter() - started
            page.wait_for_selector(".overview-table table.data", timeout=60_000)
            all_cards = time.perf_counter() - started
            entries = page.evaluate(
                """() => [...performance.getEntriesByType('navigation'),
                          ...performance.getEntriesByType('resource')]
                   .map(e => ({name: e.name, transfer: e.transferSize, body: e.decodedBodySize,
                               type: e.initiatorType}))"""
            )
            paint = page.evaluate(
                "performance.getEntriesByName('first-contentful-paint')[0]?.startTime"
            )
            browser.close()
    finally:
        server.stop()
    static = [e for e in entries if "/api/" not in e["name"]]
    api = [e for e in entries if "/api/" in e["name"]]
    kib = 1024
    print(
        f"assets: {len(static)} files, {sum(e['transfer'] for e in static) / kib:.0f} KiB "
        f"transferred, {sum(e['body'] for e in static) / kib:.0f} KiB uncompressed"
    )
    for e in sorted(static, key=lambda e: -e["body"]):
        print(f"  {e['transfer'] / kib:7.1f} KiB  ({e['body'] / kib:7.1f} KiB)  {e['name']}")
    print(f"API: {len(api)} requests, {sum(e['transfer'] for e in api) / kib:.0f} KiB")
    print(f"first contentful paint: {paint:.0f} ms")
    print(f"first indicator card drawn: {first_card * 1000:.0f} ms")
    print(f"all cards and the table: {all_cards * 1000:.0f} ms")


if __name__ == "__main__":
    main()
