"""What is special about the fs driver's atomic operations and pages: increments and touches
are read-modify-writes under the key's lock, a touch rewrites only the TTL sidecar (the value
file and its etag stay), and a page is a sorted walk of only the directories it needs."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from drivers.fs import INTERNAL, FsDriver
from storage import InvalidArgumentError, create_storage
from tests.fixtures.fs import store_path


def _sidecar(fs: FsDriver, *names: str) -> Path:
    """The TTL sidecar of the key whose file names are ``names``."""
    return store_path(fs, INTERNAL, "side", *names[:-1], names[-1] + "%t")


async def _all_pages(
    fs: FsDriver, base: str = "", limit: int = 3, max_depth: int | None = None
) -> list[str]:
    listed: list[str] = []
    cursor: str | None = None
    while True:
        keys, cursor = await fs.list_page(base, limit=limit, cursor=cursor, max_depth=max_depth)
        assert len(keys) <= limit
        listed += keys
        if cursor is None:
            return listed
        assert keys, "a page before the last one is never empty"


# -- increment --------------------------------------------------------------------------------


async def test_a_counter_is_a_plain_file_of_json_integer_text(fs: FsDriver) -> None:
    assert await fs.increment("hits:today", 5) == 5
    assert await fs.increment("hits:today", -12) == -7
    assert store_path(fs, "hits", "today").read_bytes() == b"-7"
    async with create_storage(FsDriver(fs.base, sweep_interval=0)) as other:
        assert await other.get_item("hits:today") == -7
    assert os.listdir(store_path(fs, INTERNAL, "tmp")) == []


async def test_incrementing_what_is_not_an_integer_changes_nothing(fs: FsDriver) -> None:
    etag = await fs.set_item("text", b'"five"')
    for stored in (b'"five"', b"1.5", b"true", b"[1]"):
        etag = await fs.set_item("text", stored)
        with pytest.raises(InvalidArgumentError):
            await fs.increment("text", 1)
        assert await fs.get_item_with_etag("text") == (stored, etag)
    assert os.listdir(store_path(fs, INTERNAL, "tmp")) == []


async def test_an_increment_keeps_the_expiry_time_of_a_live_key(fs: FsDriver) -> None:
    await fs.increment("window", 1, ttl=100)
    first = _sidecar(fs, "window").read_text().split()[0]
    await fs.increment("window", 1, ttl=5)
    await fs.increment("window", 1)
    assert _sidecar(fs, "window").read_text().split()[0] == first  # the same deadline
    assert 90 < (await fs.get_meta("window"))["ttl"] <= 100
    assert await fs.get_item("window") == b"3"


async def test_an_expired_counter_starts_again_at_zero_with_the_new_ttl(fs: FsDriver) -> None:
    await fs.increment("window", 10, ttl=0.2)
    await asyncio.sleep(0.3)
    assert await fs.increment("window", 1) == 1
    assert (await fs.get_meta("window")).get("ttl") is None
    assert not _sidecar(fs, "window").exists()


async def test_an_increment_makes_the_directories_of_a_new_key(fs: FsDriver) -> None:
    assert await fs.increment("a:b:c", 1) == 1
    await fs.set_item("x", b"1")
    assert await fs.increment("x:child", 2) == 2  # 'x' becomes a directory holding its value
    assert await fs.increment("x", 1) == 2
    assert store_path(fs, "x", "%").read_bytes() == b"2"
    assert sorted(await fs.get_keys()) == ["a:b:c", "x", "x:child"]


async def test_two_driver_objects_on_one_directory_count_exactly(tmp_path: Path) -> None:
    # Each has its own lock file descriptor, so they exclude each other as processes do.
    first = FsDriver(tmp_path, sweep_interval=0)
    second = FsDriver(tmp_path, sweep_interval=0)
    try:
        got = await asyncio.gather(
            *(driver.increment("n", 1) for _ in range(100) for driver in (first, second))
        )
        assert sorted(got) == list(range(1, 201))
        assert await first.get_item("n") == b"200"
    finally:
        await first.dispose()
        await second.dispose()


async def test_an_increment_is_reported_to_watchers(fs: FsDriver) -> None:
    events: list[tuple[str, str]] = []
    unwatch = await fs.watch(lambda event, key: events.append((event, key)))
    try:
        await fs.increment("n", 1)
        assert events == [("update", "n")]
    finally:
        await unwatch()


# -- touch ------------------------------------------------------------------------------------


async def test_a_touch_rewrites_the_ttl_sidecar_alone(fs: FsDriver) -> None:
    etag = await fs.set_item("session", b"data", ttl=10)
    before = os.stat(store_path(fs, "session"))
    assert await fs.touch("session", 100) is True
    after = os.stat(store_path(fs, "session"))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    meta = await fs.get_meta("session")
    assert meta["etag"] == etag
    assert 90 < meta["ttl"] <= 100
    assert await fs.set_item_conditional("session", b"new", if_match=etag)  # still matches


async def test_a_touch_gives_a_key_without_ttl_one(fs: FsDriver) -> None:
    await fs.set_item("k", b"v")
    assert await fs.touch("k", 0.2) is True
    await asyncio.sleep(0.3)
    assert await fs.get_item("k") is None


async def test_a_missing_or_expired_key_is_not_touched_and_stays_gone(fs: FsDriver) -> None:
    assert await fs.touch("missing", 10) is False
    assert await fs.get_item_touch("missing", 10) is None
    await fs.set_item("brief", b"v", ttl=0.1)
    await asyncio.sleep(0.2)
    assert await fs.touch("brief", 10) is False
    assert not store_path(fs, "brief").exists()  # the expired file is deleted as it is seen
    await fs.set_item("brief", b"v", ttl=0.1)
    await asyncio.sleep(0.2)
    assert await fs.get_item_touch("brief", 10) is None
    assert await fs.has_item("brief") is False


async def test_a_renewed_read_returns_the_value_and_keeps_the_etag(fs: FsDriver) -> None:
    etag = await fs.set_item("dir", b"own value", ttl=10)
    await fs.set_item("dir:child", b"c")
    assert await fs.get_item_touch("dir", 100) == b"own value"
    meta = await fs.get_meta("dir")
    assert (meta["etag"], 90 < meta["ttl"] <= 100) == (etag, True)
    assert await fs.get_item_touch("dir:child", 100) == b"c"


# -- pages ------------------------------------------------------------------------------------

# Keys whose file names sort differently from the keys: escapes ('%2E' for '.', '%25' for
# '%') sort before '-', a directory's keys ('a:...') come after siblings 'a-b' and 'a0', and
# long segments are split into chunk directories ('%+').
ORDER_KEYS = [
    "a",
    "a-b",
    "a.b",
    ".a",
    "a0",
    "a:b",
    "a:b:c",
    "a;",
    "a b",
    "a%",
    "a%:x",
    "b",
    "B",
    "é",
    "日本",
    "z" * 300,
    "z" * 300 + ":child",
    "z" * 239 + "-",
    "z" * 241,
    "z" * 600,
    "zz",
    # A first chunk of 239 bytes (the next 'é' takes two): 'q' + 'é' * 119 + 'a' fits in one
    # name beside the chunk directory, and its keys sort between that directory's keys.
    "q" + "é" * 119 + "a",
    "q" + "é" * 119 + "a:x",
    "q" + "é" * 120,
    "q" + "é" * 150,
    "q" + "é" * 119 + "é:y",
    "trailing.",
    "trailing",
    "trailing:x",
]


@pytest.mark.parametrize("limit", [1, 2, 5, 100])
async def test_pages_list_every_key_once_in_key_order(fs: FsDriver, limit: int) -> None:
    for key in ORDER_KEYS:
        await fs.set_item(key, b"v")
    assert await _all_pages(fs, limit=limit) == sorted(ORDER_KEYS)


async def test_pages_are_in_key_order_on_a_case_insensitive_layout(tmp_path: Path) -> None:
    driver = FsDriver(tmp_path, case_sensitive=False, sweep_interval=0)
    try:
        for key in ORDER_KEYS:
            await driver.set_item(key, b"v")
        assert await _all_pages(driver, limit=4) == sorted(ORDER_KEYS)
    finally:
        await driver.dispose()


async def test_pages_under_a_base_and_within_a_depth(fs: FsDriver) -> None:
    long = "y" * 400
    keys = ["p", "p:a", "p:a:deep", "p:b", f"p:{long}", f"p:{long}:deep", "p-x", "q:a"]
    for key in keys:
        await fs.set_item(key, b"v")
    assert await _all_pages(fs, "p:", limit=2) == sorted(
        ["p:a", "p:a:deep", "p:b", f"p:{long}", f"p:{long}:deep"]
    )
    assert await _all_pages(fs, "p:", limit=2, max_depth=0) == sorted(["p:a", "p:b", f"p:{long}"])
    assert await _all_pages(fs, limit=2, max_depth=0) == ["p", "p-x"]
    assert await _all_pages(fs, "missing:", limit=2) == []


async def test_a_page_resumes_after_its_cursor_whatever_changed(fs: FsDriver) -> None:
    for key in ["k:1", "k:2", "k:3", "k:4"]:
        await fs.set_item(key, b"v")
    first, cursor = await fs.list_page("k:", limit=2)
    assert (first, cursor) == (["k:1", "k:2"], "k:2")
    await fs.remove_item("k:2")  # the cursor's own key is gone
    await fs.set_item("k:0", b"v")  # before the cursor: not listed again
    await fs.set_item("k:25", b"v")  # after it: listed
    assert await fs.list_page("k:", limit=10, cursor=cursor) == (["k:25", "k:3", "k:4"], None)


async def test_the_last_page_says_so_and_is_never_empty_after_a_full_one(fs: FsDriver) -> None:
    for key in ["a", "b", "c", "d"]:
        await fs.set_item(key, b"v")
    assert await fs.list_page(limit=2) == (["a", "b"], "b")
    assert await fs.list_page(limit=2, cursor="b") == (["c", "d"], None)
    assert await fs.list_page(limit=2, cursor="d") == ([], None)


async def test_a_page_reads_only_the_directories_it_needs(
    fs: FsDriver, caplog: pytest.LogCaptureFixture
) -> None:
    # A name that is not UTF-8 is logged when its directory is read: the page between the
    # cursor and its last key reads neither the directory before it nor the one after it.
    for prefix in ("a", "b", "c"):
        await fs.set_items([(f"{prefix}:{n:02d}", b"v") for n in range(20)])
    for prefix in ("a", "c"):
        store_path(fs, prefix, "bad%FF").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="drivers.fs"):
        keys, cursor = await fs.list_page(limit=5, cursor="b:04")
    assert (keys, cursor) == ([f"b:{n:02d}" for n in range(5, 10)], "b:09")
    assert "not the file name of a key" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="drivers.fs"):
        await fs.list_page(limit=5, cursor="b:17")  # this page ends in 'c'
    assert "c/bad" in caplog.text
    assert "a/bad" not in caplog.text


async def test_pages_skip_expired_keys_and_names_that_are_no_keys(fs: FsDriver) -> None:
    await fs.set_item("live", b"v")
    await fs.set_item("brief", b"v", ttl=0.1)
    store_path(fs, "50%off").write_bytes(b"x")
    store_path(fs, "link").symlink_to("live")
    os.mkfifo(store_path(fs, "fifo"))
    await asyncio.sleep(0.2)
    assert await _all_pages(fs, limit=1) == ["live"]
    assert not store_path(fs, "brief").exists()
