"""The built book in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``; ``.ci/run`` installs them) opens every page of the ``smoke`` book served on
loopback and fails on a console error, an image that does not load or has no alt text, or maths
left as raw TeX. Without network access beyond loopback, this also proves the book reads offline.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import time

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
]

_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)

#: For every <img>: its src, whether it downloads (HTTP 2xx), and its alt text.
_IMAGES_JS = """
const done = arguments[arguments.length - 1];
Promise.all(Array.from(document.images).map(async (img) => {
  let ok = false;
  try { ok = (await fetch(img.src)).ok; } catch (e) { ok = false; }
  return [img.getAttribute('src'), ok, img.getAttribute('alt') || ''];
})).then(done);
"""
#: True once MathJax 3 has typeset the page (or the page has no MathJax).
_MATH_READY_JS = """
if (!window.MathJax || !MathJax.startup || !MathJax.startup.promise) return true;
if (window.__typesetDone === undefined) {
  window.__typesetDone = false;
  MathJax.startup.promise.then(() => { window.__typesetDone = true; });
}
return window.__typesetDone;
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(smoke_book):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    project, _, index = smoke_book
    html = index.parent
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(html))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in _FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={project / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver, f"http://127.0.0.1:{server.server_address[1]}", html
    finally:
        driver.quit()
        server.shutdown()


def _pages(html):
    skip = {"_static", "_sources", "_images"}
    return sorted(
        p.relative_to(html).as_posix()
        for p in html.rglob("*.html")
        if not skip & set(p.relative_to(html).parts)
    )


def _wait_for_maths(driver, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute_script(_MATH_READY_JS):
            return
        time.sleep(0.2)
    raise AssertionError("MathJax did not finish typesetting")


def test_every_page_loads_cleanly_with_images_and_typeset_maths(browser):
    driver, base, html = browser
    pages = _pages(html)
    assert "book/executed/03_train.html" in pages and "book/references.html" in pages
    problems, typeset = [], 0
    for page in pages:
        driver.get(f"{base}/{page}")
        _wait_for_maths(driver)
        for entry in driver.get_log("browser"):
            if entry["level"] == "SEVERE":
                problems.append(f"{page}: console error: {entry['message'][:300]}")
        for src, ok, alt in driver.execute_async_script(_IMAGES_JS):
            if not ok:
                problems.append(f"{page}: image does not load: {src}")
            if not alt.strip() or alt.endswith((".png", ".svg", ".jpg")):
                problems.append(f"{page}: image without alt text saying what it shows: {src}")
        text = driver.execute_script(
            "return (document.querySelector('article') || document.body).innerText"
        )
        for raw in ("\\(", "\\[", "\\frac", "\\mathcal", "\\bar"):
            if raw in text:
                problems.append(f"{page}: untypeset maths ({raw!r} in the text)")
        typeset += driver.execute_script("return document.querySelectorAll('mjx-container').length")
    assert not problems, "\n".join(problems)
    assert typeset >= 20  # chapters 3-5 hold formulas, and they were typeset


def test_maths_are_served_by_the_book_itself(browser):
    driver, base, _ = browser
    driver.get(f"{base}/book/executed/03_train.html")
    scripts = driver.execute_script(
        "return Array.from(document.scripts).map(s => s.src).filter(s => s)"
    )
    assert any("/_static/mathjax/tex-svg.js" in s for s in scripts)
    assert all(s.startswith(base) for s in scripts), [s for s in scripts if not s.startswith(base)]
    assert driver.execute_script("return document.querySelectorAll('mjx-container').length") > 0


def _on_page(browser, page, script):
    driver, base, _ = browser
    driver.get(f"{base}/{page}")
    return driver.execute_script(script)


def test_launch_buttons_open_the_tracked_notebooks(browser):
    links = _on_page(
        browser,
        "book/executed/03_train.html",
        "return Array.from(document.querySelectorAll('a')).map(a => a.href)"
        ".filter(h => h.includes('mybinder') || h.includes('colab'))",
    )
    assert len(links) == 2
    for link in links:
        assert "notebooks/03_train.ipynb" in link and "book/executed" not in link
        assert "/./" not in link


def test_one_search_bar(browser):
    visible = _on_page(
        browser,
        "book/intro.html",
        "return Array.from(document.querySelectorAll('.search-button-field, form.bd-search'))"
        ".filter(e => e.offsetParent !== null).length",
    )
    assert visible == 1
