"""mixsig energy: time and energy per inference and per training sample of the main job's
block on the chip, against the same network on a GPU (published figures) and on this
machine's CPU (measured). The arithmetic is analog/energy_report.py's; docs/transient.md
explains the figures and their sources."""
from __future__ import annotations

import json

import click

HELP = ("time and energy per inference and per training sample of the main job's block on the chip "
        "(transients, sample-and-hold, programming pulses, converters) against the same network on a GPU "
        "and this machine's CPU")


@click.command("energy", help=HELP, short_help=HELP)
@click.option("--samples", type=click.IntRange(min=1), default=16, show_default=True,
              help="random inputs in ±1 V simulated as transients")
@click.option("--device", type=click.Choice(["rram", "pcm"]), default="rram", show_default=True,
              help="the programming pulses' device (analog/energy_figures.py gives their figures and sources)")
@click.option("--pulse-energy", type=float, default=None, help="J per programming pulse [default: the device's]")
@click.option("--pulse-duration", type=float, default=None, help="s per programming pulse [default: the device's]")
@click.option("--dac-bits", type=click.IntRange(min=0), default=8, show_default=True,
              help="input DAC bits (0: no DACs counted)")
@click.option("--adc-bits", type=click.IntRange(min=0), default=8, show_default=True,
              help="output ADC bits (0: no ADCs counted)")
@click.option("--beta", type=click.FloatRange(min=0, min_open=True), default=1e-6, show_default=True,
              help="EP's nudge")
@click.option("--rel-tol", type=click.FloatRange(min=0, min_open=True), default=0.01, show_default=True,
              help="a phase has settled within this fraction of the nudge's displacement")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=2e-9, show_default=True,
              help="simulated length of each phase, s")
@click.option("--amplifier-bias", type=click.FloatRange(min=0, min_open=True), default=None,
              help="A per amplifier and sample-and-hold buffer [default: derived from the block's settling "
                   "time and the loads they drive, analog/amplifier_design.py]")
@click.option("--sh-acquire", type=click.FloatRange(min=0, min_open=True), default=None,
              help="sample-and-hold acquisition time, s [default: derived, analog/amplifier_design.py]")
@click.option("--amplifier-time-ratio", type=click.FloatRange(min=0, max=1, min_open=True), default=0.1,
              show_default=True, help="derived bias: each amplifier's and hold buffer's time constant as a "
                                      "fraction of the block's median settling time")
@click.option("--slope-factor", type=click.FloatRange(min=1, max=3), default=1.4, show_default=True,
              help="derived bias: the transistors' weak-inversion slope factor n (g_m/I_D = 1/(n U_T))")
@click.option("--chip", "chip_preset", default=None, metavar="PRESET",
              help="the block programmed onto a chip of this hardware preset (pcm, rram, ...; a bad name "
                   "lists them) and read at --read-time: its varied circuit, drift and read noise "
                   "[default: the ideal block]")
@click.option("--read-time", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="--chip: seconds after programming at which the chip is read")
@click.option("--split", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="instead: the split seen as energy, for the front ends a YAML file lists (front_ends: name, "
                   "macs, digital_only, analog_first, analog_best, digital_head; e.g. experiments/records/split_energy.yaml): "
                   "energy per image behind the analog block (its inference energy with converters) or behind a "
                   "digital head of the block's shape, at int8 and FP32 MACs")
@click.option("--plot", type=click.Path(dir_okay=False, writable=True), default=None,
              help="--split: draw accuracy against energy per image to this PNG")
@click.option("--pole-check", type=click.IntRange(min=1), default=None, metavar="N",
              help="instead: ngspice .tran of the first N of the --samples inputs with ideal and with single-pole "
                   "amplifiers at the derived g_m; each sample's settling delay as a fraction of the block's "
                   "settling time (the design asks for --amplifier-time-ratio)")
