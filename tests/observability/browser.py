"""A real headless Chromium (Debian's package), driven over the Chrome DevTools Protocol
with aiohttp's websocket client: navigate, evaluate, screenshot, close."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest


def chromium() -> str:
    """The browser binary; a test without one fails in CI (``.ci/run`` installs it) and
    is skipped elsewhere."""
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "",
                      shutil.which("chromium-browser") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if os.environ.get("CI"):
        pytest.fail("Chromium is not installed: .ci/run installs Debian's chromium package")
    pytest.skip("Chromium is not installed (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        async with asyncio.timeout(20):
            while True:
                message = await self.ws.receive_json()
                if message.get("id") == ident:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    result: dict[str, Any] = message.get("result", {})
                    return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, within: float = 10.0) -> Any:
        """Poll ``expression`` in the page (every 20 ms) until it is true; its value."""
        guarded = f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return false; }} }})()"
        async with asyncio.timeout(within):  # (false too while the page is still loading)
            while not (value := await self.evaluate(guarded)):  # noqa: ASYNC110 (a page)
                await asyncio.sleep(0.02)
        return value

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def browser_page(url: str, width: int = 1400, height: int = 900) -> AsyncIterator[Page]:
    """``url`` open in a new headless Chromium; the browser is closed (and its processes
    gone) on the way out."""
    binary = chromium()
    profile = tempfile.mkdtemp(prefix="actorstage-chromium-")
    port = _free_port()
    log = open(Path(profile) / "stderr.log", "wb")  # noqa: SIM115, ASYNC230 (closed below)
    process = subprocess.Popen(  # noqa: ASYNC220 (started once; nothing waits on it here)
        [binary, "--headless=new", f"--remote-debugging-port={port}",
         "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
         "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--mute-audio",
         f"--window-size={width},{height}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as http:
            targets: list[dict[str, Any]] = []
            async with asyncio.timeout(30):
                while not targets:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
                            targets = [target for target in await answer.json()
                                       if target.get("type") == "page"]
                    if process.poll() is not None:
                        raise RuntimeError("chromium exited: "
                                           + (Path(profile) / "stderr.log").read_text())
                    await asyncio.sleep(0.1)
            async with http.ws_connect(targets[0]["webSocketDebuggerUrl"],
                                       max_msg_size=64 * 1024 * 1024) as ws:
                page = Page(ws)
                await page.send("Page.enable")
                await page.send("Page.navigate", url=url)
                try:
                    yield page
                finally:
                    with contextlib.suppress(Exception):
                        await page.send("Browser.close")
    finally:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()  # (ours, by its pid)
            process.wait(10)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)
