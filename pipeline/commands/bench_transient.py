"""mixsig bench, transient part: transient inferences per second of the Fashion block, native
(settling time and energy included) and ngspice (`.tran` on the same netlist with the node
capacitors, one `ngspice -b` per sample), on the same grid (docs/transient.md)."""
from __future__ import annotations

import time

import numpy as np

DURATION, DT, RISE = 1e-9, 5e-12, 1e-11


def run_transient_bench(model, x, native_samples: int, ngspice_samples: int) -> dict:
    from analog.capacitance import node_capacitance
    from analog.inference_energy import measure_inferences, readout_tolerance
    from analog.transient import TransientSpec
    c, G = model.circuit, model.conductances
    eng = model.get_engine("native")
    C = node_capacitance(c)
    spec = TransientSpec(duration=DURATION, dt=DT, rise=RISE)
    src = c.source_voltages(np.asarray(x[:native_samples], float))
    t0 = time.perf_counter()
    m = measure_inferences(eng, G, C, src, spec=spec, tol=readout_tolerance(8, 2.0))
    out = {"transient_native_samples_per_s": len(src) / (time.perf_counter() - t0),
           "transient_settled_fraction": float(m["settled"].mean()),
           "transient_settle_s_p50": float(np.nanpercentile(m["settle_time"], 50)),
           "transient_energy_j_mean": float(np.nanmean(m["energy"]))}
    if ngspice_samples:
        from analog.ngspice.transient import ngspice_transient
        xs = np.asarray(x[:ngspice_samples], float)
        s1, s0 = c.source_voltages(xs), c.source_voltages(np.zeros_like(xs))
        outs = list(c.out_plus) + list(c.out_minus)
        ngspice_transient(c, G, C, s0[:1], s1[:1], rise=RISE, duration=DT * 4, dt=DT, nodes=outs)  # device check
        t0 = time.perf_counter()
        waves = ngspice_transient(c, G, C, s0, s1, rise=RISE, duration=DURATION, dt=DT, nodes=outs)
        out["transient_ngspice_samples_per_s"] = len(xs) / (time.perf_counter() - t0)
        out["ratio_transient_native_vs_ngspice"] = (out["transient_native_samples_per_s"]
                                                    / out["transient_ngspice_samples_per_s"])
        out["transient_ngspice_time_points"] = int(np.mean([len(t) for t, _ in waves]))
    return out


def print_transient_bench(res: dict) -> None:
    print(f"  transient, native        {res['transient_native_samples_per_s']:>10.2f} inferences/s "
          f"(settling p50 {res['transient_settle_s_p50'] * 1e12:.0f} ps, "
          f"{res['transient_energy_j_mean'] * 1e12:.2f} pJ mean)")
    if "transient_ngspice_samples_per_s" in res:
        print(f"  transient, ngspice .tran {res['transient_ngspice_samples_per_s']:>10.3f} inferences/s "
              f"(native {res['ratio_transient_native_vs_ngspice']:.0f}x; target >= 20)")
