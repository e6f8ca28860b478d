"""Checks of encoder constructor parameters, by pydantic (the library that also checks the
experiment configs): each helper states a constraint as a type, pydantic decides, and a
failure is a one-line ValueError naming the parameter, the value and what is allowed.
No bool passes as a number, no 2.5 as an int, no NaN or infinity; numpy scalars are fine."""
from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

import numpy as np
from annotated_types import Ge, Gt, Le, Lt
from pydantic import ConfigDict, TypeAdapter, ValidationError

from .errors import DigitalInputError

__all__ = ["check_param", "check_int", "check_float", "check_int_tuple", "check_choice", "check_seed"]

_STRICT = ConfigDict(strict=True, allow_inf_nan=False)  # no bool as a number, no 2.5 as an int


@functools.lru_cache(maxsize=None)
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation, config=_STRICT)


def check_param(name: str, value: Any, annotation: Any, wants: str) -> Any:
    """``value`` validated against ``annotation`` (a hashable type), or ValueError."""
    plain = value.item() if isinstance(value, np.generic) else value  # numpy scalars as numbers
    try:
        return _adapter(annotation).validate_python(plain)
    except ValidationError:
        raise DigitalInputError(f"{name} must be {wants}, got {value!r}") from None


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    return check_param(name, value, Annotated[int, Ge(minimum)], f"an integer >= {minimum}")


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    bounds, text = [], []
    for bound, inclusive, (closed, open_) in ((low, low_inclusive, (Ge, Gt)), (high, high_inclusive, (Le, Lt))):
        if bound is not None:
            bounds.append((closed if inclusive else open_)(bound))
            text.append(f"{_OPS[type(bounds[-1])]} {bound}")
    wants = " and ".join(["a finite real number"] + text).replace("number and", "number")
    return float(check_param(name, value, Annotated[(float, *bounds)] if bounds else float, wants))


_OPS = {Ge: ">=", Gt: ">", Le: "<=", Lt: "<"}


def check_int_tuple(name: str, value: Any, *, allow_empty: bool = False) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise DigitalInputError(f"{name} must be a sequence of positive integers, got {value!r}")
    out = tuple(value)
    if not out and not allow_empty:
        raise DigitalInputError(f"{name} must not be empty")
    return check_param(name, out, tuple[Annotated[int, Ge(1)], ...], "a sequence of positive integers")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    return check_param(name, value, Literal[tuple(choices)], f"one of {tuple(choices)}")


def check_seed(value: Any) -> int | None:
    return check_param("seed", value, Annotated[int, Ge(0)] | None, "None or an integer >= 0")
