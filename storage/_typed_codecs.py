"""The built-in codecs of typed views, one per model kind, and their JSON helpers.

Every codec writes plain JSON text. pydantic models and msgspec Structs go through their own
library's JSON encoder and validating decoder (the fast path each library offers).
Dataclasses, attrs classes and TypedDicts are written by orjson from their fields, so their
stored form is the same whichever libraries are installed; they are read back by pydantic's
``TypeAdapter`` in strict mode when pydantic is installed and builds a schema for the type,
otherwise (and for attrs classes always) by the built-in validator in `_typed_fields`.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Generic, TypeVar, cast

import orjson

from ._typed_fields import ModelKind, build_converter, model_kind
from ._typed_values import Convert
from .errors import SerializationError

__all__ = [
    "MsgspecCodec",
    "PydanticCodec",
    "RecordCodec",
    "codec_for",
    "describe",
    "dump_json",
    "json_default",
]

M = TypeVar("M")

_KINDS = "a dataclass, pydantic model, msgspec Struct, attrs class or TypedDict"


def codec_for(
    model: type[M], *, use_pydantic: bool = True
) -> PydanticCodec[M] | MsgspecCodec[M] | RecordCodec[M]:
    """The built-in codec for ``model``, chosen by its kind; `SerializationError` if none fits.

    ``use_pydantic=False`` reads dataclasses and TypedDicts with the built-in validator even
    when pydantic is installed.
    """
    kind = model_kind(model)
    if kind == "pydantic":
        return PydanticCodec(model)
    if kind == "msgspec":
        return MsgspecCodec(model)
    if kind is None:
        name = getattr(model, "__qualname__", repr(model))
        raise SerializationError(f"{name} is not {_KINDS}: pass codec= to store it in a view")
    return RecordCodec(model, kind, use_pydantic=use_pydantic)


def describe(exc: BaseException) -> str:
    """A one-line account of why a value did not encode or validate."""
    errors = getattr(exc, "errors", None)
    if callable(errors) and type(exc).__module__.startswith("pydantic"):
        try:
            return "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
                for error in errors()
            )
        except Exception:  # an errors() of another shape: fall back to the text
            pass
    return " ".join(str(exc).split()) or type(exc).__name__


def dump_json(value: Any) -> bytes:
    """``value`` as JSON text, as the built-in codecs write model fields (enum, int and UUID
    dict keys as text; the rest as `json_default` says)."""
    return orjson.dumps(value, default=json_default, option=orjson.OPT_NON_STR_KEYS)


def json_default(value: Any) -> Any:
    """What orjson cannot write itself, as JSON values: sets as (sorted) arrays, Decimals as
    text, attrs classes, pydantic models and msgspec Structs inside other models as objects."""
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)  # the same set gives the same bytes (and etag) every time
        except TypeError:
            return list(value)
    if isinstance(value, Decimal):
        return str(value)
    kind = model_kind(type(value))
    if kind == "attrs":
        import attrs

        return attrs.asdict(value, recurse=True)
    if kind == "pydantic":
        return value.model_dump(mode="json")
    if kind == "msgspec":
        import msgspec

        return msgspec.to_builtins(value)
    raise TypeError(f"{type(value).__qualname__} is not a JSON type")


def _not_a(model: type[Any], value: Any) -> TypeError:
    return TypeError(f"expected a {model.__qualname__}, got {type(value).__qualname__}")


class PydanticCodec(Generic[M]):
    """A pydantic v2 model through ``model_dump_json`` / ``model_validate_json``; validation
    follows the model's own config (lax unless the model says ``strict=True``)."""

    __slots__ = ("_model", "_validate")

    def __init__(self, model: type[M]) -> None:
        self._model = model
        self._validate: Callable[[bytes], M] = cast(Any, model).model_validate_json

    def encode(self, value: M) -> bytes:
        """``value`` as JSON text; it must be an instance of the model."""
        if not isinstance(value, self._model):
            raise _not_a(self._model, value)
        text: str = cast(Any, value).model_dump_json()
        return text.encode()

    def decode(self, data: bytes) -> M:
        """The model validated from JSON ``data``."""
        return self._validate(data)


class MsgspecCodec(Generic[M]):
    """A msgspec Struct through msgspec's JSON encoder and its (strict) typed decoder."""

    __slots__ = ("_decode", "_encode", "_model")

    def __init__(self, model: type[M]) -> None:
        import msgspec

        self._model = model
        self._encode = msgspec.json.Encoder().encode
        self._decode: Callable[[bytes], M] = msgspec.json.Decoder(model).decode

    def encode(self, value: M) -> bytes:
        """``value`` as JSON text; it must be an instance of the Struct."""
        if not isinstance(value, self._model):
            raise _not_a(self._model, value)
        return self._encode(value)

    def decode(self, data: bytes) -> M:
        """The Struct validated from JSON ``data``."""
        return self._decode(data)


class RecordCodec(Generic[M]):
    """A dataclass, attrs class or TypedDict: written by orjson from its fields, read through a
    strict validator (pydantic's ``TypeAdapter`` when it can, else the built-in one).

    A TypedDict value is a plain dict that nothing has checked, so a write validates it too.
    """

    __slots__ = ("_adapter", "_convert", "_kind", "_model", "validator")

    def __init__(self, model: type[M], kind: ModelKind, *, use_pydantic: bool = True) -> None:
        self._model = model
        self._kind = kind
        self._adapter: Any = _adapter(model) if use_pydantic and kind != "attrs" else None
        #: Which validator reads stored values: ``"pydantic"`` or ``"built-in"``.
        self.validator = "built-in" if self._adapter is None else "pydantic"
        self._convert: Convert | None = None
        if self._adapter is None:
            try:
                self._convert = build_converter(model)
            except TypeError as exc:
                raise SerializationError(
                    f"cannot read {model.__qualname__} without pydantic: {exc}; install "
                    "pydantic (for dataclasses and TypedDicts) or pass codec="
                ) from exc

    def encode(self, value: M) -> bytes:
        """``value`` as a JSON object of its fields."""
        kind = self._kind
        if kind == "typeddict":
            if not isinstance(value, dict):
                raise _not_a(self._model, value)
            data = dump_json(value)
            self.decode(data)
            return data
        if not isinstance(value, self._model):
            raise _not_a(self._model, value)
        if kind == "attrs":
            import attrs

            return dump_json(attrs.asdict(cast(Any, value), recurse=True))
        return dump_json(value)

    def decode(self, data: bytes) -> M:
        """The instance validated from JSON ``data``."""
        convert = self._convert
        if convert is None:
            return cast(M, self._adapter.validate_json(data, strict=True))
        return cast(M, convert(orjson.loads(data)))


def _adapter(model: type[Any]) -> Any:
    """pydantic's TypeAdapter for ``model``, or None without pydantic or when it refuses the
    type (such as a ``typing.TypedDict`` before Python 3.12)."""
    try:
        from pydantic import PydanticUserError, TypeAdapter
    except ImportError:
        return None
    try:
        return TypeAdapter(model)
    except PydanticUserError:
        return None
