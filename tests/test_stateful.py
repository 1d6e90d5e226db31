"""Hypothesis drives a Storage with several mounts and compares it with a plain dict."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from drivers.lru import LruDriver
from drivers.memory import MemoryDriver
from storage import create_storage

T = TypeVar("T")

SEGMENTS = st.sampled_from(["a", "b", "ab", "c", "é", "x y", "*"])
KEYS = st.lists(SEGMENTS, min_size=1, max_size=3).map(":".join)
BASES = st.one_of(st.just(""), st.lists(SEGMENTS, min_size=1, max_size=2).map(":".join))
VALUES = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=3),
    st.frozensets(st.integers(), max_size=3),
    st.binary(max_size=4),
)


class StorageMatchesADict(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.storage = create_storage(
            MemoryDriver(),
            mounts={"a": MemoryDriver(), "a:b": LruDriver(max_entries=None), "c": MemoryDriver()},
        )
        self.model: dict[str, Any] = {}

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    @rule(key=KEYS, value=VALUES)
    def set_item(self, key: str, value: Any) -> None:
        self.run(self.storage.set_item(key, value))
        self.model[key] = value

    @rule(items=st.dictionaries(KEYS, VALUES, max_size=5))
    def set_items(self, items: dict[str, Any]) -> None:
        self.run(self.storage.set_items(items))
        self.model.update(items)

    @rule(key=KEYS)
    def get_item(self, key: str) -> None:
        assert self.run(self.storage.get_item(key, default="<missing>")) == self.model.get(
            key, "<missing>"
        )

    @rule(keys=st.lists(KEYS, max_size=6))
    def get_items(self, keys: list[str]) -> None:
        expected = {key: self.model.get(key) for key in keys}
        got = self.run(self.storage.get_items(keys))
        assert list(got) == list(expected)
        assert got == expected

    @rule(key=KEYS)
    def remove_item(self, key: str) -> None:
        self.run(self.storage.remove_item(key))
        self.model.pop(key, None)

    @rule(keys=st.lists(KEYS, max_size=4))
    def remove_items(self, keys: list[str]) -> None:
        self.run(self.storage.remove_items(keys))
        for key in keys:
            self.model.pop(key, None)

    @rule(base=BASES, depth=st.one_of(st.none(), st.integers(0, 3)))
    def get_keys(self, base: str, depth: int | None) -> None:
        prefix = base + ":" if base else ""
        expected = sorted(
            key
            for key in self.model
            if key.startswith(prefix) and (depth is None or key.count(":", len(prefix)) <= depth)
        )
        assert sorted(self.run(self.storage.get_keys(base, max_depth=depth))) == expected

    @rule(base=BASES)
    def clear(self, base: str) -> None:
        prefix = base + ":" if base else ""
        self.run(self.storage.clear(base))
        self.model = {key: value for key, value in self.model.items() if not key.startswith(prefix)}

    @rule(base=st.lists(SEGMENTS, min_size=1, max_size=2).map(":".join), key=KEYS, value=VALUES)
    def set_through_a_namespace(self, base: str, key: str, value: Any) -> None:
        self.run(self.storage.namespace(base).set_item(key, value))
        self.model[f"{base}:{key}"] = value

    @invariant()
    def listing_matches(self) -> None:
        assert sorted(self.run(self.storage.get_keys())) == sorted(self.model)

    def teardown(self) -> None:
        self.run(self.storage.dispose())
        self.loop.close()


StorageMatchesADict.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
test_storage_matches_a_dict = StorageMatchesADict.TestCase
