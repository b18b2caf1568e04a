"""Typed inputs: parameters annotated with attrs classes, dataclasses, enums, datetimes (or
lists/dicts/optionals of those) are structured from JSON-shaped inputs with cattrs, and
unstructured back to JSON for the log.

Why both ways: the log (and the journal's keys, which hash a call's arguments) must hold
plain JSON, the same whether the caller passed ``Spec(steps=3)`` from Python or
``{"steps": 3}`` from ``ag run --input``; the function gets a ``Spec`` either way.

Only parameters whose annotation involves such a class are touched: an unannotated or
``int``-annotated parameter behaves as before. Inside those classes, scalars are checked
strictly (``"3"`` is not an int; cattrs' default would call ``int("3")`` and ``int(3.7)``),
unknown fields are refused, and every error names the field's path::

    spec.steps: expected int, got 'x'
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import inspect
import typing
from collections.abc import Callable
from typing import Any

import attrs
from cattrs.errors import BaseValidationError, ForbiddenExtraKeysError
from cattrs.preconf.json import make_converter


class InputError(TypeError):
    """Inputs that do not fit the annotated parameters; the message names each bad field."""


_TIME_TYPES = (_dt.datetime, _dt.date, _dt.time, _dt.timedelta)


def _needs_structuring(tp: Any, seen: set[int] | None = None) -> bool:
    if tp is None or tp is Any or isinstance(tp, (str, typing.TypeVar)):
        return False
    if isinstance(tp, type):
        if attrs.has(tp) or dataclasses.is_dataclass(tp) or issubclass(tp, enum.Enum):
            return True
        return issubclass(tp, _TIME_TYPES)
    return any(_needs_structuring(a) for a in typing.get_args(tp) if a is not Ellipsis)


_converter = None


def converter():
    """The one converter (built on first use: cattrs is only imported when a typed input is)."""
    global _converter
    if _converter is None:
        c = make_converter(forbid_extra_keys=True)

        def strict(tp: type, ok: Callable[[Any], bool]):
            def hook(value: Any, _: Any) -> Any:
                if not ok(value):
                    raise _Expected(tp.__name__, value)
                return tp(value) if tp is float else value

            return hook

        c.register_structure_hook(int, strict(int, lambda v: isinstance(v, int) and not isinstance(v, bool)))
        c.register_structure_hook(bool, strict(bool, lambda v: isinstance(v, bool)))
        c.register_structure_hook(str, strict(str, lambda v: isinstance(v, str)))
        c.register_structure_hook(
            float, strict(float, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)))
        _converter = c
    return _converter


class _Expected(TypeError):
    def __init__(self, type_name: str, value: Any) -> None:
        super().__init__(f"expected {type_name}, got {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _describe(exc: BaseException, path: str, tp: Any) -> list[str]:
    """One line per leaf error of a cattrs detailed-validation error, each with its path."""
    if isinstance(exc, ForbiddenExtraKeysError):
        extra = ", ".join(sorted(map(repr, exc.extra_fields)))
        return [f"{path}: unknown field{'s' if len(exc.extra_fields) > 1 else ''} {extra}"]
    if isinstance(exc, BaseValidationError):
        lines = []
        for sub in exc.exceptions:
            sub_path, sub_tp = path, tp
            for note in getattr(sub, "__notes__", ()):
                name = getattr(note, "name", None)
                index = getattr(note, "index", None)
                if name is not None:
                    sub_path, sub_tp = f"{path}.{name}", getattr(note, "type", None)
                elif index is not None:
                    sub_path, sub_tp = f"{path}[{index!r}]", getattr(note, "type", None)
            lines += _describe(sub, sub_path, sub_tp)
        return lines
    if isinstance(exc, _Expected):
        return [f"{path}: {exc}"]
    if isinstance(exc, KeyError):
        return [f"{path}: required field missing"]
    message = str(exc) or type(exc).__name__
    return [f"{path}: expected {_type_name(tp)}: {message}"]


def _resolve(fn: Callable[..., Any], annotation: Any) -> Any:
    """One parameter's annotation as a type (a string one, from ``from __future__ import
    annotations``, evaluated where the function was defined). One that does not resolve (a
    name imported only for type checkers) leaves that parameter as it was, not the others."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, getattr(fn, "__globals__", {}))  # noqa: S307 - the user's own annotation
    except Exception:
        return None


@attrs.frozen
class TypedParams:
    """The parameters of one function that are structured, with their types."""

    types: dict[str, Any]

    @classmethod
    def of(cls, fn: Callable[..., Any], signature: inspect.Signature) -> TypedParams | None:
        types = {}
        for name, param in signature.parameters.items():
            if name == "context" or param.annotation is inspect.Parameter.empty:
                continue
            tp = _resolve(fn, param.annotation)
            if _needs_structuring(tp):
                types[name] = tp
        return cls(types) if types else None

    def prepare(self, inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(JSON-shaped inputs for the log, inputs structured for the function). Raises
        ``InputError`` naming every field that does not fit."""
        c = converter()
        plain = dict(inputs)
        typed = dict(inputs)
        errors: list[str] = []
        for name, tp in self.types.items():
            if name not in inputs:
                continue
            try:
                # An object from Python becomes its JSON shape first; then the log gets the
                # structured value's own JSON (defaults filled in): one form for both callers.
                typed[name] = value = c.structure(c.unstructure(inputs[name]), tp)
                plain[name] = c.unstructure(value, unstructure_as=tp)
            except Exception as exc:
                errors += _describe(exc, name, tp)
        if errors:
            raise InputError("; ".join(errors))
        return plain, typed


__all__ = ["InputError", "TypedParams", "converter"]
