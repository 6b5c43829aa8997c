"""The /ui call page: served from the wheel (no CDN), behind its own sign-in, and a real call from
headless Debian chromium whose fake microphone plays a WAV of the bundled voice asking a question."""

from __future__ import annotations

import asyncio
import re
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.conftest import ADMIN_KEY, CozyServer
from tests.webrtc.browser import CHROMIUM, Browser
from tests.webrtc.test_webrtc import wait_no_calls

AUTH = {"authorization": f"Bearer {ADMIN_KEY}"}
OFFER_FN = {"fn_name": "offer", "session_hash": "x", "component_id": 4, "data": {}}


async def test_page_is_local_and_needs_sign_in(rtc_server: CozyServer) -> None:
    async with httpx.AsyncClient(base_url=f"{rtc_server.root_url}/ui", timeout=30) as http:
        page = await http.get("/")
        assert page.status_code == 200 and "window.gradio_config" in page.text
        assert '"auth_required":true' in page.text  # and nothing else of the app before the sign-in
        assert "fonts.googleapis.com/css" not in page.text  # the theme uses system fonts
        for asset in re.findall(r'(?:src|href)="\./(assets/[^"]+)"', page.text):  # the app's JS/CSS, from the wheel
            assert (await http.get(f"/{asset}")).status_code == 200, asset
        assert (await http.get("/config")).status_code == 401
        # the page's offers go through Gradio's component server, which needs the sign-in
        assert (await http.post("/gradio_api/component_server", json=OFFER_FN)).status_code == 401
        bad = await http.post("/login", data={"username": "admin", "password": "wrong"})
        assert bad.status_code == 400
        other = await http.post("/login", data={"username": "somebody", "password": ADMIN_KEY})
        assert other.status_code == 400  # an API key signs in its own user only
        good = await http.post("/login", data={"username": "admin", "password": ADMIN_KEY})
        assert good.status_code == 200 and good.json() == {"success": True}
        config = await http.get("/config")  # the cookie is in the client now
        assert config.status_code == 200 and config.json()["analytics_enabled"] is False


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")
async def test_browser_call_from_the_page(rtc_server: CozyServer, question: np.ndarray, tmp_path: Path) -> None:
    wav = tmp_path / "mic.wav"
    pcm = np.concatenate([np.zeros(48000 * 2, np.int16), question, np.zeros(48000 * 10, np.int16)])
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm.tobytes())
    browser = Browser(wav)
    try:
        await browser.start()
        await browser.send("Page.navigate", url=f"{rtc_server.root_url}/ui/")
        await browser.wait_js("document.body.innerText.includes('Login')", 30)  # Gradio's sign-in form
        login = f"new URLSearchParams({{username: 'admin', password: '{ADMIN_KEY}'}})"
        assert await browser.js(f"fetch('login', {{method: 'POST', body: {login}}}).then(r => r.status)") == 200
        await browser.send("Page.reload")
        await browser.wait_js("document.body.innerText.includes('Access Microphone')", 30)
        await choose_personality(browser, "Voice Concierge")
        await click(browser, "Access Microphone")
        await browser.wait_js("[...document.querySelectorAll('button')].some(b => b.innerText.includes('Start'))", 15)
        started = time.monotonic()
        await click(browser, "Start call")
        await browser.wait_js("window.__pcs.some(pc => pc.connectionState === 'connected')", 20)
        energy = await browser.wait_js(RECEIVED_ENERGY + " .then(e => e > 0.05 && e)", 40, every=0.5)
        print(f"\nbrowser: reply audio received {time.monotonic() - started:.1f} s after the call started")
        assert energy > 0.05  # non-silent reply audio reached the page's peer connection
        await click(browser, "Hang up")
        await browser.wait_js("window.__pcs.every(pc => pc.connectionState === 'closed')", 10)
        await asyncio.sleep(0.5)  # let the close reach the server before the browser goes
    finally:
        console = browser.console()
        await browser.close()
    await wait_no_calls(rtc_server)  # hanging up on the page ended the session
    async with httpx.AsyncClient(base_url=rtc_server.base_url, headers=AUTH, timeout=10) as http:
        sessions = (await http.get("/chat/sessions", params={"limit": 50})).json()["data"]
        calls = [s for s in sessions if s["id"].startswith("call_") and s["personality_id"] == "voice-concierge"]
        messages = (await http.get(f"/chat/sessions/{calls[0]['id']}/messages")).json()["data"]
    said = [m["content"] for m in messages if m["role"] == "user"]
    assert said and "what time is it" in said[-1].lower(), (messages, console[-20:])  # tiny.en may hear "pairs"


RECEIVED_ENERGY = """(async () => {
  let energy = 0;
  for (const pc of window.__pcs) {
    (await pc.getStats()).forEach(r => {
      if (r.type === 'inbound-rtp' && r.kind === 'audio') energy += r.totalAudioEnergy || 0;
    });
  }
  return energy;
})()"""


async def click(browser: Browser, label: str) -> None:
    found = await browser.js(
        f"(() => {{ const b = [...document.querySelectorAll('button')].find(x => x.innerText.includes({label!r}));"
        " if (b) b.click(); return !!b; })()"
    )
    assert found, f"no {label!r} button"


async def choose_personality(browser: Browser, name: str) -> None:
    """Type into Gradio's dropdown and pick the match with Enter, as a user would."""
    await browser.js("document.querySelector('input[aria-label=\"Personality\"]').focus()")
    await asyncio.sleep(0.3)  # the options open on focus
    await browser.js("document.querySelector('input[aria-label=\"Personality\"]').select()")
    await browser.send("Input.insertText", text=name)
    await asyncio.sleep(0.3)
    for kind in ("keyDown", "keyUp"):
        await browser.send("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13)
    await browser.js("document.querySelector('input[aria-label=\"Personality\"]').blur()")
    await browser.wait_js(f"document.querySelector('input[aria-label=\"Personality\"]').value.includes({name!r})", 5)
