"""mixsig verify: EP gradient quality and native–ngspice agreement for an experiment's block."""
from __future__ import annotations

from typing import TYPE_CHECKING

import json
from types import SimpleNamespace

import click

from pipeline.commands import options as opt

if TYPE_CHECKING:
    from pipeline.config import RootConfig

HELP = "check a config's circuit: native vs ngspice voltages, EP vs exact gradients"


def _samples(cfg: RootConfig, n: int):
    """Input voltages and labels of n training samples: tabular features scaled to the
    input range; for images, a PCA embedding scaled to the analog input range."""
    import numpy as np

    from pipeline.data import load_dataset
    data_cfg = cfg.data
    if data_cfg.dataset == "fashion_mnist":
        data_cfg = data_cfg.model_copy(update={"limit_train": max(n * 10, 500),
                                               "limit_test": data_cfg.limit_test or 100})
    ds = load_dataset(data_cfg, seed=cfg.seed)
    x, y = ds.x_train, ds.y_train
    amp = cfg.analog.input_amplitude
    if x.ndim > 2:
        from sklearn.decomposition import PCA
        flat = x.reshape(len(x), -1).astype(float) / 255.0
        z = PCA(n_components=cfg.digital.embedding_dim, random_state=0).fit_transform(flat)
        x = np.clip(z / (3 * z.std(0, keepdims=True) + 1e-12), -1, 1) * amp
    else:
        mu, sd = x.mean(0), x.std(0) + 1e-12
        x = np.clip((x - mu) / (3 * sd), -1, 1) * amp
    rng = np.random.default_rng(cfg.seed)
    idx = rng.choice(len(x), size=min(n, len(x)), replace=False)
    return x[idx], y[idx].astype(int), ds.n_classes


@click.command("verify", help=HELP, short_help=HELP)
@click.argument("config")
@click.option("-n", "--samples", type=click.IntRange(min=1), default=32, show_default=True, help="samples of the config's data")
@click.option("--model", help="a saved analog model folder to check instead of a freshly initialised block")
@click.option("--beta", type=float, help="nudging strength (default: the config's training.beta)")
@click.option("--no-ngspice", is_flag=True, help="skip the ngspice comparison")
@click.option("--hardware", metavar="PRESET",
              help="check the block programmed onto a chip of this device preset (e.g. pcm, rram, ebana-4level; "
                   "the config's hardware section overrides its fields)")
@click.option("--time", "t", type=float, default=0.0, show_default=True,
              help="with --hardware: seconds after programming at which the chip is read")
@click.option("--chip-seed", type=int, default=None, help="with --hardware: chip seed (default: the config's)")
@click.option("--json", "json_", is_flag=True, help="print the report as JSON")
@opt.overrides
def command(json_, **kw) -> int:
    return run(SimpleNamespace(json=json_, **kw))


def _chip(cfg: RootConfig, model, args):
    """The config's block programmed onto a chip of preset `args.hardware` (with the
    config's hardware section when it names the same preset), seeded like the program
    stage's first chip (hardware.seed, else the config's seed) unless --chip-seed is given."""
    from analog.hardware import program, resolve_hardware
    from pipeline.system.analog_block import hardware_spec
    from pipeline.hardware.settings import chip_seeds

    same = cfg.hardware is not None and cfg.hardware.preset == args.hardware
    try:
        spec = hardware_spec(cfg) if same else resolve_hardware(args.hardware)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--hardware") from None
    if args.t < 0:
        raise click.BadParameter(f"{args.t!r}: a read time must be >= 0 s after programming", param_hint="--time")
    seed = args.chip_seed if args.chip_seed is not None else (
        chip_seeds(cfg)[0] if cfg.hardware is not None else cfg.seed)
    if spec.device.pairs != "none":          # a pair preset on a block that cannot hold pairs
        from analog.hardware import pair_maps
        try:
            pair_maps(model.circuit, spec.device.pairs)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--hardware") from None
    return program(model, spec, seed=seed)


def run(args) -> int:
    from analog.model import AnalogModel
    from analog.verify import gradient_report
    from pipeline.system.analog_block import model_from_config
    from pipeline.config import load_config
    from pipeline.runtime.limits import check_block_size

    cfg = load_config(args.config, list(getattr(args, "overrides", ()) or ()))
    x, y, n_classes = _samples(cfg, args.samples)
    check_block_size(cfg.analog.hidden, x.shape[1], n_classes)   # before any allocation
    model = model_from_config(cfg, x.shape[1], n_classes)
    if args.model:
        saved = AnalogModel.load(args.model)
        model.set_conductances(saved.conductances)
    chip = _chip(cfg, model, args) if args.hardware else None
    report = gradient_report(model, x, y, beta=args.beta, ngspice=not args.no_ngspice,
                             ngspice_options={"processes": cfg.training.workers}, chip=chip, t=args.t)
    model.close()
    if chip is not None:
        chip.close()
    report["config"] = args.config
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.config}: {report['samples']} samples, beta={report['beta']:g}")
    if chip is not None:
        print(f"  chip: preset {report['hardware']}, seed {report['chip_seed']}, read at t = {report['t']:g} s")
    if report["max_abs_dv"] is not None:
        print(f"  native vs ngspice: max |dV| = {report['max_abs_dv']:.3e} V, max |dI| = {report['max_abs_di']:.3e} A")
    print(f"  {'gradient':<16}{'cos sym':>12}{'cos one':>12}{'rel sym':>12}{'rel one':>12}")
    rows = list(report["layers"].items()) + [("input", report["input_gradient"])]
    for name, r in rows:
        print(f"  {name:<16}{r['cos_symmetric']:>12.6f}{r['cos_one_sided']:>12.6f}"
              f"{r['rel_err_symmetric']:>12.2e}{r['rel_err_one_sided']:>12.2e}")
    worst = min(r["cos_symmetric"] for _, r in rows)
    print(f"  smallest symmetric cosine: {worst:.6f} ({'meets' if worst >= 0.999 else 'misses'} the 0.999 target)")
    return 0
