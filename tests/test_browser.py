"""The documentation site, opened as a reader opens it: in headless Chromium, offline.

The site is built into a temporary folder, served from 127.0.0.1 by `http.server`, and each page
is opened in Debian's `chromium` with every host name but 127.0.0.1 resolving to nothing. The
browser is driven through the DevTools protocol over `--remote-debugging-pipe` (JSON messages
separated by NUL bytes on file descriptors 3 and 4: no websocket library needed). For each page:

- no console error, no uncaught exception, no failed load;
- no request to any address other than the local server (a CDN, Google Fonts, ...);
- the formulas rendered: MathJax's output elements (`mjx-container`) present, as many as the page
  has `arithmatex` spans, and no raw TeX delimiter left in the text;
- every image loaded (`naturalWidth > 0`).

`.ci/run` installs chromium when it is missing; elsewhere the test skips, saying so.
"""

from __future__ import annotations

import fcntl
import functools
import http.server
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

if CHROMIUM is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI must have chromium: .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it in CI)",
                allow_module_level=True)
if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mathjax") is None:
    pytest.skip("the docs extra is not installed (pip install -e '.[docs]')", allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--window-size=1280,1000",
         # Every host name but the local server resolves to nothing: a page that needs the
         # internet fails here visibly instead of working only where there is a network.
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]

