"""The FastAPI cart example, through an HTTP client and end to end in headless Chromium.

The browser test needs Debian's ``chromium`` package (``apt-get install -y chromium``) and the
``playwright`` Python package (no browser download: it drives /usr/bin/chromium).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from examples.cart import create_app
from storage import create_storage

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


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(create_storage()))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


def count(page: str) -> str:
    """The text of the cart link."""
    start = page.index(">", page.index('id="cart-count"')) + 1
    return page[start : page.index("</a>", start)]


async def test_cart_over_http(client: httpx.AsyncClient) -> None:
    assert "0 items" in count((await client.get("/")).text)
    assert client.cookies.get("cart-session") is None
    added = await client.post("/cart/add", data={"item": "apple"}, follow_redirects=True)
    assert "1 items" in count(added.text)
    assert "<li>apple</li>" in added.text
    assert '<p class="flash message">Added apple</p>' in added.text
    assert "Added apple" not in (await client.get("/")).text  # a flash is shown once
    guest_id = client.cookies["cart-session"]
    await client.post("/cart/add", data={"item": "<b>pear</b>"})
    page = (await client.post("/login", data={"user": "alice"}, follow_redirects=True)).text
    assert "Signed in as alice" in page
    assert "2 items" in count(page)
    assert "&lt;b&gt;pear&lt;/b&gt;" in page
    assert client.cookies["cart-session"] != guest_id
    out = await client.post("/logout", follow_redirects=True)
    assert "0 items" in count(out.text)
    assert "Guest" in out.text
    assert client.cookies.get("cart-session") is None


# -- end to end in a real browser ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The example started with its one command (over sqlite in a temporary directory)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "examples.cart",
            "--port",
            str(port),
            "--store",
            f"sqlite:///{tmp_path}/cart.db",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(200):
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"the cart example exited early:\n{output}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("the cart example did not start listening within 10 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium; its absence is a failure, never a skip."""
    found = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if found is None:
        pytest.fail(
            "Chromium is missing: install Debian's package with `apt-get install -y chromium`"
        )
    return found


async def test_cart_end_to_end_in_headless_chromium(served: str, chromium: str) -> None:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail(
            "the playwright package is missing: `pip install playwright` (no browser download)"
        )

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(served + "/")
            assert "0 items" in await page.inner_text("#cart-count")
            assert await context.cookies() == []

            for item in ("apple", "pear"):
                await page.fill("input[name=item]", item)
                await page.click("#add")
                await page.wait_for_url(served + "/")
            assert "2 items" in await page.inner_text("#cart-count")
            assert await page.inner_text("#flashes") == "Added pear"
            (cookie,) = await context.cookies()
            assert cookie["name"] == "cart-session"
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Lax"
            assert await page.evaluate("document.cookie") == ""  # HttpOnly: invisible to scripts

            await page.fill("input[name=user]", "alice")
            await page.click("#login")
            await page.wait_for_selector("#logout")
            assert await page.inner_text("#user") == "Signed in as alice"
            assert "2 items" in await page.inner_text("#cart-count")
            (regenerated,) = await context.cookies()
            assert regenerated["value"] != cookie["value"]

            await page.click("#logout")
            await page.wait_for_selector("#login")
            assert "0 items" in await page.inner_text("#cart-count")
            assert await page.inner_text("#user") == "Guest"
            assert await context.cookies() == []

            # The old cookie, replayed, opens nothing.
            await context.add_cookies(
                [{"name": "cart-session", "value": regenerated["value"], "url": served}]
            )
            await page.reload()
            assert "0 items" in await page.inner_text("#cart-count")
        finally:
            await browser.close()
