"""Key material for `storage.layers.Encrypt`: parsing, key ids, the key ring, the environment.

Key bytes live only inside the cipher objects of a `KeyRing`; nothing here puts them in a
``repr``, a log line or an error message (errors say which key by position, never by value).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import InvalidArgumentError, UnsupportedError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_ID_SIZE",
    "KEY_SIZE",
    "Key",
    "KeyMaterial",
    "KeyRing",
    "generate_key",
    "key_id",
    "keys_from_env",
    "parse_key",
]

#: AES-256: 32 bytes of key material.
KEY_SIZE = 32
#: A key id is the first bytes of HMAC-SHA256(key, label): it names a key, it cannot reveal it.
KEY_ID_SIZE = 4
_KEY_ID_LABEL = b"unistorage encrypt key id v1"

#: A key as a caller gives it: 32 raw bytes, or URL-safe base64 text of 32 bytes.
KeyMaterial = bytes | bytearray | memoryview | str


def parse_key(material: KeyMaterial, position: int = 0) -> bytes:
    """The 32 key bytes of ``material``; `InvalidArgumentError` naming its position otherwise."""
    where = f"encryption key #{position + 1}"
    if isinstance(material, str):
        text = material.strip()
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgumentError(f"{where} is not URL-safe base64 text") from None
    elif isinstance(material, (bytes, bytearray, memoryview)):
        raw = bytes(material)
    else:
        raise InvalidArgumentError(
            f"{where} is bytes or base64 text, not {type(material).__name__}"
        )
    if len(raw) != KEY_SIZE:
        raise InvalidArgumentError(f"{where} holds {len(raw)} bytes; AES-256 needs {KEY_SIZE}")
    return raw


def key_id(raw: bytes) -> bytes:
    """The id an envelope stores to name the key ``raw`` (derived from it, never the key)."""
    return hmac.new(raw, _KEY_ID_LABEL, hashlib.sha256).digest()[:KEY_ID_SIZE]


def generate_key() -> str:
    """A new random key as URL-safe base64 text (no padding), for `Encrypt` or the environment."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_SIZE)).rstrip(b"=").decode()


def keys_from_env(
    name: str = "UNISTORAGE_KEYS", environ: Mapping[str, str] | None = None
) -> list[bytes]:
    """The keys in environment variable ``name``: comma-separated base64, newest first.

    ``environ`` defaults to `os.environ`. A missing or empty variable, or a bad key in it,
    raises `InvalidArgumentError` naming the variable (and the key's position), never a value.
    """
    text = (os.environ if environ is None else environ).get(name, "")
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise InvalidArgumentError(f"environment variable {name} holds no encryption keys")
    try:
        return [parse_key(part, position) for position, part in enumerate(parts)]
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{exc} (in environment variable {name})") from None


class Key:
    """One key: its id and its cipher. The key bytes stay inside the cipher object."""

    __slots__ = ("cipher", "id")

    def __init__(self, raw: bytes, cipher: AESGCM) -> None:
        self.id = key_id(raw)
        self.cipher = cipher

    def __repr__(self) -> str:
        return f"<Key id={self.id.hex()}>"


class KeyRing:
    """The keys of one `Encrypt` layer: the newest writes, any of them reads (found by id)."""

    __slots__ = ("by_id", "invalid_tag", "keys", "newest")

    def __init__(self, materials: Sequence[KeyMaterial]) -> None:
        try:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            raise UnsupportedError(
                "the Encrypt layer needs the cryptography package: "
                "pip install 'unistorage[encrypt]'"
            ) from exc
        if isinstance(materials, (str, bytes, bytearray, memoryview)) or not materials:
            raise InvalidArgumentError("keys are a non-empty list, newest first")
        self.keys: list[Key] = []
        self.by_id: dict[bytes, Key] = {}
        for position, material in enumerate(materials):
            raw = parse_key(material, position)
            key = Key(raw, AESGCM(raw))
            if key.id in self.by_id:
                raise InvalidArgumentError(
                    f"encryption key #{position + 1} repeats a key (or shares its id "
                    f"{key.id.hex()}); give each key once"
                )
            self.keys.append(key)
            self.by_id[key.id] = key
        self.newest = self.keys[0]
        #: What a cipher raises when a tag does not verify (tampered or wrong key).
        self.invalid_tag: type[Exception] = InvalidTag

    def __repr__(self) -> str:
        return f"<KeyRing ids=[{', '.join(key.id.hex() for key in self.keys)}]>"
