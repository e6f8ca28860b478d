"""The ideal-amplifier approximation on the main job's block: ngspice `.tran` with ideal
amplifiers and with single-pole ones at the derived g_m (analog/amplifier_design.py), the
settling time of each against the design fraction (docs/transient.md, "The amplifiers' bias
derived from the circuit"). Usage: python experiments/amplifier_pole_check.py [samples] [ratio]"""
import sys

import numpy as np

from analog.amplifier_design import AmplifierDesign, reference_settling
from analog.capacitance import amplifier_load, node_capacitance
from analog.inference_energy import AmplifierSupply, measure_inferences, readout_tolerance, settling_index
from analog.ngspice.transient import ngspice_transient
from analog.transient import TransientSpec
from pipeline.commands.bench import fashion_block


def settle(c, waves, final, tol):
    out = []
    for (t, V), y in zip(waves, final):
        n = c.n_outputs
        k, ok = settling_index((V[:, :n] - V[:, n:])[:, None], y[None], tol)
        out.append(t[k[0]] if ok.all() else np.nan)
    return np.array(out)


def main(n_spice=2, ratio=0.1):
    model = fashion_block()
    c, eng, G = model.circuit, model.get_engine("native"), model.conductances
    x = np.random.default_rng(0).uniform(-1, 1, (16, 150))        # mixsig energy's inputs
    src1, src0 = c.source_voltages(x), c.source_voltages(np.zeros_like(x))
    C, load, tol = node_capacitance(c), amplifier_load(c), readout_tolerance(8, 2.0)
    spec = TransientSpec(duration=2e-9, dt=5e-12, rise=1e-11)
    native = measure_inferences(eng, G, C, src1, spec=spec, tol=tol, supply=AmplifierSupply(bias_a=None))
    t_ref = reference_settling(native["settle_time"])
    design = AmplifierDesign(time_ratio=ratio)
    gm = design.transconductance(load, t_ref)
    print(f"t_ref {t_ref * 1e12:.1f} ps (native, 16 inputs), C_L {load.max() * 1e15:.2f} fF, g_m {gm.max() * 1e3:.3f} mS, "
          f"bias {native['amplifier_bias'] * 1e6:.2f} uA")
    final = c.outputs(eng.solve(G, src=src1[:n_spice]).v)
    nodes = list(c.out_plus) + list(c.out_minus)
    kw = dict(rise=1e-11, duration=0.6e-9, dt=1e-12, nodes=nodes)
    ideal = settle(c, ngspice_transient(c, G, C, src0[:n_spice], src1[:n_spice], **kw), final, tol)
    pole = settle(c, ngspice_transient(c, G, C, src0[:n_spice], src1[:n_spice], amp_pole=(gm, load), **kw),
                  final, tol)
    for i, (a, b) in enumerate(zip(ideal, pole)):
        print(f"sample {i}: ideal {a * 1e12:.1f} ps, single-pole {b * 1e12:.1f} ps, delay {(b - a) * 1e12:.1f} ps "
              f"= {(b - a) / t_ref:.3f} t_ref (bound {ratio})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2, float(sys.argv[2]) if len(sys.argv) > 2 else 0.1)
