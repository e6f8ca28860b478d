"""Time and energy per inference and per training sample: the chip (transients of the Fashion
block, sample-and-hold, programming pulses; analog/training_energy.py) against the same
network computed digitally on a GPU (published figures, arithmetic shown) and on this
machine's CPU (measured; energy from an assumed power per core). docs/transient.md.

    PYTHONPATH=. .venv/bin/python experiments/training_energy.py [--samples 16] [--device rram|pcm]
        [--pulse-energy J] [--pulse-duration S] [--dac-bits 8] [--adc-bits 8] [--json]
        [--amplifier-bias A] [--sh-acquire S]     # the two assumed figures, for their sensitivity

The chip's figures (pulses, sample-and-hold, converters, amplifiers) and their sources are
analog/energy_figures.py's FIGURES.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")          # one core: the CPU figures are per core
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

#: device kinds with sourced pulse figures (analog.training_energy.device_pulse)
DEVICES = ("rram", "pcm")
#: Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, the
#: energy table of Fig. 1.1.9 (45 nm, 0.9 V): 32-bit float multiply 3.7 pJ + add 0.9 pJ;
#: a 64-bit read from an 8 KB SRAM 10 pJ, so 5 pJ per 32-bit operand
E_MAC_FP32, E_OPERAND_SRAM = 3.7e-12 + 0.9e-12, 10e-12 / 2
#: NVIDIA A100 (SXM4) datasheet: 19.5 TFLOPS FP32 (no tensor cores), 400 W board power
GPU_FLOPS, GPU_WATTS = 19.5e12, 400.0
#: assumed CPU power per core: a Xeon of this machine's family (Sapphire Rapids, e.g. the
#: Platinum 8480+: 350 W TDP over 56 cores)
CPU_WATTS_PER_CORE = 350.0 / 56


def digital_macs(features=150, hidden=100, classes=10) -> dict:
    """MACs of the same network (150 → 100 → 10, weights W = G⁺ − G⁻) computed digitally:
    inference is the forward pass; a training sample (SGD, batch 1) adds the hidden error
    Wᵀδ, the weight gradients (one MAC per weight) and the update w −= η g (one per weight)."""
    weights = features * hidden + hidden * classes
    return {"inference": weights, "training": weights + hidden * classes + weights + weights}


def cpu_times(features=150, hidden=100, classes=10, n=2000) -> dict:
    """Measured seconds per sample of that network in numpy on one core: batch 1 and batch 256
    (forward only for inference; forward, backward and SGD update for training)."""
    rng = np.random.default_rng(0)
    W1, W2 = rng.normal(0, 0.1, (features, hidden)), rng.normal(0, 0.1, (hidden, classes))
    X, T = rng.uniform(-1, 1, (n, features)), np.eye(classes)[rng.integers(0, classes, n)]

    def step(x, t, lr=1e-3):
        h = np.tanh(x @ W1)
        y = h @ W2
        d = y - t
        dh = (d @ W2.T) * (1 - h * h)
        np.subtract(W2, lr * (h.T @ d), out=W2)
        np.subtract(W1, lr * (x.T @ dh), out=W1)

    out = {}
    for name, fn in (("inference", lambda x, t: np.tanh(x @ W1) @ W2), ("training", step)):
        for batch in (1, 256):
            best = np.inf
            for _ in range(3):                   # best of three: the machine is shared
                t0 = time.perf_counter()
                for lo in range(0, n, batch):
                    fn(X[lo: lo + batch], T[lo: lo + batch])
                best = min(best, time.perf_counter() - t0)
            out[f"{name}_b{batch}"] = best / n
    return out


def chip_figures(args) -> dict:
    from analog.capacitance import node_capacitance
    from analog.inference_energy import measure_inferences, readout_tolerance
    from analog.energy_figures import FIGURES, ConverterCost
    from analog.inference_energy import AmplifierSupply
    from analog.training_energy import PulseSpec, SampleHold, device_pulse, training_step
    from analog.transient import NativeTransient, TransientSpec
    from pipeline.commands.bench import fashion_block
    pulse = device_pulse(args.device)
    if args.pulse_energy or args.pulse_duration:       # an override applies to SET and RESET alike
        e, t = args.pulse_energy or pulse.energy_j, args.pulse_duration or pulse.duration_s
        pulse = PulseSpec(e, t, keys=("--pulse-energy", "--pulse-duration"))
    conv = ConverterCost(args.dac_bits or None, args.adc_bits or None)
    bias = FIGURES["amplifier_bias"].value if args.amplifier_bias is None else args.amplifier_bias
    acquire = FIGURES["sample_hold_acquire"].value if args.sh_acquire is None else args.sh_acquire
    supply, sh = AmplifierSupply(bias_a=bias), SampleHold(acquire_s=acquire, bias_a=bias)
    model = fashion_block()
    model.compile(loss="mse", optimizer="sgd", beta=args.beta)
    c, G, eng = model.circuit, model.conductances, model.get_engine("native")
    C = node_capacitance(c)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (args.samples, 150)), rng.integers(0, 10, args.samples)
    spec = TransientSpec(duration=args.duration, dt=5e-12, rise=1e-11)
    t0 = time.perf_counter()
    inf = measure_inferences(eng, G, C, c.source_voltages(x), spec=spec, tol=readout_tolerance(8, 2.0),
                             converters=conv, supply=supply)
    t1 = time.perf_counter()
    tr = NativeTransient(eng, C, spec)
    st = training_step(tr, c, G, C, x, y, model.loss, args.beta, pulse=pulse, sample_hold=sh,
                       rel_tol=args.rel_tol, converters=conv, supply=supply)
    t2 = time.perf_counter()
    at_once = training_step(tr, c, G, C, x, y, model.loss, args.beta, pulse=pulse, sample_hold=sh,
                            rel_tol=args.rel_tol, all_rows_at_once=True, converters=conv, supply=supply)
    unsettled = {k: int((~p.settled).sum()) for k, p in st.phases.items()}
    out = {"devices": int(sum(np.size(g) for g in G)), "pulse_energy_j": pulse.energy_j,
           "pulse_duration_s": pulse.duration_s, "pulse_reset": list(pulse.reset),
           "dac_bits": conv.dac_bits, "amplifier_bias_a": bias, "sample_hold_acquire_s": acquire, "adc_bits": conv.adc_bits,
           "inference_time_s": float(np.nanmean(inf["settle_time"])),
           "inference_energy_j": float(np.nanmean(inf["energy"])),
           "inference_converter_energy_j": float(np.mean(inf["energy_converters"])),
           "inference_unsettled": int((~inf["settled"]).sum()),
           "training_converter_energy_j": st.converter_energy,
           "training_time_s": float(np.nanmean(st.time)), "training_energy_j": float(np.nanmean(st.energy)),
           "training_unsettled": unsettled, "programming_pulses": float(np.mean(st.programming["pulses"])),
           "programming_energy_j": float(np.mean(st.programming["energy"])),
           "programming_time_s": float(np.mean(st.programming["time"])),
           "sample_hold_energy_j": float(np.nanmean(st.sample_hold_energy)),
           "training_all_rows_at_once_time_s": float(np.nanmean(at_once.time)),
           "training_all_rows_at_once_energy_j": float(np.nanmean(at_once.energy)),
           "simulation_s": {"inference": t1 - t0, "training": t2 - t1}}
    for k, p in st.phases.items():
        out[f"phase_{k}_time_s"] = float(np.nanmean(p.settle_time))
        out[f"phase_{k}_energy_j"] = float(np.nanmean(p.energy))
    out["simulated_ep_step_cpu_s"] = _simulated_ep_step(model, x, y, args.beta)
    return out


def _simulated_ep_step(model, x, y, beta) -> float:
    """Seconds per sample of this tool's own native EP step (simulating the circuit on the CPU)."""
    from analog.ep import ep_gradients
    eng = model.get_engine("native")
    best = np.inf
    for _ in range(3):               # the first call builds the engine's caches
        t0 = time.perf_counter()
        ep_gradients(eng, model.circuit, model.conductances, x, y, model.loss, beta, "symmetric")
        best = min(best, time.perf_counter() - t0)
    return best / len(x)


