"""The dashboard in a real browser: headless Chromium driven over the DevTools protocol, logged
in with a staff session cookie set through CDP (no test-only login URL in the product).

Needs Debian's chromium (`apt-get install -y chromium`). Without it this test fails with that
line rather than skipping: a skipped browser test would let a dashboard that renders nothing go
green. Set DASHBOARD_SCREENSHOTS=docs to write docs/dashboard.png and docs/machine.png.
"""

import io
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from websockets.sync.client import connect

from tests.dashboard.seed import seed_market
from tests.factories import UserFactory

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
INSTALL_HINT = "apt-get install -y chromium"
CHART_IDS = ["price-chart", "machines-chart", "pass-ratio-chart", "escrow-chart"]


class Browser:
    """Just enough of the DevTools protocol: commands by id, events collected on the way."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def send(self, method: str, timeout: float = 30, **params) -> dict:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self.events):
                if msg.get("method") == event:
                    return self.events.pop(i)
            msg = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            self.events.append(msg)

    def open(self, url: str) -> None:
        self.send("Emulation.clearDeviceMetricsOverride")
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        # Grow the viewport to the whole page so one screenshot holds every chart.
        height = self.send("Runtime.evaluate", expression="document.documentElement.scrollHeight")[
            "result"
        ]["value"]
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=1400,
            height=max(int(height), 900),
            deviceScaleFactor=1,
            mobile=False,
        )

    def screenshot(self) -> bytes:
        import base64

        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])

    def rects(self, ids: list[str]) -> dict[str, dict]:
        script = (
            f"JSON.stringify(Object.fromEntries({json.dumps(ids)}.map(id => {{ const e = "
            "document.querySelector('#' + id + ' svg'); const r = e ? e.getBoundingClientRect() "
            ": null; return [id, r && {x: r.x, y: r.y, w: r.width, h: r.height}]; })))"
        )
        result = self.send("Runtime.evaluate", expression=script, returnByValue=True)
        return json.loads(result["result"]["value"])


@pytest.fixture
def chromium(tmp_path):
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}. The dashboard browser test needs it: "
            f"`{INSTALL_HINT}` (Debian), or set CHROMIUM to its path.",
            pytrace=False,
        )
    profile = tmp_path / "profile"
    process = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--window-size=1400,1800",
            # Port 0: Chromium picks a free port and writes it to DevToolsActivePort.
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port in 30 s"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=10) as ws:
            yield Browser(ws)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _colored_pixels(png: bytes, rect: dict) -> int:
    """Pixels of saturated colour (chart ink), not the greys of text, grid and background."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    box = (int(rect["x"]), int(rect["y"]), int(rect["x"] + rect["w"]), int(rect["y"] + rect["h"]))
    region = image.crop(box)
    data = region.tobytes()
    return sum(
        1 for i in range(0, len(data), 3) if max(data[i : i + 3]) - min(data[i : i + 3]) > 60
    )


def _distinct_colors(png: bytes) -> int:
    from PIL import Image

    colors = Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colors or [])


@pytest.mark.django_db(transaction=True)
def test_dashboard_renders_charts_in_chromium(chromium, live_server, tmp_path):
    market = seed_market(hours=72, step_minutes=30)
    staff = UserFactory(username="sam", is_staff=True)
    client = Client()
    client.force_login(staff)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    chromium.send("Network.enable")
    chromium.send("Page.enable")
    chromium.send(
        "Network.setCookie",
        name=settings.SESSION_COOKIE_NAME,
        value=session,
        url=live_server.url,
        httpOnly=True,
    )

    out = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)

    chromium.open(f"{live_server.url}/admin/dashboard/")
    requested = [
        e["params"]["request"]["url"]
        for e in chromium.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    title = chromium.send("Runtime.evaluate", expression="document.title")["result"]["value"]
    assert "Market dashboard" in title, f"not the dashboard (login page?): {title!r}"
    rects = chromium.rects(CHART_IDS)
    png = chromium.screenshot()
    (out / "dashboard.png").write_bytes(png)

    # Offline: the page loads nothing from anywhere but this server (no CDN, no fonts).
    assert requested and all(u.startswith(live_server.url) for u in requested), requested
    assert _distinct_colors(png) > 50, "the screenshot is blank"
    for chart_id in CHART_IDS:
        rect = rects[chart_id]
        assert rect and rect["w"] > 100, f"{chart_id} not on the page: {rect}"
        assert _colored_pixels(png, rect) > 200, f"{chart_id} has no coloured marks"

    chromium.open(f"{live_server.url}/admin/dashboard/machines/{market['mallory'].pk}/")
    rect = chromium.rects(["history-chart"])["history-chart"]
    png = chromium.screenshot()
    (out / "machine.png").write_bytes(png)
    assert _distinct_colors(png) > 50, "the screenshot is blank"
    assert rect and _colored_pixels(png, rect) > 200, "the history chart has no coloured marks"
