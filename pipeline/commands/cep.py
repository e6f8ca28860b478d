"""mixsig cep: continual EP's accumulated update against the exact gradient on a block and
a batch (analog/cep_study.py), with EP's own cosine against β; docs/transient.md records the
tables and explains the columns."""
from __future__ import annotations

import json
from types import SimpleNamespace

import click

HELP = ("continual EP's accumulated update against the exact gradient over β, the step count K and the "
        "per-step rate η, on a small block, the main job's block or a saved one (a study of the estimator, "
        "no training setting)")


def _floats(ctx, param, value):
    """'1e-7,1e-6' → [1e-7, 1e-6]; a bad or non-positive entry is a usage error naming the option."""
    if value is None:
        return None
    try:
        out = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: comma-separated numbers") from None
    if not out or any(not v > 0 for v in out):
        raise click.BadParameter(f"{value!r}: numbers > 0")
    return [int(v) for v in out] if param.name == "steps" else out


def _list(name, default, help):
    return click.option(name, callback=_floats, default=default, show_default=default is not None, help=help)


@click.command("cep", help=HELP + ". Blocks: small (4 inputs → 10 hidden → 3 outputs, MSE, uniform inputs in "
               "±AMPLITUDE with cyclic labels), fashion (the main job's block and loss on the stand-in "
               "embeddings of `mixsig bench` × AMPLITUDE, or uniform inputs), or --model with --embeddings "
               "(the first --samples training embeddings, the block's own loss).", short_help=HELP)
@click.option("--block", type=click.Choice(["small", "fashion"]), default="small", show_default=True)
@click.option("--model", type=click.Path(exists=True, file_okay=False), default=None,
              help="a saved analog model folder (runs/RUN/analog_model) instead of --block")
@click.option("--embeddings", type=click.Path(exists=True), default=None,
              help="with --model: embeddings.npz (or its folder) of its inputs")
@click.option("--samples", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--data", type=click.Choice(["fashion", "uniform"]), default="fashion", show_default=True,
              help="--block fashion: its inputs")
