"""Typed views: each model kind round-trips as plain JSON, is validated on read, and passes
TTL, compare-and-set, batches, listing and namespaces through to the Storage below."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum, IntEnum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NewType, NotRequired, TypedDict

import attrs
import msgspec
import orjson
import pydantic
import pytest
import typing_extensions

from drivers.sqlite import SqliteDriver
from storage import ConflictError, SerializationError, Storage, create_storage
from storage._typed_codecs import codec_for, dump_json
from storage.typed import Codec, TypedView, typed

ROOT = Path(__file__).resolve().parent.parent


class Role(StrEnum):
    ADMIN = "admin"
    GUEST = "guest"


class Level(IntEnum):
    LOW = 1
    HIGH = 3


class Color(Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class DataUser:
    name: str
    age: int
    role: Role
    level: Level
    color: Color
    joined: datetime
    tags: list[str] = field(default_factory=list)
    nickname: str | None = None


class PydanticUser(pydantic.BaseModel):
    name: str
    age: int
    role: Role
    level: Level
    color: Color
    joined: datetime
    tags: list[str] = []
    nickname: str | None = None


class MsgspecUser(msgspec.Struct):
    name: str
    age: int
    role: Role
    level: Level
    color: Color
    joined: datetime
    tags: list[str] = []
    nickname: str | None = None


@attrs.define
class AttrsUser:
    name: str
    age: int
    role: Role
    level: Level
    color: Color
    joined: datetime
    tags: list[str] = attrs.field(factory=list)
    nickname: str | None = None


class DictUser(TypedDict):
    name: str
    age: int
    role: Role
    level: Level
    color: Color
    joined: datetime
    tags: list[str]
    nickname: NotRequired[str | None]


class ExtDictUser(typing_extensions.TypedDict):
    name: str
    age: int
    role: Role
    level: Level
    color: Color
    joined: datetime
    tags: list[str]
    nickname: typing_extensions.NotRequired[str | None]


JOINED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
FIELDS: dict[str, Any] = {
    "name": "Ada",
    "age": 36,
    "role": Role.ADMIN,
    "level": Level.HIGH,
    "color": Color.BLUE,
    "joined": JOINED,
    "tags": ["math"],
}
STORED = {"name": "Ada", "age": 36, "role": "admin", "level": 3, "color": "blue", "tags": ["math"]}

# (model, read with pydantic where the kind allows it): dataclasses and TypedDicts are also
# read with the built-in validator, as they are where pydantic is not installed.
KINDS = [
    pytest.param(DataUser, True, id="dataclass"),
    pytest.param(DataUser, False, id="dataclass-builtin"),
    pytest.param(PydanticUser, True, id="pydantic"),
    pytest.param(MsgspecUser, True, id="msgspec"),
    pytest.param(AttrsUser, True, id="attrs"),
    pytest.param(DictUser, True, id="typeddict"),
    pytest.param(ExtDictUser, True, id="typeddict-ext"),
    pytest.param(ExtDictUser, False, id="typeddict-ext-builtin"),
]


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """A plain Storage over a real driver: memory, or sqlite in a fresh file."""
    if request.param == "memory":
        storage = create_storage()
    else:
        storage = create_storage(SqliteDriver(tmp_path / "typed.db"))
    yield storage
    await storage.dispose()


def view(store: Storage, model: type[Any], use_pydantic: bool = True) -> TypedView[Any]:
    codec = None if use_pydantic else codec_for(model, use_pydantic=False)
    return typed(store, model, base="users", codec=codec)


def field_of(value: Any, name: str) -> Any:
    return value[name] if isinstance(value, dict) else getattr(value, name)


# -- each kind ------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "use_pydantic"), KINDS)
async def test_each_model_kind_round_trips(
    store: Storage, model: type[Any], use_pydantic: bool
) -> None:
    users = view(store, model, use_pydantic)
    ada = model(**FIELDS)
    await users.set("ada", ada)
    assert await users.get("ada") == ada


@pytest.mark.parametrize(("model", "use_pydantic"), KINDS)
async def test_the_stored_form_is_plain_json_that_other_clients_read(
    store: Storage, model: type[Any], use_pydantic: bool
) -> None:
    await view(store, model, use_pydantic).set("ada", model(**FIELDS))
    raw = await store.get_item_raw("users:ada")
    assert raw is not None
    for decoded in (json.loads(raw), await store.get_item("users:ada")):
        assert isinstance(decoded, dict)
        joined = decoded.pop("joined")
        decoded.pop("nickname", None)
        assert decoded == STORED
        assert datetime.fromisoformat(joined.replace("Z", "+00:00")) == JOINED


@pytest.mark.parametrize(("model", "use_pydantic"), KINDS)
async def test_enum_fields_come_back_as_their_members(
    store: Storage, model: type[Any], use_pydantic: bool
) -> None:
    users = view(store, model, use_pydantic)
    await users.set("ada", model(**FIELDS))
    ada = await users.get("ada")
    assert field_of(ada, "role") is Role.ADMIN
    assert field_of(ada, "level") is Level.HIGH
    assert field_of(ada, "color") is Color.BLUE


@pytest.mark.parametrize(("model", "use_pydantic"), KINDS)
@pytest.mark.parametrize(
    ("stored", "culprit"),
    [
        pytest.param({**STORED, "joined": "2024-01-02", "age": "old"}, "age", id="wrong-type"),
        pytest.param({"name": "Ada", "joined": "2024-01-02T00:00:00"}, "age", id="missing"),
        pytest.param({**STORED, "joined": "2024-01-02T00:00", "role": "root"}, "role", id="enum"),
        pytest.param([1, 2], "", id="not-an-object"),
    ],
)
async def test_stored_data_that_does_not_validate_raises_naming_the_key_and_the_model(
    store: Storage, model: type[Any], use_pydantic: bool, stored: Any, culprit: str
) -> None:
    await store.set_item_raw("users:ada", orjson.dumps(stored))
    with pytest.raises(SerializationError) as caught:
        await view(store, model, use_pydantic).get("ada")
    assert caught.value.key == "ada"
    assert model.__qualname__ in str(caught.value)
    assert culprit in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("model", "use_pydantic"), KINDS)
async def test_bytes_that_are_not_json_raise_serialization_error(
    store: Storage, model: type[Any], use_pydantic: bool
) -> None:
    await store.set_item_raw("users:ada", b"\x00not json")
    with pytest.raises(SerializationError, match="'ada'"):
        await view(store, model, use_pydantic).get("ada")


@pytest.mark.parametrize(("model", "use_pydantic"), KINDS)
async def test_a_value_that_is_not_the_model_is_refused_before_any_io(
    store: Storage, model: type[Any], use_pydantic: bool
) -> None:
    users = view(store, model, use_pydantic)
    wrong: Any = {**FIELDS, "age": "old"} if model in (DictUser, ExtDictUser) else dict(FIELDS)
    with pytest.raises(SerializationError, match=model.__qualname__) as caught:
        await users.set("ada", wrong)
    assert caught.value.key == "ada"
    assert not await store.has_item("users:ada")


def test_the_validator_is_pydantic_where_it_can_be_and_built_in_otherwise() -> None:
    def validator(model: type[Any]) -> str:
        codec = codec_for(model)
        return str(getattr(codec, "validator", "own library"))

    assert validator(DataUser) == "pydantic"
    assert validator(ExtDictUser) == "pydantic"
    assert validator(AttrsUser) == "built-in"
    # pydantic refuses typing.TypedDict before Python 3.12.
    assert validator(DictUser) == ("pydantic" if sys.version_info >= (3, 12) else "built-in")
    assert validator(PydanticUser) == validator(MsgspecUser) == "own library"


def test_without_pydantic_msgspec_or_attrs_a_dataclass_view_still_works() -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from dataclasses import dataclass
        from enum import Enum
        for name in ("pydantic", "msgspec", "attrs", "attr"):
            sys.modules[name] = None  # importing any of them now fails
        from storage import create_storage
        from storage.typed import typed

        class Color(Enum):
            RED = "red"

        @dataclass
        class Point:
            x: int
            color: Color

        async def main():
            points = typed(create_storage(), Point, base="points")
            await points.set("a", Point(1, Color.RED))
            assert await points.get("a") == Point(1, Color.RED)

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60)


# -- view calls -----------------------------------------------------------------------------


def ada(name: str = "Ada", age: int = 36) -> DataUser:
    return DataUser(**{**FIELDS, "name": name, "age": age})


async def test_get_gives_the_default_for_a_missing_key(store: Storage) -> None:
    users = typed(store, DataUser, base="users")
    assert await users.get("nobody") is None
    assert await users.get("nobody", ada()) == ada()


async def test_has_and_delete(store: Storage) -> None:
    users = typed(store, DataUser, base="users")
    await users.set("ada", ada())
    assert await users.has("ada")
    await users.delete("ada")
    await users.delete("ada")
    assert not await users.has("ada")


async def test_batches_keep_input_order_with_none_for_missing_keys(store: Storage) -> None:
    users = typed(store, DataUser, base="users")
    await users.set_many([("c", ada("C")), ("a", ada("A"))])
    await users.set_many({"b": ada("B")})
    found = await users.get_many(["c", "missing", "b", "a"])
    assert list(found) == ["c", "missing", "b", "a"]
    assert [None if user is None else user.name for user in found.values()] == [
        "C",
        None,
        "B",
        "A",
    ]


async def test_a_batch_with_one_bad_value_writes_nothing(store: Storage) -> None:
    users = typed(store, DataUser, base="users")
    bad: Any = {"name": "B"}
    with pytest.raises(SerializationError) as caught:
        await users.set_many([("a", ada()), ("b", bad)])
    assert caught.value.key == "b"
    assert await store.get_keys() == []


async def test_a_bad_stored_value_in_a_batch_read_is_named(store: Storage) -> None:
    users = typed(store, DataUser, base="users")
    await users.set("a", ada())
    await store.set_item_raw("users:b", b'{"name": "B"}')
    with pytest.raises(SerializationError) as caught:
        await users.get_many(["a", "b"])
    assert caught.value.key == "b"


async def test_listing_stays_under_the_views_base(store: Storage) -> None:
    users = typed(store, DataUser, base="users")
    await users.set_many({"ada": ada(), "team:bob": ada("Bob")})
    await store.set_item("other:x", 1)
    await store.set_item("usersx", 1)
    assert sorted(await users.keys()) == ["ada", "team:bob"]
    assert await users.keys(max_depth=0) == ["ada"]
    assert await users.keys("team") == ["team:bob"]
    assert sorted([key async for key in users.iter_keys()]) == ["ada", "team:bob"]


async def test_values_and_items_stream_every_instance_in_batches(store: Storage) -> None:
    users = typed(store, DataUser, base="users")
    count = 600  # more than one batch
    await users.set_many({f"u{index:03}": ada(f"U{index}", index) for index in range(count)})
    await store.set_item("elsewhere", "not a user")
    pairs = [(key, user.age) async for key, user in users.items()]
    assert sorted(pairs) == [(f"u{index:03}", index) for index in range(count)]
    ages = [user.age async for user in users.values()]
    assert sorted(ages) == list(range(count))


async def test_values_and_items_take_a_base_and_a_depth(store: Storage) -> None:
    users = typed(store, DataUser, base="users")
    await users.set_many({"ada": ada(), "team:bob": ada("Bob"), "team:x:eve": ada("Eve")})
    assert [key async for key, _ in users.items(max_depth=0)] == ["ada"]
    assert sorted([user.name async for user in users.values("team")]) == ["Bob", "Eve"]
    assert [user.name async for user in users.values("team", max_depth=0)] == ["Bob"]


async def test_a_view_over_a_namespace_stores_under_both_bases(store: Storage) -> None:
    users = typed(store.namespace("app"), DataUser, base="users")
    await users.set("ada", ada())
    assert await store.get_keys() == ["app:users:ada"]
    assert await typed(store, DataUser, base="app:users").get("ada") == ada()
    assert await typed(store, DataUser).get("app:users:ada") == ada()


async def test_ttl_passes_through(store: Storage) -> None:
    users = typed(store, DataUser, base="users")
    await users.set("ada", ada(), ttl=60)
    await users.set_many({"bob": ada("Bob")}, ttl=30)
    assert 0 < (await store.get_meta("users:ada"))["ttl"] <= 60
    assert 0 < (await store.get_meta("users:bob"))["ttl"] <= 30


async def test_compare_and_set_passes_through(store: Storage) -> None:
    users = typed(store, DataUser, base="users")
    assert await users.get_with_etag("ada") == (None, None)
    first = await users.set("ada", ada(), if_none_match=True)
    with pytest.raises(ConflictError):
        await users.set("ada", ada("Other"), if_none_match=True)
    current, etag = await users.get_with_etag("ada")
    assert current == ada()
    assert etag is not None
    assert etag == first
    await users.set("ada", ada(age=37), if_match=etag)
    with pytest.raises(ConflictError):
        await users.set("ada", ada(age=38), if_match=etag)
    assert await users.get("ada") == ada(age=37)


async def test_a_conditional_delete_removes_only_that_version() -> None:
    # Over memory: the conformance suite holds each driver to conditional removes.
    users = typed(create_storage(), DataUser, base="users")
    await users.set("ada", ada())
    _, old = await users.get_with_etag("ada")
    await users.set("ada", ada(age=37))
    assert old is not None
    with pytest.raises(ConflictError):
        await users.delete("ada", if_match=old)
    _, etag = await users.get_with_etag("ada")
    assert etag is not None
    await users.delete("ada", if_match=etag)
    assert not await users.has("ada")


# -- codecs ---------------------------------------------------------------------------------


class Point:
    """A class of no known kind."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


