"""The floor page in a real browser (headless Chromium) against the real server on loopback: counts and rows
as the report says, problems first, phone-supplied text shown as text, live updates over the event stream,
search by any MAC spelling or serial; a screenshot is left in tests/artifacts/floorpage.png."""

from __future__ import annotations

import asyncio
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from bootstrapd.transport.floorpage import FloorPage
from tests.integration.cdp import Browser
from tests.integration.floor_report import HOSTILE, TestReport, device
from tests.integration.test_dhcp_clients import need

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


class Page(HTMLParser):
    """What the technician sees: cards per section, table rows (class, cell texts), texts by id, scripts."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.cards: dict[str, dict[str, tuple[str, str]]] = {}
        self.rows: list[tuple[str, list[str]]] = []
        self.ids: dict[str, str] = {}
        self.tags: dict[str, int] = {}
        self._section: str | None = None
        self._card: str | None = None
        self._part: str | None = None
        self._stack: list[tuple[str, str | None]] = []  # open elements (tag, id)
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "section":
            self._section = a.get("id")
            self.cards[self._section or ""] = {}
        elif tag == "div" and a.get("class") == "card":
            self._card = a.get("data-key")
            self.cards[self._section or ""][self._card or ""] = ("", "")
        elif tag == "span" and self._card is not None and a.get("class") in ("n", "extra"):
            self._part = a.get("class")
        elif tag == "tr" and self._cell is None and "state-" in (a.get("class") or "-"):
            self.rows.append(((a.get("class") or "").removeprefix("state-"), []))
        elif tag == "td" and self.rows:
            self._cell = []
        if a.get("id"):
            self.ids[a["id"] or ""] = ""
        if tag not in VOID:
            self._stack.append((tag, a.get("id")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = None
        elif tag == "div":
            self._card = None
        elif tag == "span":
            self._part = None
        elif tag == "td" and self._cell is not None:
            self.rows[-1][1].append("".join(self._cell))
            self._cell = None
        while self._stack and self._stack.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._part is not None and self._card is not None:
            n, extra = self.cards[self._section or ""][self._card]
            self.cards[self._section or ""][self._card] = (n + data, extra) if self._part == "n" else (n, extra + data)
        for _, element_id in self._stack:
            if element_id:
                self.ids[element_id] += data

    def counts(self, section: str) -> dict[str, str]:
        return {k: n for k, (n, _) in self.cards[section].items()}


TOTALS = ["expected", "seen", "done", "in_progress", "stalled", "failed", "missing", "unexpected"]
# MAC, serial, model, address, stage, state, in stage, discovery, last error; failed and stalled first
FIRST_VIEW = [
    ("failed", ["00:56:2b:04:36:18", "FCH2233A004", "CP-7841-3PCC", "198.18.0.103", "resync_failed", "failed",
                "1h 05m", "URL (160/159)", "HTTP 404 <b>not found</b>"]),
    ("stalled", ["00:56:2b:04:36:16", "FCH2233A002", "CP-8851-3PCC", "198.18.0.101", "leased", "stalled", "6m 40s",
                 "", ""]),
    ("done", ["00:56:2b:04:36:15", "FCH2233A001", "CP-8841-3PCC", "198.18.0.100",
              "resync_succeeded, upgrade succeeded", "done",
              "5m 00s", "SRV", ""]),
    ("in_progress", ["00:56:2b:04:36:17", "FCH2233A003", HOSTILE, "198.18.0.102", "profile_fetched", "in progress",
                     "5s", "TFTP (66/150)", 'option 61 says <img src=x onerror="alert(2)">']),
    ("missing", ["00:56:2b:04:36:19", "FCH2233A005", "", "", "—", "missing", "—", "", ""]),
]


def generated(at: str) -> str:
    return f"document.body.dataset.generatedAt === {at!r}"


def shown(rows: list[tuple[str, list[str]]]) -> list[str]:
    return [cells[0] for _, cells in rows]


async def search(browser: Browser, text: str) -> Page:
    await browser.evaluate(f"""(() => {{ const s = document.getElementById("search"); s.value = {text!r};
        s.dispatchEvent(new Event("input")); }})()""")
    return Page(await browser.evaluate("document.documentElement.outerHTML"))


async def first_view(browser: Browser, report: TestReport) -> None:
    page = Page(await browser.wait_for(generated("2026-12-01T10:05:00Z")))
    summary = report.doc["summary"]
    assert page.counts("totals") == {k: str(summary[k]) for k in TOTALS}
    assert page.counts("stages") == {k: str(v) for k, v in summary["by_stage"].items()}
    assert page.cards["stages"]["leased"][1] == "1 stalled"
    assert page.rows == FIRST_VIEW
    assert page.ids["site"] == "lab <i>floor</i>" and page.ids["status"] == "live"
    # phone text stayed text: the page's own script only, no element from the data, no dialog
    assert page.tags.get("script") == 1 and "img" not in page.tags and "b" not in page.tags and "i" not in page.tags
    assert await browser.evaluate("document.scripts.length + document.images.length") == 1
    assert browser.dialogs == []


async def live_updates(browser: Browser, report: TestReport) -> None:
    doc = report.edit()  # time passes, nothing else: a tick, and the page counts on
    doc["generated_at"] = "2026-12-01T10:06:05Z"
    report.doc = doc
    page = Page(await browser.wait_for(generated("2026-12-01T10:06:05Z")))
    assert [cells[6] for _, cells in page.rows] == ["1h 06m", "7m 45s", "6m 05s", "1m 10s", "—"]

    assert shown((await search(browser, "SEP00562B043616")).rows) == ["00:56:2b:04:36:16"]
    doc = report.edit()  # the stalled phone moves on; a new phone fails; the filter stays
    doc["generated_at"] = "2026-12-01T10:07:00Z"
    doc["devices"][1].update(state="in_progress", stage="srv_looked_up", since="2026-12-01T10:06:30Z",
                             stalled_at=None)
    doc["devices"].append(device("00:56:2b:04:36:20", "failed", "resync_failed", "2026-12-01T10:06:50Z",
                                 model="CP-8845-3PCC", inventory="unexpected", resync_error="TLS handshake"))
    doc["devices"][0].update(upgrade="requested", state="stalled", stalled_at="upgrade_requested")
    doc["summary"].update(seen=5, done=0, stalled=1, in_progress=2, failed=2, unexpected=1)
    doc["summary"]["by_stage"].update(leased=0, srv_looked_up=1, resync_failed=2)
    doc["summary"]["stalled_by_stage"].update(leased=0, upgrade_requested=1)
    report.doc = doc
    page = Page(await browser.wait_for(generated("2026-12-01T10:07:00Z")))
    assert page.rows == [("in_progress", ["00:56:2b:04:36:16", "FCH2233A002", "CP-8851-3PCC", "198.18.0.101",
                                          "srv_looked_up", "in progress", "30s", "", ""])]
    assert page.ids["shown"] == "1 of 6 devices"
    assert page.counts("totals") == {k: str(doc["summary"][k]) for k in TOTALS}
    assert page.cards["stages"]["leased"] == ("0", "")
    assert page.cards["stages"]["upgrade_requested"] == ("1", "stalled")  # off the main track

    page = await search(browser, "")
    assert shown(page.rows) == ["00:56:2b:04:36:18", "00:56:2b:04:36:20", "00:56:2b:04:36:15",
                                "00:56:2b:04:36:16", "00:56:2b:04:36:17", "00:56:2b:04:36:19"]
    assert page.rows[2][1][4:6] == ["resync_succeeded, upgrade requested", "stalled"]


async def searches(browser: Browser) -> None:
    for text, macs in [("00:56:2B:04:36:17", ["00:56:2b:04:36:17"]), ("0056.2b04.3617", ["00:56:2b:04:36:17"]),
                       ("00-56-2b-04-36-15", ["00:56:2b:04:36:15"]), (" 00562B043619 ", ["00:56:2b:04:36:19"]),
                       ("fch2233a004", ["00:56:2b:04:36:18"]), ("36:2", ["00:56:2b:04:36:20"]),
                       ("not-a-phone", [])]:
        assert shown((await search(browser, text)).rows) == macs, text
    assert (await search(browser, "zzz")).ids["shown"] == "0 of 6 devices"
    await search(browser, "")


async def big_floor(browser: Browser, report: TestReport) -> None:
    """2500 phones: 2000 rows drawn, the failed ones (last in the report) first; search reaches the rest."""
    doc = report.edit()
    doc["generated_at"] = "2026-12-01T10:08:00Z"
    doc["devices"] = [device(f"00:56:2b:10:{i >> 8:02x}:{i & 255:02x}", "failed" if i >= 2490 else "in_progress",
                             "leased", "2026-12-01T10:00:00Z") for i in range(2500)]
    report.doc = doc
    await browser.wait_for(generated("2026-12-01T10:08:00Z"))
    rows = await browser.evaluate("[...document.querySelectorAll('#devices tbody tr')].map(tr => tr.className + ' '"
                                  " + tr.cells[0].textContent)")
    assert len(rows) == 2000 and rows[:10] == [f"state-failed 00:56:2b:10:09:{i:02x}" for i in range(0xba, 0xc4)]
    assert await browser.evaluate("document.getElementById('shown').textContent") == \
        "2000 of 2500 devices (2500 match: search to narrow)"
    assert "state-in_progress 00:56:2b:10:08:34" not in rows  # phone 2100: not drawn, found
    assert shown((await search(browser, "0056.2b10.0834")).rows) == ["00:56:2b:10:08:34"]


def test_floor_page_in_chromium(tmp_path: Path) -> None:
    need("chromium")
    report = TestReport()

    async def main() -> None:
        page = FloorPage("127.0.0.1", 0, CollectorRegistry(), report, tick=0.25)
        await page.start()
        try:
            assert page.address is not None
            async with Browser(tmp_path / "profile") as browser:
                await browser.goto(f"http://127.0.0.1:{page.address[1]}/")
                await first_view(browser, report)
                await live_updates(browser, report)
                await searches(browser)
                png = await browser.screenshot(ARTIFACTS / "floorpage.png")
                assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
                await big_floor(browser, report)
        finally:
            await page.stop()

    asyncio.run(asyncio.wait_for(main(), 90))


def test_page_retries_when_refused_and_says_so(tmp_path: Path) -> None:
    """A page refused (503: every stream slot taken) says `reconnecting` and goes live once a slot frees."""
    need("chromium")
    report = TestReport()

    async def main() -> None:
        page = FloorPage("127.0.0.1", 0, CollectorRegistry(), report, tick=0.25, max_clients=1)
        await page.start()
        try:
            assert page.address is not None
            url = f"http://127.0.0.1:{page.address[1]}"
            async with aiohttp.ClientSession() as http, Browser(tmp_path / "profile") as browser:
                held = await http.get(url + "/events")  # the only slot
                await browser.goto(url + "/")
                await browser.wait_for('document.body.dataset.live === "reconnecting"')
                assert await browser.evaluate("document.querySelectorAll('#devices tbody tr').length") == 0
                held.close()
                html = await browser.wait_for('document.body.dataset.live === "live"', timeout=20)
                assert Page(html).rows == FIRST_VIEW
        finally:
            await page.stop()

    asyncio.run(asyncio.wait_for(main(), 90))
