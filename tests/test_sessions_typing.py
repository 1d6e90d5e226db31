"""Typed session data: with the ``sessions.mypy_plugin`` plugin, mypy checks keys and values."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parent.parent

SNIPPET = """
from typing import TypedDict
from sessions import Sessions
from storage import create_storage

class Cart(TypedDict, total=False):
    items: list[str]
    user: str

async def main() -> None:
    sessions: Sessions[Cart] = Sessions(create_storage())
    session = sessions.from_cookie(None)
    reveal_type(await session.get("items"))
    reveal_type(await session.get("user", "guest"))
    await session.set("items", ["apple"])
    await session.set("items", "apple")
    await session.set("itmes", ["apple"])
    await session.delete("usr")
    key: str = "user"
    reveal_type(await session.get(key))
"""


FASTAPI_SNIPPET = """
from typing import Annotated, TypedDict
from fastapi import Depends, FastAPI, Request
from sessions import Session, Sessions
from sessions.fastapi import session_dependency
from storage import create_storage

class Cart(TypedDict, total=False):
    items: list[str]

sessions: Sessions[Cart] = Sessions(create_storage())
CartSession = Annotated[Session[Cart], Depends(session_dependency(sessions))]
app = FastAPI()

@app.get("/")
async def home(session: CartSession, request: Request) -> None:
    reveal_type(await session.get("items"))
    await session.set("itmes", [])
    reveal_type(await sessions.of(request).get("items"))
    reveal_type(await session.flashes())
"""


def run_mypy(tmp_path: Path, snippet: str) -> tuple[list[str], str, int]:
    """mypy --strict with the sessions plugin over ``snippet``: its lines, all output, status."""
    (tmp_path / "snippet.py").write_text(snippet)
    (tmp_path / "mypy.ini").write_text(
        f"[mypy]\nstrict = True\nplugins = sessions.mypy_plugin\nmypy_path = {ROOT}\n"
        "follow_imports = silent\n"
    )
    out, err, status = api.run(
        [
            "--config-file",
            str(tmp_path / "mypy.ini"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            str(tmp_path / "snippet.py"),
        ]
    )
    lines = [line.split("snippet.py:", 1)[1] for line in out.splitlines() if "snippet.py:" in line]
    return lines, out + err, status


def test_mypy_checks_session_keys_and_values_against_the_typed_dict(tmp_path: Path) -> None:
    lines, out, status = run_mypy(tmp_path, SNIPPET)
    assert lines == [
        '13: note: Revealed type is "list[str] | None"',
        "14: note: Revealed type is \"str | Literal['guest']?\"",
        '16: error: Session value for "items" has type "str", expected "list[str]"  [arg-type]',
        '17: error: "itmes" is not a key of the session data "Cart"  [typeddict-unknown-key]',
        '18: error: "usr" is not a key of the session data "Cart"  [typeddict-unknown-key]',
        '20: note: Revealed type is "Any"',
    ], out
    assert status == 1


def test_mypy_sees_the_typed_session_of_the_fastapi_dependency(tmp_path: Path) -> None:
    lines, out, status = run_mypy(tmp_path, FASTAPI_SNIPPET)
    assert lines == [
        '17: note: Revealed type is "list[str] | None"',
        '18: error: "itmes" is not a key of the session data "Cart"  [typeddict-unknown-key]',
        '19: note: Revealed type is "list[str] | None"',
        '20: note: Revealed type is "list[tuple[str, Any, fallback=sessions.session.FlashMessage]]"',
    ], out
    assert status == 1
