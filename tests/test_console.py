"""The web console (actors/api/console/) in a real headless Chromium against a real framewatch.

framewatch runs in-process (synthetic tripwire cameras, the walking ``Spotter`` detector so alerts happen, local
storage, JSON Lines alerts with the alert history) with its HTTP API on a free port; the browser loads the console
from it and every check waits on a condition in the page (WebDriverWait) or over the API (urllib), never on a sleep.
Screenshots go to tests/artifacts/ (git-ignored): console-cameras.png, console-editor.png, console-alerts.png, and
console-alert-detail.png, console-token.png.

Skipped only when /usr/bin/chromium is missing outside CI; in CI (``CI`` set) a missing browser fails the tests.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from framewatch.actors.core.config import load_config
from framewatch.actors.system import Running
from tests.servers import PIPELINE_TASK_TYPE, Spotter, pipeline_conf

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CAMS = ("cam-a", "cam-b")
TOKEN = "console-token"
API = "/api/v1/frame_extractor"
WAIT_SEC = 20

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver); in CI this fails instead",
)


# --- framewatch and the browser ---------------------------------------------------------------------------------------


@contextmanager
def framewatch(tmp_path: Path, token: str = "") -> Iterator[Running]:
    """A framewatch of the test's own: two 320x240 tripwire cameras whose person crosses the line twice a second."""
    text = pipeline_conf(tmp_path, cams=CAMS) + "[http]\nenable = true\nport = 0\n"
    if token:
        text += f'token = "{token}"\n'
    path = tmp_path / "framewatch.toml"
    path.write_text(text, encoding="utf-8")
    seeing = threading.Event()
    seeing.set()
    with Running(load_config(path), detector_factory=lambda: Spotter(seeing)) as fw:
        yield fw


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
        # No page script may have thrown (a 404 preview before the first frame is a network entry, not one of these).
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and e.get("source") != "network"]
        assert not errors, errors
    finally:
        driver.quit()


def call(base: str, path: str, method: str = "GET", body: Any = None, token: str = "") -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait(driver: WebDriver, condition: Any, what: str, timeout: float = WAIT_SEC) -> Any:
    """``condition(driver)``'s first truthy value; the page re-renders as it polls, so a stale element is a retry."""
    waiting = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
    return waiting.until(lambda d: condition(d), message=f"waiting for {what}")


def css(driver: WebDriver, selector: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, selector)


def counter(driver: WebDriver, cam: str, name: str) -> int | None:
    """A card's counter as shown, None until it shows a number."""
    found = driver.find_elements(By.CSS_SELECTOR, f'[data-camera="{cam}"] [data-field="{name}"]')
    text = found[0].text.replace(",", "") if found else ""
    return int(text) if text.isdigit() else None


