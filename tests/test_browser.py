"""Open every page of the built book (``_build/html``) in headless Debian Chromium over loopback.

Checks that every image loaded (``naturalWidth > 0``), that math was typeset by MathJax (no raw TeX left, no MathJax
error), and that every internal link points at an existing page and anchor. Saves screenshots of the introduction and
of the first notebook page to ``_build/screenshots/``. Run after ``make book`` / ``make html``.
"""

from __future__ import annotations

import functools
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from fgssl_lib.reproduce import toc_notebooks

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
PAGES = sorted(
    p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html") if not {"_static", "_sources"} & set(p.parts)
) if HTML.is_dir() else []
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1600")
NO_BOOK = pytest.mark.skip(reason="_build/html does not exist: build the book first (make book, or make html)")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(HTML)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.fail("Debian's chromium and chromium-driver are needed: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def _open(driver: object, url: str) -> None:
    """Load ``url`` and wait until the page and MathJax (when the page loads it) are done."""
    driver.get(url)
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const mj = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;"
        "(mj || Promise.resolve()).then(() => done(true), () => done(false));"
    )


def _missing_target(url: str, base: str) -> str | None:
    """``None`` if an internal ``url`` points at an existing file (and anchor), else what is missing."""
    parts = urlsplit(url)
    path = unquote(parts.path[len(urlsplit(base).path):])
    target = HTML / path
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return f"{url}: no file {target.relative_to(HTML)}"
    if parts.fragment and target.suffix == ".html":
        anchor = unquote(parts.fragment)
        if not re.search(rf'(id|name)="{re.escape(anchor)}"', target.read_text(errors="replace")):
            return f"{url}: no anchor #{anchor} in {target.relative_to(HTML)}"
    return None


@pytest.mark.parametrize("page", PAGES or [pytest.param("none", marks=NO_BOOK)])
def test_page_renders(page: str, browser: object, base_url: str) -> None:
    _open(browser, base_url + page)
    broken_images = browser.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);"
    )
    assert not broken_images, f"{page}: images that did not load: {broken_images}"

    math = browser.execute_script(
        "return {nodes: document.querySelectorAll('.math, span.math, div.math').length,"
        " typeset: document.querySelectorAll('mjx-container').length,"
        " errors: document.querySelectorAll('mjx-merror').length};"
    )
    assert math["errors"] == 0, f"{page}: MathJax reported {math['errors']} error(s)"
    if math["nodes"]:
        assert math["typeset"] >= 1, f"{page}: {math['nodes']} math elements but nothing typeset by MathJax"
    if page.startswith("book/theory_"):
        assert math["typeset"] >= 3, f"{page}: a theory page must show its equations typeset ({math['typeset']})"

    links = browser.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);")
    broken = [m for m in (_missing_target(u, base_url) for u in links if u.startswith(base_url)) if m]
    assert not broken, f"{page}: broken internal links: {broken}"


@pytest.mark.skipif(not HTML.is_dir(), reason="_build/html does not exist: build the book first (make book)")
def test_screenshots_of_intro_and_a_notebook(browser: object, base_url: str) -> None:
    notebook = toc_notebooks(ROOT / "_toc.yml")[0].relative_to(ROOT).with_suffix(".html").as_posix()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _open(browser, base_url + "book/intro.html")
    assert browser.save_screenshot(str(SCREENSHOTS / "intro.png")), "no screenshot of the introduction"
    _open(browser, base_url + notebook)
    figure = browser.execute_script("const img = document.querySelector('.cell_output img');"
                                    "if (img) { img.scrollIntoView({block: \"center\"}); } return img !== null;")
    assert figure, f"{notebook} shows no figure: was it built from an executed copy?"
    assert browser.save_screenshot(str(SCREENSHOTS / "notebook.png")), f"no screenshot of {notebook}"
    colab = browser.execute_script("return Array.from(document.querySelectorAll('a[href*=\"colab.research\"]')).length")
    assert colab >= 1, f"{notebook} has no Colab launch button"
