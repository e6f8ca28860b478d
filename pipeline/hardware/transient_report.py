"""evaluate with a `transient:` section: settling time and energy per inference of the
ideal block and of every programmed chip, from native transient simulations
(analog/transient.py, analog/inference_energy.py; docs/transient.md).

Per scope (`ideal`, `chip0`, …) the run gets the metrics transient_<scope>_{settle_s,energy_j}_
{mean,p50,p99} (settled samples only), transient_<scope>_amplifier_bias_a (the bias the energy
counts: transient.amplifier_bias, or derived from that scope's median settling), transient_<scope>_unsettled (a count: samples whose
outputs were not within the tolerance by transient.duration, never taken as settled), a
histogram plot of both distributions and a JSON file listing every unsettled sample."""
from __future__ import annotations

from typing import TYPE_CHECKING

import json

import numpy as np

if TYPE_CHECKING:
    from pipeline.config import RootConfig


def specs(cfg: RootConfig):
    """(TransientSpec, AmplifierSupply, tolerance V, CapacitanceSpec, chip sigma) from a config."""
    from analog.amplifier_design import AmplifierDesign
    from analog.capacitance import CapacitanceSpec
    from analog.inference_energy import AmplifierSupply, readout_tolerance
    from analog.transient import TransientSpec
    t, cap = cfg.transient, cfg.analog.capacitance
    spec = TransientSpec(duration=t.duration, dt=t.dt, rise=t.rise, method=t.method)
    design = AmplifierDesign(time_ratio=t.amplifier_time_ratio, slope=t.amplifier_slope)
    bias = None if t.amplifier_bias == "derived" else t.amplifier_bias      # None: from each run's settling
    supply = AmplifierSupply(supply_v=t.amplifier_supply, bias_a=bias, design=design)
    tol = readout_tolerance(t.readout_bits, t.readout_range)
    cspec = CapacitanceSpec(wire_per_cell=cap.wire_per_cell, device_per_cell=cap.device_per_cell,
                            diode=cap.diode, amplifier_input=cap.amplifier_input)
    return spec, supply, tol, cspec, float(cap.sigma)


def summarise(scope: str, m: dict) -> dict:
    ok = m["settled"]
    out = {f"transient_{scope}_samples": int(len(ok)), f"transient_{scope}_unsettled": int((~ok).sum()),
           f"transient_{scope}_amplifier_bias_a": float(m["amplifier_bias"])}
    for key, name in (("settle_time", "settle_s"), ("energy", "energy_j")):
        vals = m[key][ok]
        for stat, fn in (("mean", np.mean), ("p50", lambda a: np.percentile(a, 50)),
                         ("p99", lambda a: np.percentile(a, 99))):
            out[f"transient_{scope}_{name}_{stat}"] = float(fn(vals)) if len(vals) else float("nan")
    return out


def histogram(scope: str, m: dict, path) -> None:
    from pipeline.flow.plots import _plt, _save
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    ok = m["settled"]
    for ax, key, scale, label in ((axes[0], "settle_time", 1e12, "settling time (ps)"),
                                  (axes[1], "energy", 1e12, "energy per inference (pJ)")):
        ax.hist(m[key][ok] * scale, bins=30)
        ax.set_xlabel(label)
        ax.set_ylabel("samples")
    fig.suptitle(f"{scope}: {int(ok.sum())} settled, {int((~ok).sum())} not settled")
    _save(fig, path)


def measure(engine, G, C, x, cfg: RootConfig) -> dict:
    from analog.capacitance import amplifier_load
    from analog.inference_energy import measure_inferences
    spec, supply, tol, cspec, _ = specs(cfg)
    src = engine.circuit.source_voltages(np.asarray(x, float))
    return measure_inferences(engine, G, C, src, spec=spec, supply=supply, tol=tol,
                              amp_load=amplifier_load(engine.circuit, cspec))


def evaluate_transients(ctx, x) -> dict:
    """Measure the ideal block (the stage's `analog` input) and each chip (`chips` input) on
    the first transient.samples rows of x; log, plot and report."""
    from analog.capacitance import node_capacitance, vary_capacitance
    from pipeline.flow.artifacts import load_analog
    cfg = ctx.cfg
    x = np.asarray(x, float)[: cfg.transient.samples]
    _, _, _, cspec, sigma = specs(cfg)
    results: dict = {}
    scopes: list[tuple[str, dict]] = []
    model = load_analog(ctx.input("analog"))
    try:
        eng = model.get_engine("native")
        scopes.append(("ideal", measure(eng, model.conductances, node_capacitance(model.circuit, cspec), x, cfg)))
    finally:
        model.close()
    if ctx.has("chips"):
        from pipeline.hardware.chip_files import load_chips
        for k, chip in enumerate(load_chips(ctx.input("chips"))):
            try:
                C = vary_capacitance(node_capacitance(chip.circuit, cspec), sigma, seed=chip.seed + 7919)
                scopes.append((f"chip{k}", measure(chip.engine("native"), chip.conductances_at(0.0), C, x, cfg)))
            finally:
                chip.close()
    unsettled = {}
    for scope, m in scopes:
        results.update(summarise(scope, m))
        histogram(scope, m, ctx.folder / "plots" / f"transient_{scope}.png")
        unsettled[scope] = np.flatnonzero(~m["settled"]).tolist()
    path = ctx.folder / "transient_unsettled.json"
    path.write_text(json.dumps(unsettled, indent=1))
    ctx.artifact(path)
    ctx.artifact(ctx.folder / "plots", "plots")
    r = results
    ctx.say(f"transient (ideal): settling {r['transient_ideal_settle_s_p50'] * 1e12:.0f} ps p50, "
            f"{r['transient_ideal_settle_s_p99'] * 1e12:.0f} ps p99; energy {r['transient_ideal_energy_j_mean'] * 1e12:.3g} "
            f"pJ mean; {r['transient_ideal_unsettled']} of {r['transient_ideal_samples']} not settled")
    return results