@click.option("--json", "json_", is_flag=True, help="print the figures as JSON")
def command(samples, device, pulse_energy, pulse_duration, dac_bits, adc_bits, beta, rel_tol, duration,
            amplifier_bias, sh_acquire, amplifier_time_ratio, slope_factor, chip_preset, read_time, split, plot,
            pole_check, json_) -> int:
    from analog.amplifier_design import AmplifierDesign
    from analog.energy_figures import ConverterCost
    from analog.energy_report import ChipSetting, chip_figures, comparison, cpu_times, digital_macs
    from pipeline.commands.bench import fashion_block
    design = AmplifierDesign(time_ratio=amplifier_time_ratio, slope=slope_factor)
    setting = ChipSetting(_pulse(device, pulse_energy, pulse_duration), ConverterCost(dac_bits or None,
                          adc_bits or None), beta=beta, rel_tol=rel_tol, duration=duration,
                          amplifier_bias=amplifier_bias, sh_acquire=sh_acquire, design=design)
    if split or plot:
        return _split(split, plot, samples, setting, json_)
    if pole_check:
        return _pole_check(samples, pole_check, design, json_)
    model = fashion_block()
    model.compile(loss="mse", optimizer="sgd", beta=beta)
    x, y = _inputs(samples)
    chip = chip_figures(model, x, y, setting, *_programmed(model, chip_preset, read_time))
    macs, cpu = digital_macs(), cpu_times()
    rows = comparison(chip, macs, cpu)
    if json_:
        print(json.dumps({"chip": chip, "macs": macs, "cpu_s": cpu, "rows": rows}, indent=1))
    else:
        _print_table(chip, macs, rows)
    return 0


def _inputs(samples: int) -> tuple:
    """The random inputs in ±1 V (and labels) every figure of this command is computed on."""
    import numpy as np
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (samples, 150)), rng.integers(0, 10, samples)


def _programmed(model, preset, read_time: float) -> tuple:
    """(chip, t) for chip_figures: the model programmed onto `preset` (seed 0), or (None, 0)."""
    if preset is None:
        return None, 0.0
    from analog.hardware import program, resolve_hardware
    from pipeline.errors import OptionError
    try:
        spec = resolve_hardware(preset)
    except (ValueError, KeyError) as exc:
        raise OptionError(f"--chip {preset}: {exc}") from None
    return program(model, spec, seed=0), read_time


def _pulse(device: str, energy, duration):
    """The device's pulse; an --pulse-energy or --pulse-duration applies to SET and RESET alike."""
    from analog.training_energy import PulseSpec, device_pulse
    pulse = device_pulse(device)
    if energy is None and duration is None:
        return pulse
    return PulseSpec(pulse.energy_j if energy is None else energy, pulse.duration_s if duration is None else duration,
                     keys=("--pulse-energy", "--pulse-duration"))


def _print_table(chip: dict, macs: dict, rows: list) -> None:
    print(json.dumps(chip, indent=1))
    print(f"MACs of the same network digitally: {macs}")
    print("| task | system | time per sample | energy per sample | how | time ÷ chip's | energy ÷ chip's "
          "| energy ÷ chip's without converters |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['system']} | {r['time_s']:.3g} s | {r['energy_j']:.3g} J | {r['how']} | "
              f"{r['time_vs_chip']:.3g} | {r['energy_vs_chip']:.3g} | {r['energy_vs_bare_chip']:.3g} |")


