"""mixsig bench: throughput of the engines and of EP training on the Fashion-sized block.

Every figure is measured in the same run, so the ratios compare like with like on a
machine that may be busy with other work."""
from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any, NamedTuple

import click

from pipeline.commands.bench_scaling import SIZES, WIDTHS

HELP = ("measure samples/s: native engine, ngspice (loaded and rebuilt per sample), EP training step, "
        "the same on real devices (a programmed chip with read noise, hardware-aware and pulsed EP steps), "
        "and one EP training epoch of the main job's block against a Keras backprop epoch; "
        "--scaling: EP step time against block size instead; --lc-pixels: the Fashion pixel blocks' EP "
        "training rate, locally connected against dense; --digital: CNN encoder epochs")


def fashion_block(seed: int = 0):
    """150 features (+ inverted copies) and 2 bias sources → 100 hidden nodes, each with two
    diodes and an amplifier → 20 output nodes (10 differential outputs)."""
    from analog.builders import build_dense_network
    return build_dense_network(150, 10, hidden=(100,), g_min=1e-7, g_max=2e-5, gain=4.0, up_bias=-0.3,
                               down_bias=0.3, seed=seed, name="fashion_block")


def _rate(fn, n: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


class ModeOption(NamedTuple):
    """An option of one study mode: given without its mode it is refused; not given, it is
    `default` (`shown` in the help when the default is not itself readable)."""
    name: str
    type: Any
    default: Any
    doc: str
    multiple: bool = False
    shown: str | None = None


#: each single-study mode of `bench` (measure that study only): its flag's help, its options
MODES = {
    "scaling": ("measure only EP step time against block size (dense hidden widths, LC image sizes) and its "
                "fitted exponent per family", (
        ModeOption("scaling-width", click.IntRange(min=1), WIDTHS,
                   "a dense block's hidden width (repeatable)", multiple=True),
        ModeOption("scaling-size", click.IntRange(min=4), SIZES,
                   "an LC block's image side (repeatable)", multiple=True),
        ModeOption("scaling-batches", click.IntRange(min=1), 4, "mini-batches of 64 per timed epoch"),
        ModeOption("scaling-repeats", click.IntRange(min=1), 2, "timed epochs per block (the best counts)"),
        ModeOption("scaling-ngspice", click.IntRange(min=0), 8,
                   "operating points per block timed in one loaded ngspice worker, a sign-off actor's "
                   "throughput (0: none)"),
        ModeOption("plot", click.Path(dir_okay=False, writable=True), None,
                   "draw time against conductances to this PNG"))),
    "lc-pixels": ("measure only the EP training rate of experiments/fashion_pixels_lc.yaml's and "
                  "fashion_pixels_dense.yaml's blocks on pixels, and the LC block's cost per conductance", (
        ModeOption("lc-samples", click.IntRange(min=1), 960, "timed training images per block"),
        ModeOption("lc-warmup", click.IntRange(min=0), 64,
                   "untimed training images first (more: a part-trained block)"),
        ModeOption("lc-repeats", click.IntRange(min=1), 2, "alternating runs per block (the best counts)"))),
    "digital": ("measure only CNN encoder seconds per fit epoch, fit_targets epoch and embedding pass", (
        ModeOption("digital-samples", click.IntRange(min=1), 12800,
                   "Fashion-MNIST training images timed (figures scaled to 54,000)"),
        ModeOption("digital-variant", str, (), "NAME[:key=value;...] of CNNEncoder params, e.g. "
                   "'lean:filters=(16,32,64)' (repeatable)", multiple=True, shown="base"))),
}


def _mode_options(f):
    """The modes' flags and options as click options, in the table's order."""
    decorators = []
    for mode, (doc, options) in MODES.items():
        decorators.append(click.option(f"--{mode}", is_flag=True, help=doc))
        for o in options:
            shown = o.shown or (" ".join(map(str, o.default)) if isinstance(o.default, tuple) else o.default)
            suffix = "" if shown is None else f" [default: {shown}]"
            decorators.append(click.option(f"--{o.name}", type=o.type, default=None, multiple=o.multiple,
                                           help=f"--{mode}: {o.doc}{suffix}"))
    for d in reversed(decorators):
        f = d(f)
    return f


@click.command("bench", help=HELP, short_help=HELP)
@click.option("--batch", type=click.IntRange(min=1), default=2000, show_default=True, help="samples for the native engine")
@click.option("--train-samples", type=click.IntRange(min=1), default=6000, show_default=True, help="samples for the EP training step")
@click.option("--train-batch", type=click.IntRange(min=1), default=200, show_default=True, help="EP mini-batch size (EBANA's)")
@click.option("--ngspice-samples", type=click.IntRange(min=1), default=40, show_default=True, help="samples for ngspice with a loaded circuit")
@click.option("--rebuild-samples", type=click.IntRange(min=1), default=4, show_default=True, help="samples for ngspice rebuilding the netlist")
@click.option("--processes", type=click.IntRange(min=1), default=2, show_default=True, help="ngspice worker processes")
@click.option("--no-ngspice", is_flag=True, help="measure the native engine only")
@click.option("--no-hardware", is_flag=True, help="skip the real-device figures (chip solve, aware and pulsed EP steps)")
@click.option("--no-edges", is_flag=True, help="skip the figures of a chip with converters and wire resistance")
@click.option("--epoch-samples", type=click.IntRange(min=0), default=10000, show_default=True,
              help="samples of the EP-vs-backprop epoch on the main job's block (0: skip it)")
@click.option("--embeddings", type=click.Path(exists=True, dir_okay=True), default=None,
              help="embeddings.npz (or its folder) from `mixsig embed` for that epoch; default: a stand-in "
                   "(an MLP encoder's tanh embedding of Fashion-MNIST)")
@click.option("--transient-samples", type=click.IntRange(min=0), default=64, show_default=True,
              help="samples of the native transient (settling time and energy per inference; 0: skip)")
@click.option("--transient-ngspice-samples", type=click.IntRange(min=0), default=1, show_default=True,
              help="samples of ngspice's .tran on the same block and grid (one ngspice -b each)")
@click.option("--profile", is_flag=True, help="profile that EP epoch: time per part of the step")
@_mode_options
@click.option("--json", "json_", is_flag=True, help="print the figures as JSON")
def command(json_, **kw) -> int:
    return run(SimpleNamespace(json=json_, **kw))


def _hardware_rates(model, eng, x, y, args) -> dict:
    """Real devices on the same block, measured like the ideal figures above: a PCM chip
    read one hour after programming (drift + fresh 1/f read noise on every batch solve),
    an EP step that sees a fresh PCM programming-noise draw per mini-batch, and an EP step
    whose updates are RRAM programming pulses."""
    import numpy as np

    from analog.ep import ep_gradients
    from analog.hardware import NoiseInjection, PulsedOptimizer, program, resolve_hardware

    out: dict = {}
    pcm, rram = resolve_hardware("pcm"), resolve_hardware("rram")
    chip = program(model, pcm, seed=0)
    out["chip_native_samples_per_s"] = _rate(lambda: chip.solve(x[: args.batch], t=3600.0), args.batch)
    out["ratio_chip_vs_native"] = out["chip_native_samples_per_s"] / _native_rate_again(eng, model, x, args)
    noise, rng = NoiseInjection(pcm), np.random.default_rng(1)
    pulsed = PulsedOptimizer(rram, lr=0.01, base="adam")
    G0 = [g.copy() for g in model.conductances]

    def step_epoch(perturb: bool, optimizer):
        model.set_conductances(G0)
        for lo in range(0, args.train_samples, args.train_batch):
            sl = slice(lo, lo + args.train_batch)
            G = noise.perturb(model.conductances, model.dense_layers, rng) if perturb else model.conductances
            g = ep_gradients(eng, model.circuit, G, x[sl], y[sl], model.loss, model.beta, "symmetric")
            optimizer.apply(model.dense_layers, g.grads)

    out["ep_train_aware_samples_per_s"] = _rate(lambda: step_epoch(True, model.optimizer), args.train_samples, 2)
    out["ep_train_pulsed_samples_per_s"] = _rate(lambda: step_epoch(False, pulsed), args.train_samples, 2)
    out["ep_train_ideal_again_samples_per_s"] = _rate(lambda: step_epoch(False, model.optimizer), args.train_samples, 2)
    ideal = out["ep_train_ideal_again_samples_per_s"]
    out["ratio_aware_vs_ideal_step"] = out["ep_train_aware_samples_per_s"] / ideal
    out["ratio_pulsed_vs_ideal_step"] = out["ep_train_pulsed_samples_per_s"] / ideal
    model.set_conductances(G0)
    chip.close()
    if not getattr(args, "no_edges", False):
        out.update(_edge_rates(model, eng, x, y, args, step_epoch))
    model.set_conductances(G0)
    return out


#: the bench's chip with edges: PCM devices, 8-bit DAC and ADC, 2.5 Ω per wire segment
EDGES = {"dac": {"bits": 8, "range": 1.0}, "adc": {"bits": 8, "range": 1.0}, "wires": {"r_segment": 2.5}}


def _edge_rates(model, eng, x, y, args, step_epoch) -> dict:
    """A PCM chip with converters and wire resistance (EDGES): its solve rate (a fresh read,
    so a fresh wire reduction, per batch) and an EP training step on its circuit (one
    reduction per update), each against the ideal figure measured right after it."""
    from analog.ep import ep_gradients
    from analog.hardware import program, resolve_hardware

    out: dict = {}
    chip = program(model, resolve_hardware("pcm", EDGES), seed=0)
    out["chip_wires_native_samples_per_s"] = _rate(lambda: chip.solve(x[: args.batch], t=3600.0), args.batch)
    out["ratio_chip_wires_vs_native"] = out["chip_wires_native_samples_per_s"] / _native_rate_again(eng, model, x, args)
    wired = chip.engine("native")
    G0 = [g.copy() for g in model.conductances]
    n = min(args.train_samples, 2 * args.train_batch)    # two updates: each costs a reduction

    def wired_epoch():
        model.set_conductances(G0)
        for lo in range(0, n, args.train_batch):
            sl = slice(lo, lo + args.train_batch)
            g = ep_gradients(wired, chip.circuit, model.conductances, x[sl], y[sl], model.loss, model.beta,
                             "symmetric")
            model.optimizer.apply(model.dense_layers, g.grads)

    # best of two like the ideal step (the first also loads the compiled drop kernel)
    out["ep_train_wires_samples_per_s"] = _rate(wired_epoch, n, 2)
    ideal = _rate(lambda: step_epoch(False, model.optimizer), args.train_samples, 2)
    out["ratio_wires_vs_ideal_step"] = out["ep_train_wires_samples_per_s"] / ideal
    chip.close()
    return out


def _native_rate_again(eng, model, x, args) -> float:
    """The ideal native rate measured right after the chip's (the machine is shared: ratios
    compare figures taken seconds apart, not minutes)."""
    G = model.conductances
    return _rate(lambda: eng.solve(G, x[: args.batch]), args.batch)


def _native_figures(args):
    """The Fashion-sized block, its inputs and the ideal native figures: (model, engine, x, y, res)."""
    import numpy as np

    from analog.ep import ep_gradients

    model = fashion_block()
    model.compile(loss="mse", optimizer="adam", beta=1e-6, nudging="symmetric")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (max(args.batch, args.train_samples), 150))
    y = rng.integers(0, 10, len(x))
    eng = model.get_engine("native")
    G = model.conductances
    res: dict = {"block": "150(+150 inverted, +2 bias) -> 100 (2 diodes + amplifier each) -> 20",
                 "elements": int(sum(g.size for g in G))}
    res["native_samples_per_s"] = _rate(lambda: eng.solve(G, x[: args.batch]), args.batch)

    def train_epoch():
        for lo in range(0, args.train_samples, args.train_batch):
            sl = slice(lo, lo + args.train_batch)
            g = ep_gradients(eng, model.circuit, model.conductances, x[sl], y[sl], model.loss, model.beta, "symmetric")
            model.optimizer.apply(model.dense_layers, g.grads)

    res["ep_train_samples_per_s"] = _rate(train_epoch, args.train_samples, repeats=2)
    res["ep_train_seconds_per_60k_epoch"] = 60000 / res["ep_train_samples_per_s"]
    return model, eng, x, y, res


