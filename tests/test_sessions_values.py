"""What `Session.set` accepts and refuses, whatever shortcut it takes, and the shape of IDs.

`Session.set` skips the trial encoding of values the default serializer always stores (ints of
any size, floats including nan and inf, bools, None, ASCII text); these tests pin that the
shortcut changes nothing a caller can see: every other value is still refused at `set`, under
any serializer, and the accepted ones come back equal.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from sessions import Sessions, is_valid_id, new_id
from storage import SerializationError, create_storage


async def _reloaded(sessions: Sessions[Any], key: str, value: Any) -> Any:
    session = sessions.from_cookie(None)
    await session.set(key, value)
    await sessions.commit(session)
    assert session.id is not None
    return await (await sessions.load(session.id)).get(key, "missing")


@pytest.mark.parametrize(
    "value",
    [
        *(0, -(2**63) - 1, 2**64, pytest.param(2**20_000, id="huge-int")),
        *(1.5, True, None, "", "plain text", "~!@#"),
    ],
)
async def test_values_the_default_serializer_always_stores_come_back_equal(value: Any) -> None:
    sessions: Sessions[Any] = Sessions(create_storage())
    assert await _reloaded(sessions, "v", value) == value


@pytest.mark.parametrize("value", [math.inf, -math.inf])
async def test_infinite_floats_come_back_equal(value: float) -> None:
    sessions: Sessions[Any] = Sessions(create_storage())
    assert await _reloaded(sessions, "v", value) == value


async def test_nan_comes_back_as_nan() -> None:
    sessions: Sessions[Any] = Sessions(create_storage())
    assert math.isnan(await _reloaded(sessions, "v", math.nan))


async def test_non_ascii_text_comes_back_equal() -> None:
    sessions: Sessions[Any] = Sessions(create_storage())
    assert await _reloaded(sessions, "v", "crème brûlée ✓") == "crème brûlée ✓"


async def test_text_that_is_not_utf8_is_refused_at_set_naming_the_key() -> None:
    sessions: Sessions[Any] = Sessions(create_storage())
    session = sessions.from_cookie(None)
    with pytest.raises(SerializationError) as caught:
        await session.set("note", "lone \ud800 surrogate")
    assert caught.value.key == "note"
    assert session.id is None


class TextOnly:
    """A serializer that stores text only: ints, floats, bools and None are refused."""

    def dumps(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"text only, not {type(value).__name__}")
        return value.encode("utf-8")

    def loads(self, data: bytes) -> Any:
        return data.decode("utf-8")


@pytest.mark.parametrize("value", [1, 1.5, True, None])
async def test_a_custom_serializer_is_asked_about_every_value(value: Any) -> None:
    sessions: Sessions[Any] = Sessions(create_storage(serializer=TextOnly()))
    session = sessions.from_cookie(None)
    with pytest.raises(SerializationError) as caught:
        await session.set("count", value)
    assert caught.value.key == "count"


#: A valid ID, fixed: parameters must be the same in every process that collects them.
_ID = "_4BQtsQoYoeD1MPdBiDBaqS4jZC-cyQ9dZSgyjb_APQ"


@pytest.mark.parametrize(
    "value",
    [
        "é" + _ID[1:],  # a non-ASCII letter
        "\u0661" + _ID[1:],  # ARABIC-INDIC DIGIT ONE, a digit to Unicode's \d
        _ID[:-1] + "\n",  # a trailing newline ($ in a pattern would let it through)
        _ID[:-1] + "=",
        _ID[:-1] + "+",
        _ID[:-1] + "/",
    ],
)
def test_ids_outside_the_base64url_alphabet_are_refused(value: str) -> None:
    assert is_valid_id(_ID)
    assert len(value) == len(new_id())
    assert not is_valid_id(value)


def test_ids_of_another_length_are_refused() -> None:
    assert is_valid_id(new_id(16), 16)
    assert not is_valid_id(new_id(16))
    assert not is_valid_id(new_id(), 16)
