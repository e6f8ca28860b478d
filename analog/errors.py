"""Errors the analog package raises for inputs a user can fix (a model file, an array of
the wrong shape): programs built on `analog` report them as one-line messages, anything
else being a bug."""
from __future__ import annotations

__all__ = ["AnalogInputError", "MissingModelError", "SpecError"]


class AnalogInputError(ValueError):
    """A saved model or an input array that cannot be used (named in the message)."""


class MissingModelError(FileNotFoundError):
    """A folder holds no saved analog model (or only part of one)."""


class SpecError(AnalogInputError):
    """A block or training spec (analog.specs) with a field that cannot be used (named)."""