class PointAsJSON:
    def encode(self, value: Point) -> object:
        return {"x": value.x, "y": value.y}

    def decode(self, data: bytes) -> Point:
        fields = json.loads(data)
        return Point(fields["x"], fields["y"])


class PointAsText:
    def encode(self, value: Point) -> object:
        return f"{value.x},{value.y}".encode()

    def decode(self, data: bytes) -> Point:
        x, y = data.split(b",")
        return Point(int(x), int(y))


@pytest.mark.parametrize(
    ("codec", "stored"), [(PointAsJSON(), b'{"x":1,"y":2}'), (PointAsText(), b"1,2")]
)
async def test_a_custom_class_works_through_a_codec(
    store: Storage, codec: Codec[Point], stored: bytes
) -> None:
    points = typed(store, Point, base="points", codec=codec)
    await points.set("p", Point(1, 2))
    assert await store.get_item_raw("points:p") == stored
    assert await points.get("p") == Point(1, 2)
    await store.set_item_raw("points:q", b"nonsense")
    with pytest.raises(SerializationError, match=r"not a valid Point.*'q'"):
        await points.get("q")


def test_a_class_of_no_known_kind_asks_for_a_codec() -> None:
    with pytest.raises(SerializationError, match="codec="):
        typed(create_storage(), Point)