def _ngspice_figures(model, eng, x, args) -> dict:
    """ngspice on the same block: a loaded circuit and a netlist rebuilt per sample, against
    the native engine (rates and the largest voltage difference)."""
    import numpy as np

    from analog.ngspice import NgspiceEngine
    res: dict = {}
    G = model.conductances
    xs = x[: args.ngspice_samples]
    with NgspiceEngine(model.circuit, processes=args.processes, mode="loaded") as spice:
        t0 = time.perf_counter()
        spice.solve(G, xs[:args.processes])  # loads the circuit in every worker
        res["ngspice_load_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sol = spice.solve(G, xs)
        res["ngspice_loaded_samples_per_s"] = len(xs) / (time.perf_counter() - t0)
    native = eng.solve(G, xs)
    ok = sol.converged & native.converged
    res["max_abs_dv_native_vs_ngspice"] = float(np.abs(sol.v[ok] - native.v[ok]).max())
    xr = x[: args.rebuild_samples]
    with NgspiceEngine(model.circuit, processes=args.processes, mode="rebuild") as spice:
        spice.solve(G, x[-args.processes:])   # start the workers and their libngspice, as above
        t0 = time.perf_counter()
        spice.solve(G, xr)
        res["ngspice_rebuild_samples_per_s"] = len(xr) / (time.perf_counter() - t0)
    res["ratio_loaded_vs_rebuild"] = res["ngspice_loaded_samples_per_s"] / res["ngspice_rebuild_samples_per_s"]
    return res


def _mode(args) -> str | None:
    """The one study mode asked for (None: the engine figures); refuses a mode's option without
    it, then gives the mode's options not given their defaults."""
    from pipeline.errors import OptionError
    modes = [m for m in MODES if getattr(args, m.replace("-", "_"), False)]
    if len(modes) > 1:
        raise OptionError(f"--{modes[0]} and --{modes[1]} are separate runs")
    for mode, (_, options) in MODES.items():
        for o in options:
            key = o.name.replace("-", "_")
            if getattr(args, key, None) in (None, ()):
                setattr(args, key, o.default)
            elif mode not in modes:
                raise OptionError(f"--{o.name} is an option of --{mode}, which was not given")
    return modes[0] if modes else None


def run(args) -> int:
    mode = _mode(args)
    if mode:
        return _run_mode(mode, args)
    model, eng, x, y, res = _native_figures(args)
    if not args.no_hardware:
        res.update(_hardware_rates(model, eng, x, y, args))
    if not args.no_ngspice:
        res.update(_ngspice_figures(model, eng, x, args))
        res["ratio_native_vs_ngspice_loaded"] = res["native_samples_per_s"] / res["ngspice_loaded_samples_per_s"]
    if getattr(args, "transient_samples", 0):
        from pipeline.commands.bench_transient import run_transient_bench
        res.update(run_transient_bench(model, x, args.transient_samples,
                                       0 if args.no_ngspice else args.transient_ngspice_samples))
    res["ratio_native_ops_vs_target_3000"] = res["native_samples_per_s"] / 3000.0
    res["ratio_ep_train_vs_target_1000"] = res["ep_train_samples_per_s"] / 1000.0
    if args.epoch_samples:
        from pipeline.commands.bench_epoch import run_epoch_bench
        res.update(run_epoch_bench(args.epoch_samples, args.embeddings, args.profile))
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        _print_report(res, args)
    return 0


def _run_mode(mode: str, args) -> int:
    if mode == "scaling":
        from pipeline.commands.bench_scaling import plot_scaling, print_scaling_bench, run_scaling_bench
        res = run_scaling_bench(args.scaling_width, args.scaling_size, args.scaling_batches, args.scaling_repeats,
                                args.scaling_ngspice)
        if args.plot:
            plot_scaling(res, args.plot)
        show = print_scaling_bench
    elif mode == "lc-pixels":
        from pipeline.commands.bench_pixels import print_pixels_bench, run_pixels_bench
        res = run_pixels_bench(args.lc_samples, args.lc_warmup, args.lc_repeats)
        show = print_pixels_bench
    else:
        from pipeline.commands.bench_digital import print_digital_bench, run_digital_bench
        res = run_digital_bench(tuple(args.digital_variant), args.digital_samples)
        show = print_digital_bench
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        show(res)
        if getattr(args, "plot", None):
            print(f"wrote {args.plot}")
    return 0


def _print_report(res: dict, args) -> None:
    print(f"Fashion-sized block: {res['block']} ({res['elements']} conductances)")
    print(f"  native engine            {res['native_samples_per_s']:>10.0f} operating points/s")
    print(f"  EP training step (sym.)  {res['ep_train_samples_per_s']:>10.0f} samples/s "
          f"(60k epoch in {res['ep_train_seconds_per_60k_epoch']:.0f} s)")
    if not args.no_hardware:
        print(f"  PCM chip, t = 1 h, read noise {res['chip_native_samples_per_s']:>6.0f} operating points/s "
              f"({res['ratio_chip_vs_native']:.2f}x the ideal native rate; target >= 0.90)")
        print(f"  EP step, hardware-aware  {res['ep_train_aware_samples_per_s']:>10.0f} samples/s "
              f"({res['ratio_aware_vs_ideal_step']:.2f}x ideal; target >= 0.75)")
        print(f"  EP step, RRAM pulses     {res['ep_train_pulsed_samples_per_s']:>10.0f} samples/s "
              f"({res['ratio_pulsed_vs_ideal_step']:.2f}x ideal; target >= 0.75)")
    if not args.no_hardware and "chip_wires_native_samples_per_s" in res:
        print(f"  chip with converters + wires {res['chip_wires_native_samples_per_s']:>6.0f} operating points/s "
              f"({res['ratio_chip_wires_vs_native']:.2f}x the ideal native rate; target >= 0.50)")
        print(f"  EP step, converters + wires {res['ep_train_wires_samples_per_s']:>7.0f} samples/s "
              f"({res['ratio_wires_vs_ideal_step']:.2f}x ideal; target >= 0.40)")
    if not args.no_ngspice:
        print(f"  ngspice, loaded circuit  {res['ngspice_loaded_samples_per_s']:>10.2f} samples/s "
              f"({args.processes} processes; load {res['ngspice_load_seconds']:.1f} s)")
        print(f"  ngspice, rebuilt/sample  {res['ngspice_rebuild_samples_per_s']:>10.2f} samples/s")
        print(f"  loaded / rebuild         {res['ratio_loaded_vs_rebuild']:>10.1f}x")
        print(f"  native / ngspice loaded  {res['ratio_native_vs_ngspice_loaded']:>10.0f}x")
        print(f"  max |V_native − V_ngspice| {res['max_abs_dv_native_vs_ngspice']:.2e} V")
    if getattr(args, "transient_samples", 0):
        from pipeline.commands.bench_transient import print_transient_bench
        print_transient_bench(res)
    if args.epoch_samples:
        from pipeline.commands.bench_epoch import print_epoch_bench
        print_epoch_bench(res)
