"""Key rules: normalization, bases, joining, depth."""

from __future__ import annotations

import pytest

from storage import InvalidKeyError, join_keys, normalize_base, normalize_key
from storage.keys import filter_depth, key_depth


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a", "a"),
        ("a:b", "a:b"),
        ("a/b", "a:b"),
        ("a\\b", "a:b"),
        ("/a//b/", "a:b"),
        (":::a:::b:::", "a:b"),
        ("a/:\\b", "a:b"),
        ("A B?c=1#x", "A B?c=1#x"),
        ("  spaced  ", "  spaced  "),
        ("Mixed:CASE", "Mixed:CASE"),
        ("...", "..."),
        ("a.b:..c", "a.b:..c"),
    ],
)
def test_normalize_key(raw: str, expected: str) -> None:
    assert normalize_key(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        ":",
        "/",
        "::/\\",
        "..",
        "a/../b",
        ".",
        "a:.:b",
        "x\x00",
        "\x1f",
        "a\x7f",
        "\x85b",
        "\x9f",
        "a\ud800",
        "\udfff:b",
    ],
)
def test_unsafe_or_empty_keys_raise(raw: str) -> None:
    with pytest.raises(InvalidKeyError) as info:
        normalize_key(raw)
    assert info.value.key == raw


def test_non_string_keys_raise() -> None:
    with pytest.raises(InvalidKeyError, match="int"):
        normalize_key(3)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", ""), (None, ""), (":", ""), ("a", "a:"), ("a:b:", "a:b:"), ("/a/b", "a:b:")],
)
def test_normalize_base(raw: str | None, expected: str) -> None:
    assert normalize_base(raw) == expected


def test_join_keys_skips_empty_parts() -> None:
    assert join_keys("a:", "", "b/c") == "a:b:c"


def test_depth_counts_separators_after_the_base() -> None:
    assert key_depth("a:b:c") == 2
    assert key_depth("a:b:c", "a:") == 1
    assert filter_depth(["a:x", "a:x:y", "a:x:y:z"], "a:", 1) == ["a:x", "a:x:y"]
    assert filter_depth(["a:x"], "a:", None) == ["a:x"]
