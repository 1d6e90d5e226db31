"""A mypy plugin that checks session keys and values against the app's TypedDict.

Enable it with ``plugins = ["sessions.mypy_plugin"]`` under ``[tool.mypy]``. Then, for a
``Session[CartData]``, ``await session.get("cart")`` has the type ``list[str] | None``, and
``set``/``delete`` with an unknown key or a value of the wrong type are errors. Keys that are
not string literals, and sessions not parametrized by a TypedDict, stay untyped (``Any``).
"""

from __future__ import annotations

from collections.abc import Callable

from mypy import errorcodes as codes
from mypy.messages import format_type
from mypy.plugin import MethodContext, Plugin
from mypy.subtypes import is_subtype
from mypy.types import (
    Instance,
    LiteralType,
    NoneType,
    ProperType,
    Type,
    TypedDictType,
    UnionType,
    get_proper_type,
)

__all__ = ["plugin"]

_SESSION = "sessions.session.Session"


def _shape(ctx: MethodContext) -> TypedDictType | None:
    owner = get_proper_type(ctx.type)
    if not isinstance(owner, Instance) or not owner.args:
        return None
    shape = get_proper_type(owner.args[0])
    return shape if isinstance(shape, TypedDictType) else None


def _literal_key(ctx: MethodContext) -> str | None:
    if not ctx.arg_types or not ctx.arg_types[0]:
        return None
    key: ProperType = get_proper_type(ctx.arg_types[0][0])
    if isinstance(key, Instance) and key.last_known_value is not None:
        key = key.last_known_value
    if isinstance(key, LiteralType) and isinstance(key.value, str):
        return key.value
    return None


def _item(ctx: MethodContext) -> tuple[TypedDictType, str, Type] | None:
    """The TypedDict, the literal key and its declared value type; reports unknown keys."""
    shape = _shape(ctx)
    key = _literal_key(ctx)
    if shape is None or key is None:
        return None
    if key not in shape.items:
        name = shape.fallback.type.name
        ctx.api.fail(
            f'"{key}" is not a key of the session data "{name}"',
            ctx.context,
            code=codes.TYPEDDICT_UNKNOWN_KEY,
        )
        return None
    return shape, key, shape.items[key]


def _awaiting(ctx: MethodContext, result: Type) -> Type:
    coroutine = get_proper_type(ctx.default_return_type)
    if isinstance(coroutine, Instance) and coroutine.args:
        return coroutine.copy_modified(args=[*coroutine.args[:-1], result])
    return ctx.default_return_type


def _get(ctx: MethodContext) -> Type:
    found = _item(ctx)
    if found is None:
        return ctx.default_return_type
    _, _, value = found
    has_default = len(ctx.arg_types) > 1 and bool(ctx.arg_types[1])
    fallback = ctx.arg_types[1][0] if has_default else NoneType()
    return _awaiting(ctx, UnionType.make_union([value, fallback]))


def _set(ctx: MethodContext) -> Type:
    found = _item(ctx)
    if found is not None and len(ctx.arg_types) > 1 and ctx.arg_types[1]:
        _, key, expected = found
        given = ctx.arg_types[1][0]
        if not is_subtype(given, expected):
            options = ctx.api.options
            ctx.api.fail(
                f'Session value for "{key}" has type {format_type(given, options)}, '
                f"expected {format_type(expected, options)}",
                ctx.context,
                code=codes.ARG_TYPE,
            )
    return ctx.default_return_type


def _key_only(ctx: MethodContext) -> Type:
    _item(ctx)
    return ctx.default_return_type


class SessionsPlugin(Plugin):
    """Types `Session.get`, `Session.set`, `Session.delete` and `Session.has` by key."""

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        return {
            f"{_SESSION}.get": _get,
            f"{_SESSION}.set": _set,
            f"{_SESSION}.delete": _key_only,
            f"{_SESSION}.has": _key_only,
        }.get(fullname)


def plugin(version: str) -> type[Plugin]:
    """The entry point mypy calls."""
    return SessionsPlugin
