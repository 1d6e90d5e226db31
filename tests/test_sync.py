"""The sync facade (`storage.sync`): blocking calls on one loop thread, from many threads."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.memory import MemoryDriver
from drivers.s3 import S3Driver
from storage import (
    Capabilities,
    ConflictError,
    DriverError,
    InvalidArgumentError,
    Layer,
    LockUnavailableError,
    NotFoundError,
    SerializationError,
    Storage,
    StorageError,
    TypedView,
    UnsupportedError,
    create_storage,
)
from storage.sync import SyncStorage, SyncTypedView
from storage.sync import create_storage as create_sync_storage
from tests.fixtures.http import ServerThread
from tests.fixtures.s3 import S3_BUCKET
from tests.servers import RedisCluster, RedisServer

_LOOP_THREAD = "unistorage-sync"


def _loop_threads() -> int:
    return sum(thread.name == _LOOP_THREAD for thread in threading.enumerate())


@pytest.fixture
def sync() -> Iterator[SyncStorage]:
    with create_sync_storage() as storage:
        yield storage


@pytest.fixture(scope="module")
def http_server() -> Iterator[ServerThread]:
    with ServerThread() as server:
        yield server


class _Hangs(MemoryDriver):
    """Bounded in name only (so no Timeout layer is put in front): reads never answer."""

    capabilities = Capabilities(ttl=True, conditional=True, bounded=True)

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = threading.Event()

    async def get_item(self, key: str) -> bytes | None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return None

    async def get_items(self, keys: Any) -> list[bytes | None]:
        await asyncio.sleep(0.8)  # slow, but the loop keeps answering
        return [None for _ in keys]

    async def remove_items(self, keys: Any) -> None:
        time.sleep(2.0)  # noqa: ASYNC251 - blocks the loop thread itself, on purpose


class _ClosingListing(Layer):
    """Records whether the listing under it was closed."""

    def __init__(self, inner: MemoryDriver) -> None:
        super().__init__(inner)
        self.closed = threading.Event()

    def iter_keys(self, base: str = "", *, max_depth: int | None = None) -> AsyncIterator[str]:
        return self._keys(base, max_depth)

    async def _keys(self, base: str, max_depth: int | None) -> AsyncIterator[str]:
        try:
            async for key in self.inner.iter_keys(base, max_depth=max_depth):
                yield key
        finally:
            self.closed.set()


# -- the API, blocking --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("async_class", "sync_class"), [(Storage, SyncStorage), (TypedView, SyncTypedView)]
)
def test_every_async_method_has_a_sync_twin_with_the_same_parameters(
    async_class: type, sync_class: type
) -> None:
    for name in (name for name in dir(async_class) if not name.startswith("_")):
        assert hasattr(sync_class, name), f"{sync_class.__name__} lacks {name}"
        theirs, ours = getattr(async_class, name), getattr(sync_class, name)
        if callable(theirs) and not isinstance(theirs, type):
            expected = list(inspect.signature(theirs).parameters.values())
            assert list(inspect.signature(ours).parameters.values()) == expected, name


def test_item_calls_return_what_the_async_api_returns(sync: SyncStorage) -> None:
    etag = sync.set_item("users:ann", {"name": "Ann", "roles": {"admin"}})
    assert sync.get_item("users:ann") == {"name": "Ann", "roles": {"admin"}}
    assert sync.get_item_with_etag("users:ann") == ({"name": "Ann", "roles": {"admin"}}, etag)
    assert sync.has_item("users:ann")
    assert sync.has("users:ann")
    assert sync.get("missing", 7) == 7
    assert sync.set_item("users:ann", 2, if_match=etag) is not None
    with pytest.raises(ConflictError):
        sync.set_item("users:ann", 3, if_match=etag)
    with pytest.raises(ConflictError):
        sync.set("users:ann", 3, if_none_match=True)
    sync.set_item_raw("raw", b"\x00\x01")
    assert sync.get_item_raw("raw") == b"\x00\x01"
    assert sync.get_item_raw_with_etag("raw")[0] == b"\x00\x01"
    assert sync.increment("hits") == 1
    assert sync.increment("hits", 4, ttl=60) == 5
    assert sync.touch("hits", ttl=30)
    assert not sync.touch("nothing", ttl=30)
    assert sync.get_item("hits", renew_ttl=60) == 5
    sync.remove_item("raw")
    sync.delete("hits")
    assert sync.get_keys() == ["users:ann"] == sync.keys()
    with pytest.raises(UnsupportedError):
        sync.get_url("users:ann", expires=60)


def test_batches_meta_snapshots_and_clear(sync: SyncStorage) -> None:
    sync.set_items({"a:1": 1, "a:2": 2}, ttl=60)
    sync.set_items_raw([("b:1", b"x")])
    assert sync.get_items(["a:2", "a/1", "z"]) == {"a:2": 2, "a:1": 1, "z": None}
    assert sync.get_items_raw(["b:1"]) == {"b:1": b"x"}
    sync.set_meta("a:1", {"owner": "ann"})
    assert sync.get_meta("a:1")["owner"] == "ann"
    assert "ttl" in sync.get_native_meta("a:1")
    assert sync.get_meta_raw("a:1") is not None
    assert list(sync.get_metas_raw(["a:1", "a:2"]).values())[1] is None
    sync.set_meta_raw("a:2", b'{"n": 1}')
    sync.remove_meta("a:2")
    assert sync.get_meta_raw("a:2") is None
    assert sync.snapshot("a") == {"1": 1, "2": 2}
    sync.restore_snapshot({"1": 10}, "copy")
    assert sync.get_item("copy:1") == 10
    sync.remove_items(["b:1"], remove_meta=True)
    sync.clear("a")
    assert sorted(sync.get_keys()) == ["copy:1"]


def test_iter_keys_streams_page_by_page(sync: SyncStorage) -> None:
    sync.set_items({f"k:{i:05}": i for i in range(2500)})
    keys = sync.iter_keys("k")
    first = next(keys)
    assert first.startswith("k:")
    assert len(keys._buffer) == 999  # one round trip fetched one page of 1000 keys
    assert sorted([first, *keys]) == sorted(sync.get_keys("k"))
    page, cursor = sync.list_keys("k", limit=10)
    assert len(page) == 10
    assert cursor is not None
    with pytest.raises(InvalidArgumentError):  # refused when called, as by the async API
        sync.iter_keys(max_depth=-1)


def test_leaving_an_iteration_early_closes_the_listing() -> None:
    layer = _ClosingListing(MemoryDriver())
    with create_sync_storage(layer) as sync:
        sync.set_items({f"k:{i}": i for i in range(3000)})
        with sync.iter_keys() as keys:
            next(keys)
        assert layer.closed.wait(2)
        layer.closed.clear()
        for _ in sync.iter_keys():
            break  # the iterator is dropped unfinished: collected, it closes the listing
        assert layer.closed.wait(2)


def test_namespace_views_share_the_loop_and_mounts() -> None:
    with create_sync_storage(mounts={"cache": "memory://"}) as sync:
        users = sync.namespace("users")
        users.set_item("ann", 1)
        assert sync.get_item("users:ann") == 1
        assert users.prefix == "users:"
        assert users.get_keys() == ["ann"]
        cache = sync.namespace("cache")
        assert cache.get_mount().base == "cache:"
        users.close()  # a view's close stops its watches only
        assert not sync.closed
        assert users.get_item("ann") == 1
        assert _loop_threads() >= 1


def test_mounts_are_built_on_the_loop_thread(sync: SyncStorage) -> None:
    assert sync.mount("cache", "memory://") is sync
    sync.set_item("cache:x", 1)
    assert [mount.base for mount in sync.get_mounts(parents=True)] == ["cache:", ""]
    assert sync.capabilities("cache:x").ttl
    sync.unmount("cache")
    assert sync.get_item("cache:x") is None


@dataclasses.dataclass
class _User:
    name: str
    age: int = 0


def test_typed_views_speak_the_model(sync: SyncStorage) -> None:
    users = sync.typed(_User, base="users")
    assert users.model is _User
    etag = users.set("ann", _User("Ann", 41))
    assert users.get("ann") == _User("Ann", 41)
    assert users.get("bob", None) is None
    assert users.get_with_etag("ann") == (_User("Ann", 41), etag)
    users.set_many({"bob": _User("Bob"), "cy": _User("Cy")})
    assert users.has("bob")
    assert sorted(users.keys()) == ["ann", "bob", "cy"]
    assert sorted(users.iter_keys()) == ["ann", "bob", "cy"]
    assert dict(users.items())["cy"] == _User("Cy")
    assert sorted(user.name for user in users.values()) == ["Ann", "Bob", "Cy"]
    assert users.get_many(["ann", "zed"]) == {"ann": _User("Ann", 41), "zed": None}
    users.delete("bob")
    sync.set_item("users:bad", {"name": 5})
    with pytest.raises(SerializationError):
        users.get("bad")


def test_streams_write_atomically_and_read_in_chunks(sync: SyncStorage) -> None:
    with sync.open_write("blob", ttl=60) as writer:
        for _ in range(5):
            writer.write(b"x" * 100_000)
    assert writer.size == 500_000
    assert writer.etag is not None
    with sync.open_read("blob", chunk_size=200_000) as reader:
        assert reader.read(10) == b"x" * 10
        assert sum(len(chunk) for chunk in reader) == 499_990
    with pytest.raises(RuntimeError, match="the block failed"):
        _write_then_fail(sync)
    assert len(sync.get_item_raw("blob") or b"") == 500_000  # the old value stays
    with pytest.raises(NotFoundError), sync.open_read("missing"):
        pass


def _write_then_fail(sync: SyncStorage) -> None:
    with sync.open_write("blob") as writer:
        writer.write(b"half")
        raise RuntimeError("the block failed")


def test_a_lock_from_two_threads_excludes() -> None:
    with create_sync_storage() as sync:
        inside: list[str] = []
        overlaps: list[str] = []

        def hold(name: str) -> None:
            for _ in range(5):
                with sync.lock("job", ttl=5, wait=5) as lock:
                    assert lock.held
                    assert lock.token is not None
                    if inside:
                        overlaps.append(name)
                    inside.append(name)
                    time.sleep(0.01)
                    inside.remove(name)

        threads = [threading.Thread(target=hold, args=(name,)) for name in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert overlaps == []
        with sync.lock("job", ttl=5) as held:
            with pytest.raises(LockUnavailableError):
                sync.lock("job", ttl=5, wait=0.05).acquire()
            held.extend()
        assert not held.held


def test_watch_callbacks_run_on_the_loop_thread_and_cannot_call_back(sync: SyncStorage) -> None:
    events: list[tuple[str, str, str]] = []
    refused: list[BaseException] = []
    seen = threading.Event()

    def callback(event: str, key: str) -> None:
        events.append((event, key, threading.current_thread().name))
        try:
            sync.get_item(key)
        except StorageError as exc:
            refused.append(exc)
        seen.set()

    unwatch = sync.watch(callback)
    sync.set_item("w", 1)
    assert seen.wait(2)
    assert events == [("update", "w", _LOOP_THREAD)]
    assert "own event-loop thread" in str(refused[0])
    unwatch()
    sync.set_item("w", 2)
    time.sleep(0.05)
    assert len(events) == 1


# -- errors, timeouts, the running loop ------------------------------------------------------------


def test_errors_keep_their_class_and_the_traceback_starts_at_the_caller(sync: SyncStorage) -> None:
    etag = sync.set_item("k", 1)
    sync.set_item("k", 2)
    with pytest.raises(ConflictError) as caught:
        sync.set_item("k", 3, if_match=etag)
    frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert frames[0] == "test_errors_keep_their_class_and_the_traceback_starts_at_the_caller"
    files = [frame.filename for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert any(file.endswith("drivers/memory.py") for file in files)  # and on into the driver
    with pytest.raises(InvalidArgumentError):
        sync.get_item("")


def test_a_call_that_hangs_gives_up_after_the_timeout() -> None:
    driver = _Hangs()
    with create_sync_storage(driver, timeout=0.3) as sync:
        started = time.monotonic()
        with pytest.raises(DriverError, match=r"no answer within 0\.3 s"):
            sync.get_item("k")
        assert time.monotonic() - started < 2
        assert driver.cancelled.wait(2)  # the call was cancelled on the loop, not left behind
        sync.set_item("k", 1)  # the storage still works


def test_ctrl_c_while_waiting_cancels_the_call_on_the_loop() -> None:
    driver = _Hangs()
    with create_sync_storage(driver) as sync:
        main = threading.main_thread().ident
        assert main is not None
        timer = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            sync.get_item("k")
        assert driver.cancelled.wait(2)
        timer.join()


def test_a_call_over_many_keys_waits_while_the_loop_answers() -> None:
    with create_sync_storage(_Hangs(), timeout=0.3) as sync:
        assert sync.get_items(["a", "b"]) == {"a": None, "b": None}  # 0.8 s > the timeout
        with pytest.raises(DriverError, match="event loop thread was blocked"):
            sync.remove_items(["a"])
        time.sleep(1.6)
        assert not sync.has_item("a")  # once the loop is free again, calls are answered


async def test_a_call_inside_a_running_event_loop_is_refused() -> None:
    with pytest.raises(StorageError, match="use the async API"):
        create_sync_storage()
    sync = await asyncio.to_thread(create_sync_storage)
    try:
        with pytest.raises(StorageError, match="running event loop"):
            sync.get_item("k")
    finally:
        sync.close()
    allowed = create_sync_storage(allow_running_loop=True)
    with allowed:
        allowed.set_item("k", 1)
        assert allowed.get_item("k") == 1


def test_close_is_idempotent_stops_the_thread_and_later_calls_raise() -> None:
    before = _loop_threads()
    sync = create_sync_storage()
    assert _loop_threads() == before + 1
    sync.set_item("k", 1)
    sync.lock("held", ttl=5).acquire()
    sync.close()  # the task renewing the lock is cancelled with the loop
    sync.close()
    sync.dispose()
    assert sync.closed
    assert _loop_threads() == before
    with pytest.raises(StorageError, match="closed"):
        sync.get_item("k")
    with pytest.raises(StorageError, match="closed"):
        sync.iter_keys()


def test_a_call_waiting_while_the_storage_closes_gets_a_storage_error() -> None:
    sync = create_sync_storage(_Hangs())
    failures: list[BaseException] = []

    def read() -> None:
        try:
            sync.get_item("k")
        except BaseException as exc:
            failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.1)
    sync.close()
    reader.join(5)
    assert len(failures) == 1
    assert isinstance(failures[0], StorageError)
    assert "closed" in str(failures[0])


def test_build_runs_the_factory_on_the_loop_thread() -> None:
    built_on: list[str] = []

    async def factory() -> Storage:
        built_on.append(threading.current_thread().name)
        return create_storage()

    with SyncStorage.build(factory) as sync:
        sync.set_item("k", 1)
    assert built_on == [_LOOP_THREAD]
    before = _loop_threads()
    with pytest.raises(InvalidArgumentError):
        SyncStorage.build(lambda: "not a storage")  # type: ignore[arg-type, return-value]
    with pytest.raises(InvalidArgumentError):
        create_sync_storage(deadline=-1)
    assert _loop_threads() == before  # a failed build leaves no thread behind
    with SyncStorage.wrap(create_storage("memory://")) as wrapped:
        assert wrapped.get_item("k", 0) == 0


def test_a_forgotten_storage_is_disposed_at_exit(tmp_path: Path) -> None:
    marker = tmp_path / "disposed"
    script = f"""
        from drivers.memory import MemoryDriver
        from storage.sync import create_storage

        class Marks(MemoryDriver):
            async def dispose(self):
                open({str(marker)!r}, "w").close()

        storage = create_storage(Marks())
        storage.set_item("k", 1)
        """
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=root, check=True, timeout=20
    )
    assert marker.exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_storage_inherited_through_fork_refuses_calls(sync: SyncStorage) -> None:
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            sync.get_item("k")
            message = b"answered"
        except StorageError as exc:
            message = str(exc).encode()
        os.write(writing, message)
        os._exit(0)
    os.close(writing)
    os.waitpid(pid, 0)
    with os.fdopen(reading, "rb") as answer:
        assert b"os.fork()" in answer.read()
    assert sync.get_item("k", 1) == 1  # the parent's storage is untouched


# -- many threads, every driver ------------------------------------------------------------------


def test_sixteen_threads_share_one_storage() -> None:
    errors: list[BaseException] = []
    with create_sync_storage() as sync:

        def work(number: int) -> None:
            try:
                for step in range(200):
                    key = f"t{number}:{step % 20}"
                    kind = step % 5
                    if kind == 0:
                        sync.set_item(key, step)
                    elif kind == 1:
                        sync.get_item(key)
                    elif kind == 2:
                        sync.increment("shared")
                    elif kind == 3:
                        sync.set_items({key: step, f"{key}:b": step})
                    else:
                        sync.get_keys(f"t{number}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sync.get_item("shared") == 16 * 40


def _exercise(sync: SyncStorage) -> None:
    """The calls that broke a naive asyncio.run per call, from 4 threads at once."""

    def work(number: int) -> None:
        for step in range(10):
            key = f"w{number}:{step}"
            sync.set_item(key, {"n": step})
            assert sync.get_item(key) == {"n": step}
            sync.increment("count")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sync.get_item("count") == 40
    assert len(sync.get_keys("w0")) == 10
    assert len(list(sync.iter_keys("w1"))) == 10
    assert sync.get_items(["w2:3", "nope"]) == {"w2:3": {"n": 3}, "nope": None}
    with sync.open_write("blob") as writer:
        writer.write(b"abc" * 1000)
    with sync.open_read("blob") as reader:
        assert reader.read() == b"abc" * 1000
    with sync.lock("job", ttl=5):
        assert sync.has_item("job")
    sync.clear()
    assert sync.get_keys() == []


def _url(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    base = f"t{uuid.uuid4().hex[:12]}"
    if name == "fs":
        return f"file://{tmp_path}/fs"
    if name == "sqlite":
        return f"sqlite:///{tmp_path}/db.sqlite"
    if name == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return f"{server.url}?base={base}"
    if name == "redis_cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return f"{cluster.url}?base={base}"
    http: ServerThread = request.getfixturevalue("http_server")
    return f"{http.url}/{base}"


@pytest.mark.parametrize("name", ["memory", "fs", "sqlite", "redis", "redis_cluster", "http"])
def test_every_driver_works_across_calls_and_threads(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = "memory://" if name == "memory" else _url(name, request, tmp_path)
    with create_sync_storage(url) as sync:
        _exercise(sync)


def test_s3_works_across_calls_and_threads(s3_shared_client: Any) -> None:
    prefix = f"t-{uuid.uuid4().hex[:12]}"

    def make() -> Storage:
        return create_storage(S3Driver(S3_BUCKET, prefix, client=s3_shared_client))

    with SyncStorage.build(make) as sync:
        _exercise(sync)
        url = sync.get_url("k", expires=60)
        assert url.startswith("http")


def _naive(storage: Storage, calls: Callable[[int], Any]) -> list[BaseException]:
    failures: list[BaseException] = []
    for number in range(3):
        try:
            asyncio.run(calls(number))
        except DriverError as exc:
            failures.append(exc)
    return failures


@pytest.mark.parametrize("name", ["redis", "http"])
def test_one_loop_thread_ends_the_naive_failures(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = _url(name, request, tmp_path)
    storage = create_storage(url)
    # asyncio.run per call: the pool made on the first loop is dead on the second.
    failures = _naive(storage, lambda n: storage.set_item("k", n))
    assert failures
    assert "Event loop is closed" in str(failures[0])
    if name == "redis":  # two live loops: a connection of one is "attached to a different loop"
        first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
        try:
            again = create_storage(url)
            first.run_until_complete(again.set_item("k", 1))
            with pytest.raises(DriverError, match="attached to a different loop"):
                second.run_until_complete(again.get_item("k"))
        finally:
            first.close()
            second.close()
    with create_sync_storage(url) as sync:
        for number in range(20):
            sync.set_item("k", number)
            assert sync.get_item("k") == number
        _exercise(sync)
