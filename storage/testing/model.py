"""The kit: Hypothesis drives the driver through Storage and compares it with a dict.

Keys are drawn from all of Unicode that keys allow, values from every type the default
serializer keeps, with TTLs, batches, conditional writes, clears, namespaces and depth
listings. The machine runs in a worker thread and sends each call to the test's event loop, so
every driver fixture of the suite (real servers included) is used as it is. Bounded so that the
suite stays fast: ``UNISTORAGE_MODEL_EXAMPLES=500`` runs more examples.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from storage import ConflictError, Driver, Storage, UnsupportedError

from .base import DriverFixtures, conformance_tests

T = TypeVar("T")
_EXAMPLES = int(os.environ.get("UNISTORAGE_MODEL_EXAMPLES", "12"))
_STEPS = 20
_MISSING = object()

# Any character a key may hold inside a segment: no separators, no controls, no surrogates.
_SEGMENT_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=":/\\"),
    min_size=1,
    max_size=6,
).filter(lambda text: text not in (".", ".."))
_TRICKY = ["a", "b", "ab", "é", "x y", "*", "?", "[x]", "%", "%2F", "…", "Ω", "🙂", "a.b", "~"]
SEGMENTS = st.one_of(st.sampled_from(_TRICKY), _SEGMENT_TEXT)
KEYS = st.lists(SEGMENTS, min_size=1, max_size=3).map(":".join)
BASES = st.one_of(st.just(""), st.lists(SEGMENTS, min_size=1, max_size=2).map(":".join))

_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=8)
_HASHABLE = st.one_of(
    st.integers(), _TEXT, st.booleans(), st.floats(allow_nan=False), st.binary(max_size=4)
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(),
    _TEXT,
    st.binary(max_size=8),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.uuids(),
    st.sampled_from([{"$tagged": 1, "value": {"$t": "bytes", "v": "aGk="}}, {"$t": "set"}]),
)
VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(_TEXT, inner, max_size=3),
        st.frozensets(_HASHABLE, max_size=3),
        st.sets(_HASHABLE, max_size=3),
    ),
    max_leaves=6,
)
TTLS = st.one_of(st.none(), st.just(3600), st.just(dt.timedelta(hours=2)))


def same(a: Any, b: Any) -> bool:
    """Equality that also holds for nan, and tells types apart (1 is not True, tuple not list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    return bool(a == b)


class StorageMatchesADict(RuleBasedStateMachine):
    """One Storage over the driver under test, and the dict it must always agree with."""

    storage: Storage
    loop: asyncio.AbstractEventLoop

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, Any] = {}
        self.capabilities = self.storage.capabilities()
        self.run(self.storage.clear())

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def _write(self, coroutine: Coroutine[Any, Any, Any], ttl: object, count: int = 1) -> bool:
        """Run a write of ``count`` items; False when the driver has no TTL and one was asked for."""
        if ttl is not None and count and not self.capabilities.ttl:
            with pytest.raises(UnsupportedError):
                self.run(coroutine)
            return False
        self.run(coroutine)
        return True

    @rule(key=KEYS, value=VALUES, ttl=TTLS)
    def set_item(self, key: str, value: Any, ttl: Any) -> None:
        if self._write(self.storage.set_item(key, value, ttl=ttl), ttl):
            self.model[key] = value

    @rule(items=st.dictionaries(KEYS, VALUES, max_size=5), ttl=TTLS)
    def set_items(self, items: dict[str, Any], ttl: Any) -> None:
        if self._write(self.storage.set_items(items, ttl=ttl), ttl, len(items)):
            self.model.update(items)

    @rule(key=KEYS, data=st.binary(max_size=16))
    def set_item_raw(self, key: str, data: bytes) -> None:
        self.run(self.storage.set_item_raw(key, data))
        assert self.run(self.storage.get_item_raw(key)) == data
        self.run(self.storage.remove_item(key))
        self.model.pop(key, None)

    @rule(key=KEYS)
    def get_item(self, key: str) -> None:
        got = self.run(self.storage.get_item(key, default=_MISSING))
        expected = self.model.get(key, _MISSING)
        assert got is expected if expected is _MISSING else same(got, expected)
        assert self.run(self.storage.has_item(key)) is (key in self.model)

    @rule(keys=st.lists(KEYS, max_size=6))
    def get_items(self, keys: list[str]) -> None:
        got = self.run(self.storage.get_items(keys))
        assert list(got) == list(dict.fromkeys(keys))
        for key, value in got.items():
            assert same(value, self.model.get(key))

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
    def list_keys(self, base: str, depth: int | None) -> None:
        prefix = base + ":" if base else ""
        expected = sorted(
            key
            for key in self.model
            if key.startswith(prefix) and (depth is None or key.count(":", len(prefix)) <= depth)
        )
        assert sorted(self.run(self.storage.get_keys(base, max_depth=depth))) == expected

        async def streamed() -> list[str]:
            return [key async for key in self.storage.iter_keys(base, max_depth=depth)]

        assert sorted(self.run(streamed())) == expected

    @rule(base=BASES)
    def clear(self, base: str) -> None:
        prefix = base + ":" if base else ""
        self.run(self.storage.clear(base))
        self.model = {key: value for key, value in self.model.items() if not key.startswith(prefix)}

    @rule(base=st.lists(SEGMENTS, min_size=1, max_size=2).map(":".join), key=KEYS, value=VALUES)
    def through_a_namespace(self, base: str, key: str, value: Any) -> None:
        view = self.storage.namespace(base)
        self.run(view.set_item(key, value))
        self.model[f"{base}:{key}"] = value
        assert same(self.run(view.get_item(key)), value)
        assert key in self.run(view.get_keys())

    @rule(key=KEYS, value=VALUES)
    def create_only(self, key: str, value: Any) -> None:
        write = self.storage.set_item(key, value, if_none_match=True)
        if not self.capabilities.conditional:
            with pytest.raises(UnsupportedError):
                self.run(write)
        elif key in self.model:
            with pytest.raises(ConflictError):
                self.run(write)
        else:
            self.run(write)
            self.model[key] = value

    @rule(key=KEYS, first=VALUES, second=VALUES)
    def compare_and_set(self, key: str, first: Any, second: Any) -> None:
        if not self.capabilities.conditional:
            return
        self.run(self.storage.set_item(key, first))
        self.model[key] = first
        value, etag = self.run(self.storage.get_item_with_etag(key))
        assert same(value, first)
        assert etag is not None
        self.run(self.storage.set_item(key, second, if_match=etag))
        self.model[key] = second
        if self.storage.serializer.dumps(first) == self.storage.serializer.dumps(second):
            return  # an etag may hash the content (redis): the same bytes, the same version
        with pytest.raises(ConflictError):  # the etag named the version just replaced
            self.run(self.storage.set_item(key, first, if_match=etag))

    @invariant()
    def listing_matches(self) -> None:
        assert sorted(self.run(self.storage.get_keys())) == sorted(self.model)

    def teardown(self) -> None:
        self.run(self.storage.clear())


@conformance_tests
class ModelTests(DriverFixtures):
    """A stateful Hypothesis run: every answer of Storage over the driver matches a dict."""

    async def test_storage_over_the_driver_matches_a_dict(
        self, storage: Storage, driver: Driver
    ) -> None:
        loop = asyncio.get_running_loop()

        class Machine(StorageMatchesADict):
            pass

        Machine.storage = storage
        Machine.loop = loop
        machine_settings = settings(
            max_examples=_EXAMPLES,
            stateful_step_count=_STEPS,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        await asyncio.to_thread(run_state_machine_as_test, Machine, settings=machine_settings)
