"""How much the transient's ideal amplifiers miss: ngspice `.tran` of the same inputs with
ideal amplifiers and with single-pole ones at the g_m `AmplifierDesign` derives, and each
sample's settling delay as a fraction of the block's settling time t_s (docs/transient.md,
"The amplifiers' bias derived from the circuit"). The design asks for τ_a = time_ratio · t_s,
so the delay should be about that fraction."""
from __future__ import annotations

import numpy as np

from .amplifier_design import AmplifierDesign, reference_settling
from .capacitance import amplifier_load, node_capacitance
from .inference_energy import AmplifierSupply, measure_inferences, readout_tolerance, settling_index
from .ngspice.transient import ngspice_transient
from .transient import TransientSpec


def _settle_times(circuit, waves, final: np.ndarray, tol: float) -> np.ndarray:
    """Per ngspice waveform, the time every differential output stays within tol (NaN: never)."""
    n = circuit.n_outputs
    out = []
    for (t, V), y in zip(waves, final):
        k, ok = settling_index((V[:, :n] - V[:, n:])[:, None], y[None], tol)
        out.append(t[k[0]] if ok.all() else np.nan)
    return np.array(out)


def pole_delays(model, x: np.ndarray, n_spice: int, design: AmplifierDesign | None = None,
                readout_bits: int = 8, readout_range: float = 2.0) -> dict:
    """t_s from the native transient of all of x; ngspice on the first n_spice rows, ideal and
    single-pole amplifiers. Returns t_ref (s), the largest load (F), g_m (S), bias (A), and
    per sample the two settling times and the delay over t_ref."""
    design = design or AmplifierDesign()
    c, eng, G = model.circuit, model.get_engine("native"), model.conductances
    src1, src0 = c.source_voltages(x), c.source_voltages(np.zeros_like(x))
    C, load, tol = node_capacitance(c), amplifier_load(c), readout_tolerance(readout_bits, readout_range)
    native = measure_inferences(eng, G, C, src1, spec=TransientSpec(duration=2e-9, dt=5e-12, rise=1e-11), tol=tol,
                                supply=AmplifierSupply(bias_a=None, design=design))
    t_ref = reference_settling(native["settle_time"])
    gm = design.transconductance(load, t_ref)
    final = c.outputs(eng.solve(G, src=src1[:n_spice]).v)
    kw = dict(rise=1e-11, duration=0.6e-9, dt=1e-12, nodes=list(c.out_plus) + list(c.out_minus))
    ideal = _settle_times(c, ngspice_transient(c, G, C, src0[:n_spice], src1[:n_spice], **kw), final, tol)
    pole = _settle_times(c, ngspice_transient(c, G, C, src0[:n_spice], src1[:n_spice], amp_pole=(gm, load), **kw),
                         final, tol)
    return {"t_ref_s": t_ref, "load_f": float(np.max(load)), "g_m_s": float(np.max(gm)),
            "bias_a": float(native["amplifier_bias"]), "time_ratio": design.time_ratio,
            "ideal_s": ideal.tolist(), "single_pole_s": pole.tolist(), "delay_over_t_ref": ((pole - ideal) / t_ref).tolist()}
