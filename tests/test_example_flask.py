"""The Flask cart example through Flask's test client: sessions in a unistorage driver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from examples.flask_cart import create_app
from storage.sync import SyncStorage, create_storage


@pytest.fixture
def store() -> Iterator[SyncStorage]:
    with create_storage("memory://") as storage:
        yield storage


def test_the_flask_cart_through_the_test_client(store: SyncStorage) -> None:
    client = create_app(store).test_client()
    assert client.get("/cart").json == {"cart": [], "user": None, "flashes": []}
    assert client.get_cookie("session") is None
    client.post("/cart/apple")
    client.post("/cart/pear")
    guest = client.get_cookie("session")
    assert guest is not None
    assert guest.http_only
    assert client.get("/cart").json == {
        "cart": ["apple", "pear"],
        "user": None,
        "flashes": ["Added apple", "Added pear"],
    }
    client.post("/login/alice")
    after = client.get_cookie("session")
    assert after is not None
    assert after.value != guest.value
    assert client.get("/cart").json == {"cart": ["apple", "pear"], "user": "alice", "flashes": []}
    assert len(store.keys()) == 1  # the guest entry is gone
    client.post("/logout")
    assert client.get_cookie("session") is None
    assert store.keys() == []


def test_an_unknown_id_is_never_adopted(store: SyncStorage) -> None:
    client = create_app(store).test_client()
    client.set_cookie("session", "x" * 43)
    client.post("/cart/apple")
    cookie = client.get_cookie("session")
    assert cookie is not None
    assert cookie.value != "x" * 43