# -- the built-in validator -----------------------------------------------------------------

UserId = NewType("UserId", str)


@dataclass
class Address:
    city: str
    zip: Annotated[str, "a postal code"]


@dataclass
class Rich:
    id: UserId
    home: Address
    pair: tuple[int, str]
    ids: frozenset[uuid.UUID]
    scores: dict[Role, float]
    amount: Decimal
    born: date
    kind: Literal["person", "robot"]
    number: int | float
    children: list[Rich] = field(default_factory=list)
    label: str | None = None


RICH = Rich(
    id=UserId("u1"),
    home=Address("Paris", "75001"),
    pair=(1, "a"),
    ids=frozenset({uuid.UUID(int=1), uuid.UUID(int=2)}),
    scores={Role.ADMIN: 1.5, Role.GUEST: 2},
    amount=Decimal("10.25"),
    born=date(1815, 12, 10),
    kind="person",
    number=3,
    children=[Rich(UserId("u2"), Address("Lyon", "69001"), (2, "b"), frozenset(), {},
                   Decimal(0), date(2000, 1, 1), "robot", 2.5)],
)  # fmt: skip


@pytest.mark.parametrize("use_pydantic", [True, False], ids=["pydantic", "builtin"])
async def test_nested_recursive_and_container_fields_round_trip(use_pydantic: bool) -> None:
    rich = typed(create_storage(), Rich, codec=codec_for(Rich, use_pydantic=use_pydantic))
    await rich.set("r", RICH)
    got = await rich.get("r")
    assert got == RICH
    assert got is not None
    assert type(got.number) is int
    assert type(got.children[0].number) is float
    assert type(got.children[0].home) is Address


