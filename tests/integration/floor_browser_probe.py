"""Run inside a lab namespace: load the daemon's floor page in headless Chromium (background networking
off, tests/integration/cdp.py), wait until the page shows `--done` phones done and `--stalled` stalled
(it updates live: the phones are still booting when it loads), then write what it shows as JSON
(totals, stage counts, each row's MAC and state) and keep a screenshot.

    python -m tests.integration.floor_browser_probe URL OUT.json SHOT.png --done N --stalled M
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from tests.integration.cdp import Browser
from tests.integration.test_floorpage_browser import TOTALS, Page


def card(key: str) -> str:
    return f"(document.querySelector('#totals .card[data-key=\"{key}\"] .n') || {{}}).textContent"


async def probe(url: str, out: Path, shot: Path, done: int, stalled: int, timeout: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bootstrapd-chromium-") as profile:
        async with Browser(Path(profile)) as browser:
            await browser.goto(url)
            first = Page(await browser.wait_for(f"{card('seen')} !== undefined", timeout))
            html = await browser.wait_for(f"{card('done')} === '{done}' && {card('stalled')} === '{stalled}'",
                                          timeout)
            page = Page(html)
            await browser.screenshot(shot)
            out.write_text(json.dumps({
                "first_seen": first.counts("totals").get("seen"),
                "totals": {k: page.counts("totals").get(k) for k in TOTALS},
                "stages": page.counts("stages"),
                "rows": [{"state": state, "mac": cells[0]} for state, cells in page.rows],
                "dialogs": browser.dialogs,
            }))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("out", type=Path)
    p.add_argument("shot", type=Path)
    p.add_argument("--done", type=int, required=True)
    p.add_argument("--stalled", type=int, required=True)
    p.add_argument("--timeout", type=float, default=60)
    a = p.parse_args()
    asyncio.run(asyncio.wait_for(probe(a.url, a.out, a.shot, a.done, a.stalled, a.timeout), a.timeout + 30))


if __name__ == "__main__":
    main()
