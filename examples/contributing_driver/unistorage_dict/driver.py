# unistorage_dict/driver.py
from collections.abc import AsyncIterator

from storage import Driver


class DictDriver(Driver):
    """Keys in a plain dict: the smallest complete driver."""

    name = "dict"
    schemes = ("dict",)

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    async def get_item(self, key: str) -> bytes | None:
        return self._data.get(key)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self._data[key] = value  # ttl is never passed: capabilities.ttl is False

    async def remove_item(self, key: str) -> None:
        self._data.pop(key, None)

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        for key in list(self._data):
            if key.startswith(base):
                yield key
