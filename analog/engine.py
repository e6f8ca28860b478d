"""What every engine provides: the `Engine` protocol.

Two engines solve the same `CompiledCircuit`: `analog.native.NativeEngine` (batched Newton
in NumPy) and `analog.ngspice.NgspiceEngine` (ngspice, the reference). Model, EP and the
pipeline use only what this protocol declares, so either engine (or a new one) can be
passed wherever an engine is expected.

Contract of `solve(G_list, x=None, *, src=None, nudge=None, v0=None) -> Solution`:

* `G_list`: one conductance array per dense block, shapes as in `circuit.dense`, in S.
* `x` (B, n_features): input voltages relative to V_ref; or `src` (B, n_sources): the
  source voltages directly (one of the two is required).
* `nudge` (B, n_outputs): nudging currents I_k (A) into the differential outputs, or None
  for the free phase. `v0` (B, n_free): a warm start; an engine may ignore it (ngspice does).
* Returns a `Solution` with float64 arrays `v` (B, n_free), `src` (B, n_sources),
  `source_currents` (B, n_sources), `power` (B,), bool `converged` (B,) and integer
  `iterations` (B,). A sample that did not converge has converged=False and NaN in `v`,
  `source_currents` and `power`, and its index in `info["failures"]`; it never raises
  (call `Solution.raise_on_failure(engine.name)` for strict use). Bad input shapes or
  non-finite values raise ValueError.

Resources. An engine holding processes or files (ngspice's worker pool) also has
`close()` and is a context manager; `close_engine` calls `close()` on any engine that has
one, so callers need not know which kind they hold. `close` is not part of `Engine`
because the native engine holds nothing to release.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .circuit import CompiledCircuit
from .solution import Solution


@runtime_checkable
class Engine(Protocol):
    """A DC operating-point solver for a CompiledCircuit (see the module docstring)."""

    name: str
    circuit: CompiledCircuit

    def solve(self, G_list: list[np.ndarray], x: np.ndarray | None = None, *, src: np.ndarray | None = None,
              nudge: np.ndarray | None = None, v0: np.ndarray | None = None) -> Solution:
        ...


@runtime_checkable
class ClosableEngine(Engine, Protocol):
    """An engine that holds resources (worker processes) released by `close()`."""

    def close(self) -> None:
        ...


def check_solve_inputs(circuit: CompiledCircuit, x=None, src=None, nudge=None) -> tuple[np.ndarray, np.ndarray | None]:
    """The contract's input checks, shared by the engines: source voltages (B, n_sources)
    from `x` or `src`, and nudging currents (B, n_outputs) or None; ValueError naming what is
    wrong (missing input, shape, non-finite value)."""
    if src is None:
        if x is None:
            raise ValueError("solve() needs inputs x or source voltages src")
        src = circuit.source_voltages(x)
    src = np.asarray(src, dtype=float)
    if src.ndim != 2 or src.shape[1] != circuit.n_sources:
        raise ValueError(f"source voltages of shape {src.shape}, expected (batch, {circuit.n_sources})")
    if not np.all(np.isfinite(src)):
        raise ValueError("non-finite source voltage")
    if nudge is not None:
        nudge = np.asarray(nudge, dtype=float)
        if nudge.shape != (src.shape[0], circuit.n_outputs):
            raise ValueError(f"nudging currents of shape {nudge.shape}, expected {(src.shape[0], circuit.n_outputs)}")
        if not np.all(np.isfinite(nudge)):
            raise ValueError("non-finite nudging current")
    return src, nudge


def close_engine(engine: Engine) -> None:
    """Release an engine's resources if it holds any (no-op for the native engine)."""
    if isinstance(engine, ClosableEngine):
        engine.close()