def loaded(driver: WebDriver, selector: str) -> int:
    """How many of the images matching ``selector`` are decoded (naturalWidth > 0)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].filter(i => i.complete && i.naturalWidth > 0).length",
        selector)


def screenshot(driver: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / name)), name


# --- the pages --------------------------------------------------------------------------------------------------------


def test_the_cameras_page_lists_each_camera_with_live_numbers(tmp_path: Path, browser: WebDriver) -> None:
    with framewatch(tmp_path) as fw:
        browser.get(fw.http_url + "/")
        for cam in CAMS:
            first = wait(browser, lambda d: counter(d, cam, "sampled"), f"{cam}'s sampled counter")
            wait(browser, lambda d: (counter(d, cam, "sampled") or 0) > first, f"{cam}'s sampled counter to grow")
            assert css(browser, f'[data-camera="{cam}"] [data-field="state"]').text == "running"
            assert css(browser, f'[data-camera="{cam}"] .type').text == PIPELINE_TASK_TYPE
        # The previews, with the conf's tripwire drawn over them (a line, its "in" arrow).
        wait(browser, lambda d: loaded(d, '[data-field="preview"]') == len(CAMS), "both previews")
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".camera .overlay .region line.shape")) == len(CAMS),
             "the tripwires over the previews")
        assert browser.find_elements(By.CSS_SELECTOR, ".camera .overlay .region .arrow")
        # The health strip.
        wait(browser, lambda d: "backpressure" in css(d, "#health").text and "storage" in css(d, "#health").text,
             "the health strip")
        rate = css(browser, '[data-camera="cam-a"] [data-field="sampled-rate"]').text
        assert rate.endswith("/s"), rate
        screenshot(browser, "console-cameras.png")


def test_a_region_drawn_in_the_editor_is_saved_as_the_cameras_algo_config(tmp_path: Path,
                                                                           browser: WebDriver) -> None:
    with framewatch(tmp_path) as fw:
        base = fw.http_url
        status, before = call(base, f"{API}/tasks/cam-a/config")
        assert status == 200
        browser.get(base + "/#/editor/cam-a")
        wait(browser, lambda d: loaded(d, "#editor-image") == 1, "the editor's picture")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#region-list [data-region-id="line"]'),
             "the conf's line in the region list")
        width, height = browser.execute_script(
            "const i = document.getElementById('editor-image'); return [i.naturalWidth, i.naturalHeight]")
        assert (width, height) == (320, 240)
        overlay = css(browser, "#editor-overlay")
        box = overlay.rect

        def click_at(points: list[tuple[int, int]]) -> list[list[int]]:
            """Click image pixels on the overlay (offsets from its centre); returns the pixels actually aimed at."""
            actions = ActionChains(browser)
            aimed = []
            for x, y in points:
                dx = round(x * box["width"] / width - box["width"] / 2)
                dy = round(y * box["height"] / height - box["height"] / 2)
                actions.move_to_element_with_offset(overlay, dx, dy).click()
                aimed.append([(dx + box["width"] / 2) * width / box["width"],
                              (dy + box["height"] / 2) * height / box["height"]])
            actions.perform()
            return aimed

        # A polygon: four corners, closed by clicking the first again.
        css(browser, '[data-tool="polygon"]').click()
        corners = [(40, 30), (280, 40), (260, 210), (60, 200)]
        aimed_polygon = click_at([*corners, corners[0]])[:4]
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#region-list .region-row")) == 2,
             "the polygon in the region list")
        row = css(browser, '#region-list .region-row.selected')
        polygon_id = row.get_attribute("data-region-id")
        name = row.find_element(By.CSS_SELECTOR, "input.name")
        name.clear()
        name.send_keys("大厅")
        # A line, its direction "out".
        css(browser, '[data-tool="line"]').click()
        aimed_line = click_at([(20, 100), (300, 120)])
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#region-list .region-row")) == 3,
             "the line in the region list")
        line_row = css(browser, '#region-list .region-row.selected')
        line_id = line_row.get_attribute("data-region-id")
        Select(line_row.find_element(By.CSS_SELECTOR, 'select[data-field="direction"]')).select_by_value("out")
        assert len(browser.find_elements(By.CSS_SELECTOR, f'#editor-overlay [data-region-id="{line_id}"] .arrow')) == 1
        screenshot(browser, "console-editor.png")

        css(browser, "#save-config").click()
        wait(browser, lambda d: css(d, "#editor-message").text.startswith("Saved 3 region(s)"), "the save")

        status, after = call(base, f"{API}/tasks/cam-a/config")
        assert status == 200
        assert after["task_id"] == "cam-a" and after["task_type"] == PIPELINE_TASK_TYPE
        assert after["config_version"] == "1.0"
        regions = {r["id"]: r for r in after["regions"]}
        assert regions["line"] == before["regions"][0]  # the region it did not edit, as it was
        polygon, line = regions[polygon_id], regions[line_id]
        assert polygon["type"] == "polygon" and polygon["name"] == "大厅" and polygon["enabled"] is True
        assert line["type"] == "line" and line["properties"]["direction"] == "out"
        for region, aimed in ((polygon, aimed_polygon), (line, aimed_line)):
            assert len(region["points"]) == len(aimed)
            for got, want in zip(region["points"], aimed):
                assert all(isinstance(v, int) for v in got), got
                assert abs(got[0] - want[0]) <= 1 and abs(got[1] - want[1]) <= 1, (region["points"], aimed)
        # The cameras page draws the saved regions over the preview.
        browser.get(base + "/#/cameras")
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, '[data-camera="cam-a"] .overlay .region')) == 3,
             "the three regions over cam-a's preview")


def test_the_alerts_page_shows_thumbnails_and_an_alerts_boxes(tmp_path: Path, browser: WebDriver) -> None:
    with framewatch(tmp_path) as fw:
        base = fw.http_url
        wait(browser, lambda d: call(base, "/api/v1/alerts?task_id=cam-b")[1]["total"] >= 2, "alerts of cam-b")
        browser.get(base + "/#/alerts")
        wait(browser, lambda d: loaded(d, "#alert-rows img.thumb") >= 2, "thumbnails")
        # Filtered to one camera.
        wait(browser, lambda d: "cam-b" in [o.get_attribute("value") for o in
                                            d.find_elements(By.CSS_SELECTOR, 'select[name="task_id"] option')],
             "the cameras in the filter")
        Select(css(browser, 'select[name="task_id"]')).select_by_value("cam-b")
        css(browser, '#alert-filters button[type="submit"]').click()

        def only_cam_b(d: WebDriver) -> bool:
            cells = [r.find_elements(By.CSS_SELECTOR, "td")[2].text for r in d.find_elements(By.CSS_SELECTOR, "#alert-rows tr.alert-row")]
            return bool(cells) and set(cells) == {"cam-b"}

        wait(browser, only_cam_b, "only cam-b's alerts")
        wait(browser, lambda d: loaded(d, "#alert-rows img.thumb") >= 2, "cam-b's thumbnails")
        screenshot(browser, "console-alerts.png")

        first = css(browser, "#alert-rows tr.alert-row")
        alert_id = first.get_attribute("data-alert-id")
        first.click()
        wait(browser, lambda d: d.current_url.endswith(f"#/alerts/{alert_id}"), "the detail view")
        wait(browser, lambda d: loaded(d, "#alert-image") == 1, "the alert's image")
        status, body = call(base, f"/api/v1/alerts/{alert_id}")
        assert status == 200
        boxes = json.loads(body["alert"]["result"])["detections"]
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".boxes .box rect")) == len(boxes) > 0,
             "the alert's boxes")
        rect = css(browser, ".boxes .box rect")
        x1, y1, x2, y2 = boxes[0]["bbox"]
        assert [float(rect.get_dom_attribute(k)) for k in ("x", "y", "width", "height")] == [x1, y1, x2 - x1, y2 - y1]
        assert "cam-b" in css(browser, ".fields").text
        screenshot(browser, "console-alert-detail.png")


def test_a_write_asks_for_the_token_once_then_succeeds(tmp_path: Path, browser: WebDriver) -> None:
    with framewatch(tmp_path, token=TOKEN) as fw:
        base = fw.http_url
        browser.get(base + "/#/cameras")
        toggle = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-camera="cam-b"] [data-action="toggle"]'),
                      "cam-b's stop button")[0]
        wait(browser, lambda d: toggle.text == "Stop", "cam-b running")
        dialog = css(browser, "#token-dialog")
        assert not dialog.is_displayed()
        toggle.click()
        # The write answered 401: the dialog asks. A wrong token is refused and asked for again.
        wait(browser, lambda d: dialog.is_displayed(), "the token dialog")
        screenshot(browser, "console-token.png")
        css(browser, "#token-input").send_keys("wrong")
        css(browser, "#token-ok").click()
        wait(browser, lambda d: dialog.is_displayed() and "refused" in css(d, "#token-note").text, "a second ask")
        assert call(base, f"{API}/tasks")[1]["tasks"][1]["running"] is True
        css(browser, "#token-input").send_keys(TOKEN + Keys.ENTER)  # Enter sends, as the button does
        wait(browser, lambda d: not dialog.is_displayed(), "the dialog to close")
        wait(browser, lambda d: toggle.text == "Start", "cam-b stopped in the console")
        tasks = {t["id"]: t for t in call(base, f"{API}/tasks")[1]["tasks"]}
        assert tasks["cam-b"]["running"] is False and tasks["cam-a"]["running"] is True
        assert browser.execute_script("return sessionStorage.getItem('framewatch.token')") == TOKEN
        # The next write sends the kept token: no dialog.
        toggle.click()
        wait(browser, lambda d: toggle.text == "Stop", "cam-b started again")
        assert not dialog.is_displayed()
        assert {t["id"]: t["running"] for t in call(base, f"{API}/tasks")[1]["tasks"]}["cam-b"] is True
        # The interval, set from the card.
        interval = css(browser, '[data-camera="cam-b"] [data-field="interval"]')
        wait(browser, lambda d: interval.get_attribute("value") == "200", "the interval in effect shown")
        interval.clear()
        interval.send_keys("500")
        css(browser, '[data-camera="cam-b"] [data-action="interval"]').click()
        wait(browser, lambda d: "done" in css(d, '[data-camera="cam-b"] [data-field="message"]').text, "the interval")
        assert {t["id"]: t["interval_ms"] for t in call(base, f"{API}/tasks")[1]["tasks"]} == {"cam-a": 200, "cam-b": 500}
        assert not dialog.is_displayed()


def test_the_services_page_lists_the_registry(tmp_path: Path, browser: WebDriver) -> None:
    with framewatch(tmp_path) as fw:
        base = fw.http_url
        browser.get(base + "/#/services")
        wait(browser, lambda d: "No algorithm service registered" in css(d, "#service-rows").text, "the empty registry")
        status, body = call(base, "/api/v1/ai_analysis/register", "POST",
                            {"service_id": "yolo-1", "name": "yolo helmet", "task_types": ["安全帽检测"],
                             "endpoint": "http://127.0.0.1:9/infer", "version": "2.1"})
        assert status == 200 and body["ok"] is True, body
        row = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#service-rows [data-service-id="yolo-1"]'),
                   "the registered service (the page polls)")[0]
        assert "yolo helmet" in row.text and "安全帽检测" in row.text and "healthy" in row.text
