"""The page in a real browser against a real `edgecam run` on the asset video.

Headless Chromium loads the page served by `edgecam run` (detector, events, a broker), sees the
live picture change, draws a zone by clicking on it, reads the generated TOML and has
`edgecam config check` accept it, edits the configured zone by dragging a corner, filters the
events by label and opens a snapshot, and reads the health numbers. Screenshots of the live
view, the zone editor, the events and the health tab go to docs/ (the README shows them)
when EDGECAM_SCREENSHOTS=docs is set.
Then SIGTERM, as systemd stops the service: exit 0 and the port is closed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgecam.config.loader import read_toml
from edgecam.schema import json_schema
from tests.support.mosquitto import Broker
from tests.support.paths import REPO
from tests.web.browser import chromium
from tests.web.running import RunningEdgecam, write_config
from tests.web.screenshots import save_screenshot

#: Where the floor zone's corners are clicked (fractions of the picture).
FLOOR = [(0.04, 0.5), (0.96, 0.5), (0.96, 0.99), (0.04, 0.99)]


def _seq(page: Any, selector: str) -> int:
    value = page.get_attribute(selector, "data-seq")
    return int(value) if value is not None else -1


def _wait_js(page: Any, expression: str, timeout_s: float = 60.0) -> None:
    """Poll a JS condition; a function, not a string: the page's CSP forbids eval."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(f"() => {expression}", timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        raise AssertionError(f"not true within {timeout_s} s: {expression}") from None


def _live_view(page: Any, docs: Path) -> None:
    _wait_js(page, "document.getElementById('live-img').dataset.seq !== undefined")
    first, picture = _seq(page, "#live-img"), page.locator("#live-img").screenshot()
    _wait_js(page, f"Number(document.getElementById('live-img').dataset.seq) > {first + 5}")
    assert page.locator("#live-img").screenshot() != picture  # the image changed
    # a confirmed person, with its track id, in the objects table
    _wait_js(
        page,
        "[...document.querySelectorAll('#live-objects tr')].some(r => "
        "r.cells[0].textContent === 'person' && r.cells[2].textContent.startsWith('#'))",
    )
    assert "frame #" in page.inner_text("#live-caption")
    save_screenshot(page.screenshot(), docs / "web-live.png")