# Pages opened: the front page (code, tables), two method pages with formulas and an output image.
PAGES = ("index.html", "methods/egbas.html", "methods/dgn-am.html")


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory):
    """The docs built into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def site(site_dir):
    """The built docs served on 127.0.0.1: yields the base URL."""
    out = site_dir
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class Browser:
    """Headless Chromium driven over the DevTools pipe: one page target, flattened session."""

    def __init__(self, user_data_dir: Path):
        to_browser_r, self._to_browser_w = os.pipe()
        self._from_browser_r, from_browser_w = os.pipe()

        def fds():  # the protocol's fixed descriptors: the browser reads 3 and writes 4
            r, w = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}",
                                      "--remote-debugging-pipe", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=fds, pass_fds=(3, 4))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._id = 0
        self.events: list = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", session=True)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._from_browser_r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: bool = False, timeout: float = 20.0, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_browser_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            self.events.append(m)

    def wait_for(self, method: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        for i, m in enumerate(self.events):
            if m.get("method") == method:
                return self.events.pop(i)
        while True:
            m = self._read(deadline)
            if m.get("method") == method:
                return m
            self.events.append(m)

    def evaluate(self, expression: str):
        r = self.call("Runtime.evaluate", session=True, expression=expression, awaitPromise=True,
                      returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:60]}...: {r['exceptionDetails']}")
        return r["result"].get("value")

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser_w)
        os.close(self._from_browser_r)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def problems(events: list, origin) -> list:
    """Console errors, uncaught exceptions, failed loads and requests that leave `origin` (a URL
    prefix, or a tuple of them)."""
    origins = (origin,) if isinstance(origin, str) else tuple(origin)
    found = []
    for m in events:
        method, p = m.get("method"), m.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = p["exceptionDetails"]
            found.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            found.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            found.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent":
            url = p["request"]["url"]
            if not url.startswith(origins + ("data:", "blob:")):
                found.append(f"request leaves the machine: {url}")
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            found.append(f"load failed: {p.get('errorText')} ({p.get('type')})")
    return found


# Run in the page after it loaded: waits for MathJax's first typeset (when the page loads it),
# then reports the formulas and images the reader sees.
INSPECT = """(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await Promise.all(Array.from(document.images).map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  const text = document.querySelector("article") ? document.querySelector("article").innerText : "";
  return {
    math_spans: document.querySelectorAll(".arithmatex").length,
    rendered: document.querySelectorAll(".arithmatex mjx-container").length,
    mathjax_errors: document.querySelectorAll("mjx-merror, [data-mjx-error]").length,
    raw_tex: (text.match(/\\\\[(\\[]/g) || []).length,
    images: Array.from(document.images).map(i => [i.currentSrc || i.src, i.naturalWidth]),
    title: document.title,
  };
})()"""


@pytest.mark.parametrize("page", PAGES)
def test_docs_page_renders_offline(site, browser, page):
    browser.open(site + page)
    seen = browser.evaluate(INSPECT)
    issues = problems(browser.events, site)
    assert not issues, f"{page}: " + "; ".join(issues)
    assert seen["title"] and "404" not in seen["title"], (page, seen["title"])
    assert seen["rendered"] == seen["math_spans"], f"{page}: {seen['rendered']} of {seen['math_spans']} formulas rendered"
    assert seen["mathjax_errors"] == 0 and seen["raw_tex"] == 0, (page, seen)
    if page == "methods/egbas.html":
        assert seen["math_spans"] > 20, seen  # the page with the formulas really has them
    if page.startswith("methods/"):
        assert any("/img/" in src for src, _ in seen["images"]), f"{page} shows no output image"
    for src, width in seen["images"]:
        assert width > 0, f"{page}: image {src} did not load"


def test_docs_open_from_disk(site_dir, browser):
    """Opened as a file (no server), a page renders its formulas and its links name files, not
    folders (`use_directory_urls: false`), so navigation works from disk too."""
    browser.open((site_dir / "methods" / "egbas.html").as_uri())
    seen = browser.evaluate(INSPECT)
    # The local server of the other tests is on this machine too (a late favicon request of the
    # page opened before may arrive here).
    issues = problems(browser.events, ("file://", "http://127.0.0.1:"))
    assert not issues, "; ".join(issues)
    assert seen["rendered"] == seen["math_spans"] > 20, seen
    links = browser.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    local = {link.split("#")[0] for link in links if link.startswith("file://")}
    assert len(local) > 10, local
    for link in local:
        path = Path(link.removeprefix("file://"))
        assert path.is_file(), f"link to {link} is not a file of the site"


def test_the_check_sees_a_request_that_leaves_the_machine(site, browser, tmp_path):
    """The check can fail: a page that loads a script from a CDN is caught, and its failed load too."""
    browser.open("about:blank")
    browser.events.clear()
    browser.evaluate("""new Promise(r => { const s = document.createElement('script');
        s.src = 'https://cdn.example.org/x.js'; s.onload = s.onerror = r; document.head.appendChild(s); })""")
    time.sleep(0.2)
    browser.call("Runtime.evaluate", session=True, expression="0")  # drain pending events
    found = problems(browser.events, site)
    assert any("request leaves the machine: https://cdn.example.org/x.js" in f for f in found), found


def test_the_check_sees_raw_tex_and_a_broken_image(site, browser):
    """A page whose formula MathJax did not typeset, and an image that does not load, fail the check."""
    browser.open(site + "index.html")
    browser.evaluate("""(() => { const a = document.querySelector('article');
        const s = document.createElement('span'); s.className = 'arithmatex'; s.textContent = '\\\\(x^2\\\\)';
        a.appendChild(s);
        const i = document.createElement('img'); i.src = 'no-such-image.png'; a.appendChild(i); })()""")
    seen = browser.evaluate(INSPECT)
    assert seen["rendered"] < seen["math_spans"] and seen["raw_tex"] >= 1, seen
    assert any(w == 0 for _, w in seen["images"]), seen
    assert any("load failed" in f or "404" in f for f in problems(browser.events, site)), browser.events[-5:]


def demo_report() -> Path | None:
    """A demo report to open, when one exists: `$JAXPROBE_REPORT_DIR`, or ./jaxprobe-report."""
    for d in (os.environ.get("JAXPROBE_REPORT_DIR"), REPO / "jaxprobe-report"):
        if d and (Path(d) / "index.html").is_file():
            return Path(d)
    return None


def test_demo_report_renders_offline(browser, tmp_path):
    report = demo_report()
    if report is None:
        pytest.skip("no demo report here (run `jaxprobe demo` or set JAXPROBE_REPORT_DIR to open one; "
                    "tests/test_demo.py opens the report it writes)")
    check_report_in_browser(browser, report)


def check_report_in_browser(browser, report: Path) -> None:
    """Open `report`/index.html served from 127.0.0.1: no console error, no request leaving the
    machine, every image loaded."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(report)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        origin = f"http://127.0.0.1:{server.server_address[1]}/"
        browser.open(origin + "index.html")
        seen = browser.evaluate(INSPECT)
        issues = problems(browser.events, origin)
        assert not issues, "; ".join(issues)
        assert seen["images"], "the report shows no image"
        for src, width in seen["images"]:
            assert width > 0, f"report image {src} did not load"
    finally:
        server.shutdown()
        server.server_close()
