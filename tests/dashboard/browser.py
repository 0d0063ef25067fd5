"""Headless Chromium for dashboard tests, driven over the DevTools protocol: open a page, wait until a
JavaScript condition holds (Streamlit draws after its websocket answers, which a plain --screenshot
does not wait for), save a screenshot, and measure how much of a region is drawn."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-device-scale-factor=1", "--remote-debugging-port=0",
                  "--remote-allow-origins=*"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab over a DevTools websocket: evaluate JavaScript, wait for a condition, screenshot."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, js: str):
        return self.call("Runtime.evaluate", expression=js, returnByValue=True).get("result", {}).get("value")

    def wait(self, js: str, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.eval(js):
                    return True
            except RuntimeError:  # no execution context while the page is still loading
                pass
            time.sleep(0.5)
        return False

    def screenshot(self, out: Path) -> Path:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return out


@contextmanager
def open_page(url: str, size: tuple[int, int] = (1400, 1000)):
    """Start Chromium on `url` (own profile dir, own process group), yield a Page, always kill it."""
    from websockets.sync.client import connect

    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        argv = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", url]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not (port_file.exists() and port_file.read_text().strip()):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"chromium did not open its DevTools port (exit {proc.poll()})")
                time.sleep(0.2)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
                target = next(t for t in json.load(resp) if t.get("type") == "page")
            with connect(target["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=20) as ws:
                yield Page(ws)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


# The flow map is drawn: the first image of the page has loaded with its full 800x800 heatmap.
MAP_DRAWN = ("(() => { const im = document.querySelector('[data-testid=\"stImage\"] img');"
             " return !!im && im.complete && im.naturalWidth >= 800; })()")


# No element is faded as stale, i.e. no run is in progress: a screenshot now shows a settled page.
SETTLED = "document.querySelectorAll('[data-stale=\"true\"]').length === 0"


def colourful_fraction(png: Path, box: tuple[int, int, int, int]) -> float:
    """Share of pixels in box (left, top, right, bottom) that are coloured (max-min channel spread > 40):
    a drawn heatmap is, an empty dark page, grey text or a spinner is not."""
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)[box[1]:box[3], box[0]:box[2]]
    return float(((img.max(axis=-1) - img.min(axis=-1)) > 40).mean())


def image_box(page: Page) -> tuple[int, int, int, int]:
    """The heatmap's on-screen rectangle (left, top, right, bottom) in CSS pixels."""
    r = page.eval("(() => { const b = document.querySelector('[data-testid=\"stImage\"] img')"
                  ".getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; })()")
    return tuple(int(v) for v in r)
