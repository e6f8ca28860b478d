"""Global drift compensation by a calibration read (aihwkit's idea, adapted to a voltage-mode
circuit).

A current-mode crossbar reads I = G·V, so a uniform drift G → f·G scales every output by f
and aihwkit divides the outputs by a measured f̂. Here the outputs are node voltages: in a
network of conductances and voltage sources they do not change at all under G → f·G; only
the elements whose currents do not scale with G (diodes, gmin shunts, nudging sources) feel
it, as if they had become 1/f times stronger. Rescaling the outputs would not change a
classification (argmax is scale-free); what restores the operating point is restoring the
ratio of crossbar to diode currents. The compensation therefore divides the conductances the
circuit sees by f̂ (physically: scaling the diode currents by f̂, e.g. through their bias or
width, which is the same circuit up to a uniform current scale).

f̂ is measured as aihwkit does, from a read with fixed inputs: the total current the
crossbars draw from the input and bias sources at time t over the same read at programming
(the diode bias sources are left out: their current does not scale with G).
docs/devices.md gives the measured effect.
"""
from __future__ import annotations

import numpy as np

CALIBRATION_SEED = 20240611
CALIBRATION_SAMPLES = 8


def calibration_inputs(circuit) -> np.ndarray:
    """Fixed calibration inputs (small, so the diodes conduct as little as possible)."""
    rng = np.random.default_rng(CALIBRATION_SEED)
    return rng.uniform(-0.2, 0.2, (CALIBRATION_SAMPLES, circuit.n_features))


def crossbar_sources(circuit) -> np.ndarray:
    """Indices of the sources that feed crossbars (inputs and bias columns, not diode biases)."""
    diode_refs = {int(b.ref_term) - circuit.n_free for b in circuit.nonlinear}
    fed = set()
    for blk in circuit.dense:
        cols = blk.in_terms[circuit.is_source_term(blk.in_terms)] - circuit.n_free
        fed.update(int(c) for c in cols)
    return np.array(sorted(fed - diode_refs), dtype=int)


def calibration_current(engine, G_list, x) -> float:
    """Mean total |current| the crossbar-feeding sources deliver for inputs x."""
    sol = engine.solve(G_list, x)
    if not np.all(sol.converged):
        raise RuntimeError("drift calibration read did not converge")
    idx = crossbar_sources(engine.circuit)
    return float(np.abs(sol.source_currents[:, idx]).sum(1).mean())
