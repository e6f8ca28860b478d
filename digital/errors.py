"""Errors the digital package raises for inputs a user can fix: programs built on
`digital` report them as one-line messages, anything else being a bug."""
from __future__ import annotations

__all__ = ["DigitalInputError", "EncoderContractError", "MissingEncoderError"]


class DigitalInputError(ValueError):
    """Images, labels, targets or encoder parameters that cannot be used."""


class EncoderContractError(Exception):
    """An object does not honour the encoder contract (or cannot be loaded as one)."""


class MissingEncoderError(EncoderContractError, FileNotFoundError):
    """A folder holds no saved encoder."""
