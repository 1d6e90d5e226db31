"""Hand-made file names in an fs store never break a listing (issue 10, defect 7, fs part).

A name that is not UTF-8, or that decodes to a key no API accepts (``.``, ``..``, a newline or
another control character, a separator), is skipped and logged once; every listed key reads
back. Keys that need escaping still round-trip.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest

from drivers.fs import FsDriver
from storage import create_storage
from storage.server import StorageServer

FOREIGN = [
    b"bad\xff",  # not UTF-8
    b"%2E.",  # decodes to ".."
    b"%2E",  # decodes to "."
    b"line\nbreak",
    b"tab\tname",
    b"esc%0Aaped",  # decodes to a newline
    b"del\x7f",
    b"back\\slash",  # "\" is a separator in keys
    b"c1\xc2\x85",  # U+0085, a C1 control
]


def _plant(base: Path, name: bytes, data: bytes = b"x") -> None:
    fd = os.open(os.fsencode(base) + b"/" + name, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


async def _planted(fs: FsDriver) -> list[str]:
    for i in range(3):
        await fs.set_item(f"k{i}", b'"v"')
        await fs.set_item(f"dir:k{i}", b'"v"')
    base = Path(fs.base)
    for name in FOREIGN:
        _plant(base, name)
        _plant(base / "dir", name)
    os.mkdir(os.fsencode(base) + b"/dir\xfe")
    _plant(base, b"dir\xfe/inner")
    return sorted([f"k{i}" for i in range(3)] + [f"dir:k{i}" for i in range(3)])


async def test_foreign_names_are_skipped_and_listed_keys_read_back(
    fs: FsDriver, caplog: pytest.LogCaptureFixture
) -> None:
    expected = await _planted(fs)
    with caplog.at_level(logging.WARNING, logger="drivers.fs"):
        keys = await fs.get_keys()
    assert sorted(keys) == expected
    assert sorted([key async for key in fs.iter_keys()]) == expected
    assert sorted(await fs.get_keys("dir:")) == [key for key in expected if key[:4] == "dir:"]
    for key in keys:
        assert await fs.get_item(key) == b'"v"', key
    assert any("not the file name of a key" in record.message for record in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="drivers.fs"):
        await fs.get_keys()
    assert not caplog.records  # each name is logged once


async def test_every_key_storage_lists_is_valid_and_readable(fs: FsDriver) -> None:
    expected = await _planted(fs)
    storage = create_storage(fs)
    keys = await storage.get_keys()
    assert sorted(keys) == expected
    for key in keys:
        assert await storage.has_item(key), key
    await storage.clear()  # leaves the foreign files, raises nothing
    assert await storage.get_keys() == []


async def test_an_http_listing_is_whole_json_despite_foreign_names(fs: FsDriver) -> None:
    expected = await _planted(fs)
    app = StorageServer(create_storage(fs))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://store") as client:
        listed = await client.get("/")
    assert listed.status_code == 200
    assert sorted(key.replace("/", ":") for key in listed.json()) == expected


async def test_keys_that_need_escaping_round_trip(fs: FsDriver) -> None:
    keys = ["percent%2E.", "trailing.", ".lead", "ends with space ", "q?*<>|"]
    for number, key in enumerate(keys):
        await fs.set_item(key, str(number).encode())
    assert sorted(await fs.get_keys()) == sorted(keys)
    for number, key in enumerate(keys):
        assert await fs.get_item(key) == str(number).encode()