def _split(path, plot, samples: int, setting, json_: bool) -> int:
    """The front ends of `path` behind the analog block (inference energy of the main job's
    block shape on `samples` random inputs in ±1 V) or a digital head of its shape."""
    from analog.energy_report import digital_macs, inference_figures, split_rows
    from pipeline.commands.bench import fashion_block
    from pipeline.errors import OptionError
    if not path:
        raise OptionError("--plot is an option of --split, which was not given")
    front_ends = _front_ends(path)
    x, _ = _inputs(samples)
    converters = setting.converters
    inf = inference_figures(fashion_block(), x, converters, supply=setting.supply())
    e_analog, e_conv, head = inf["inference_energy_j"], inf["inference_converter_energy_j"], digital_macs()["inference"]
    rows = split_rows(front_ends, e_analog, head)
    if plot:
        from pipeline.flow.plots import split_energy
        split_energy(rows, e_analog, head, plot)
    if json_:
        print(json.dumps({"inference": inf, "head_macs": head, "rows": rows}, indent=1))
        return 0
    dac, adc = converters.dac_bits or 0, converters.adc_bits or 0
    print(f"analog block: {e_analog * 1e12:.2f} pJ per inference (circuit {(e_analog - e_conv) * 1e12:.2f} pJ, of "
          f"which amplifiers {inf['inference_amplifier_energy_j'] * 1e12:.3f} pJ at {inf['amplifier_bias_a'] * 1e6:.3g} "
          f"uA each, + converters {e_conv * 1e12:.2f} pJ: {dac}-bit DACs, {adc}-bit ADCs); digital head {head} MACs")
    print("| front end | MACs | arithmetic | front end (nJ) | + analog block (nJ) | + digital head (nJ) | "
          "energy saved by the analog block | accuracy: analog, best end to end | digital head (backprop) | "
          "digital only |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        dh = "–" if r["acc_digital_head"] is None else f"{r['acc_digital_head']:.2f}"
        print(f"| {r['front_end']} | {r['macs'] / 1e6:.3f} M | {r['arithmetic']} | {r['front_j'] * 1e9:.3g} | "
              f"{r['analog_j'] * 1e9:.4g} | {r['digital_head_j'] * 1e9:.4g} | {100 * r['saved_fraction']:.2f} % | "
              f"{r['acc_analog']:.2f} | {dh} | {r['acc_digital_only']:.2f} |")
    if plot:
        print(f"plot: {plot}")
    return 0


def _pole_check(samples: int, n_spice: int, design, json_: bool) -> int:
    """The ideal-amplifier approximation on the main job's block (analog/amplifier_check.py)."""
    from analog.amplifier_check import pole_delays
    from pipeline.commands.bench import fashion_block
    from pipeline.errors import OptionError
    if n_spice > samples:
        raise OptionError(f"--pole-check {n_spice}: at most --samples ({samples}) inputs")
    x, _ = _inputs(samples)
    r = pole_delays(fashion_block(), x, n_spice, design)
    if json_:
        print(json.dumps(r, indent=1))
        return 0
    print(f"t_s {r['t_ref_s'] * 1e12:.1f} ps (native, median of {samples} inputs), C_L {r['load_f'] * 1e15:.2f} fF, "
          f"g_m {r['g_m_s'] * 1e3:.3f} mS, bias {r['bias_a'] * 1e6:.2f} uA per amplifier")
    for i, (a, b, d) in enumerate(zip(r["ideal_s"], r["single_pole_s"], r["delay_over_t_ref"])):
        print(f"sample {i}: ideal {a * 1e12:.1f} ps, single-pole {b * 1e12:.1f} ps, delay {d:.3f} t_s "
              f"(design {r['time_ratio']})")
    return 0


def _front_ends(path) -> list:
    """The FrontEnd rows of a --split file; a bad row is an OptionError naming it."""
    import yaml

    from analog.energy_report import FrontEnd
    from pipeline.errors import OptionError
    with open(path) as fh:
        raw = yaml.safe_load(fh)
    rows = raw.get("front_ends") if isinstance(raw, dict) else None
    if not isinstance(rows, list) or not rows:
        raise OptionError(f"--split {path}: needs a non-empty list front_ends:")
    out = []
    for i, row in enumerate(rows):
        try:
            fe = FrontEnd(**row)
        except TypeError as exc:
            raise OptionError(f"--split {path}: front_ends[{i}]: {exc}") from None
        bad = [k for k in ("macs", "digital_only", "analog_first", "analog_best")
               if not isinstance(getattr(fe, k), (int, float)) or getattr(fe, k) < 0]
        if bad or not (fe.digital_head is None or isinstance(fe.digital_head, (int, float))):
            raise OptionError(f"--split {path}: front_ends[{i}].{(bad or ['digital_head'])[0]} must be a number >= 0")
        out.append(fe)
    return out
