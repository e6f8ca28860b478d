"""One engine per (kind, options) for a block: the cache a model or a chip keeps.

Apart from `analog/engine.py` (the protocol every engine implements) because it knows the
concrete engines: the native, the wired native (a chip with wire resistance) and ngspice.
"""
from __future__ import annotations

from .circuit import CompiledCircuit
from .engine import Engine


def cached_engine(cache: dict, circuit: CompiledCircuit, kind: str, **options) -> Engine:
    """The engine `kind` ('native', 'ngspice', 'ngspice-rebuild') on `circuit` with these
    options, created once per (kind, options) and kept in `cache` (a model's or a chip's).
    The key is a canonical JSON dump, so options may be nested dicts."""
    import json
    key = (kind, json.dumps(options, sort_keys=True, default=repr))
    if key not in cache:
        if kind == "native" and any(g is not None for g in getattr(circuit, "wire_g", None) or ()):
            from .wired_engine import WiredNativeEngine
            cache[key] = WiredNativeEngine(circuit, **options)
        elif kind == "native":
            from .native import NativeEngine
            cache[key] = NativeEngine(circuit, **options)
        elif kind in ("ngspice", "ngspice-rebuild"):
            from .ngspice import NgspiceEngine
            mode = "rebuild" if kind.endswith("rebuild") else "loaded"
            cache[key] = NgspiceEngine(circuit, mode=mode, **options)
        else:
            raise ValueError(f"engine={kind!r} must be 'native' or 'ngspice'")
    return cache[key]