def table(chip: dict, macs: dict, cpu: dict) -> list[dict]:
    """Rows per task; ratios against the chip with its converters and against the circuit alone."""
    rows = []
    for task in ("inference", "training"):
        m = macs[task]
        t_chip, e_chip = chip[f"{task}_time_s"], chip[f"{task}_energy_j"]
        e_bare = e_chip - chip[f"{task}_converter_energy_j"]
        how = "phases + S&H + pulses, row by row" if task == "training" else "settling transient"
        bits = f"{chip['dac_bits']}-bit DACs, {chip['adc_bits']}-bit ADCs"
        cands = [("chip with converters", t_chip, e_chip, f"{how} + {bits}"),
                 ("chip without converters", t_chip, e_bare, how)]
        if task == "training":
            e_once = chip["training_all_rows_at_once_energy_j"]
            cands.append(("chip with converters, every row at once", chip["training_all_rows_at_once_time_s"],
                          e_once, "phases + S&H + pulses, one SET and one RESET pass"))
        cands += [("GPU A100, Horowitz per-op energy", m * 2 / GPU_FLOPS, m * (E_MAC_FP32 + E_OPERAND_SRAM),
                  f"{m} MAC × ({E_MAC_FP32 * 1e12:.1f} + {E_OPERAND_SRAM * 1e12:.0f}) pJ; {2 * m} FLOP / 19.5 TFLOPS"),
                 ("GPU A100, board power at peak FP32", m * 2 / GPU_FLOPS, GPU_WATTS * m * 2 / GPU_FLOPS,
                  f"400 W × {2 * m} FLOP / 19.5 TFLOPS"),
                 ("CPU (this machine, 1 core, batch 1)", cpu[f"{task}_b1"], cpu[f"{task}_b1"] * CPU_WATTS_PER_CORE,
                  f"measured × {CPU_WATTS_PER_CORE:.2f} W"),
                 ("CPU (this machine, 1 core, batch 256)", cpu[f"{task}_b256"],
                  cpu[f"{task}_b256"] * CPU_WATTS_PER_CORE, f"measured × {CPU_WATTS_PER_CORE:.2f} W")]
        if task == "training":
            s = chip["simulated_ep_step_cpu_s"]
            cands.append(("CPU simulating the circuit (native EP step)", s, s * CPU_WATTS_PER_CORE,
                          f"measured × {CPU_WATTS_PER_CORE:.2f} W"))
        for name, t, e, how in cands:
            rows.append(dict(task=task, system=name, time_s=t, energy_j=e, how=how, time_vs_chip=t / t_chip,
                             energy_vs_chip=e / e_chip, energy_vs_bare_chip=e / e_bare))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--device", choices=sorted(DEVICES), default="rram")
    ap.add_argument("--pulse-energy", type=float, default=None, help="J per programming pulse (default: the device's)")
    ap.add_argument("--pulse-duration", type=float, default=None, help="s per programming pulse (default: the device's)")
    ap.add_argument("--dac-bits", type=int, default=8, help="input DAC bits (0: no DACs counted)")
    ap.add_argument("--adc-bits", type=int, default=8, help="output ADC bits (0: no ADCs counted)")
    ap.add_argument("--beta", type=float, default=1e-6)
    ap.add_argument("--rel-tol", type=float, default=0.01, help="phase settling: fraction of the nudge's displacement")
    ap.add_argument("--duration", type=float, default=2e-9, help="simulated length of each phase, s")
    ap.add_argument("--amplifier-bias", type=float, default=None,
                    help="A per amplifier and S&H buffer (default: FIGURES['amplifier_bias'], an assumption)")
    ap.add_argument("--sh-acquire", type=float, default=None,
                    help="S&H acquisition time, s (default: FIGURES['sample_hold_acquire'], an assumption)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from pipeline.errors import user_error_types
    try:
        from analog.training_energy import PulseSpec
        for key, value in (("--pulse-energy", args.pulse_energy), ("--pulse-duration", args.pulse_duration)):
            if value is not None:
                PulseSpec(value, 1.0, keys=(key, "-"))
        from analog.errors import AnalogInputError
        for key, value in (("--amplifier-bias", args.amplifier_bias), ("--sh-acquire", args.sh_acquire)):
            if value is not None and not (np.isfinite(value) and value > 0):
                raise AnalogInputError(f"{key}={value} must be a finite number > 0")
        for key, value in (("--dac-bits", args.dac_bits), ("--adc-bits", args.adc_bits)):
            if value < 0:
                raise AnalogInputError(f"{key}={value} must be an integer >= 0 (0: no converter counted)")
        chip = chip_figures(args)
    except user_error_types() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    macs, cpu = digital_macs(), cpu_times()
    rows = table(chip, macs, cpu)
    if args.json:
        print(json.dumps({"chip": chip, "macs": macs, "cpu_s": cpu, "rows": rows}, indent=1))
        return 0
    print(json.dumps(chip, indent=1))
    print(f"MACs of the same network digitally: {macs}")
    print("| task | system | time per sample | energy per sample | how | time ÷ chip's | energy ÷ chip's "
          "| energy ÷ chip's without converters |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['system']} | {r['time_s']:.3g} s | {r['energy_j']:.3g} J | {r['how']} | "
              f"{r['time_vs_chip']:.3g} | {r['energy_vs_chip']:.3g} | {r['energy_vs_bare_chip']:.3g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
