"""The live web page in headless Chromium, fake camera fed from single_face.mp4."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apiserver import API_KEY, KEY, airctrl_server, base_settings, server_log
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("web")


@pytest.fixture(scope="module")
def fake_camera(workdir: Path, sample_path: Callable[[str], Path]) -> Path:
    """single_face.mp4 as a Y4M file, which Chromium plays in a loop as the camera."""
    target = workdir / "camera.y4m"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(sample_path("single_face.mp4")),
            "-pix_fmt",
            "yuv420p",
            "-r",
            "15",
            str(target),
        ],
        check=True,
        timeout=120,
    )
    return target


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[str]:
    with airctrl_server(workdir, base_settings(workdir)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(fake_camera: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={fake_camera}",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 860})
    opened = context.new_page()
    # Count camera requests the page makes, independent of the page's own code.
    opened.add_init_script(
        "window.__cameraCalls = 0;"
        "const media = navigator.mediaDevices;"
        "const original = media.getUserMedia.bind(media);"
        "navigator.mediaDevices.getUserMedia = (c) => { window.__cameraCalls += 1;"
        " return original(c); };"
    )
    yield opened
    context.close()


def stream_frames_processed(server: str) -> float:
    """Return frames processed for source="stream" from /metrics (0 if absent)."""
    text = httpx.get(server + "/metrics", timeout=5).text
    match = re.search(
        r'^airctrl_frames_processed_total\{source="stream"\} (\S+)$', text, re.MULTILINE
    )
    return float(match.group(1)) if match else 0.0


def wait_for_history(server: str, subject: str) -> httpx.Response:
    """Poll the subject's history until it holds frames (streams merge every 2 s)."""
    deadline = time.monotonic() + 15
    while True:
        response = httpx.get(
            f"{server}/v1/subjects/{subject}/history",
            headers=KEY,
            timeout=5,
        )
        if response.status_code == 200 and response.json()["frames"] > 0:
            return response
        if time.monotonic() > deadline:
            return response
        time.sleep(0.5)


def wait_for_answers(page: Page, workdir: Path, count: int) -> None:
    """Wait until a face is listed and the page counts ``count`` answered frames."""
    try:
        page.wait_for_selector("#faces li.face", timeout=30_000)
        page.wait_for_function(
            "(count) => document.querySelectorAll('#faces li.face').length > 0 && "
            "parseInt((document.querySelector('#counters').textContent"
            ".match(/answered (\\d+)/) || [0, 0])[1]) >= count",
            arg=count,
            timeout=30_000,
        )
    except PlaywrightTimeoutError:
        pytest.fail("no emotions arrived; server log:\n" + server_log(workdir))


def test_accepting_consent_shows_live_emotions_and_boxes(
    page: Page, server: str, workdir: Path
) -> None:
    sockets: list[Any] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    page.goto(server + "/")
    page.fill("#api-key", API_KEY)
    page.check("#keep-history")

    page.click("#consent-accept")

    wait_for_answers(page, workdir, 15)
    label = page.text_content("#faces li.face .label")
    page.screenshot(path=str(workdir / "live.png"))
    overlay_has_ink = page.evaluate(
        "(() => { const c = document.getElementById('overlay');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true;"
        " return false; })()"
    )

    assert label in {"neutral", "happy", "sad", "angry", "surprised", "fear", "disgust"}
    assert overlay_has_ink
    assert len(sockets) == 1 and sockets[0].url.endswith("/v1/stream")
    assert "keeping history" in (page.text_content("#status") or "")

    subject = page.input_value("#subject-id")
    history = wait_for_history(server, subject)
    page.click("#delete-data")
    page.wait_for_function(
        "document.querySelector('#delete-result').textContent.length > 0",
        timeout=10_000,
    )
    after = httpx.get(
        f"{server}/v1/subjects/{subject}/history",
        headers=KEY,
        timeout=5,
    )

    assert history.status_code == 200 and history.json()["frames"] > 0
    assert "deleted" in (page.text_content("#delete-result") or "")
    assert after.status_code == 404


#: Counts, per column of the #timeline canvas, pixels drawn in the colour of
#: the emotion the face list shows (within a small tolerance for antialiasing).
#: The grid lines (#2a323b) are far from every emotion colour, so they never
#: count.
TIMELINE_COLUMNS_IN_LABEL_COLOUR = """
(() => {
  const label = document.querySelector('#faces li.face .label');
  const [r, g, b] = getComputedStyle(label).color.match(/\\d+/g).map(Number);
  const canvas = document.getElementById('timeline');
  const ctx = canvas.getContext('2d');
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const columns = new Set();
  for (let i = 0; i < data.length; i += 4) {
    const distance = Math.abs(data[i] - r) + Math.abs(data[i + 1] - g)
      + Math.abs(data[i + 2] - b);
    if (data[i + 3] > 128 && distance < 40) columns.add((i / 4) % canvas.width);
  }
  return {columns: columns.size, width: canvas.width, label: label.textContent};
})()
"""


def test_timeline_draws_the_shown_emotion_as_a_line_over_time(
    page: Page, server: str, workdir: Path
) -> None:
    page.goto(server + "/")
    page.fill("#api-key", API_KEY)

    page.click("#consent-accept")
    wait_for_answers(page, workdir, 15)
    drawn = page.evaluate(TIMELINE_COLUMNS_IN_LABEL_COLOUR)
    page.screenshot(path=str(workdir / "timeline.png"))

    # A line through 15 answers, not a dot: even at 60 answers/s they span
    # 0.25 s of the chart's shortest window (10 s), 16 of its 640 columns.
    assert drawn["columns"] >= 10, drawn


def test_declining_consent_sends_no_frame(page: Page, server: str) -> None:
    sockets: list[Any] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    before = stream_frames_processed(server)
    page.goto(server + "/")
    page.fill("#api-key", API_KEY)

    page.click("#consent-decline")
    page.wait_for_timeout(3000)

    assert page.is_visible("#declined")
    assert page.evaluate("window.__cameraCalls") == 0
    assert sockets == []
    assert stream_frames_processed(server) == before


def test_camera_waits_for_consent(page: Page, server: str) -> None:
    page.goto(server + "/")
    page.wait_for_timeout(1500)

    assert page.is_visible("#consent")
    assert page.evaluate("window.__cameraCalls") == 0


def test_api_docs_page_renders_the_operations(page: Page, server: str) -> None:
    page.goto(server + "/docs")

    try:
        page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    except PlaywrightTimeoutError:
        pytest.fail(
            "Swagger UI rendered no operation: "
            + (page.text_content("body") or "")[:300]
        )
    paths = page.eval_on_selector_all(
        ".opblock-summary-path", "els => els.map(e => e.textContent)"
    )

    assert any("/v1/detect" in p for p in paths)
    assert "Unable to render" not in (page.text_content("body") or "")
