"""Capacitance of every free node of a compiled circuit (what gives the circuit time).

A free node n carries, to ground:

  C_n = wire_per_cell · cells(n) + device_per_cell · cells(n) + diode · diodes(n)
        + amplifier_input · [n is an amplifier's input]

cells(n) counts the crossbar cells on the wire of n: the n_in cells of its row when n is
a crossbar output, plus the n_out cells of its column for every crossbar it drives directly
(a column driven by an amplifier's output sits on a driven node and has no dynamics).
Default figures (docs/transient.md gives the arithmetic):

* wire: 0.2 fF per µm of crossbar wire, NeuroSim's interconnect figure (Chen, Peng, Yu,
  "NeuroSim: a circuit-level macro model for benchmarking neuro-inspired architectures in
  online learning", IEEE TCAD 37(12), 2018), times an assumed 1 µm cell pitch: 0.2 fF per cell;
* device: 0.1 fF per cell (assumed: the cell's access and electrode capacitance; the gate-drain
  overlap alone of a 0.4-µm-wide SkyWater 130 nm transistor, cgdo = 0.245 fF/µm);
* diode: 1 fF per diode (assumed; SkyWater 130 nm's pw2nd diode model gives 1.35 fF/µm² plus
  0.036 fF/µm of perimeter at zero bias, so 1 fF is a junction of some 0.65 µm²);
* amplifier input: 10 fF (assumed; SkyWater 130 nm's 4.148 nm gate oxide gives 8.3 fF/µm², so
  10 fF is 1.2 µm² of input gate).

docs/transient.md names the model cards these were checked against.
A chip varies them per node by a log-normal factor (`vary_capacitance`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import crossbar as xb
from .circuit import CompiledCircuit
from .errors import AnalogInputError


@dataclass(frozen=True)
class CapacitanceSpec:
    wire_per_cell: float = 0.2e-15
    device_per_cell: float = 0.1e-15
    diode: float = 1e-15
    amplifier_input: float = 10e-15

    def __post_init__(self):
        for key in ("wire_per_cell", "device_per_cell", "diode", "amplifier_input"):
            value = getattr(self, key)
            if not (np.isfinite(value) and value >= 0):
                raise AnalogInputError(f"capacitance.{key}={value!r} must be a finite number >= 0 (farads)")


def cells_per_node(circuit: CompiledCircuit) -> np.ndarray:
    """Crossbar cells on the wire of every free node (row and driven columns), (n_free,)."""
    c = circuit
    cells = np.zeros(c.n_free)
    for blk in c.dense:
        n_out, per_row = xb.g_shape(blk)
        rows = c.term_free[blk.out_terms]
        np.add.at(cells, rows[rows >= 0], per_row)
        if blk.cols is None:
            col_count = np.full(len(blk.in_terms), n_out)
        else:
            col_count = np.bincount(blk.cols.ravel(), minlength=len(blk.in_terms))
        direct = blk.in_terms < c.n_free           # a free node drives this column itself
        np.add.at(cells, blk.in_terms[direct], col_count[direct])
    return cells


def node_capacitance(circuit: CompiledCircuit, spec: CapacitanceSpec | None = None) -> np.ndarray:
    """C_n in farads for every free node (n_free,); > 0 everywhere (AnalogInputError if not)."""
    spec = spec or CapacitanceSpec()
    c = circuit
    cells = cells_per_node(c)
    C = (spec.wire_per_cell + spec.device_per_cell) * cells
    for blk in c.nonlinear:
        np.add.at(C, c.term_free[blk.node_terms], spec.diode)
    np.add.at(C, c.amp_in, spec.amplifier_input)
    check_capacitance(C, c.n_free)
    return C


def amplifier_load(circuit: CompiledCircuit, spec: CapacitanceSpec | None = None) -> np.ndarray:
    """C_L in farads of every amplifier's output (n_amp,): the crossbar cells on the columns it
    drives (a driven node, so not among the free nodes' C; analog/amplifier_design.py sizes
    the amplifier's bias from it)."""
    spec = spec or CapacitanceSpec()
    c = circuit
    first_amp = c.n_free + c.n_sources
    cells = np.zeros(len(c.amp_in))
    for blk in c.dense:
        n_out, _ = xb.g_shape(blk)
        if blk.cols is None:
            col_count = np.full(len(blk.in_terms), n_out)
        else:
            col_count = np.bincount(blk.cols.ravel(), minlength=len(blk.in_terms))
        amp = blk.in_terms >= first_amp
        np.add.at(cells, blk.in_terms[amp] - first_amp, col_count[amp])
    return (spec.wire_per_cell + spec.device_per_cell) * cells


def check_capacitance(C, n_free: int, key: str = "capacitance") -> np.ndarray:
    C = np.asarray(C, dtype=float)
    if C.shape != (n_free,):
        raise AnalogInputError(f"{key} has shape {C.shape}, expected ({n_free},) (one per free node)")
    bad = np.flatnonzero(~(np.isfinite(C) & (C > 0)))
    if len(bad):
        raise AnalogInputError(f"{key}: node {int(bad[0])} has capacitance {C[bad[0]]!r}; every free node "
                               "needs a finite capacitance > 0 (raise the figures of capacitance.*)")
    return C


def vary_capacitance(C: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """A chip's capacitances: each node's C times a log-normal factor exp(N(0, sigma))."""
    if not (np.isfinite(sigma) and sigma >= 0):
        raise AnalogInputError(f"capacitance.sigma={sigma!r} must be a finite number >= 0")
    rng = np.random.default_rng(seed)
    return np.asarray(C, float) * np.exp(rng.normal(0.0, sigma, np.shape(C)))