@click.option("--amplitude", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="inputs scaled to ± this (V)")
@click.option("--train-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="--block fashion: EP epochs on 2,000 embeddings first (the config's optimiser)")
@_list("--ep-betas", None, "β values (A) of the EP rows [default: --betas]")
@_list("--betas", "1e-5", "β values (A) of the C-EP rows")
@_list("--ratios", None, "η/β values (1/A) [default: 1e2,1e3,3e3,1e4 unless --etas]")
@_list("--etas", None, "per-step rates η instead of --ratios")
@_list("--steps", "10", "step counts K")
@click.option("--diagnose", is_flag=True, help="also the predictions from the echo without the C-EP loop "
                                               "(first order, series, η ρ)")
@click.option("--nudged", is_flag=True, help="also the series with the echo read at the nudged points")
@click.option("--no-clip", is_flag=True, help="let conductances leave [g_min, g_max]")
@click.option("--json", "json_", is_flag=True, help="print the rows as JSON")
def command(**kw) -> int:
    return run(SimpleNamespace(**kw))


def _problem(args):
    """(model, x, labels, what) for the options."""
    import numpy as np

    from analog.builders import build_dense_network
    if args.model is not None:
        from analog.model import AnalogModel
        from pipeline.commands.bench_epoch import load_embedding_file
        x, y, what = load_embedding_file(args.embeddings, args.samples)
        return AnalogModel.load(args.model), x, y, what
    rng = np.random.default_rng(0)
    if args.block == "small":
        m = build_dense_network(4, 3, hidden=(10,), g_min=1e-7, g_max=2e-5, gain=3.0, seed=0)
        m.compile(loss="mse", optimizer="sgd", beta=1e-6)
        x = rng.uniform(-args.amplitude, args.amplitude, (args.samples, 4))
        return m, x, np.arange(args.samples) % 3, "uniform inputs"
    from pipeline.commands.bench_epoch import main_block, stand_in_embeddings
    m, batch, _ = main_block()
    if args.data == "uniform":
        x = rng.uniform(-args.amplitude, args.amplitude, (args.samples, 150))
        return m, x, rng.integers(0, 10, args.samples), "uniform inputs"
    x, y, what = stand_in_embeddings(2000, 0)
    x = args.amplitude * x
    if args.train_epochs:
        m.fit(x, y, epochs=args.train_epochs, batch_size=batch, verbose=0)
    return m, x[:args.samples], y[:args.samples], what


def run(args) -> int:
    from analog.cep_study import cep_rows, conducting, ep_rows
    from pipeline.errors import OptionError
    if (args.model is None) != (args.embeddings is None):
        raise OptionError("--model and --embeddings go together")
    if args.etas and args.ratios:
        raise OptionError("--etas and --ratios: give one of them")
    m, x, y, what = _problem(args)
    ep = ep_rows(m, x, y, args.ep_betas or args.betas)
    cep = []
    for beta in args.betas:
        etas = args.etas or [r * beta for r in (args.ratios or [1e2, 1e3, 3e3, 1e4])]
        cep += cep_rows(m, x, y, beta, args.steps, etas, clip=not args.no_clip, diagnose=args.diagnose,
                        nudged=args.nudged)
    on = conducting(m, m.get_engine("native"), m.conductances, x)
    block = "saved" if args.model else args.block
    head = {"block": block, "data": what, "samples": len(x), "amplitude": args.amplitude,
            "train_epochs": args.train_epochs, "conducting": on}
    if args.json_:
        print(json.dumps({**head, "ep": ep, "cep": cep}, indent=1))
    else:
        _print(head, ep, cep)
    return 0


#: C-EP table columns: (key, header, format), printed when the rows have the key
_CEP = [("deviation", "‖C-EP − EP‖/‖EP‖", ".3g"), ("first_order", "first-order prediction", ".3g"),
        ("series", "series prediction", ".3g"), ("series_cosine", "cosine of the series", ".4f"),
        ("nudged", "series at the nudged points", ".3g"), ("nudged_cosine", "its cosine", ".4f"),
        ("eta_rho", "η ρ", ".3g"), ("moved", "largest ΔG / G_max", ".2g"), ("clipped", "clipped", "d"),
        ("kept", "samples kept", "d")]


def _print(head: dict, ep: list, cep: list) -> None:
    print(f"block {head['block']} ({head['data']}, {head['train_epochs']} EP epochs), {head['samples']} samples × "
          f"{head['amplitude']:g}, diodes conducting (> 0.35 V forward): {head['conducting']:.3f}")
    n = len(ep[0]["layers"])
    layers = " | ".join(f"layer {k}" for k in range(n))
    print(f"\n| β (A) | EP cosine | {layers} | diodes conducting at +β | largest |Δv| of the nudge (V) |")
    print("|---|---|" + "---|" * n + "---|---|")
    for r in ep:
        per = " | ".join(f"{c:.6f}" for c in r["layers"])
        print(f"| {r['beta']:g} | {r['cosine']:.6f} | {per} | {r['conducting']:.3f} | {r['displacement']:.3g} |")
    cols = [c for c in _CEP if cep and c[0] in cep[0]]
    print(f"\n| β (A) | K | η | η/β | C-EP cosine | {layers} | " + " | ".join(h for _, h, _ in cols) + " |")
    print("|---|---|---|---|---|" + "---|" * (n + len(cols)))
    for r in cep:
        per = " | ".join(f"{c:.4f}" for c in r["layers"])
        rest = " | ".join(format(r[k], f) for k, _, f in cols)
        print(f"| {r['beta']:g} | {r['steps']} | {r['eta']:g} | {r['eta'] / r['beta']:g} | {r['cosine']:.4f} | {per} | "
              f"{rest} |")
