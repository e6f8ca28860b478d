"""What an engine returns for a batch of operating points, and quantities derived from it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import crossbar as xb
from .circuit import CompiledCircuit


class ConvergenceError(RuntimeError):
    """Raised when a caller asks for strict solves and some samples did not converge."""

    def __init__(self, indices, engine: str):
        self.indices = [int(i) for i in indices]
        shown = ", ".join(map(str, self.indices[:10])) + (" …" if len(self.indices) > 10 else "")
        super().__init__(f"{engine}: {len(self.indices)} sample(s) did not converge (indices {shown})")


@dataclass
class Solution:
    """A batch of DC operating points.

    v: (B, n_free) free-node voltages; src: (B, n_sources) source voltages;
    source_currents: (B, n_sources) current each source delivers into the circuit (A);
    converged: (B,) bool (a non-converged sample's values are NaN, never silently wrong);
    iterations: (B,) Newton iterations; power: (B,) W dissipated in conductances and
    devices; nudge: (B, n_outputs) nudging currents applied (None in the free phase).
    """

    v: np.ndarray
    src: np.ndarray
    source_currents: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    power: np.ndarray
    nudge: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def failed(self) -> np.ndarray:
        """Indices of samples that did not converge."""
        return np.flatnonzero(~self.converged)

    def outputs(self, circuit: CompiledCircuit) -> np.ndarray:
        return circuit.outputs(self.v)

    def raise_on_failure(self, engine: str) -> "Solution":
        if not np.all(self.converged):
            raise ConvergenceError(self.failed, engine)
        return self


def _lazy(name: str) -> property:
    """A Solution field computed on first access (see LazySolution), kept under its own
    name in the instance's __dict__ so that `type(s)(**s.__dict__)` still builds a copy."""
    def get(self):
        if self.__dict__.get(name) is None and self.extras is not None:
            self.__dict__[name] = self.extras(name)
        return self.__dict__.get(name)

    def put(self, value):
        self.__dict__[name] = value
    return property(get, put)


@dataclass
class LazySolution(Solution):
    """A Solution whose `source_currents` and `power` are computed on first access, each
    by `extras(name)`: EP's nudged phases never read them, training reads only the power,
    and at training batch sizes each costs about a Newton iteration. `extras` must see the
    state as it was solved (the engine binds copies of the conductances) and give NaN for
    the samples that did not converge."""

    extras: Callable | None = field(default=None, repr=False, compare=False)


LazySolution.source_currents = _lazy("source_currents")
LazySolution.power = _lazy("power")


def device_branch_voltages(circuit: CompiledCircuit, block, V: np.ndarray) -> np.ndarray:
    """Branch voltage u (anode − cathode) of every device of a nonlinear block, (B, n)."""
    return block.sign * (V[:, block.node_terms] - V[:, [block.ref_term]])


def dissipated_power(circuit: CompiledCircuit, G_list, v: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Power (W) turned into heat per sample: Σ G·ΔV² over the crossbars, Σ I·u over the
    devices, and the gmin shunts. Amplifiers are ideal (their supply is not counted)."""
    V = circuit.terminal_voltages(v, src)
    power = np.zeros(v.shape[0])
    for block, G in zip(circuit.dense, G_list):
        power += xb.quadratic(block, G, V[:, block.out_terms], V[:, block.in_terms])
    for block in circuit.nonlinear:
        u = device_branch_voltages(circuit, block, V)
        current, _ = block.device.current(u)
        power += (current * u).sum(1)
    power += circuit.gmin * (v**2).sum(1)
    return power


def scaled_source_currents(circuit: CompiledCircuit, G_list, V: np.ndarray, used=None) -> np.ndarray:
    """∂E/∂V_source, (B, n_sources): the current each source delivers, each branch weighted
    by the energy scale of the element it flows through (Σ_rows s_row G_row,j (V_j − V_row)
    over crossbars, −s·sign·I over devices biased by the source). V: terminal voltages;
    samples where `used` is False are set to 0 (their voltages may be NaN)."""
    V = np.asarray(V, dtype=float)
    if used is not None:
        V = np.where(np.asarray(used)[:, None], V, 0.0)
    n_f, n_s = circuit.n_free, circuit.n_sources
    g = np.zeros((V.shape[0], n_s))
    for blk, G in zip(circuit.dense, G_list):
        cols = circuit.is_source_term(blk.in_terms)
        if not np.any(cols):
            continue
        if blk.cols is not None:
            g[:, blk.in_terms[cols] - n_f] += xb.currents(blk, blk.scaled(G), V[:, blk.out_terms],
                                                          V[:, blk.in_terms])[1][:, cols]
            continue
        Gs = blk.scaled(G)[:, cols]
        vi = V[:, blk.in_terms[cols]]
        g[:, blk.in_terms[cols] - n_f] += vi * Gs.sum(0) - V[:, blk.out_terms] @ Gs
    for blk in circuit.nonlinear:
        current, _ = blk.device.current(device_branch_voltages(circuit, blk, V))
        g[:, blk.ref_term - n_f] -= blk.sign * (blk.scale * current).sum(1)
    return g
