"""Typed views under mypy: the view is generic in its model, so reads give the model type and
writes take only the model."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parent.parent

SNIPPET = """
from dataclasses import dataclass
from typing import TypedDict
from storage import create_storage
from storage.typed import typed

@dataclass
class User:
    name: str

class Cart(TypedDict):
    items: list[str]

class Point:
    x: int

class UserCodec:
    def encode(self, value: User) -> object:
        return value.name

    def decode(self, data: bytes) -> User:
        return User(data.decode())

async def main() -> None:
    storage = create_storage()
    users = typed(storage, User, base="users")
    reveal_type(users)
    reveal_type(await users.get("ada"))
    reveal_type(await users.get("ada", User("nobody")))
    reveal_type(await users.get_many(["ada"]))
    reveal_type(await users.get_with_etag("ada"))
    await users.set("ada", User("Ada"))
    await users.set("ada", {"name": "Ada"})
    await users.set_many({"ada": User("Ada")})
    async for key, user in users.items():
        reveal_type(user)
    async for value in users.values():
        reveal_type(value)
    reveal_type(await typed(storage, Cart).get("c"))
    typed(storage, Point, codec=UserCodec())
"""


def test_mypy_sees_the_model_type_of_a_typed_view(tmp_path: Path) -> None:
    (tmp_path / "snippet.py").write_text(SNIPPET)
    (tmp_path / "mypy.ini").write_text(
        f"[mypy]\\nstrict = True\\nmypy_path = {ROOT}\\nfollow_imports = silent\\n"
    )
    out, err, status = api.run(
        [
            "--config-file",
            str(tmp_path / "mypy.ini"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            "--hide-error-context",
            str(tmp_path / "snippet.py"),
        ]
    )
    lines = [line.split("snippet.py:", 1)[1] for line in out.splitlines() if "snippet.py:" in line]
    assert lines == [
        '27: note: Revealed type is "storage.typed.TypedView[snippet.User]"',
        '28: note: Revealed type is "snippet.User | None"',
        '29: note: Revealed type is "snippet.User"',
        '30: note: Revealed type is "dict[str, snippet.User | None]"',
        '31: note: Revealed type is "tuple[snippet.User | None, str | None]"',
        '33: error: Argument 2 to "set" of "TypedView" has incompatible type "dict[str, str]";'
        ' expected "User"  [arg-type]',
        '36: note: Revealed type is "snippet.User"',
        '38: note: Revealed type is "snippet.User"',
        "39: note: Revealed type is \"TypedDict(snippet.Cart, {'items': list[str]}) | None\"",
        '40: error: Cannot infer value of type parameter "M" of "typed"  [misc]',
    ], out + err
    assert status == 1
