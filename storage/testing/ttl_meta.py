"""The kit: expiry (or its refusal), native metadata and user meta."""

from __future__ import annotations

import datetime as dt

import pytest

from storage import Driver, InvalidArgumentError, Storage

from .base import ConformanceOptions, DriverFixtures, conformance_tests, expired, refuses_ttl


@conformance_tests
class TtlMetaTests(DriverFixtures):
    """Expiry where ``capabilities.ttl`` (refused otherwise); ``get_meta``; user meta."""

    async def test_expired_keys_are_gone_everywhere(self, storage: Storage, driver: Driver) -> None:
        if not driver.capabilities.ttl:
            await refuses_ttl(storage)
            return
        await storage.set_item("short", "v", ttl=0.5)
        await storage.set_items({"batch:1": 1, "batch:2": 2}, ttl=dt.timedelta(seconds=0.5))
        await storage.set_item("long", "v", ttl=60)
        await storage.set_item("forever", "v")
        assert await storage.get_item("short") == "v"
        assert sorted(await storage.get_keys()) == [
            "batch:1",
            "batch:2",
            "forever",
            "long",
            "short",
        ]
        await expired(storage, "short")
        await expired(storage, "batch:2")  # written in the same instant; then every view agrees
        assert await storage.get_item("short") is None
        assert await storage.has_item("batch:1") is False
        assert await storage.get_items(["batch:2", "long"]) == {"batch:2": None, "long": "v"}
        assert sorted(await storage.get_keys()) == ["forever", "long"]
        assert sorted([key async for key in storage.iter_keys()]) == ["forever", "long"]

    async def test_meta_reports_remaining_ttl(self, storage: Storage, driver: Driver) -> None:
        if not driver.capabilities.ttl:
            await refuses_ttl(storage)
            return
        await storage.set_item("k", "v", ttl=100)
        ttl = (await storage.get_meta("k"))["ttl"]
        assert 90 < ttl <= 100

    async def test_writing_without_ttl_removes_the_expiry(
        self, storage: Storage, driver: Driver, conformance_options: ConformanceOptions
    ) -> None:
        if not driver.capabilities.ttl:
            await refuses_ttl(storage)
            return
        await storage.set_item("k", "v", ttl=100)
        await storage.set_item("k", "w")
        if not conformance_options.plain_ttl:  # every write expires: the default TTL again
            assert (await storage.get_meta("k")).get("ttl") is not None
            return
        assert (await storage.get_meta("k")).get("ttl") is None

    @pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), "10", True])
    async def test_bad_ttls_are_rejected_before_writing(
        self, storage: Storage, ttl: object
    ) -> None:
        with pytest.raises(InvalidArgumentError):
            await storage.set_item("k", "v", ttl=ttl)  # type: ignore[arg-type]
        assert await storage.get_keys() == []

    async def test_meta_has_mtime_and_size(
        self, storage: Storage, conformance_options: ConformanceOptions
    ) -> None:
        before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
        await storage.set_item_raw("k", b"12345")
        meta = await storage.get_meta("k")
        missing = [name for name in conformance_options.meta_fields if name not in meta]
        assert not missing, f"get_meta reports no {missing}: {meta}"
        if "mtime" in meta:
            assert isinstance(meta["mtime"], dt.datetime)
            mtime = meta["mtime"] if meta["mtime"].tzinfo else meta["mtime"].astimezone()
            assert mtime >= before
        if "size" in meta:
            assert meta["size"] == 5

    async def test_a_value_and_its_meta_are_read_in_one_call(
        self, storage: Storage, driver: Driver
    ) -> None:
        ttl = 100 if driver.capabilities.ttl else None
        await storage.set_item_raw("k", b"12345", ttl=ttl)
        data, meta = await storage.get_item_raw_with_meta("k")
        assert data == b"12345"
        assert meta.get("etag") == (await storage.get_item_raw_with_etag("k"))[1]
        native = await storage.get_native_meta("k")
        steady = {name for name in native if name not in ("ttl", "atime", "etag")}
        assert {name: meta.get(name) for name in steady} == {name: native[name] for name in steady}
        if ttl is not None and "ttl" in native:
            assert 90 < meta["ttl"] <= 100
        assert await storage.get_item_raw_with_meta("missing") == (None, {})

    async def test_user_meta_is_kept_beside_the_item_and_never_listed(
        self, storage: Storage
    ) -> None:
        await storage.set_item("doc", {"body": 1})
        await storage.set_meta("doc", {"owner": "ann", "tags": {"a"}})
        meta = await storage.get_meta("doc")
        assert meta["owner"] == "ann"
        assert meta["tags"] == {"a"}
        assert await storage.get_keys() == ["doc"]
        await storage.remove_meta("doc")
        assert "owner" not in await storage.get_meta("doc")
        assert await storage.get_item("doc") == {"body": 1}

    async def test_remove_item_can_remove_its_meta(self, storage: Storage) -> None:
        await storage.set_item("doc", 1)
        await storage.set_meta("doc", {"owner": "ann"})
        await storage.remove_item("doc")
        assert (await storage.get_meta("doc")).get("owner") == "ann"
        await storage.remove_item("doc", remove_meta=True)
        assert "owner" not in await storage.get_meta("doc")
        assert await storage.get_keys() == []

    async def test_user_meta_of_many_keys_reads_as_one_by_one(self, storage: Storage) -> None:
        await storage.set_items({"a": 1, "b": 2, "c:d": 3})
        await storage.set_meta("a", {"owner": "ann"})
        await storage.set_meta_raw("c:d", storage.serializer.dumps({"owner": "cid"}))
        metas = await storage.get_metas_raw(["c:d", "b", "a", "missing"])
        assert list(metas) == ["c:d", "b", "a", "missing"]
        for key, raw in metas.items():
            assert raw == await storage.get_meta_raw(key)
        assert metas["b"] is None
        assert metas["missing"] is None
        assert storage.serializer.loads(metas["c:d"] or b"") == {"owner": "cid"}
