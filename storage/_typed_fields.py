"""The built-in validator of typed views: one converter per model, from its field types.

It serves attrs classes always, and dataclasses and TypedDicts when pydantic is not installed
(or cannot build a schema for the type). Values are checked strictly (see `_typed_values`);
keys a model does not declare are ignored; constraints in ``Annotated`` metadata are not
checked. A field type it does not know is refused when the converter is built, not when data
is read.
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import enum
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

from ._typed_values import (
    SIMPLE,
    Convert,
    Invalid,
    enum_of,
    items_of,
    json_kind,
    literal_of,
    mapping_of,
    none,
    tuple_of,
    union_of,
)

__all__ = ["ModelKind", "build_converter", "model_kind"]

ModelKind = Literal["pydantic", "msgspec", "attrs", "dataclass", "typeddict"]
_WRAPPER_NAMES = ("Required", "NotRequired", "ReadOnly")


def model_kind(model: object) -> ModelKind | None:
    """Which library's model ``model`` is, found without importing a library not yet loaded."""
    if not isinstance(model, type):
        return None
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(model, pydantic.BaseModel):
        return "pydantic"
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(model, msgspec.Struct):
        return "msgspec"
    if getattr(model, "__attrs_attrs__", None) is not None:
        return "attrs"
    if dataclasses.is_dataclass(model):
        return "dataclass"
    extensions = sys.modules.get("typing_extensions")
    if typing.is_typeddict(model) or (extensions is not None and extensions.is_typeddict(model)):
        return "typeddict"
    return None


def build_converter(model: type[Any]) -> Convert:
    """The converter for a dataclass, attrs class or TypedDict ``model``.

    Raises `TypeError` naming the field when a field type is one the validator does not know.
    """
    return _Builder().build(model, model.__qualname__)


#: A record's field: the key in the JSON object, the constructor argument, its converter and
#: whether it must be present.
_Field = tuple[str, str, Convert, bool]


def _record(model: type[Any], fields: list[_Field], as_dict: bool) -> Convert:
    def convert(value: Any) -> Any:
        if type(value) is not dict:
            raise Invalid(f"expected an object, got {json_kind(value)}")
        arguments = {}
        for key, argument, item, required in fields:
            if key in value:
                try:
                    arguments[argument] = item(value[key])
                except Invalid as exc:
                    raise exc.under(key) from None
            elif required:
                raise Invalid("a required field is missing", (key,))
        if as_dict:
            return arguments
        try:
            return model(**arguments)
        except Exception as exc:  # a __post_init__ or attrs validator refusing the values
            raise Invalid(f"{model.__qualname__} refused the values: {exc}") from exc

    return convert


def _foreign(model: type[Any], kind: ModelKind) -> Convert:
    """A pydantic model or msgspec Struct inside a record: its own library validates it."""
    if kind == "pydantic":
        validate: Callable[[Any], Any] = model.model_validate
    else:
        import msgspec

        def validate(value: Any) -> Any:
            return msgspec.convert(value, model)

    def convert(value: Any) -> Any:
        try:
            return validate(value)
        except Exception as exc:
            raise Invalid(" ".join(str(exc).split())) from exc

    return convert


