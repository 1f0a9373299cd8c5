"""Open an HTML file in headless Chromium and tell what a reader would see.

Over the DevTools protocol (one websocket, ``websockets``' sync client): console errors and
uncaught exceptions, every request the page makes beyond itself (a self-contained report
makes none), the drawn size and data-mark count of each ``[data-chart]`` figure, the
section headings, and a PNG screenshot. Used by the report's browser test and by
``make screenshot``; Chromium is Debian's ``chromium`` package (``.ci/run`` installs it).
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

# Runs in the page after the load event: what each chart drew (Vega marks are the children of
# its ``g.role-mark`` groups; axes and legends are other roles).
_INSPECT = """(() => ({
  charts: Array.from(document.querySelectorAll('[data-chart]')).map(f => {
    const svg = f.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {name: f.dataset.chart, width: box.width, height: box.height,
            marks: svg ? svg.querySelectorAll('g.role-mark > *').length : 0};
  }),
  headings: Array.from(document.querySelectorAll('h1, h2')).map(h => h.textContent.trim()),
  height: Math.ceil(document.documentElement.scrollHeight),
}))()"""


class BrowserError(RuntimeError):
    """Chromium could not be started or did not answer in time."""


@dataclass
class PageCheck:
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    charts: list[dict[str, Any]] = field(default_factory=list)
    headings: list[str] = field(default_factory=list)
    screenshot: bytes | None = None

    def empty_charts(self) -> list[str]:
        return [c["name"] for c in self.charts if not (c["marks"] and c["width"] and c["height"])]


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return None


class _Session:
    """Request/response over the browser websocket, keeping the events that arrive between."""

    def __init__(self, ws: Any, timeout: float) -> None:
        self.ws = ws
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._id = 0

    def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> Any:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._recv(deadline, method)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str, deadline: float) -> None:
        if any(e.get("method") == event for e in self.events):
            return
        while True:
            msg = self._recv(deadline, event)
            self.events.append(msg)
            if msg.get("method") == event:
                return

    def _recv(self, deadline: float, what: str) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BrowserError(f"chromium did not answer {what} in {self.timeout:.0f} s")
        try:
            raw = self.ws.recv(timeout=left)
        except TimeoutError as exc:
            raise BrowserError(f"chromium did not answer {what} in {self.timeout:.0f} s") from exc
        result: dict[str, Any] = json.loads(raw)
        return result


def _devtools_url(profile: Path, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> str:
    """Chromium writes its port and browser path to ``DevToolsActivePort`` once listening."""
    marker = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = log.read_text(errors="replace").strip()[-300:]
            raise BrowserError(f"chromium exited with {proc.returncode}: {err}")
        lines = marker.read_text().split() if marker.exists() else []
        if len(lines) == 2:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.05)
    raise BrowserError("chromium did not open its DevTools port in time")


def _collect(page: PageCheck, events: list[dict[str, Any]], page_url: str) -> None:
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            page.errors.append(d.get("exception", {}).get("description") or d.get("text", ""))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            page.errors.append(
                " ".join(str(a.get("value", a.get("description"))) for a in p["args"])
            )
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            page.errors.append(p["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            if url != page_url and not url.startswith("data:"):
                page.requests.append(url)


def _drive(
    cdp: _Session, url: str, view: tuple[int, int, float], deadline: float, page: PageCheck
) -> None:
    """One tab: load ``url`` after the load event, inspect, screenshot, close the browser."""
    target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    sid = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        cdp.send(f"{domain}.enable", session=sid)
    width, max_height, scale = view
    metrics = {"width": width, "height": 900, "deviceScaleFactor": scale, "mobile": False}
    cdp.send("Emulation.setDeviceMetricsOverride", metrics, session=sid)
    cdp.send("Page.navigate", {"url": url}, session=sid)
    cdp.wait_for("Page.loadEventFired", deadline)
    seen = cdp.send(
        "Runtime.evaluate", {"expression": _INSPECT, "returnByValue": True}, session=sid
    )["result"]["value"]
    page.charts, page.headings = seen["charts"], seen["headings"]
    height = min(int(seen["height"]), max_height)
    cdp.send("Emulation.setDeviceMetricsOverride", {**metrics, "height": height}, sid)
    shot = cdp.send("Page.captureScreenshot", {"format": "png"}, session=sid)
    page.screenshot = base64.b64decode(shot["data"])
    _collect(page, cdp.events, url)
    cdp.send("Browser.close")


def inspect_page(
    html: Path,
    *,
    width: int = 1200,
    max_height: int = 2400,
    scale: float = 1.0,
    timeout: float = 60.0,
) -> PageCheck:
    """Load ``html`` in a fresh headless Chromium profile; screenshot its top ``max_height``
    CSS pixels at ``scale`` device pixels per CSS pixel."""
    from websockets.sync.client import connect

    exe = find_chromium()
    if exe is None:
        raise BrowserError(f"no Chromium on PATH (looked for {', '.join(CHROMIUM_NAMES)})")
    url = html.resolve().as_uri()
    page = PageCheck()
    with tempfile.TemporaryDirectory(prefix="chromium-") as tmp:
        profile, log = Path(tmp) / "profile", Path(tmp) / "chromium.log"
        with open(log, "wb") as err:  # a file, not a pipe: a full pipe would stall Chromium
            proc = subprocess.Popen(
                [exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            deadline = time.monotonic() + timeout
            ws_url = _devtools_url(profile, proc, log, deadline)
            with connect(ws_url, max_size=64 * 2**20, open_timeout=timeout) as ws:
                _drive(_Session(ws, timeout), url, (width, max_height, scale), deadline, page)
        finally:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return page


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m callminer_assets.analytics.browser",
        description="Render an HTML file in headless Chromium: errors, requests, charts, a PNG.",
    )
    parser.add_argument("html", type=Path)
    parser.add_argument("--screenshot", type=Path, help="write the PNG here")
    parser.add_argument("--width", type=int, default=1200, help="viewport width (default 1200)")
    parser.add_argument(
        "--max-height", type=int, default=2400, help="screenshot height cap (default 2400)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="device pixels per CSS pixel (default 1)"
    )
    args = parser.parse_args(argv)
    page = inspect_page(args.html, width=args.width, max_height=args.max_height, scale=args.scale)
    if args.screenshot and page.screenshot:
        args.screenshot.write_bytes(page.screenshot)
        print(f"screenshot: {args.screenshot} ({len(page.screenshot) // 1024} KiB)")
    for c in page.charts:
        print(f"chart {c['name']}: {c['marks']} marks, {c['width']:.0f}x{c['height']:.0f} px")
    for problem in page.errors + [f"request: {u}" for u in page.requests]:
        print(f"!! {problem}")
    bad = page.errors or page.requests or page.empty_charts()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
