"""Global drift compensation by a calibration read (aihwkit's idea, adapted to a voltage-mode
circuit).

A current-mode crossbar reads I = G·V, so a uniform drift G → f·G scales every output by f
and aihwkit divides the outputs by a measured f̂. Here the outputs are node voltages: in a
network of conductances, voltage sources and amplifiers they do not change at all under
G → f·G; only the elements whose currents do not scale with G (diodes, gmin shunts, nudging
sources) feel it, as if they had become 1/f times stronger. Rescaling the outputs would not
change a classification (argmax is scale-free); what restores the operating point is
restoring the ratio of crossbar to diode currents. The compensation therefore divides the
conductances the circuit sees by f̂ (physically: scaling the diode currents by f̂, e.g.
through their bias or width, which is the same circuit up to a uniform current scale).

The calibration read. f̂ is the total current the crossbars draw from the input and bias
sources at time t over the same read at programming. That ratio is f only if every current
in the read scales with G, i.e. if no diode conducts: with the block's own diode biases
(e.g. ∓0.3 V around V_ref) every diode pair is forward biased at rest and acts as a fixed
shunt, which biases the ratio towards 1. So the calibration read reverse-biases every diode
(its bias source set to V_ref ± REVERSE_BIAS, on the side that blocks it) and drives the
crossbar sources with small voltages (the inputs a fixed pattern within ±amplitude, each
bias column at amplitude × its level), so that no node comes near a diode's knee. The
reverse bias is small because a diode-connected MOSFET reversed by much more turns on its
body diode. The read network is then linear and homogeneous in G: a uniform drift scales
every source current by exactly f. The diode current is checked on every calibration read:
at the reference read the amplitude is halved until the diodes carry at most
DIODE_SHARE_LIMIT of the crossbar current (what is left is their reverse leakage, ≈ IS
each), and a circuit whose diodes cannot be switched off this way (a MOS diode with VTO < 0
conducts in reverse) is refused.
Each calibration averages CALIBRATION_READS reads (fresh read noise each).
docs/devices.md gives the measured accuracy.
"""
from __future__ import annotations

import numpy as np

from ..errors import AnalogInputError

CALIBRATION_SEED = 20240611
CALIBRATION_SAMPLES = 8
CALIBRATION_READS = 8
AMPLITUDE = 0.05            # V: crossbar sources within ±AMPLITUDE (× bias level) of V_ref
REVERSE_BIAS = 0.1          # V: each diode's bias source this far beyond V_ref, blocking it
DIODE_SHARE_LIMIT = 1e-4    # largest Σ|I_diode| / Σ|I_crossbar| a calibration read accepts
_HALVINGS = 8


def crossbar_sources(circuit) -> np.ndarray:
    """Indices of the sources that feed crossbars (inputs and bias columns, not diode biases)."""
    diode_refs = {int(b.ref_term) - circuit.n_free for b in circuit.nonlinear}
    fed = set()
    for blk in circuit.dense:
        cols = blk.in_terms[circuit.is_source_term(blk.in_terms)] - circuit.n_free
        fed.update(int(c) for c in cols)
    return np.array(sorted(fed - diode_refs), dtype=int)


def calibration_sources(circuit, amplitude: float = AMPLITUDE) -> np.ndarray:
    """Source voltages (CALIBRATION_SAMPLES, n_sources) of the calibration read: inputs a
    fixed pattern within ±amplitude, bias columns at amplitude × their level, every diode
    bias source REVERSE_BIAS beyond V_ref on the side that blocks its diodes."""
    rng = np.random.default_rng(CALIBRATION_SEED)
    x = amplitude * rng.uniform(-1.0, 1.0, (CALIBRATION_SAMPLES, circuit.n_features))
    src = circuit.source_voltages(x)
    bias = np.setdiff1d(crossbar_sources(circuit), np.concatenate([circuit.input_plus, circuit.input_minus]))
    src[:, bias] = circuit.vref + amplitude * circuit.source_levels[bias]
    for blk in circuit.nonlinear:
        # sign +1: anode at the node, the bias source is the cathode, so it goes up (and vice versa)
        src[:, int(blk.ref_term) - circuit.n_free] = circuit.vref + blk.sign * REVERSE_BIAS
    return src


def diode_share(circuit, sol) -> float:
    """Σ|diode current| / Σ|crossbar source current| of a solved calibration read."""
    V = circuit.terminal_voltages(sol.v, sol.src)
    leak = sum(float(np.abs(blk.device.current(blk.sign * (V[:, blk.node_terms] - V[:, [blk.ref_term]]))[0]).sum())
               for blk in circuit.nonlinear)
    return leak / float(np.abs(sol.source_currents[:, crossbar_sources(circuit)]).sum())


class DriftCalibration:
    """The calibration read of one chip's circuit: `current(reads)` is the mean total current
    the crossbar sources deliver over the given conductance reads. The amplitude is fixed at
    the first call (the reference read at programming) and kept for every later read."""

    def __init__(self, circuit, amplitude: float | None = None):
        from ..engine_cache import cached_engine
        self.circuit, self.engine = circuit, cached_engine({}, circuit, "native")   # wired when the chip is
        self.sources = crossbar_sources(circuit)
        self.amplitude: float | None = amplitude     # given: the amplitude of a reference read taken before
        self._src = None if amplitude is None else calibration_sources(circuit, amplitude)

    def _solve(self, G_list, src):
        sol = self.engine.solve(G_list, src=src)
        if not np.all(sol.converged):
            raise RuntimeError("drift calibration read did not converge")
        return sol, diode_share(self.circuit, sol)

    def _first(self, G_list):
        amplitude = AMPLITUDE
        for _ in range(_HALVINGS):
            src = calibration_sources(self.circuit, amplitude)
            sol, share = self._solve(G_list, src)
            if share <= DIODE_SHARE_LIMIT:
                self.amplitude, self._src = amplitude, src
                return sol
            amplitude /= 2
        raise AnalogInputError(f"hardware.drift_compensation=true: the diodes still carry {share:.1e} of the crossbar "
                         "current in the calibration read with every diode bias reversed (they cannot be switched "
                         "off, e.g. a MOS diode with VTO < 0); set hardware.drift_compensation: false")

    def current(self, reads) -> float:
        total = 0.0
        for G_list in reads:
            if self._src is None:
                sol = self._first(G_list)
            else:
                sol, share = self._solve(G_list, self._src)
                if share > DIODE_SHARE_LIMIT:
                    raise RuntimeError(f"drift calibration: the diodes carry {share:.1e} of the crossbar "
                                       f"current at amplitude {self.amplitude} V")
            total += float(np.abs(sol.source_currents[:, self.sources]).sum(1).mean())
        return total / len(reads)