class _Builder:
    """Builds converters for one model, each record once (so recursive models work)."""

    def __init__(self) -> None:
        self._records: dict[type[Any], Convert] = {}

    def build(self, hint: Any, where: str) -> Convert:
        simple = SIMPLE.get(hint) if _hashable(hint) else None
        if simple is not None:
            return simple
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is typing.Annotated or _wrapper(origin) is not None:
            return self.build(args[0], where)
        if hint is None or hint is type(None):
            return none
        if isinstance(hint, typing.NewType):
            return self.build(hint.__supertype__, where)
        if origin is Literal:
            return literal_of(args)
        if origin is typing.Union or origin is types.UnionType:
            members = [self.build(arg, where) for arg in args]
            return union_of(members, " or ".join(_name(arg) for arg in args))
        if origin is not None:
            return self._generic(origin, args, where)
        if isinstance(hint, type):
            return self._class(hint, where)
        raise TypeError(f"{where} has type {hint!r}, which the built-in validator does not know")

    def _generic(self, origin: Any, args: tuple[Any, ...], where: str) -> Convert:
        if origin in (list, abc.Sequence, abc.MutableSequence, abc.Collection, abc.Iterable):
            return items_of(self.build(args[0], where), list)
        if origin in (set, abc.Set, abc.MutableSet):
            return items_of(self.build(args[0], where), set)
        if origin is frozenset:
            return items_of(self.build(args[0], where), frozenset)
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return items_of(self.build(args[0], where), tuple)
            return tuple_of([self.build(arg, where) for arg in args if arg != ()])
        if origin in (dict, abc.Mapping, abc.MutableMapping):
            key = self.build(args[0], where)
            if not _text_key(args[0]):
                raise TypeError(f"{where} has a mapping with {args[0]!r} keys: JSON keys are text")
            return mapping_of(key, self.build(args[1], where))
        raise TypeError(f"{where} has type {origin!r}, which the built-in validator does not know")

    def _class(self, model: type[Any], where: str) -> Convert:
        bare: dict[type[Any], Any] = {
            list: list[Any],
            set: set[Any],
            frozenset: frozenset[Any],
            tuple: tuple[Any, ...],
        }
        if model in bare:
            return self.build(bare[model], where)
        if model is dict:
            return self.build(dict[str, Any], where)
        if issubclass(model, enum.Enum):
            return enum_of(model)
        kind = model_kind(model)
        if kind == "pydantic" or kind == "msgspec":
            return _foreign(model, kind)
        if kind is None:
            raise TypeError(
                f"{where} has type {model.__qualname__}, which the built-in validator does not know"
            )
        known = self._records.get(model)
        if known is not None:
            return known
        fields: list[_Field] = []
        convert = _record(model, fields, as_dict=kind == "typeddict")
        self._records[model] = convert  # before the fields, which may name the model again
        fields.extend(self._fields(model, kind))
        return convert

    def _fields(self, model: type[Any], kind: ModelKind) -> list[_Field]:
        name = model.__qualname__
        try:
            hints = typing.get_type_hints(model, include_extras=True)
        except Exception as exc:  # a forward reference that names nothing
            raise TypeError(f"cannot resolve the field types of {name}: {exc}") from exc
        if kind == "typeddict":
            required: frozenset[str] = model.__required_keys__
            return [
                (key, key, self.build(hint, f"{name}.{key}"), _required(hint, key in required))
                for key, hint in hints.items()
            ]
        if kind == "dataclass":
            return [
                (f.name, f.name, self.build(hints.get(f.name, Any), f"{name}.{f.name}"), _needed(f))
                for f in dataclasses.fields(model)
                if f.init
            ]
        import attrs

        return [
            (
                a.name,
                a.alias or a.name,
                self.build(hints.get(a.name, a.type or Any), f"{name}.{a.name}"),
                a.default is attrs.NOTHING,
            )
            for a in attrs.fields(model)
            if a.init
        ]


def _wrapper(origin: Any) -> str | None:
    """ "Required", "NotRequired" or "ReadOnly" (from typing or typing_extensions), else None."""
    if origin is None:
        return None
    for module in (typing, sys.modules.get("typing_extensions")):
        for name in _WRAPPER_NAMES:
            if module is not None and origin is getattr(module, name, None):
                return name
    return None


def _required(hint: Any, default: bool) -> bool:
    """Whether a TypedDict key must be present, read from its resolved type: with postponed
    annotations, ``__required_keys__`` cannot see a ``NotRequired`` written as text."""
    while True:
        origin = typing.get_origin(hint)
        name = _wrapper(origin)
        if name == "Required" or name == "NotRequired":
            return name == "Required"
        if origin is not typing.Annotated and name is None:
            return default
        hint = typing.get_args(hint)[0]


def _needed(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _hashable(hint: Any) -> bool:
    try:
        hash(hint)
    except TypeError:
        return False
    return True


def _text_key(hint: Any) -> bool:
    if hint is str or hint is Any:
        return True
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return all(type(member.value) is str for member in hint)
    if typing.get_origin(hint) is Literal:
        return all(type(arg) is str for arg in typing.get_args(hint))
    return False


def _name(hint: Any) -> str:
    if hint is None or hint is type(None):
        return "null"
    return getattr(hint, "__qualname__", None) or repr(hint)
