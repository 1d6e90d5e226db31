"""A JSON cart: add items, log in (a new session ID), log out; a cached catalog."""

from __future__ import annotations

from typing import Any, TypedDict

from litestar import Litestar, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.stores.registry import StoreRegistry

from sessions import Session, Sessions
from sessions.litestar import SessionPlugin, UnistorageStore
from storage import Storage


class CartData(TypedDict, total=False):
    """The shape of this app's session data."""

    cart: list[str]


CartSession = NamedDependency[Session[CartData]]
CATALOG = ["apple", "pear", "plum"]


@get("/catalog", cache=60)
async def catalog() -> list[str]:
    """Served from Litestar's response cache, kept in the unistorage Storage."""
    return CATALOG


@get("/cart")
async def show(session: CartSession) -> dict[str, Any]:
    await session.ensure_loaded()
    return {
        "cart": await session.get("cart") or [],
        "user": session.user_id,
        "flashes": [flash.message for flash in await session.flashes()],
    }


@post("/cart/{item:str}")
async def add(session: CartSession, item: FromPath[str]) -> dict[str, int]:
    cart = await session.get("cart") or []
    await session.set("cart", [*cart, item[:100]])
    await session.flash(f"Added {item[:100]}")
    return {"count": len(cart) + 1}


@post("/login/{user:str}")
async def login(session: CartSession, user: FromPath[str]) -> None:
    await session.login(user[:100])


@post("/logout")
async def logout(session: CartSession) -> None:
    await session.destroy()


def create_app(storage: Storage, *, secure: bool = True) -> Litestar:
    """The cart over ``storage`` (sessions under ``session:``, Litestar's stores under
    ``litestar:``); ``secure=False`` only for plain-http local runs."""
    sessions: Sessions[CartData] = Sessions(storage, secure=secure)
    return Litestar(
        [catalog, show, add, login, logout],
        plugins=[SessionPlugin(sessions)],
        stores=StoreRegistry(default_factory=UnistorageStore(storage).with_namespace),
    )
