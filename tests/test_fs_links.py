"""The fs driver never follows a link inside its directory (issue 10, defect 1).

Links planted in the store point at a directory outside, at a file outside, and at a parent
inside. Whatever the operation (read, write, remove, clear, list, meta; directly, through
Storage or through the HTTP server) and whatever races with it, nothing outside the store is
read, created, changed or deleted. Decision tested here: a link is never a key (never listed,
reads as absent) and never followed; a write or remove of a key whose name is a link replaces
or deletes the link itself, and a write below it turns it into a directory that keeps the link
as its ``%`` entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from drivers.fs import INTERNAL, FsDriver
from storage import create_storage
from storage.server import StorageServer

SECRET = b"top secret"


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for directories and links)."""
    found: dict[str, bytes | None] = {}
    for path in root.rglob("*"):
        rel = str(path.relative_to(root))
        found[rel] = None if path.is_symlink() or path.is_dir() else path.read_bytes()
    return found


@pytest.fixture(params=["default", "walk"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run with openat2 where the system has it, and with the portable component walk."""
    if request.param == "walk":
        beneath = pytest.importorskip("drivers._fs_beneath")
        monkeypatch.setattr(beneath, "OPENAT2", False)
    return str(request.param)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the store, with files named like the keys the tests use."""
    root = tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    (root / "secret").write_bytes(SECRET)
    (root / "new").write_bytes(b"keep")
    (root / "sub" / "deep").write_bytes(b"deep")
    (root / "only_outside").write_bytes(b"o")
    return root


@pytest.fixture
async def store(tmp_path: Path, outside: Path, resolver: str) -> AsyncIterator[FsDriver]:
    """A store holding real keys and three planted links."""
    driver = FsDriver(tmp_path / "store", sweep_interval=0)
    await driver.set_item("real", b"r")
    await driver.set_item("dir:inner", b"i")
    base = Path(driver.base)
    (base / "link").symlink_to(outside, target_is_directory=True)
    (base / "file_link").symlink_to(outside / "secret")
    (base / "dir" / "up").symlink_to(base, target_is_directory=True)
    yield driver
    await driver.dispose()


async def test_reads_through_links_find_nothing(store: FsDriver, outside: Path) -> None:
    for key in ["link:secret", "file_link", "link:sub:deep", "dir:up:real", "dir:up:dir:inner"]:
        assert await store.get_item(key) is None, key
        assert not await store.has_item(key), key
        assert await store.get_meta(key) == {}, key
        assert await store.get_item_with_etag(key) == (None, None), key
    assert await store.get_items(["link:secret", "real"]) == [None, b"r"]


async def test_listings_never_report_or_descend_into_links(store: FsDriver) -> None:
    assert sorted(await store.get_keys()) == ["dir:inner", "real"]
    assert await store.get_keys("link:") == []
    assert await store.get_keys("dir:up:") == []
    assert sorted(await store.get_keys(max_depth=0)) == ["real"]


async def test_writes_through_links_stay_inside(store: FsDriver, outside: Path) -> None:
    before = _snapshot(outside)
    await store.set_item("link:new", b"written")
    await store.set_item("link:sub:deep", b"written", ttl=60)
    await store.set_item("file_link", b"replaced")
    await store.set_item("dir:up:real", b"written")
    await store.set_user_meta("link:secret", b"{}")
    assert _snapshot(outside) == before
    base = Path(store.base)
    assert (base / "link").is_dir()
    assert not (base / "link").is_symlink()
    assert (base / "link" / "%").is_symlink()  # the link is kept, never followed
    assert await store.get_item("link:new") == b"written"
    assert await store.get_item("link") is None
    assert not (base / "file_link").is_symlink()
    assert await store.get_item("file_link") == b"replaced"
    assert await store.get_item("real") == b"r"


async def test_removes_and_clears_through_links_delete_nothing_outside(
    store: FsDriver, outside: Path
) -> None:
    before = _snapshot(outside)
    await store.remove_item("link:secret")
    await store.remove_items(["link:sub:deep", "dir:up:real"])
    await store.remove_user_meta("link:secret")
    await store.clear("link:")
    await store.clear("link:sub:")
    await store.clear("dir:up:")
    assert _snapshot(outside) == before
    assert await store.get_item("real") == b"r"
    await store.remove_item("file_link")  # the link itself goes; its target stays
    assert not (Path(store.base) / "file_link").exists()
    await store.clear()
    assert _snapshot(outside) == before


async def test_storage_listing_and_clear_stay_inside(store: FsDriver, outside: Path) -> None:
    before = _snapshot(outside)
    storage = create_storage(store)
    assert sorted(await storage.get_keys()) == ["dir:inner", "real"]
    await storage.clear("link")
    await storage.clear()
    assert _snapshot(outside) == before


async def test_links_in_the_internal_directory_are_not_followed(
    tmp_path: Path, outside: Path, resolver: str
) -> None:
    driver = FsDriver(tmp_path / "store", sweep_interval=0)
    try:
        side = Path(driver.base) / INTERNAL / "side"
        (side / "k").symlink_to(outside, target_is_directory=True)
        before = _snapshot(outside)
        await driver.set_item("k:secret", b"v", ttl=60)
        await driver.set_user_meta("k:secret", b"{}")
        assert _snapshot(outside) == before
        assert await driver.get_user_meta("k:secret") == b"{}"
        await driver.remove_user_meta("k:secret")
        await driver.clear()
        assert await driver.sweep() == []
        assert _snapshot(outside) == before
    finally:
        await driver.dispose()


def test_a_store_whose_internal_directory_is_a_link_refuses_to_open(
    tmp_path: Path, outside: Path
) -> None:
    base = tmp_path / "store"
    base.mkdir()
    (base / INTERNAL).symlink_to(outside, target_is_directory=True)
    with pytest.raises(OSError, match=r"\.unistorage"):
        FsDriver(base, sweep_interval=0)
    assert not (outside / "tmp").exists()


async def test_the_http_server_cannot_reach_outside_through_a_link(
    store: FsDriver, outside: Path
) -> None:
    before = _snapshot(outside)
    storage = create_storage(store)
    app = StorageServer(storage)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://store") as client:
        got = await client.get("/link/secret")
        assert got.status_code == 404
        assert SECRET not in got.content
        listed = await client.get("/link/")
        assert listed.status_code == 200
        assert "secret" not in listed.text
        assert (await client.get("/file_link")).status_code == 404
        assert (await client.delete("/link/")).status_code < 300
        assert (await client.delete("/link/secret")).status_code < 300
        assert (await client.delete("/dir/up/")).status_code < 300
        assert (await client.put("/link/sub/deep", content=b"x")).status_code < 300
        assert (await client.get("/real")).status_code == 200
    assert _snapshot(outside) == before


@contextlib.contextmanager
def _swapping(base: Path, name: str, target: Path) -> Iterator[list[int]]:
    """A thread that keeps swapping the directory ``name`` for a link to ``target`` and back."""
    stop = threading.Event()
    swaps = [0]

    def swap() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            held = base / f"held{number}"
            with contextlib.suppress(OSError):
                os.rename(base / name, held)
                os.symlink(target, base / name, target_is_directory=True)
                time.sleep(0.0005)
                os.unlink(base / name)
                os.rename(held, base / name)
                swaps[0] += 1

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    try:
        yield swaps
    finally:
        stop.set()
        thread.join()


async def test_a_directory_swapped_for_a_link_mid_operation_never_leads_outside(
    store: FsDriver, outside: Path
) -> None:
    before = _snapshot(outside)
    await store.set_item("race:seed", b"s")
    errors = 0
    with _swapping(Path(store.base), "race", outside) as swaps:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            for operation in (
                store.set_item("race:new", b"x"),
                store.set_item("race:sub:deep", b"x", ttl=30),
                store.set_item("race:secret", b"x"),
                store.get_item("race:secret"),
                store.get_item("race:only_outside"),
                store.remove_item("race:new"),
                store.remove_item("race:secret"),
                store.remove_item("race:sub:deep"),
                store.get_keys("race:"),
                store.clear("race:sub:"),
            ):
                try:
                    found = await operation
                except OSError:
                    errors += 1  # a write that kept losing the race: refused, never let out
                    continue
                assert found not in (SECRET, b"o")
                assert "race:only_outside" not in (found if isinstance(found, list) else [])
            await asyncio.sleep(0)
    assert swaps[0] > 10
    assert _snapshot(outside) == before
