"""The Django cart example through Django's test client, and the engine and cache backend
against Django's expectations of them."""

from __future__ import annotations

import os

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_cart.settings")
django.setup()

from django.contrib.sessions.backends.base import SessionBase, UpdateError  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.test import Client  # noqa: E402

from sessions.django.engine import SessionStore  # noqa: E402


def test_the_django_cart_through_the_test_client() -> None:
    client = Client(enforce_csrf_checks=False)
    assert client.get("/cart").json()["cart"] == []
    client.post("/cart/apple")
    client.post("/cart/pear")
    before = client.cookies["sessionid"].value
    client.post("/login/alice")
    assert client.cookies["sessionid"].value != before
    page = client.get("/cart").json()
    assert page["cart"] == ["apple", "pear"]
    assert page["user"] == "alice"
    client.post("/logout")
    assert client.get("/cart").json()["cart"] == []
    assert SessionStore().exists(before) is False


def test_the_engine_creates_loads_saves_and_deletes() -> None:
    session = SessionStore()
    session["n"] = 1
    session.save()
    key = session.session_key
    assert key is not None
    assert session.exists(key)
    loaded = SessionStore(key)
    assert loaded["n"] == 1
    loaded.set_expiry(60)
    loaded.save()
    assert SessionStore(key).get_expiry_age() == 60
    loaded.delete()
    assert not session.exists(key)
    assert SessionStore(key).load() == {}  # an unknown key is not adopted


def test_a_session_deleted_meanwhile_is_not_written_back() -> None:
    session = SessionStore()
    session["user"] = "alice"
    session.create()
    slow = SessionStore(session.session_key)
    slow["cart"] = ["late"]
    session.delete()
    with pytest.raises(UpdateError):
        slow.save()
    assert isinstance(slow, SessionBase)


def test_the_cache_backend_keeps_django_cache_semantics() -> None:
    cache.clear()
    assert cache.add("k", "v") is True
    assert cache.add("k", "other") is False
    assert cache.get("k") == "v"
    cache.set("none", None)
    assert cache.get("none", "default") is None  # None is a value
    assert cache.get("missing", "default") == "default"
    cache.set("gone", 1, timeout=0)
    assert not cache.has_key("gone")
    cache.set_many({"a": 1, "b/c:d": 2})
    assert cache.get_many(["a", "b/c:d", "x"]) == {"a": 1, "b/c:d": 2}
    assert cache.incr("a", 5) == 6
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")
    assert cache.touch("a", 30)
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    cache.set("v", 1, version=2)
    assert cache.get("v") is None
    assert cache.get("v", version=2) == 1
    cache.delete_many(["b/c:d"])
    assert not cache.has_key("b/c:d")
    cache.clear()
    assert not cache.has_key("k")
