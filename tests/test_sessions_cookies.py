"""Which session a request's Cookie headers select: an RFC 6265 reading, never a substring.

Every case is a real request through the middleware; the victim's and the attacker's
sessions both exist, so picking the wrong one shows.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessions import SessionMiddleware, Sessions
from storage import create_storage
from tests.test_sessions_http import session_of

VICTIM = "victim"
NOBODY = None


async def whoami(request: Request) -> Response:
    return JSONResponse(await session_of(request).get("user"))


async def opened(sessions: Sessions[Any], user: str) -> str:
    session = sessions.from_cookie(None)
    await session.set("user", user)
    await sessions.commit(session)
    assert session.id is not None
    return session.id


async def user_for(name: str, *cookie_headers: str) -> str | None:
    """The user whose session a request carrying ``cookie_headers`` gets, for cookie ``name``.

    In the headers, ``{name}`` is the cookie's name (``{upper}`` in capitals), and ``{victim}``
    and ``{attacker}`` are the two sessions' IDs.
    """
    sessions: Sessions[Any] = Sessions(create_storage(), cookie_name=name)
    ids = {"victim": await opened(sessions, "victim"), "attacker": await opened(sessions, "evil")}
    app = Starlette(
        routes=[Route("/whoami", whoami)],
        middleware=[Middleware(SessionMiddleware, sessions=sessions)],
    )
    fields = {"name": name, "upper": name.upper(), **ids}
    headers = [("cookie", header.format(**fields)) for header in cookie_headers]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        response = await http.get("/whoami", headers=headers)
    user: str | None = response.json()
    return user


@pytest.fixture(params=["session", "__Host-sid"])
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


CASES: dict[str, tuple[list[str], str | None]] = {
    "the only cookie": (["{name}={victim}"], VICTIM),
    "a name inside another cookie's value is part of that value": (
        ["pref=a {name}={attacker}; {name}={victim}"],
        VICTIM,
    ),
    "... also when it is the last cookie": (["{name}={victim}; pref=a {name}={attacker}"], VICTIM),
    "... and when it is the only one": (["pref=a {name}={attacker}"], NOBODY),
    "a name after a comma is part of the value": (["{name}={victim}, {name}={attacker}"], NOBODY),
    "a name ending in ours is another cookie": (["x{name}={attacker}; {name}={victim}"], VICTIM),
    "names compare exactly, case included": (["{upper}={attacker}; {name}={victim}"], VICTIM),
    "a duplicate with another value is refused": (["{name}={attacker}; {name}={victim}"], NOBODY),
    "... in either order": (["{name}={victim}; {name}={attacker}"], NOBODY),
    "... and across Cookie headers": (["{name}={victim}", "{name}={attacker}"], NOBODY),
    "a duplicate with the same value is fine": (["{name}={victim}; {name}={victim}"], VICTIM),
    "a quoted value": (['{name}="{victim}"'], VICTIM),
    "a half-quoted value is malformed": (['{name}="{victim}'], NOBODY),
    "no space after the semicolon": (["a=1;{name}={victim}"], VICTIM),
    "spaces and tabs around pairs, names and values": (["a=1 ;\t{name} = {victim}\t; b=2"], VICTIM),
    "a value that SimpleCookie gives up on, before ours": (
        ['j={{"a": 1}}; {name}={victim}'],
        VICTIM,
    ),
    "a pair without '=' is skipped": (["flag; {name}={victim}"], VICTIM),
    "several Cookie headers are one list": (
        ["a=1", "pref=a {name}={attacker}", "{name}={victim}"],
        VICTIM,
    ),
    "an empty value": (["{name}="], NOBODY),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_the_cookie_header_is_read_pair_by_pair(name: str, case: str) -> None:
    headers, expected = CASES[case]
    assert await user_for(name, *headers) == expected
