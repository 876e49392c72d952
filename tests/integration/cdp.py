"""Headless Chromium driven over the Chrome DevTools protocol (a WebSocket; aiohttp is the client).

`--dump-dom` takes the DOM at the load event, before a page's live channel has delivered anything (and
`--virtual-time-budget` never ends while an event stream is open), so the tests load the page once, wait
in it for what they expect, and read the DOM and a screenshot from the same live page.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--disable-dev-shm-usage",
         "--window-size=1280,1000")


async def group_gone(pgid: int, timeout: float = 10.0) -> None:
    """Wait until no process of the group (the browser's renderer, GPU and zygote helpers) remains."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


class Browser:
    """One Chromium process with one tab; `async with Browser(profile_dir) as b: await b.goto(url)`."""

    def __init__(self, profile: Path, binary: str = "chromium") -> None:
        self.profile, self.binary = profile, binary
        self.proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._id = 0
        self.dialogs: list[str] = []  # alert/confirm/prompt texts the page tried to show

    async def __aenter__(self) -> Browser:
        self.profile.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        try:
            port = await self._devtools_port()
            self._http = aiohttp.ClientSession()
            async with self._http.get(f"http://127.0.0.1:{port}/json/list") as r:
                targets = await r.json()
            page = next(t for t in targets if t["type"] == "page")
            self._ws = await self._http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
            await self.call("Page.enable")
            await self.call("Runtime.enable")
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)  # the browser and its helpers: our session only
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        if self.proc is not None:
            await group_gone(self.proc.pid)

    async def _devtools_port(self) -> int:
        """Chromium writes the port it chose to <profile>/DevToolsActivePort."""
        path = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.returncode is None, "chromium exited"
            with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
                return int(path.read_text().splitlines()[0])
            await asyncio.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        self._id += 1
        await self._ws.send_str(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(await self._ws.receive_str())
            if msg.get("method") == "Page.javascriptDialogOpening":
                self.dialogs.append(msg["params"].get("message", ""))
                await self._ws.send_str(json.dumps({"id": 0, "method": "Page.handleJavaScriptDialog",
                                                    "params": {"accept": True}}))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg["result"])

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        """The value of `expression` in the page (a promise is awaited); a thrown error raises here."""
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(result["exceptionDetails"].get("exception", {}).get("description", result))
        return result["result"].get("value")

    async def wait_for(self, condition: str, timeout: float = 15.0) -> str:
        """Wait in the page until the JS `condition` holds; then the page's HTML."""
        return str(await self.evaluate(f"""new Promise((resolve, reject) => {{
            const until = Date.now() + {int(timeout * 1000)};
            (function poll() {{
                let ok = false;
                try {{ ok = Boolean({condition}); }} catch (e) {{}}
                if (ok) resolve(document.documentElement.outerHTML);
                else if (Date.now() > until) reject(new Error("timed out waiting for: " + {json.dumps(condition)}
                    + "\\n" + (document.body ? document.body.outerHTML.slice(0, 2000) : "")));
                else setTimeout(poll, 50);
            }})();
        }})"""))

    async def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data
