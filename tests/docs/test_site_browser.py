"""The built documentation site, opened in a real headless Chromium, works without a network.

Every page of the site is served from 127.0.0.1 and loaded in Chromium, driven over the Chrome
DevTools Protocol (a websocket; `websocket-client`). On each page, after MathJax has typeset:

- no request leaves 127.0.0.1 (fonts, scripts and math are served with the site), no local
  resource fails to load and no script throws;
- every formula is typeset (no raw `$…$`, `\\(…\\)` or TeX macro left in the text, no MathJax error);
- no Sphinx role (`:class:`, `:func:`, `:math:`, ...) shows in the text;
- every image has loaded (`naturalWidth > 0`);
- every link inside the site answers HTTP 200, and its `#fragment` names an element of that page.

The site is `site/` when it is newer than the docs, the sources and `mkdocs.yml` (CI builds it with
`make docs` before the tests); otherwise the test builds it into a temporary folder. Without a
Chromium binary (`chromium`, `chromium-browser`, `google-chrome`, or `REGLIGHT_CHROMIUM`) the test
skips and says so; CI (`.ci/run`) installs Debian's `chromium` package and builds the site first,
so there it always runs (`REGLIGHT_SKIP_BROWSER=1` switches it off). Set
`REGLIGHT_SCREENSHOTS=DIR` to keep PNG screenshots of the home page, the gallery and an API page.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag

import pytest

ROOT = Path(__file__).resolve().parents[2]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PAGE_TIMEOUT_S = 60.0  # one page; generous for a loaded machine (a page takes < 3 s)

# What the page reports, in the page: a JSON-able object (see the module docstring for the checks).
PAGE_REPORT_JS = r"""
(() => {
  const skip = new Set(["SCRIPT", "STYLE", "CODE", "PRE", "TEXTAREA", "MJX-CONTAINER", "SVG"]);
  const tex = /\$[^$\s][^$]*\$|\\\(|\\\)|\\\[|\\\]|\\(?:frac|mathrm|mathbb|sum|lVert|sqrt|alpha|lambda)\b/;
  const role = /:(?:py:)?(?:class|func|meth|math|attr|mod|ref|obj|exc|data|doc|term):/;
  const rawTex = [], roles = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let e = node.parentElement; e; e = e.parentElement) {
        if (skip.has(e.tagName.toUpperCase())) return NodeFilter.FILTER_REJECT;
      }
      return NodeFilter.FILTER_ACCEPT;
    },
  });
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = n.textContent;
    if (tex.test(text)) rawTex.push(text.trim().slice(0, 120));
    if (role.test(text)) roles.push(text.trim().slice(0, 120));
  }
  const math = [...document.querySelectorAll(".arithmatex")];
  return {
    title: document.title,
    rawTex, roles,
    mathCount: math.length,
    mathUntypeset: math.filter(e => !e.querySelector("mjx-container")).map(e => e.textContent.slice(0, 80)),
    mathErrors: [...document.querySelectorAll("mjx-merror, [data-mjx-error]")].map(
      e => (e.getAttribute("data-mjx-error") || e.textContent).slice(0, 80)),
    images: [...document.images].map(i => ({src: i.currentSrc || i.src, width: i.naturalWidth})),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
  };
})()
"""

# Resolves when MathJax has typeset the page (at once where a page loads no MathJax).
MATH_DONE_JS = (
    "(window.MathJax && MathJax.startup && MathJax.startup.promise"
    " ? MathJax.startup.promise.then(() => true) : Promise.resolve(false))"
)


def find_chromium() -> str | None:
    """The Chromium binary to drive: `REGLIGHT_CHROMIUM`, else the first of `BROWSERS` on the PATH."""
    env = os.environ.get("REGLIGHT_CHROMIUM")
    if env:
        return env
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def newest_source_mtime() -> float:
    """The latest modification time of what the site is built from."""
    files = [ROOT / "mkdocs.yml", ROOT / "README.md", ROOT / "CHANGELOG.md"]
    for folder in (ROOT / "docs", ROOT / "src" / "reglight"):
        files.extend(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return max(p.stat().st_mtime for p in files if p.exists())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built site: `site/` when it is fresh, else a build into a temporary folder."""
    built = ROOT / "site"
    index = built / "index.html"
    if index.is_file() and index.stat().st_mtime >= newest_source_mtime():
        return built
    pytest.importorskip(
        "mkdocs", reason="mkdocs is needed to build the site (pip install -e .[docs])"
    )
    out = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        check=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    """The site served over HTTP on 127.0.0.1; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


class Chromium:
    """A headless Chromium with one tab, driven over the DevTools Protocol."""

    def __init__(self, executable: str, profile: Path) -> None:
        websocket = pytest.importorskip("websocket", reason="websocket-client drives Chromium")
        self.proc = subprocess.Popen(
            [
                executable,
                "--headless",
                "--no-sandbox",  # CI runs as root
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port = self._debugging_port(profile)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.load(r)
            page = next(t for t in targets if t["type"] == "page")
            self.ws = websocket.create_connection(
                page["webSocketDebuggerUrl"], timeout=PAGE_TIMEOUT_S, suppress_origin=True
            )
        except BaseException:
            self.close()
            raise
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Network", "Runtime"):
            self.call(f"{domain}.enable")

    def _debugging_port(self, profile: Path) -> int:
        deadline = time.monotonic() + 30
        port_file = profile / "DevToolsActivePort"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Chromium exited with code {self.proc.returncode}")
            if port_file.is_file() and (lines := port_file.read_text().splitlines()):
                return int(lines[0])
            time.sleep(0.05)
        raise TimeoutError("Chromium did not open its DevTools port within 30 s")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        self.ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = PAGE_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event} within {timeout} s")
            self.events.append(json.loads(self.ws.recv()))

    def open(self, url: str) -> dict[str, Any]:
        """Load `url`, wait for the load event and MathJax, and return the page's report."""
        self.events = []
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        self.evaluate(MATH_DONE_JS)
        return dict(self.evaluate(PAGE_REPORT_JS))

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    if os.environ.get("REGLIGHT_SKIP_BROWSER") == "1":
        pytest.skip("REGLIGHT_SKIP_BROWSER=1: the browser check of the docs site is switched off")
    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "no Chromium found (looked for " + ", ".join(BROWSERS) + " and REGLIGHT_CHROMIUM); "
            "install it with `apt-get install chromium` to check the site in a browser"
        )
    chromium = Chromium(executable, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield chromium
    finally:
        chromium.close()


def site_pages(site: Path) -> list[str]:
    """The pages of the site, as paths relative to its root (`""` is the home page)."""
    pages = []
    for index in sorted(site.rglob("index.html")):
        rel = index.parent.relative_to(site).as_posix()
        if rel.split("/")[0] in ("assets", "search"):
            continue
        pages.append("" if rel == "." else rel + "/")
    return pages


def page_problems(chromium: Chromium, report: dict[str, Any], base: str) -> list[str]:
    """What is wrong on a loaded page, from its report and the DevTools events of its load."""
    problems = []
    requests = {}
    for event in chromium.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            requests[params["requestId"]] = url
            if not url.startswith((base, "data:", "blob:", "about:")):
                problems.append(f"request leaves the site: {url}")
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            problems.append(f"HTTP {params['response']['status']}: {params['response']['url']}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            url = requests.get(params["requestId"], "?")
            problems.append(f"failed to load {url}: {params.get('errorText')}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            problems.append(f"script error: {text}")
    problems += [f"raw TeX in the text: {t!r}" for t in report["rawTex"]]
    problems += [f"Sphinx role in the text: {t!r}" for t in report["roles"]]
    problems += [f"formula not typeset: {t!r}" for t in report["mathUntypeset"]]
    problems += [f"MathJax error: {t!r}" for t in report["mathErrors"]]
    problems += [f"image not loaded: {i['src']}" for i in report["images"] if i["width"] <= 0]
    return problems


@functools.cache
def fetch(url: str) -> tuple[int, str]:
    """HTTP status and text of a page of the local site."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, ""


def broken_links(links: list[str], base: str) -> list[str]:
    """The links inside the site that do not answer 200, or whose fragment names no element."""
    broken = []
    for link in sorted(set(links)):
        if not link.startswith(base):
            continue
        url, fragment = urldefrag(link)
        status, text = fetch(url)
        if status != 200:
            broken.append(f"{link} (HTTP {status})")
        elif fragment and not re.search(rf'\bid="{re.escape(unquote(fragment))}"', text):
            broken.append(f"{link} (no element with id {unquote(fragment)!r})")
    return broken


def test_every_page_works_offline_in_chromium(
    site: Path, server: str, browser: Chromium, tmp_path: Path
) -> None:
    pages = site_pages(site)
    assert "" in pages and len(pages) >= 10, pages
    shots = Path(os.environ.get("REGLIGHT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    api_page = "penalties/"  # a page of mkdocstrings API entries, with formulas
    problems: dict[str, list[str]] = {}
    links: list[str] = []
    math_total = 0
    for page in pages:
        report = browser.open(server + page)
        found = page_problems(browser, report, server)
        if not report["title"]:
            found.append("no title")
        if found:
            problems[page or "/"] = found
        links += report["links"]
        math_total += report["mathCount"]
        if page in ("", "gallery/", api_page):
            browser.screenshot(shots / f"{(page.strip('/') or 'home')}.png")
    problems_by_link = broken_links(links, server)
    if problems_by_link:
        problems["links"] = problems_by_link
    assert not problems, json.dumps(problems, indent=2)
    assert math_total > 0, "no formula found on any page: the math check checked nothing"
    assert (shots / "home.png").stat().st_size > 0
