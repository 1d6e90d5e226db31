"""What is special about the fs driver: its file layout, key encoding, sidecars and watching."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from drivers.fs import INTERNAL, FsDriver, encode_segment
from storage import create_driver, create_storage

ROOT = Path(__file__).resolve().parent.parent

AWKWARD = [
    "ünïcödé:日本語:emoji😀",
    "percent%:%25:%zz",
    "glob*:what?:[a-z]:{x}",
    "quotes:\"double\":'single'",
    "with spaces:trailing :trailing.",
    ".hidden:..dots:...",
    "<angle>|pipe",
    "x" * 300,
    "é" * 200 + ":tail",
    "Case:case",
    "CASE:case",
]


def _tree(root: Path) -> list[str]:
    return sorted(str(path) for path in root.rglob("*"))


async def test_awkward_keys_round_trip_and_list_exactly(fs: FsDriver) -> None:
    for number, key in enumerate(AWKWARD):
        await fs.set_item(key, str(number).encode())
    for number, key in enumerate(AWKWARD):
        assert await fs.get_item(key) == str(number).encode(), key
    assert sorted(await fs.get_keys()) == sorted(AWKWARD)


async def test_keys_are_plain_files_under_base(fs: FsDriver) -> None:
    await fs.set_item("users:alice:profile", b'{"name": "alice"}')
    assert (Path(fs.base) / "users" / "alice" / "profile").read_bytes() == b'{"name": "alice"}'
    assert sorted(os.listdir(fs.base)) == [INTERNAL, "users"]


def test_names_a_file_system_cannot_take_are_escaped() -> None:
    assert encode_segment("plain-name_1") == ["plain-name_1"]
    assert encode_segment(".env") == ["%2Eenv"]
    assert encode_segment("a?b*") == ["a%3Fb%2A"]
    assert encode_segment("100%") == ["100%25"]
    assert encode_segment("end.") == ["end%2E"]
    long = encode_segment("y" * 500)
    assert [len(name.encode()) <= 255 for name in long] == [True] * len(long)
    assert all(name.endswith("%+") for name in long[:-1])
    assert encode_segment("Ab", fold=True) == ["%41b"]


async def test_a_key_can_also_be_a_directory_of_keys(fs: FsDriver) -> None:
    await fs.set_item("a", b"parent")
    await fs.set_item("a:b", b"child")
    assert (Path(fs.base) / "a" / "%").read_bytes() == b"parent"
    assert await fs.get_item("a") == b"parent"
    assert await fs.get_item("a:b") == b"child"
    assert sorted(await fs.get_keys()) == ["a", "a:b"]
    assert await fs.get_keys("a:") == ["a:b"]
    await fs.set_item("a", b"parent 2")
    assert await fs.get_item("a") == b"parent 2"
    await fs.remove_item("a:b")
    await fs.remove_item("a")
    assert os.listdir(fs.base) == [INTERNAL]


async def test_max_depth_is_native_across_long_segments(fs: FsDriver) -> None:
    long = "z" * 400
    for key in ["top", f"{long}", f"{long}:child", "a:b:c", "a"]:
        await fs.set_item(key, b"v")
    assert sorted(await fs.get_keys(max_depth=0)) == sorted(["top", long, "a"])
    assert sorted(await fs.get_keys(max_depth=1)) == sorted(["top", long, f"{long}:child", "a"])


async def test_files_that_are_not_our_encoding_or_ignored_are_not_listed(fs: FsDriver) -> None:
    base = Path(fs.base)
    (base / "50%off").write_bytes(b"x")
    (base / ".git").mkdir()
    (base / ".git" / "HEAD").write_bytes(b"ref")
    (base / "notes.txt").write_bytes(b"hello")
    assert await fs.get_keys() == ["notes.txt"]
    assert await fs.get_item("notes.txt") == b"hello"
    await fs.clear()
    assert (base / ".git" / "HEAD").exists()
    assert (base / "50%off").exists()


async def test_custom_ignore_patterns_hide_matching_names(tmp_path: Path) -> None:
    driver = FsDriver(tmp_path, ignore=[".*", "*.bak"], sweep_interval=0)
    try:
        await driver.set_item("doc", b"1")
        (tmp_path / "doc.bak").write_bytes(b"old")
        assert await driver.get_keys() == ["doc"]
    finally:
        await driver.dispose()


async def test_user_meta_and_ttl_live_in_the_hidden_directory(fs: FsDriver) -> None:
    storage = create_storage(fs)
    await storage.set_item("k", "v", ttl=60)
    await storage.set_meta("k", {"owner": "me"})
    assert sorted(os.listdir(fs.base)) == [INTERNAL, "k"]
    assert await storage.get_keys() == ["k"]
    assert (await storage.get_meta("k"))["owner"] == "me"
    await storage.clear()
    assert os.listdir(fs.base) == [INTERNAL]
    assert os.listdir(Path(fs.base) / INTERNAL / "side") == []


async def test_expired_files_are_deleted_on_access(fs: FsDriver) -> None:
    await fs.set_item("gone", b"v", ttl=0.2)
    await asyncio.sleep(0.3)
    assert await fs.get_item("gone") is None
    assert not (Path(fs.base) / "gone").exists()


async def test_the_sweep_deletes_expired_files_nobody_reads(tmp_path: Path) -> None:
    driver = FsDriver(tmp_path, sweep_interval=0.2)
    try:
        await driver.set_items([(f"t:{i}", b"v") for i in range(5)], ttl=0.2)
        await driver.set_item("keep", b"v")
        for _ in range(40):
            await asyncio.sleep(0.1)
            if not (tmp_path / "t").exists():
                break
        assert not (tmp_path / "t").exists()
        assert (tmp_path / "keep").exists()
    finally:
        await driver.dispose()


async def test_a_plain_write_clears_an_earlier_ttl(fs: FsDriver) -> None:
    await fs.set_item("k", b"1", ttl=0.2)
    await fs.set_item("k", b"2")
    await asyncio.sleep(0.3)
    assert await fs.get_item("k") == b"2"


async def test_meta_reports_file_times_size_and_a_changing_etag(fs: FsDriver) -> None:
    before = time.time()
    await fs.set_item("k", b"12345")
    meta = await fs.get_meta("k")
    assert meta["size"] == 5
    assert meta["mtime"].timestamp() >= before - 1
    assert "atime" in meta
    await fs.set_item("k", b"12345")
    assert (await fs.get_meta("k"))["etag"] != meta["etag"]


async def test_no_temporary_files_are_left_behind(fs: FsDriver) -> None:
    await asyncio.gather(*(fs.set_item(f"k:{i % 5}", b"v" * 1000) for i in range(50)))
    assert os.listdir(Path(fs.base) / INTERNAL / "tmp") == []


async def test_case_insensitive_mode_keeps_case_variants_apart(tmp_path: Path) -> None:
    driver = FsDriver(tmp_path, case_sensitive=False, sweep_interval=0)
    try:
        await driver.set_item("Readme", b"upper")
        await driver.set_item("readme", b"lower")
        assert await driver.get_item("Readme") == b"upper"
        assert sorted(await driver.get_keys()) == ["Readme", "readme"]
        assert sorted(os.listdir(tmp_path)) == ["%52eadme", INTERNAL, "readme"]
    finally:
        await driver.dispose()


def test_urls_name_the_directory(tmp_path: Path) -> None:
    driver = create_driver(f"file://{tmp_path}/data?durable=true")
    assert isinstance(driver, FsDriver)
    assert driver.base == f"{tmp_path}/data"
    assert driver.durable is True
    assert isinstance(local := create_driver(f"file://localhost{tmp_path}"), FsDriver)
    assert local.base == str(tmp_path)


async def test_watch_reports_changes_made_by_another_process(fs: FsDriver) -> None:
    events: list[tuple[str, str]] = []
    await fs.set_item("from:seed", b"0")
    unwatch = await fs.watch(lambda event, key: events.append((event, key)))
    try:
        script = (
            "import asyncio, sys\n"
            "from drivers.fs import FsDriver\n"
            "async def main():\n"
            "    d = FsDriver(sys.argv[1], sweep_interval=0)\n"
            "    await d.set_item('from:other', b'1')\n"
            "    await d.set_item('from:other', b'2', ttl=60)\n"
            "    await d.remove_item('from:other')\n"
            "    await d.set_item('fresh:deep:key', b'1')\n"
            "    await d.dispose()\n"
            "asyncio.run(main())\n"
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, fs.base, cwd=ROOT
        )
        assert await process.wait() == 0
        for _ in range(100):
            if ("update", "fresh:deep:key") in events and ("remove", "from:other") in events:
                break
            await asyncio.sleep(0.05)
        assert ("update", "from:other") in events
        assert ("remove", "from:other") in events
        assert ("update", "fresh:deep:key") in events
        assert {key for _, key in events} == {"from:other", "fresh:deep:key"}
    finally:
        await unwatch()


async def test_large_values_round_trip(fs: FsDriver) -> None:
    value = os.urandom(3 * 1024 * 1024 + 17)
    await fs.set_item("big", value)
    assert await fs.get_item("big") == value


async def test_racing_writes_to_a_key_and_its_children_all_land(fs: FsDriver) -> None:
    async def parent(i: int) -> None:
        await fs.set_item("x", f"p{i}".encode())

    async def child(i: int) -> None:
        await fs.set_item(f"x:c{i % 3}:leaf", b"c")
        if i % 2:
            await fs.remove_item(f"x:c{i % 3}:leaf")

    await asyncio.gather(*(task(i) for i in range(30) for task in (parent, child)))
    assert (await fs.get_item("x") or b"").startswith(b"p")
    assert set(await fs.get_keys()) <= {"x", "x:c0:leaf", "x:c1:leaf", "x:c2:leaf"}
    assert "x" in await fs.get_keys()


async def test_a_directory_key_with_a_ttl_expires_from_listings(fs: FsDriver) -> None:
    await fs.set_item("d", b"v", ttl=0.2)
    await fs.set_item("d:child", b"v")
    await asyncio.sleep(0.3)
    assert await fs.get_keys() == ["d:child"]
    assert not (Path(fs.base) / "d" / "%").exists()


async def test_a_read_only_driver_reads_without_touching_the_directory(tmp_path: Path) -> None:
    writer = FsDriver(tmp_path / "data", sweep_interval=0)
    await writer.set_item("k", b"v")
    await writer.set_item("short", b"v", ttl=0.2)
    await writer.dispose()
    before = _tree(tmp_path)
    (tmp_path / "data").chmod(0o555)
    try:
        reader = FsDriver(tmp_path / "data", read_only=True)
        await asyncio.sleep(0.3)
        assert await reader.get_item("k") == b"v"
        assert await reader.get_item("short") is None
        assert await reader.get_keys() == ["k"]
        await reader.dispose()
    finally:
        (tmp_path / "data").chmod(0o755)
    assert _tree(tmp_path) == before


async def test_reads_agree_with_and_without_inline_reads(tmp_path: Path) -> None:
    inline = FsDriver(tmp_path, sweep_interval=0)
    pooled = FsDriver(tmp_path, sweep_interval=0, inline_reads=False)
    try:
        values = {"small": b"s", "edge": b"e" * 65536, "big": b"b" * 65537, "d": b"dir"}
        for key, value in values.items():
            await inline.set_item(key, value)
        await inline.set_item("d:child", b"c")
        await inline.set_item("brief", b"v", ttl=0.2)
        await asyncio.sleep(0.3)
        for driver in (inline, pooled):
            for key, value in values.items():
                assert await driver.get_item(key) == value
                assert await driver.has_item(key)
            assert await driver.get_item("brief") is None
            assert not await driver.has_item("missing:key")
    finally:
        await inline.dispose()
        await pooled.dispose()
