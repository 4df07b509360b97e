"""The dashboard in a real browser: headless Chromium driven over the DevTools protocol, logged
in with a staff session cookie set through CDP (no test-only login URL in the product).

Needs Debian's chromium (`apt-get install -y chromium`). Without it this test fails with that
line rather than skipping: a skipped browser test would let a dashboard that renders nothing go
green. Set DASHBOARD_SCREENSHOTS=docs to write docs/dashboard.png, docs/machine.png and
docs/order.png (`make screenshots` does; see scripts/ensure_chromium.sh).

The admin walk follows links the way an operator clicks them (the index, a group, the order
list, an order, its chain transaction, the dashboard) on a lease that really went through the
in-process chain, so the chain story on the page is the one the indexer and the signer wrote.
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
CHART_IDS = [
    "price-chart",
    "machines-chart",
    "pass-ratio-chart",
    "escrow-chart",
    "revenue-chart",
    "volume-chart",
]


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

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def follow(self, selector: str) -> str:
        """Opens the link an operator would click: the href of the first match."""
        href = self.js(f"(document.querySelector({json.dumps(selector)}) || {{}}).href || null")
        assert href, f"no link {selector} on {self.js('location.href')}"
        self.open(href)
        return href

    def text(self, selector: str) -> str:
        return self.js(
            f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''"
        )

    def login(self, live_server, user) -> None:
        client = Client()
        client.force_login(user)
        self.send("Network.enable")
        self.send("Page.enable")
        self.send(
            "Network.setCookie",
            name=settings.SESSION_COOKIE_NAME,
            value=client.cookies[settings.SESSION_COOKIE_NAME].value,
            url=live_server.url,
            httpOnly=True,
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
            process.wait()
        process.stderr.close()


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
    chromium.login(live_server, UserFactory(username="sam", is_staff=True))

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
    # The open alert the seed raised is listed with a link to its admin page.
    assert "Escrow on chain differs" in chromium.text("#open-alerts")

    chromium.open(f"{live_server.url}/admin/dashboard/machines/{market['mallory'].pk}/")
    rect = chromium.rects(["history-chart"])["history-chart"]
    png = chromium.screenshot()
    (out / "machine.png").write_bytes(png)
    assert _distinct_colors(png) > 50, "the screenshot is blank"
    assert rect and _colored_pixels(png, rect) > 200, "the history chart has no coloured marks"


def _operator():
    """Staff with the view permission on every model and the change permission on orders and
    machines: what an operator on call holds."""
    from django.contrib.auth.models import Permission

    user = UserFactory(username="otto", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__startswith="view_")
        | Permission.objects.filter(codename__in=["change_order", "change_machine"])
    )
    return user


def _settled_lease(w3, monkeypatch):
    """alice rents 3 accelerators of bob's for an hour and stops after 1,234 s: funded, started
    and settled on the in-process chain through the real signer and indexer."""
    from datetime import UTC, datetime, timedelta

    from django.utils import timezone

    from marketplace.orders.models import Order
    from marketplace.orders.services import order_complete, order_create
    from marketplace.payments.indexer import index
    from marketplace.payments.selectors import order_funding_instructions
    from tests.factories import ListingFactory, ProviderFactory
    from tests.payments.helpers import ALICE_KEY, fund_with_instructions
    from workers.chain_tasks import lease_settle

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    alice = UserFactory(username="alice-chain")
    bob = ProviderFactory(
        name="bob-gpus", wallet_address="0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    )
    listing = ListingFactory(machine__provider=bob, machine__name="bob-h100", price_per_hour=25_200)
    monkeypatch.setattr(timezone, "now", lambda: t0)
    order, _ = order_create(
        renter=alice,
        listing_id=listing.pk,
        pricing_mode="on_demand",
        accelerators=3,
        hours=1,
        idempotency_key="walk",
    )
    fund_with_instructions(w3, ALICE_KEY, order_funding_instructions(user=alice, order_id=order.pk))
    index()  # LeaseFunded: active; the start transaction is sent when that commits
    index()  # LeaseStarted
    Order.objects.filter(pk=order.pk).update(started_at=t0)
    monkeypatch.setattr(timezone, "now", lambda: t0 + timedelta(seconds=1_234))
    order_complete(order_id=order.pk, reason="stopped_by_renter")
    lease_settle.apply(args=(order.pk,)).get()
    index()
    monkeypatch.undo()  # the live server's sessions run on the real clock
    order.refresh_from_db()
    assert order.state == Order.State.SETTLED
    return order


@pytest.mark.django_db(transaction=True)
def test_admin_walk_through_an_order_chain_story_and_the_dashboard(
    chromium, live_server, tmp_path, chain_w3, deployed, rich_alice, eager, monkeypatch, settings
):
    from marketplace.payments.models import ChainTransaction

    settings.PLATFORM_FEE_BPS = 1_000
    seed_market(hours=72, step_minutes=60)
    order = _settled_lease(chain_w3, monkeypatch)
    chromium.login(live_server, _operator())
    out = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)

    chromium.open(f"{live_server.url}/admin/")
    assert "Leases and money" in chromium.text("#content-main"), "not the grouped index"
    chromium.follow('#content-main a[href$="/admin/orders/order/"]')
    assert "Select order to view" in chromium.js("document.title")
    chromium.follow(f'#result_list a[href$="/admin/orders/order/{order.pk}/change/"]')

    story = chromium.text("#chain-story")
    # 21 units/s × 1,234 s = 25,914 owed: 2,591 fee, 23,323 to bob, 49,686 back to alice.
    assert "$0.023323 (23,323 units)" in story and "$0.002591 (2,591 units)" in story
    assert "$0.049686 (49,686 units)" in story and "As settled on chain" in story
    for name in ("LeaseFunded", "LeaseStarted", "LeaseSettled"):
        assert name in story
    sent = list(ChainTransaction.objects.filter(order=order))
    assert {t.purpose for t in sent} == {"lease_start", "lease_settle"}
    assert all(t.tx_hash in story for t in sent)
    assert chromium.js("document.querySelector('input[name=_save]') === null"), "a Save button"
    png = chromium.screenshot()
    (out / "order.png").write_bytes(png)
    assert _distinct_colors(png) > 50, "the screenshot is blank"

    # One of its transactions, from the story: read-only too.
    chromium.follow('#chain-transactions a[href*="/admin/payments/chaintransaction/"]')
    assert "View chain transaction" in chromium.js("document.title")
    assert chromium.js("document.querySelector('input[name=_save]') === null")

    # Back to the start page, then the dashboard it links.
    chromium.open(f"{live_server.url}/admin/")
    chromium.follow("#dashboard-link a")
    rects = chromium.rects(["revenue-chart", "volume-chart"])
    png = chromium.screenshot()
    for chart_id, rect in rects.items():
        assert rect and _colored_pixels(png, rect) > 200, f"{chart_id} has no coloured marks"
