"""The null driver: writes succeed and nothing is kept."""

from __future__ import annotations

from storage import create_storage


async def test_writes_succeed_and_nothing_is_kept() -> None:
    async with create_storage("null://") as storage:
        await storage.set_item("a", {"x": 1}, ttl=5)
        await storage.set_items({"b": 1, "c": 2})
        await storage.set_meta("a", {"owner": "ann"})
        assert await storage.get_item("a") is None
        assert await storage.has_item("b") is False
        assert await storage.get_items(["b", "c"]) == {"b": None, "c": None}
        assert await storage.get_keys() == []
        assert await storage.get_meta("a") == {}


async def test_removals_and_clears_are_accepted() -> None:
    async with create_storage("null") as storage:
        await storage.remove_item("a", remove_meta=True)
        await storage.remove_items(["a", "b"])
        await storage.clear()
        assert [key async for key in storage.iter_keys()] == []


async def test_a_null_mount_swallows_only_its_own_keys() -> None:
    async with create_storage(mounts={"trash": "null://"}) as storage:
        await storage.set_item("trash:x", 1)
        await storage.set_item("kept", 2)
        assert await storage.get_keys() == ["kept"]
