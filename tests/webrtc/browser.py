"""Headless Debian chromium driven over the DevTools protocol (plain `websockets`, no extra package):
enough to open the /ui page with a fake microphone playing a WAV file and run JavaScript in it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

# Debian's /usr/bin/chromium is a wrapper script; run the binary itself so we own its process group.
CHROMIUM = next(
    (
        p
        for p in ("/usr/lib/chromium/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
        if p and Path(p).exists()
    ),
    None,
)

# Every page gets this first: keep the page's RTCPeerConnections reachable for getStats().
TRACK_PEERS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function (...args) { const pc = new Native(...args); window.__pcs.push(pc); return pc; };
  window.RTCPeerConnection.prototype = Native.prototype;
})();
"""


class Browser:
    """One headless chromium; `page` is a DevTools session on its first tab."""

    def __init__(self, wav: Path) -> None:
        assert CHROMIUM, "chromium is not installed (apt-get install chromium)"
        self.profile = Path(tempfile.mkdtemp(prefix="cozy-chromium-"))
        args = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--disable-background-networking", "--disable-component-update", "--no-first-run",
            "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}", "about:blank",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self.ws: Any = None
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def start(self, timeout: float = 30) -> None:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start: {self.proc.stderr.read().decode()[-2000:]}")
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        async with httpx.AsyncClient() as http:
            targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        self.ws = await websockets.connect(url, max_size=None)
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        await self.send("Network.enable")  # loadingFailed events, for a diagnosis
        await self.send("Page.addScriptToEvaluateOnNewDocument", source=TRACK_PEERS)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        await self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    async def js(self, expression: str) -> Any:
        """Evaluate in the page (promises awaited); returns the JSON value."""
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_js(self, expression: str, timeout: float, every: float = 0.2) -> Any:
        """Poll `expression` until it is truthy (a page error, e.g. while it loads, counts as not yet)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = await self.js(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied: {expression}\n{await self.diagnosis()}")
            await asyncio.sleep(every)

    async def diagnosis(self) -> str:
        """What the page shows and what went wrong in it (for a failed wait)."""
        try:
            shown = await self.js("location.href + ' | ' + document.body.innerText.slice(0, 400)")
        except (RuntimeError, websockets.WebSocketException) as exc:
            shown = f"(no page: {exc})"
        thrown = [
            e["params"]["exceptionDetails"].get("exception", {}).get("description", e["params"]["exceptionDetails"])
            for e in self.events
            if e.get("method") == "Runtime.exceptionThrown"
        ]
        failed = [
            (e["params"].get("errorText"), e["params"].get("requestId"))
            for e in self.events
            if e.get("method") == "Network.loadingFailed"
        ]
        console = self.console()[-10:]
        return f"page: {shown}\nconsole: {console}\nexceptions: {thrown[-5:]}\nfailed loads: {failed[-10:]}"

    def console(self) -> list[str]:
        out = []
        for event in self.events:
            if event.get("method") == "Runtime.consoleAPICalled":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in event["params"]["args"]))
        return out

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # the browser and its renderer/GPU/zygote children
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of the group is left
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
