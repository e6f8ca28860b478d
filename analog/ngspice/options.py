"""The `.options` every ngspice netlist carries, and the measurements behind each value.

`DEFAULT_OPTIONS` is built from `TUNING`, one record per option: ngspice's own default, the
value we use, and what was measured when it was chosen, so a future change can be checked
against the same figures. `analog.netlist.options_line` writes them (user options override
them key by key); `check_options` validates user options before any netlist is written.

Tolerances (reltol, vntol, abstol). ngspice's default reltol 1e-3 is too loose to agree with
the native engine to 1e-6 V: with vntol 1e-6 V and abstol 1e-12 A it accepts a Newton update
of 0.1 % of a node voltage as converged, so agreement is luck (measured on the agreement-test
circuits: 1.9e-8 V worst, but nothing bounds it). Newton converges quadratically, so once the
update is below ~1e-9·|V| the error is at rounding level: with reltol 1e-9 we measured
≤ 3e-12 V and ≤ 1e-15 A against the native engine on every device, diodes conducting, for a
fresh `op` (reltol 1e-6 and 1e-12 gave the same figures and no failures). The loaded engine
solves many samples in one `dc` sweep (analog.ngspice.binding), where Newton starts from the
previous sample's solution and stops after fewer, larger updates: at 1e-9 that left up to
2.8e-12 V, at 1e-12 2.4e-13 V, for 7 % more Newton iterations (Fashion-sized block, 60
samples), so reltol is 1e-12.

gmin. ngspice adds its option `gmin` across every junction (default 1e-12 S). Our circuits
carry gmin as explicit shunt resistors (RGMIN, `circuit.gmin`), modelled identically by the
native engine, so ngspice's own is set negligible (1e-16 S); the default would add 8e-9 V of
disagreement (measured).

pivrel (speed). Every `op` is a new analysis job: ngspice tears its matrix down and sets it up
again (CKTdoJob → CKTunsetup/CKTsetup), so each operating point starts with a full Markowitz
reordering of the sparse matrix, and an `alter` cannot keep the old ordering. On the
Fashion-sized block (426 nodes, 32k resistors, a dense 100×302 crossbar) that reordering took
~0.37 s of the ~0.43 s an `op` took (ngspice's `rusage`). Without the amplifiers' backward
CCCS the reordering costs 4.5× less; with Sparse's relative pivot threshold lowered from
pivrel=1e-3 to 1e-5 it costs 2.6× less (~0.14 s; an `op` ~0.2 s). Smaller values
(1e-6 … 1e-12) were no faster. The likely reason: node-equation diagonals are sums of
conductances (~1e-3 S) while the amplifier entries in the same columns are of order 1 (gain 4,
1/4), so at pivrel=1e-3 many diagonal candidates fail the threshold test and the pivot search
scans the whole active matrix. Node voltages still agree with the native engine to 1e-14 V.
This ngspice build has no KLU (`.options klu` is ignored).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Tuning:
    """One `.options` entry: ngspice's default, ours, and the measurement behind ours."""

    option: str
    ngspice_default: float
    value: float
    measured: str


TUNING: tuple[Tuning, ...] = (
    Tuning("reltol", 1e-3, 1e-12, "native vs ngspice ≤ 3e-12 V, ≤ 1e-15 A for a fresh op at 1e-9 (default: up to "
                                  "1.9e-8 V, unbounded); the loaded engine's dc sweeps start Newton from the previous "
                                  "sample and stop sooner: 2.8e-12 V at 1e-9, 2.4e-13 V at 1e-12 for 7 % more "
                                  "iterations (Fashion block, 60 samples)"),
    Tuning("vntol", 1e-6, 1e-12, "with reltol: Newton stops at rounding level, same ~4 iterations per op"),
    Tuning("abstol", 1e-12, 1e-15, "with reltol: source currents agree to ≤ 1e-15 A"),
    Tuning("gmin", 1e-12, 1e-16, "gmin is an explicit element (RGMIN); the default shunt adds 8e-9 V of disagreement"),
    Tuning("pivrel", 1e-3, 1e-5, "Fashion-sized block: per-op reordering 0.37 s → 0.14 s (op 0.43 s → 0.2 s); "
                                 "1e-6 … 1e-12 no faster; voltages still agree to 1e-14 V"),
)

#: `.options` of every netlist (user options override them key by key; None drops a key).
DEFAULT_OPTIONS: dict[str, float] = {t.option: t.value for t in TUNING}

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def check_options(options: dict | None) -> dict:
    """User `.options` as a plain dict {name: number | bool | None}; ValueError naming the key
    for anything ngspice could not take (a name that is not a SPICE identifier, a string, NaN)."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValueError(f"options={options!r} must be a mapping of ngspice option names to numbers")
    out = {}
    for key, val in options.items():
        if not (isinstance(key, str) and _KEY.fullmatch(key)):
            raise ValueError(f"options key {key!r} is not an ngspice option name (letters, digits, _)")
        ok = val is None or isinstance(val, bool) or (isinstance(val, (int, float)) and math.isfinite(val))
        if not ok:
            raise ValueError(f"options.{key}={val!r} must be a finite number, true/false or null")
        out[key] = val
    return out
