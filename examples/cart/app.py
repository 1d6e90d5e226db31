"""A server-rendered cart on FastAPI: add items, see the count, log in, log out.

Shows the FastAPI side of unistorage sessions: a typed session dependency
(``Session[CartData]``), a lifespan that owns the Storage, flash messages (read once by the
next page), and `login` (a new ID on every privilege change) and `destroy`.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and the
# session dependency is a local name of `create_app`.
from html import escape
from typing import Annotated, TypedDict
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sessions import Session, SessionMiddleware, Sessions
from sessions.fastapi import session_dependency, storage_lifespan
from storage import Storage


class CartData(TypedDict, total=False):
    """The shape of this app's session data (Astro's ``App.SessionData``)."""

    cart: list[str]


PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Cart</title></head>
<body>
<header>
  <a id="cart-count" href="/">&#128722; {count} items</a>
  <span id="user">{user}</span>
</header>
{flashes}
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


async def _form(request: Request) -> dict[str, str]:
    # A urlencoded body is all these forms send; parsing it here avoids a multipart dependency.
    fields = parse_qs((await request.body()).decode("utf-8"), max_num_fields=10)
    return {name: values[0].strip() for name, values in fields.items()}


def _home() -> Response:
    return RedirectResponse("/", status_code=303)


def create_app(storage: Storage, *, secure: bool = True) -> FastAPI:
    """The cart app over ``storage``; ``secure=False`` only for plain-http local runs."""
    sessions: Sessions[CartData] = Sessions(storage, cookie_name="cart-session", secure=secure)
    CartSession = Annotated[Session[CartData], Depends(session_dependency(sessions))]
    app = FastAPI(lifespan=storage_lifespan(storage), openapi_url=None)
    app.add_middleware(SessionMiddleware, sessions=sessions)

    @app.get("/", response_class=HTMLResponse)
    async def home(session: CartSession) -> str:
        cart = await session.get("cart") or []
        await session.ensure_loaded()
        user = session.user_id
        notes = "".join(
            f'<p class="flash {escape(flash.category)}">{escape(str(flash.message))}</p>'
            for flash in await session.flashes()
        )
        return PAGE.format(
            count=len(cart),
            user=f"Signed in as {escape(user)}" if user else "Guest",
            flashes=f'<div id="flashes">{notes}</div>' if notes else "",
            items="".join(f"<li>{escape(item)}</li>" for item in cart),
            account=LOGOUT if user else LOGIN,
        )

    @app.post("/cart/add")
    async def add_to_cart(request: Request, session: CartSession) -> Response:
        item = (await _form(request)).get("item", "")[:100]
        if item:
            cart = await session.get("cart") or []
            await session.set("cart", [*cart, item])
            await session.flash(f"Added {item}")
        return _home()

    @app.post("/login")
    async def login(request: Request, session: CartSession) -> Response:
        user = (await _form(request)).get("user", "")[:100]
        if user:
            # A new ID on every privilege change defeats session fixation; the cart is kept.
            await session.login(user)
            await session.flash(f"Welcome, {user}")
        return _home()

    @app.post("/logout")
    async def logout(session: CartSession) -> Response:
        await session.destroy()
        return _home()

    return app
