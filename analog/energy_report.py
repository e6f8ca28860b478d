"""Time and energy per inference and per training sample: a block on the chip (transients,
sample-and-hold, programming pulses, converters; analog/training_energy.py) against the same
network computed digitally on a GPU (published figures, arithmetic shown) and on this
machine's CPU (measured; energy from an assumed power per core). `mixsig energy` prints it;
docs/transient.md explains it. The chip's own figures are energy_figures.FIGURES."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .amplifier_design import AmplifierDesign, reference_settling
from .energy_figures import ConverterCost, Figure
from .training_energy import PulseSpec, SampleHold, training_step

_HOROWITZ = ("Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, the energy "
             "table of Fig. 1.1.9 (45 nm, 0.9 V)")
#: the digital side's figures, as energy_figures.FIGURES gives the chip's
DIGITAL: dict[str, Figure] = {
    "mac_fp32": Figure(3.7e-12 + 0.9e-12, "J per 32-bit float multiply-add", _HOROWITZ + ": multiply 3.7 pJ + "
                       "add 0.9 pJ (read in Table 3 of pmc.ncbi.nlm.nih.gov/articles/PMC8934428)", "secondary"),
    "mac_int8": Figure(0.2e-12 + 0.03e-12, "J per 8-bit integer multiply-add", _HOROWITZ + ": multiply 0.2 pJ "
                       "+ add 0.03 pJ (no transcription of these found)", "secondary"),
    "operand_sram": Figure(10e-12 / 2, "J per 32-bit operand", _HOROWITZ + ": a 64-bit read from an 8 KB SRAM "
                           "10 pJ, so 5 pJ per 32-bit operand", "derived"),
    "gpu_flops": Figure(19.5e12, "FLOP/s", "NVIDIA A100 (SXM4) datasheet: 19.5 TFLOPS FP32 (no tensor cores), "
                        "read at glennklockwood.com/garden/processors/A100", "secondary"),
    "gpu_watts": Figure(400.0, "W", "NVIDIA A100 (SXM4) datasheet: 400 W board power, read at "
                        "glennklockwood.com/garden/processors/A100 and techpowerup.com", "secondary"),
    "cpu_watts_per_core": Figure(350.0 / 56, "W per core", "ours: a server CPU's TDP per core, 350 W over 56 "
                                 "cores as for a Xeon Platinum 8480+ (vendor figure not read); not this host's "
                                 "power: the CPU rows are timed on an AMD EPYC (lscpu family 25 model 17) under KVM "
                                 "since 2026-12-06 10:22 UTC, no power measured", "assumption"),
}


@dataclass(frozen=True)
class ChipSetting:
    """How the chip is driven: its programming pulse, converters, EP's nudge, when a phase
    counts as settled (a fraction of the nudge's displacement) and how long a phase runs (s)."""
    pulse: PulseSpec
    converters: ConverterCost
    beta: float = 1e-6
    rel_tol: float = 0.01
    duration: float = 2e-9
    amplifier_bias: float | None = None   # A per amplifier and S&H buffer; None: derived (amplifier_design.py)
    sh_acquire: float | None = None       # S&H acquisition, s; None: derived
    design: AmplifierDesign = AmplifierDesign()

    def supply(self):
        """The amplifiers' supply for the inference transient (bias None: derived from its settling)."""
        from .inference_energy import AmplifierSupply
        return AmplifierSupply(bias_a=self.amplifier_bias, design=self.design)

    def supply_and_hold(self, settle_s: float, load_f: float):
        """The amplifiers' supply and the sample-and-hold for a block that settles in settle_s
        with amplifiers driving load_f: a number given overrides the derived figure."""
        from .inference_energy import AmplifierSupply
        d = self.design
        amp = d.bias(load_f, settle_s) if self.amplifier_bias is None else self.amplifier_bias
        hold = d.hold_bias(settle_s) if self.amplifier_bias is None else self.amplifier_bias
        acquire = d.acquire_time(settle_s) if self.sh_acquire is None else self.sh_acquire
        return (AmplifierSupply(bias_a=amp, design=d),
                SampleHold(capacitance=d.hold_capacitance(), acquire_s=acquire, bias_a=hold))


def _block(model, chip=None, t: float = 0.0):
    """(circuit, conductances, native engine) of the model's block, or of the chip programmed
    from it read once at t seconds after programming (its varied circuit, its devices' drift
    and read noise)."""
    if chip is None:
        return model.circuit, model.conductances, model.get_engine("native")
    return chip.circuit, chip.conductances_at(t), chip.engine("native")


def inference_figures(model, x, converters: ConverterCost | None = None, duration: float = 2e-9,
                      supply=None, chip=None, t: float = 0.0) -> dict:
    """Mean settling time (s) and energy (J, converters included) per inference of a model's
    block (or of `chip` read at t) on inputs x (its settling transient, backward Euler at 5 ps,
    readout to 8 bits over 2 V), the converters' share, how many inputs did not settle within
    `duration`, the median settling time and the amplifiers' bias (default: derived from it,
    amplifier_design.py)."""
    from .capacitance import node_capacitance
    c, G, eng = _block(model, chip, t)
    return _inference(c, G, eng, node_capacitance(c), x, converters, duration, supply)


def _inference(c, G, eng, C, x, converters, duration: float, supply) -> dict:
    """inference_figures on one read: circuit c, conductances G, its engine, node capacitances C."""
    from .inference_energy import AmplifierSupply, measure_inferences, readout_tolerance
    from .transient import TransientSpec
    spec = TransientSpec(duration=duration, dt=5e-12, rise=1e-11)
    inf = measure_inferences(eng, G, C, c.source_voltages(x), spec=spec, tol=readout_tolerance(8, 2.0),
                             converters=converters, supply=supply or AmplifierSupply(bias_a=None))
    return {"inference_time_s": float(np.nanmean(inf["settle_time"])),
            "inference_energy_j": float(np.nanmean(inf["energy"])),
            "inference_converter_energy_j": float(np.mean(inf["energy_converters"])),
            "inference_amplifier_energy_j": float(np.nanmean(inf["energy_amplifiers"])),
            "inference_settle_p50_s": reference_settling(inf["settle_time"]),
            "amplifier_bias_a": float(inf["amplifier_bias"]),
            "inference_unsettled": int((~inf["settled"]).sum())}


def chip_figures(model, x, y, setting: ChipSetting, chip=None, t: float = 0.0) -> dict:
    """A compiled model's block on the chip, per sample (means over x): inference (settling
    transient), a training sample row by row and with every row at once, each phase, the
    pulses, sample-and-holds and converters, and the simulator's own seconds. chip: a chip
    programmed from the model (analog.hardware.program), read at t: its varied circuit and
    conductances instead of the ideal block's."""
    from .capacitance import amplifier_load, node_capacitance
    from .transient import NativeTransient, TransientSpec
    s, conv = setting, setting.converters
    c, G, eng = _block(model, chip, t)
    C = node_capacitance(c)
    spec = TransientSpec(duration=s.duration, dt=5e-12, rise=1e-11)
    t0 = time.perf_counter()
    inf = _inference(c, G, eng, C, x, conv, s.duration, s.supply())     # the same read as the training step
    load = float(np.max(amplifier_load(c)))
    supply, hold = s.supply_and_hold(inf["inference_settle_p50_s"], load)
    t1 = time.perf_counter()
    tr = NativeTransient(eng, C, spec)
    kw = dict(pulse=s.pulse, sample_hold=hold, rel_tol=s.rel_tol, converters=conv, supply=supply)
    st = training_step(tr, c, G, C, x, y, model.loss, s.beta, **kw)
    t2 = time.perf_counter()
    at_once = training_step(tr, c, G, C, x, y, model.loss, s.beta, all_rows_at_once=True, **kw)
    out = {"devices": int(sum(np.size(g) for g in G)), "pulse_energy_j": s.pulse.energy_j,
           "pulse_duration_s": s.pulse.duration_s, "pulse_reset": list(s.pulse.reset),
           "dac_bits": conv.dac_bits, "adc_bits": conv.adc_bits, **inf, "amplifier_bias_a": supply.bias_a,
           "amplifier_load_f": load, "amplifier_time_ratio": s.design.time_ratio,
           "sample_hold_bias_a": hold.bias_a, "sample_hold_capacitance_f": hold.capacitance,
           "sample_hold_acquire_s": hold.acquire_s,
           "training_converter_energy_j": st.converter_energy,
           "training_time_s": float(np.nanmean(st.time)), "training_energy_j": float(np.nanmean(st.energy)),
           "training_unsettled": {k: int((~p.settled).sum()) for k, p in st.phases.items()},
           "programming_pulses": float(np.mean(st.programming["pulses"])),
           "programming_energy_j": float(np.mean(st.programming["energy"])),
           "programming_time_s": float(np.mean(st.programming["time"])),
           "sample_hold_energy_j": float(np.nanmean(st.sample_hold_energy)),
           "training_all_rows_at_once_time_s": float(np.nanmean(at_once.time)),
           "training_all_rows_at_once_energy_j": float(np.nanmean(at_once.energy)),
           "simulation_s": {"inference": t1 - t0, "training": t2 - t1}}
    for k, p in st.phases.items():
        out[f"phase_{k}_time_s"] = float(np.nanmean(p.settle_time))
        out[f"phase_{k}_energy_j"] = float(np.nanmean(p.energy))
    out["simulated_ep_step_cpu_s"] = simulated_ep_step(c, G, eng, model.loss, x, y, s.beta)
    return out


def simulated_ep_step(circuit, G, eng, loss, x, y, beta) -> float:
    """Seconds per sample of this tool's own native EP step (simulating the circuit on the CPU)."""
    from .ep import ep_gradients
    best = np.inf
    for _ in range(3):               # the first call builds the engine's caches
        t0 = time.perf_counter()
        ep_gradients(eng, circuit, G, x, y, loss, beta, "symmetric")
        best = min(best, time.perf_counter() - t0)
    return best / len(x)


def digital_macs(features=150, hidden=100, classes=10) -> dict:
    """MACs of the same network (features → hidden → classes, weights W = G⁺ − G⁻) computed
    digitally: inference is the forward pass; a training sample (SGD, batch 1) adds the hidden
    error Wᵀδ, the weight gradients (one MAC per weight) and the update w −= η g (one per weight)."""
    weights = features * hidden + hidden * classes
    return {"inference": weights, "training": weights + hidden * classes + weights + weights}


def cpu_times(features=150, hidden=100, classes=10, n=2000) -> dict:
    """Measured seconds per sample of that network in numpy on one core (BLAS held to one
    thread): batch 1 and batch 256, forward only for inference; forward, backward and SGD
    update for training."""
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    W1, W2 = rng.normal(0, 0.1, (features, hidden)), rng.normal(0, 0.1, (hidden, classes))
    X, T = rng.uniform(-1, 1, (n, features)), np.eye(classes)[rng.integers(0, classes, n)]

    def step(x, t, lr=1e-3):
        h = np.tanh(x @ W1)
        d = h @ W2 - t
        dh = (d @ W2.T) * (1 - h * h)
        np.subtract(W2, lr * (h.T @ d), out=W2)
        np.subtract(W1, lr * (x.T @ dh), out=W1)

    out = {}
    with threadpool_limits(1):
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


def _digital_candidates(task: str, macs: int, cpu: dict) -> list[tuple]:
    """(system, time, energy, how) of the network computed digitally, per sample."""
    mac, operand = DIGITAL["mac_fp32"].value, DIGITAL["operand_sram"].value
    flops, watts, core = DIGITAL["gpu_flops"].value, DIGITAL["gpu_watts"].value, DIGITAL["cpu_watts_per_core"].value
    t_gpu = macs * 2 / flops
    return [("GPU A100, Horowitz per-op energy", t_gpu, macs * (mac + operand),
             f"{macs} MAC × ({mac * 1e12:.1f} + {operand * 1e12:.0f}) pJ; {2 * macs} FLOP / {flops / 1e12:.1f} TFLOPS"),
            ("GPU A100, board power at peak FP32", t_gpu, watts * macs * 2 / flops,
             f"{watts:.0f} W × {2 * macs} FLOP / {flops / 1e12:.1f} TFLOPS"),
            ("CPU (this machine, 1 core, batch 1)", cpu[f"{task}_b1"], cpu[f"{task}_b1"] * core,
             f"measured × {core:.2f} W"),
            ("CPU (this machine, 1 core, batch 256)", cpu[f"{task}_b256"], cpu[f"{task}_b256"] * core,
             f"measured × {core:.2f} W")]


def comparison(chip: dict, macs: dict, cpu: dict) -> list[dict]:
    """Rows per task (inference, training) and system; ratios against the chip with its
    converters and against the circuit alone."""
    rows = []
    core = DIGITAL["cpu_watts_per_core"].value
    for task in ("inference", "training"):
        t_chip, e_chip = chip[f"{task}_time_s"], chip[f"{task}_energy_j"]
        e_bare = e_chip - chip[f"{task}_converter_energy_j"]
        how = "phases + S&H + pulses, row by row" if task == "training" else "settling transient"
        bits = ", ".join("no " + kind if b is None else f"{b}-bit {kind}"
                         for kind, b in (("DACs", chip["dac_bits"]), ("ADCs", chip["adc_bits"])))
        cands = [("chip with converters", t_chip, e_chip, f"{how} + {bits}"),
                 ("chip without converters", t_chip, e_bare, how)]
        if task == "training":
            cands.append(("chip with converters, every row at once", chip["training_all_rows_at_once_time_s"],
                          chip["training_all_rows_at_once_energy_j"], "phases + S&H + pulses, one SET and one RESET pass"))
        cands += _digital_candidates(task, macs[task], cpu)
        if task == "training":
            s = chip["simulated_ep_step_cpu_s"]
            cands.append(("CPU simulating the circuit (native EP step)", s, s * core, f"measured × {core:.2f} W"))
        for name, t, e, how in cands:
            rows.append(dict(task=task, system=name, time_s=t, energy_j=e, how=how, time_vs_chip=t / t_chip,
                             energy_vs_chip=e / e_chip, energy_vs_bare_chip=e / e_bare))
    return rows


@dataclass(frozen=True)
class FrontEnd:
    """A digital front end of a recorded study: its MACs per image and test accuracies (%) of
    the encoder's own head, the analog block after its first training, the best end-to-end
    figure, and a digital head of the block's shape (None: not recorded)."""
    name: str
    macs: float
    digital_only: float
    analog_first: float
    analog_best: float
    digital_head: float | None = None


def split_rows(front_ends, e_analog: float, head_macs: int | None = None) -> list[dict]:
    """Energy per image of each front end behind the analog block (`e_analog` J per
    inference, converters included) or behind a digital head of `head_macs` MACs (default:
    digital_macs()'s 150 → 100 → 10), with MACs at DIGITAL's int8 and FP32 energies
    (arithmetic only), and the share of the image's energy the analog head saves."""
    head = digital_macs()["inference"] if head_macs is None else head_macs
    out = []
    for fe in front_ends:
        for kind in ("int8", "fp32"):
            e = DIGITAL[f"mac_{kind}"].value
            front, digital = fe.macs * e, fe.macs * e + head * e
            out.append(dict(front_end=fe.name, macs=fe.macs, arithmetic=kind, front_j=front,
                            analog_j=front + e_analog, digital_head_j=digital,
                            saved_fraction=(head * e - e_analog) / digital, acc_analog=fe.analog_best,
                            acc_first=fe.analog_first, acc_digital_only=fe.digital_only,
                            acc_digital_head=fe.digital_head))
    return out