@pytest.mark.parametrize("use_pydantic", [True, False], ids=["pydantic", "builtin"])
async def test_a_nested_failure_names_the_path(use_pydantic: bool) -> None:
    storage = create_storage()
    stored = json.loads(dump_json(RICH))
    stored["children"][0]["home"]["city"] = 7
    await storage.set_item_raw("r", orjson.dumps(stored))
    rich = typed(storage, Rich, codec=codec_for(Rich, use_pydantic=use_pydantic))
    with pytest.raises(SerializationError, match=r"children\.0\.home\.city"):
        await rich.get("r")


def test_the_built_in_validator_refuses_a_field_type_it_does_not_know() -> None:
    @dataclass
    class Blob:
        data: bytes

    with pytest.raises(SerializationError, match=r"Blob\.data.*bytes.*install pydantic"):
        codec_for(Blob, use_pydantic=False)


@pytest.mark.parametrize(
    ("text", "ok"), [("2024-01-02T03:04:05Z", True), ("2024-01-02", True), ("soon", False)]
)
def test_the_built_in_validator_reads_iso_8601_datetimes(text: str, ok: bool) -> None:
    @dataclass
    class Event:
        at: datetime

    decode: Callable[[bytes], Event] = codec_for(Event, use_pydantic=False).decode
    data = orjson.dumps({"at": text})
    if ok:
        assert isinstance(decode(data).at, datetime)
    else:
        with pytest.raises(ValueError, match="ISO 8601"):
            decode(data)


# -- the plain serializer's rule for enums (docs/typed.md) ----------------------------------


async def test_the_plain_serializer_stores_int_and_str_enums_as_their_values() -> None:
    storage = create_storage()
    await storage.set_item("k", {"level": Level.HIGH, "role": Role.ADMIN})
    back = await storage.get_item("k")
    assert back == {"level": 3, "role": "admin"}
    assert type(back["level"]) is int
    assert type(back["role"]) is str
    with pytest.raises(SerializationError, match="Color"):
        await storage.set_item("k", Color.RED)


async def test_storage_typed_is_the_view() -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    async with create_storage() as storage:
        points = storage.typed(Point, base="points")
        await points.set("a", Point(1, 2))
        assert await points.get("a") == Point(1, 2)
        assert await storage.get_item("points:a") == {"x": 1, "y": 2}