def _draw_zone(page: Any, tmp_path: Path, docs: Path) -> str:
    page.click("nav a[data-tab=zones]")
    _wait_js(page, "document.getElementById('zone-img').naturalWidth > 0")
    box = page.locator("#zone-svg").bounding_box()
    for x, y in FLOOR:
        page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
    page.fill("#zone-name", "floor")
    page.select_option("#zone-labels", ["person"])
    _wait_js(
        page,
        "document.getElementById('zone-toml').textContent.includes('name = \"floor\"') && "
        "document.getElementById('zone-toml').textContent.includes('person')",
    )
    toml_text = str(page.inner_text("#zone-toml"))
    zone_file = tmp_path / "floor.toml"
    zone_file.write_text(toml_text)
    [zone] = read_toml(zone_file)["zones"]
    assert zone["name"] == "floor" and zone["labels"] == ["person"] and zone["inertia"] == 3
    assert len(zone["points"]) == len(FLOOR)
    for (x, y), (cx, cy) in zip(zone["points"], FLOOR, strict=True):
        assert abs(x - cx) < 0.01 and abs(y - cy) < 0.01, (zone["points"], FLOOR)
    check = subprocess.run(
        [sys.executable, "-m", "edgecam", "config", "check", str(zone_file)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{zone_file}: OK" in check.stdout
    # live membership: a person walking on the floor shows up as inside
    _wait_js(page, "document.querySelectorAll('#zone-inside li.inside').length > 0", 90)
    assert "person" in page.inner_text("#zone-inside")
    with page.expect_download() as download:
        page.click("#zone-download")
    assert Path(download.value.path()).read_text() == toml_text
    page.evaluate("() => window.scrollTo(0, 0)")
    save_screenshot(page.screenshot(), docs / "web-zones.png")
    return toml_text


def _edit_configured_zone(page: Any) -> None:
    page.select_option("#zone-pick", "doorway")
    _wait_js(page, "document.getElementById('zone-toml').textContent.includes('\"doorway\"')")
    before = page.inner_text("#zone-toml")
    assert "[0.55, 0.25]" in before and 'labels = ["person"]' in before
    page.locator("#zone-svg").scroll_into_view_if_needed()
    corner = page.locator("#zone-svg circle.vertex").first.bounding_box()
    svg = page.locator("#zone-svg").bounding_box()
    start = (corner["x"] + corner["width"] / 2, corner["y"] + corner["height"] / 2)
    target = (svg["x"] + 0.40 * svg["width"], svg["y"] + 0.20 * svg["height"])
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*target, steps=8)
    page.mouse.up()
    # The TOML follows the corner while it moves: wait for where the drag ended, not the
    # first step of it.
    ended = r"/\[\[0\.(39\d*|40?\d?), 0\.(19\d*|20?\d?)\]/"  # the first corner, at (0.40, 0.20)
    _wait_js(page, f"{ended}.test(document.getElementById('zone-toml').textContent)")
    edited = page.inner_text("#zone-toml")
    assert "[0.55, 0.25]" not in edited and re.search(ended.strip("/"), edited), edited
    assert 'name = "doorway"' in edited and "[0.98, 0.98]" in edited


def _events(page: Any, docs: Path) -> None:
    page.click("nav a[data-tab=events]")
    _wait_js(page, "document.querySelectorAll('#event-rows tr.ev-end').length > 0", 180)
    _wait_js(page, "[...document.getElementById('event-label').options].some(o => o.value)")
    page.select_option("#event-label", "person")
    _wait_js(
        page,
        "[...document.querySelectorAll('#event-rows tr')].every(r => r.cells[3] && "
        "r.cells[3].textContent === 'person')",
    )
    _wait_js(
        page,
        "[...document.querySelectorAll('#event-rows img.thumb')].some(i => i.naturalWidth > 0)",
    )
    save_screenshot(page.screenshot(), docs / "web-events.png")


def _health(page: Any, docs: Path) -> None:
    page.click("nav a[data-tab=health]")
    _wait_js(page, "document.querySelectorAll('#health-cards .card').length >= 10")
    _wait_js(page, "document.getElementById('health-cards').textContent.includes('connected')")
    cards = page.inner_text("#health-cards")
    assert "healthy" in cards and ("litert" in cards or "tflite" in cards), cards
    assert page.locator("#health-stages tr").count() >= 4
    assert page.inner_text("#health-badge") == "healthy"
    save_screenshot(page.screenshot(), docs / "web-health.png")


def _apis(run: RunningEdgecam) -> None:
    """The JSON the page used is the documented MQTT payloads; /metrics parses."""
    jsonschema.validate(run.json("/api/stats"), json_schema("stats"))
    events = run.json("/api/events")["events"]
    assert events
    for event in events:
        jsonschema.validate(event, json_schema("events"))
    status, body = run.get("/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["edgecam_frames_processed"].samples[0].value > 0
    assert families["edgecam_mqtt_connected"].samples[0].value == 1
    assert any(s.labels.get("label") == "person" for s in families["edgecam_detections"].samples)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_page_in_chromium(
    tmp_path: Path, asset_models: Path, asset_video: Path, broker: Broker
) -> None:
    config = write_config(
        tmp_path / "edgecam.toml", asset_video, extra=f"[mqtt]\nurl = '{broker.url}'\n"
    )
    # The README's screenshots: refreshed with EDGECAM_SCREENSHOTS=docs (a path relative to the
    # checkout); otherwise taken and checked in a temp dir, so a test run leaves the tree clean.
    target = os.environ.get("EDGECAM_SCREENSHOTS")
    docs = REPO / target if target else tmp_path / "screenshots"
    run = RunningEdgecam(config, asset_models)
    started = time.monotonic()
    try:
        run.wait_healthy()
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1180, "height": 760}, accept_downloads=True)
            page.goto(run.base + "/", wait_until="domcontentloaded")
            _live_view(page, docs)
            _draw_zone(page, tmp_path, docs)
            _edit_configured_zone(page)
            _events(page, docs)
            _health(page, docs)
        _apis(run)
    finally:
        code = run.stop()
    assert code == 0, run.log()
    log = run.log()
    assert "Traceback" not in log and "web page at http://127.0.0.1:" in log
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", run.port), timeout=2):
        pass  # the server stopped with the service
    print(json.dumps({"browser_test_s": round(time.monotonic() - started, 1)}))
