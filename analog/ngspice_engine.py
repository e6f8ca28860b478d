"""Compatibility module: the ngspice engine now lives in the package `analog.ngspice`
(binding, pool, options, engine). Every name imported from here before keeps working."""
from .ngspice.binding import Ngspice as _Ngspice, NgspiceError, ngspice_version  # noqa: F401
from .ngspice.engine import NgspiceEngine, benchmark_ngspice  # noqa: F401
from .ngspice.options import DEFAULT_OPTIONS, TUNING  # noqa: F401
from .ngspice.pool import MainGuardError, Worker as _Worker, WorkerExitError, context as _context  # noqa: F401

__all__ = ["NgspiceEngine", "NgspiceError", "benchmark_ngspice", "ngspice_version", "MainGuardError",
           "WorkerExitError", "DEFAULT_OPTIONS", "TUNING"]
