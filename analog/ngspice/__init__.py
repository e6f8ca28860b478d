"""ngspice as the reference engine: `binding` (libngspice through PySpice), `pool` (worker
processes), `options` (the `.options` and why), `engine` (NgspiceEngine, benchmark_ngspice).

Names are imported lazily, so `analog.netlist` can read `analog.ngspice.options` without
pulling in the engine (which itself imports `analog.netlist`).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "NgspiceEngine": "engine", "benchmark_ngspice": "engine",
    "NgspiceError": "binding", "ngspice_version": "binding",
    "MainGuardError": "pool", "WorkerExitError": "pool",
    "DEFAULT_OPTIONS": "options", "TUNING": "options", "check_options": "options",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
