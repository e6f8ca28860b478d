"""The pieces every config section is made of: a field with its doc, the strict section
base, YAML-1.1-safe numbers, printable names and the `low < high` check."""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator


def _yaml_number(value):
    """YAML 1.1 reads 1e-7 (no dot) as a string; such a string is the number it spells."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


Num = Annotated[float, BeforeValidator(_yaml_number)]


def _number_or_derived(value):
    """A number > 0, or the word derived (the figure computed from the circuit)."""
    value = _yaml_number(value)
    if value == "derived":
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    raise ValueError(f"{value!r} is not allowed; allowed: a number > 0 or derived")


_number_or_derived.allowed = "> 0 or `derived`"      # docs/config.md's "allowed" column
NumOrDerived = Annotated[Union[float, str], PlainValidator(
    _number_or_derived, json_schema_input_type=Union[Annotated[float, Field(gt=0)], Literal["derived"]])]
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"     # names reach MLflow, file names and terminals: no NUL, no newline
PosInt = Annotated[int, Field(ge=1)]

def F(default=..., doc: str = "", **constraints) -> Any:
    """A field: default (``...`` = required), one-line doc, pydantic constraints."""
    if isinstance(default, (list, dict)):
        return Field(default_factory=lambda d=default: type(d)(d), description=doc, **constraints)
    return Field(default, description=doc, **constraints)


class Section(BaseModel):
    """Base of every section: strict types, no unknown keys, finite numbers, immutable once
    validated (a changed config is a new one: `model_copy(update=...)` or overrides applied
    to the raw mapping before validation)."""
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_default=True, frozen=True)


def _ordered(model: Section, where: str, low: str, high: str) -> Section:
    """The cross-key check `low < high`, naming both keys and values."""
    a, b = getattr(model, low), getattr(model, high)
    if not a < b:
        raise ValueError(f"{where}.{low}={a!r} and {where}.{high}={b!r}: must satisfy {low} < {high}")
    return model


def section(model: type[Section], doc: str) -> Any:
    return Field(default_factory=model, description=doc)
