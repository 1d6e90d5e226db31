"""A JSON cart on Flask: add items, log in (a new session ID), log out; flash messages."""

from __future__ import annotations

import os

from flask import Flask, flash, get_flashed_messages, jsonify, session
from flask.typing import ResponseReturnValue

from sessions.flask import ServerSession, UnistorageSessionInterface
from storage.sync import SyncStorage, create_storage


def create_app(storage: SyncStorage | None = None) -> Flask:
    """The cart over ``storage`` (by default the driver URL in ``CART_STORE``, else memory)."""
    app = Flask(__name__)
    app.session_interface = UnistorageSessionInterface(
        storage or create_storage(os.environ.get("CART_STORE", "memory://"))
    )

    @app.get("/cart")
    def show() -> ResponseReturnValue:
        return jsonify(
            cart=session.get("cart", []), user=session.get("user"), flashes=get_flashed_messages()
        )

    @app.post("/cart/<item>")
    def add(item: str) -> ResponseReturnValue:
        session["cart"] = [*session.get("cart", []), item[:100]]
        flash(f"Added {item[:100]}")
        return jsonify(count=len(session["cart"]))

    @app.post("/login/<user>")
    def login(user: str) -> ResponseReturnValue:
        assert isinstance(session, ServerSession)
        session.regenerate()  # a new ID at login defeats session fixation; the cart is kept
        session["user"] = user[:100]
        return jsonify(user=user)

    @app.post("/logout")
    def logout() -> ResponseReturnValue:
        session.clear()
        return jsonify()

    return app
