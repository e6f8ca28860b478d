"""pydantic's ValidationError as one line: the dotted key, the value, what is allowed."""
from __future__ import annotations

import difflib
import types
import typing

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ValidationError

from pipeline.errors import UserError

__all__ = ["ConfigError", "from_validation_error", "dotted"]


class ConfigError(UserError):
    """A config file is missing or holds a value the schema does not allow."""


def _short(value, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters: an error line stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 5]}...{text[-2:]}"


def dotted(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "config"


def _unwrap(annotation):
    """What Optional[X], list[X] or Annotated[X, ...] holds: X (anything else: itself)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, typing.Annotated):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 or origin is not typing.Union else annotation
    return annotation


def _locate(model: type[BaseModel], loc):
    """(FieldInfo or None, the model holding the key) for an error location."""
    info, holder, ann = None, model, model
    for part in loc:
        if isinstance(part, int):
            ann, info = _unwrap(ann), None
            continue
        model_cls = _unwrap(ann) if not (isinstance(ann, type) and issubclass(ann, BaseModel)) else ann
        if not (isinstance(model_cls, type) and issubclass(model_cls, BaseModel)):
            return None, holder
        holder = model_cls
        info = next((f for n, f in model_cls.model_fields.items() if (f.alias or n) == part), None)
        if info is None:
            return None, holder
        ann = info.annotation
    return info, holder


def _keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _type_name(ann) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return "mapping"
    if args and type(None) in args:
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " or null"
    if origin is typing.Union:
        return " or ".join(_type_name(a) for a in args)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "a mapping of keys"
    return {float: "number", int: "int", str: "str", bool: "bool"}.get(ann, getattr(ann, "__name__", str(ann)))


_OPS = ((Gt, "gt", ">"), (Ge, "ge", ">="), (Lt, "lt", "<"), (Le, "le", "<="))


def range_text(metadata) -> str:
    """'> 0 and < 0.5' from a field's annotated-types constraints ('' when unbounded)."""
    parts = []
    for kind, attr, op in _OPS:
        for m in metadata:
            if isinstance(m, kind):
                parts.append(f"{op} {getattr(m, attr):g}")
            elif hasattr(m, "metadata"):  # a FieldInfo inside Annotated[...]
                parts += [f"{op} {getattr(x, attr):g}" for x in m.metadata if isinstance(x, kind)]
    return " and ".join(parts)


def _message(err: dict, root: type[BaseModel]) -> str:
    loc, kind, value = tuple(err["loc"]), err["type"], err.get("input")
    key = dotted(loc)
    info, holder = _locate(root, loc)
    if kind == "extra_forbidden":
        allowed = _keys(holder)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        parent = dotted(loc[:-1]) + "." if len(loc) > 1 else ""
        hint = f" (did you mean '{parent}{close[0]}'?)" if close else ""
        return f"{key}: unknown key{hint}; allowed keys here: {', '.join(allowed)}"
    if kind == "missing":
        doc = f" ({info.description})" if info is not None and info.description else ""
        return f"{key}: required key is missing{doc}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        if value is None:
            return f"{key}: null is not allowed; expected a mapping of keys (leave the section out for its defaults)"
        return f"{key}: expected a mapping of keys, got {type(value).__name__} {_short(value)}"
    expected = _type_name(info.annotation) if info is not None and not isinstance(loc[-1], int) else None
    if value is None and kind.endswith("_type"):
        return f"{key}: null is not allowed; expected {expected or kind.removesuffix('_type')}"
    if kind == "literal_error":
        return f"{key}: {_short(value)} is not allowed; choose {expected or err['ctx']['expected']}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        allowed = range_text(info.metadata if info is not None else []) or range_text(
            [k(**{a: v}) for k, a, _ in _OPS for c, v in err.get("ctx", {}).items() if c == a])
        return f"{key}: {_short(value)} is out of range; allowed: {allowed}"
    if kind == "finite_number":
        return f"{key}: {_short(value)} must be finite"
    if kind == "string_pattern_mismatch":
        return f"{key}: {_short(value)} holds a control character (NUL, newline, tab, ...); use printable text"
    if kind == "string_too_long":
        return f"{key}: {_short(value)} is longer than {err.get('ctx', {}).get('max_length')} characters"
    if kind == "string_too_short":
        return f"{key}: {_short(value)} is too short; expected a non-empty string"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        what = expected or {"int_type": "int", "float_type": "number", "string_type": "str",
                            "bool_type": "bool", "list_type": "list"}.get(kind, kind)
        return f"{key}: {_short(value)} has type {type(value).__name__}; expected {what}"
    text = _short_text(str(err.get("ctx", {}).get("error", err["msg"])))
    return text if not loc or text.startswith(key) else f"{key}: {text}"  # cross-key checks name their keys


def _short_text(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def from_validation_error(exc: ValidationError, root: type[BaseModel]) -> ConfigError:
    """The first problem as a one-line ConfigError (and how many more there are)."""
    errors = exc.errors(include_url=False)
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    return ConfigError(_message(errors[0], root) + more)
