"""The errors the `mixsig` CLI reports as one line `error: ...` with exit code 2.

`UserError` is the base of the pipeline's own: each area subclasses it (ConfigError,
DataError, PipelineError with StageInputError, LivenessError and SignoffError,
TrackingStoreError, OptionError, SetupError, InputError). `analog` and `digital` know nothing of the pipeline, so
they define their own bases (`analog.errors.AnalogInputError`, `MissingModelError`;
`digital.errors.DigitalInputError`, `EncoderContractError`) and `user_error_types()`
gathers all of them. The pipeline's value-like errors also subclass ValueError, so code
catching ValueError around them keeps working. Any other exception reaching the CLI is a bug: its traceback is shown.
"""
from __future__ import annotations

import errno

__all__ = ["UserError", "OptionError", "SetupError", "InputError", "PipelineError", "StageInputError", "StoppedByEnvironment", "user_error_types", "environment_problem"]


class UserError(Exception):
    """A request the user can fix: bad config, missing input, unknown run, bad option."""


class PipelineError(UserError):
    """A pipeline request that cannot be carried out (printed by the CLI as `error: ...`)."""


class StageInputError(PipelineError):
    """A stage input is missing, unknown, in another experiment, or does not fit."""


class OptionError(UserError, ValueError):
    """A command-line option or environment variable value that cannot be used."""


class SetupError(UserError, ValueError):
    """A config valid on its own that cannot do what the command asks (no hardware
    section to program, an encoder that is not differentiable, a block too big)."""


class InputError(UserError, ValueError):
    """A stage's input (an array, a file) that does not fit what the stage needs."""


class StoppedByEnvironment(Exception):
    """The machine refused (disk full, read-only, no permission, a service that would not
    start): exit 1 with one line, the exception's text."""


_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


def user_error_types() -> tuple[type, ...]:
    """Every class the CLI prints as a one-line user error (imports analog and digital's
    small error modules on demand: only when an error is being reported)."""
    from analog.errors import AnalogInputError, MissingModelError
    from digital.errors import DigitalInputError, EncoderContractError
    return UserError, AnalogInputError, MissingModelError, DigitalInputError, EncoderContractError


def environment_problem(exc: BaseException) -> str | None:
    """One line for a refusal of the machine (a full disk, say, or a StoppedByEnvironment), else None."""
    seen = exc
    for _ in range(8):              # the OSError may be the cause of a library's wrapper
        if isinstance(seen, StoppedByEnvironment):
            return " ".join(str(seen).split())
        if isinstance(seen, OSError) and seen.errno in _ENVIRONMENT_ERRNOS:
            where = f" ({seen.filename})" if seen.filename else ""
            return f"{seen.strerror or errno.errorcode.get(seen.errno, seen.errno)}{where}"
        text = str(seen)
        if "database or disk is full" in text:
            return "database or disk is full (the tracking store's file system)"
        if "database is locked" in text:
            return ("the tracking store was locked by another process for longer than its busy timeout "
                    "(database is locked); close that process, then resume or rerun")
        seen = seen.__cause__ or seen.__context__
        if seen is None:
            break
    return None
