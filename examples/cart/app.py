"""A server-rendered cart: add items, see the count, log in (regenerate), log out (destroy)."""

from __future__ import annotations

from html import escape
from typing import TypedDict, cast
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from sessions import Session, SessionMiddleware, Sessions
from storage import Storage


class CartData(TypedDict, total=False):
    """The shape of this app's session data (Astro's ``App.SessionData``)."""

    cart: list[str]
    user: str


PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Cart</title></head>
<body>
<header>
  <a id="cart-count" href="/">&#128722; {count} items</a>
  <span id="user">{user}</span>
</header>
<ul id="items">{items}</ul>
<form method="post" action="/cart/add">
  <input name="item" aria-label="item" required>
  <button id="add" type="submit">Add to cart</button>
</form>
{account}
</body>
</html>
"""

LOGIN = """<form method="post" action="/login">
  <input name="user" aria-label="user name" required>
  <button id="login" type="submit">Log in</button>
</form>"""

LOGOUT = """<form method="post" action="/logout">
  <button id="logout" type="submit">Log out</button>
</form>"""


def _session(request: Request) -> Session[CartData]:
    return cast("Session[CartData]", request.scope["session"])


async def _form(request: Request) -> dict[str, str]:
    # A urlencoded body is all these forms send; parsing it here avoids a multipart dependency.
    fields = parse_qs((await request.body()).decode("utf-8"), max_num_fields=10)
    return {name: values[0].strip() for name, values in fields.items()}


def _home() -> Response:
    return RedirectResponse("/", status_code=303)


async def home(request: Request) -> Response:
    session = _session(request)
    cart: list[str] = await session.get("cart") or []
    user: str | None = await session.get("user")
    items = "".join(f"<li>{escape(item)}</li>" for item in cart)
    page = PAGE.format(
        count=len(cart),
        user=f"Signed in as {escape(user)}" if user else "Guest",
        items=items,
        account=LOGOUT if user else LOGIN,
    )
    return HTMLResponse(page)


async def add_to_cart(request: Request) -> Response:
    item = (await _form(request)).get("item", "")
    if item:
        session = _session(request)
        cart: list[str] = await session.get("cart") or []
        await session.set("cart", [*cart, item[:100]])
    return _home()


async def login(request: Request) -> Response:
    user = (await _form(request)).get("user", "")
    if user:
        session = _session(request)
        # A new ID on every privilege change defeats session fixation; the cart is kept.
        await session.regenerate()
        await session.set("user", user[:100])
    return _home()


async def logout(request: Request) -> Response:
    await _session(request).destroy()
    return _home()


def create_app(storage: Storage, *, secure: bool = True) -> Starlette:
    """The cart app over ``storage``; ``secure=False`` only for plain-http local runs."""
    sessions: Sessions[CartData] = Sessions(storage, cookie_name="cart-session", secure=secure)
    return Starlette(
        routes=[
            Route("/", home),
            Route("/cart/add", add_to_cart, methods=["POST"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
        ],
        middleware=[Middleware(SessionMiddleware, sessions=sessions)],
    )
