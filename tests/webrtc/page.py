"""Driving the /ui page in headless chromium: sign in, start a call, read the conversation the page
shows, screenshot it, and (PAGE_MIC) a microphone the test speaks into when it chooses."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from pathlib import Path

from PIL import Image

from tests.e2e.conftest import ADMIN_KEY, CozyServer
from tests.webrtc.browser import Browser

# Added before the page loads: getUserMedia gets a WebAudio stream the test plays utterances into
# (window.__mic.say(base64 int16 48 kHz) -> seconds), silence in between, like a quiet room.
PAGE_MIC = """
(() => {
  const media = navigator.mediaDevices, native = media.getUserMedia.bind(media);
  media.getUserMedia = async (constraints) => {
    if (!constraints || !constraints.audio) return native(constraints);
    if (!window.__mic) {
      const ctx = new AudioContext({sampleRate: 48000});
      const dest = ctx.createMediaStreamDestination();
      const hiss = ctx.createBuffer(1, 48000, 48000), h = hiss.getChannelData(0);  // -70 dB room noise: a
      for (let i = 0; i < h.length; i++) h[i] = (Math.random() - 0.5) * 0.0006;  // silent graph sends nothing
      const room = ctx.createBufferSource();
      room.buffer = hiss;
      room.loop = true;
      room.connect(dest);
      room.start();
      const say = (b64) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const pcm = new Int16Array(bytes.buffer);
        const buf = ctx.createBuffer(1, pcm.length, 48000), ch = buf.getChannelData(0);
        for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
        const src = ctx.createBufferSource();
        src.buffer = buf;
        src.connect(dest);
        src.start();
        return pcm.length / 48000;
      };
      window.__mic = {ctx, dest, say};
    }
    await window.__mic.ctx.resume();
    return new MediaStream(window.__mic.dest.stream.getAudioTracks().map(t => t.clone()));
  };
})();
"""

# Every turn state the conversation view has shown (a pause lasts a moment only).
SEEN_STATES = """
window.__states = new Set();
new MutationObserver(() => {
  document.querySelectorAll('#cozy-conversation .cozy-turn[data-state]').forEach(t => {
    if (t.dataset.state) window.__states.add(t.dataset.state);
  });
}).observe(document, {subtree: true, childList: true, characterData: true});
"""

RECEIVED_ENERGY = """(async () => {
  let energy = 0;
  for (const pc of window.__pcs) {
    (await pc.getStats()).forEach(r => {
      if (r.type === 'inbound-rtp' && r.kind === 'audio') energy += r.totalAudioEnergy || 0;
    });
  }
  return energy;
})()"""


CONVERSATION = """(async () => {
  const box = document.querySelector('#cozy-conversation');
  const turns = role => [...box.querySelectorAll(`.cozy-turn[data-role="${role}"]`)].map(t => ({
    text: t.querySelector('.cozy-text').innerText, final: t.classList.contains('cozy-final'), state: t.dataset.state,
  }));
  const unheard = box.querySelectorAll('.cozy-unheard').length;
  return {user: turns('user'), assistant: turns('assistant'), text: box.innerText, unheard};
})()"""


async def screenshot(browser: Browser, selector: str, path: Path) -> Path:
    """A PNG of the element as the page renders it; it must hold rendered text, not a blank box."""
    await browser.send("Emulation.setDeviceMetricsOverride", width=1100, height=1400, deviceScaleFactor=1, mobile=False)
    await asyncio.sleep(0.5)  # re-layout
    rect = await browser.js(
        f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
        " return {x: r.x + window.scrollX, y: r.y + window.scrollY, width: r.width, height: r.height, scale: 1}; })()"
    )
    shot = await browser.send("Page.captureScreenshot", format="png", clip=rect, captureBeyondViewport=True)
    png = base64.b64decode(shot["data"])
    await asyncio.to_thread(path.write_bytes, png)
    image = Image.open(io.BytesIO(png)).convert("L")
    assert image.width > 200 and image.height > 50, image.size
    dark = sum(image.histogram()[:100])  # text pixels (the boxes are light)
    assert dark > 200, f"the conversation looks blank in {path}"
    return path


async def start_page_call(browser: Browser, server: CozyServer, personality: str, key: str = ADMIN_KEY) -> float:
    """Sign in, pick `personality`, allow the microphone, start the call; when it connected (monotonic)."""
    nav = await browser.send("Page.navigate", url=f"{server.root_url}/ui/")
    assert not nav.get("errorText"), f"/ui/ did not load: {nav} {await browser.diagnosis()}"
    await browser.wait_js("document.body.innerText.includes('Login')", 30)  # Gradio's sign-in form
    login = f"new URLSearchParams({{username: 'admin', password: '{key}'}})"
    assert await browser.js(f"fetch('login', {{method: 'POST', body: {login}}}).then(r => r.status)") == 200
    await browser.send("Page.reload")
    await browser.wait_js("document.body.innerText.includes('Access Microphone')", 30)
    await choose_personality(browser, personality)
    await click(browser, "Access Microphone")
    await browser.wait_js("[...document.querySelectorAll('button')].some(b => b.innerText.includes('Start'))", 15)
    started = time.monotonic()
    await click(browser, "Start call")
    await browser.wait_js("window.__pcs.some(pc => pc.connectionState === 'connected')", 20)
    return started


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
