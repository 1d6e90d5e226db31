"""The documentation site, built in strict mode and opened in headless Chromium.

``scripts/test.sh`` builds the site once (``mkdocs build --strict``) and names it in
``UNISTORAGE_SITE``; run alone, this file builds it itself. The site is served from a local
http server on a free port, and every request the browser makes to any other host fails the
test: the site must work offline. Needs Debian's ``chromium`` and the ``playwright`` package
(no browser download), driven as tests/test_example_cart.py drives it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built site: test.sh's, or one built here in strict mode."""
    given = os.environ.get("UNISTORAGE_SITE")
    if given and (Path(given) / "index.html").is_file():
        return Path(given)
    target = tmp_path_factory.mktemp("docs") / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(target)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stderr}"
    return target


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """The site on http://127.0.0.1:<free port>/."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Browser:
    """One headless Chromium page that refuses, and records, requests to other hosts."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.outside: list[str] = []
        self.errors: list[str] = []
        page.route("**/*", self._route)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )

    def _route(self, route: Any) -> None:
        if route.request.url.startswith(self.base):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def open(self, path: str = "") -> Any:
        """Load ``path`` under the site and return the response."""
        response = self.page.goto(self.base + path)
        assert response is not None, path
        assert response.ok, f"{path}: {response.status}"
        return response

    def heading(self) -> str:
        """The page's title, without its permalink sign."""
        return str(self.page.inner_text("article h1")).removesuffix("¶").strip()


@pytest.fixture(scope="module")
def browser(served: str) -> Iterator[Browser]:
    """Debian's Chromium through playwright; a missing browser is a failure, never a skip."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: `pip install playwright`")
    found = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if found is None:
        pytest.fail("Chromium is missing: install Debian's package with `apt-get install chromium`")
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=found, headless=True, args=CHROMIUM_ARGS)
        try:
            yield Browser(chromium.new_page(), served)
        finally:
            chromium.close()


@pytest.fixture
def fresh(browser: Browser) -> Browser:
    """The module's browser with its records of outside requests and errors emptied."""
    browser.outside.clear()
    browser.errors.clear()
    return browser


def test_every_page_in_the_navigation_loads(fresh: Browser) -> None:
    fresh.open()
    links = fresh.page.eval_on_selector_all(
        "nav.md-nav--primary a.md-nav__link[href]", "links => links.map(link => link.href)"
    )
    pages = sorted({link.split("#")[0] for link in links if link.startswith(fresh.base)})
    assert len(pages) >= 25, pages
    for url in pages:
        fresh.open(url.removeprefix(fresh.base))
        assert fresh.heading(), f"{url} has no heading"
    assert fresh.outside == []
    assert fresh.errors == []


def test_the_navigation_leads_from_home_to_a_driver_and_on(fresh: Browser) -> None:
    fresh.open()
    assert fresh.heading() == "unistorage"
    fresh.page.click("article a[href='drivers/']")
    assert fresh.heading() == "Drivers"
    fresh.page.click("article a[href='sqlite/']")
    assert fresh.page.url == fresh.base + "drivers/sqlite/"
    assert fresh.heading() == "sqlite"
    fresh.page.click("a.md-footer__link--next")
    assert fresh.page.url == fresh.base + "drivers/redis/"
    assert fresh.outside == []


def test_search_finds_a_term_across_the_site(fresh: Browser) -> None:
    fresh.open()
    fresh.page.fill("input.md-search__input", "tombstone")
    # The index is built in a web worker, from every page: seconds on a loaded machine.
    fresh.page.wait_for_selector(".md-search-result__item", timeout=60_000)
    found = fresh.page.eval_on_selector_all(
        ".md-search-result__item a", "links => links.map(link => link.href)"
    )
    assert any("drivers/overlay/" in link for link in found), found
    assert fresh.outside == []


def test_the_reference_states_what_newcomers_had_to_discover(fresh: Browser) -> None:
    fresh.open("storage-api/")
    text = fresh.page.inner_text("article")
    for fact in (
        "is exactly",  # the short aliases
        "dict keyed by normalized keys",
        "A missing key gives {}",
        "callback(event, key)",
        "max_depth counts separators after the base",
        "LockUnavailableError",
    ):
        assert fact in text, fact


def test_the_api_reference_is_generated_from_the_docstrings(fresh: Browser) -> None:
    fresh.open("reference/storage/")
    text = fresh.page.inner_text("article")
    assert "Values of keys by normalized key, in input order" in text
    fresh.open("reference/testing/")
    assert "DriverConformance" in fresh.page.inner_text("article")
