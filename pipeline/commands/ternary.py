"""mixsig ternary [CONFIG]: ternary and binary RRAM 2T2R pairs trained in the loop against the
4-level and continuous devices, or their accuracy against the bit error rate
(pipeline/hardware/pair_study.py; docs/results-ternary.md records the figures)."""
from __future__ import annotations

import json

import click

from pipeline.commands import options as opt

HELP = ("ternary and binary weights on RRAM 2T2R pairs, trained by EP in the loop with hidden weights, against "
        "the 4-level and continuous devices on the same block; --sweep: accuracy against the bit error rate")


@click.command("ternary", help=HELP + ". CONFIG: a config without a hardware: section [default: "
               "experiments/iris.yaml]; its block, data and training section (epochs, batch; the continuous and "
               "4-level rows also its optimiser) are used as they are, --set changes them; images go through a "
               "PCA to digital.embedding_dim.", short_help=HELP)
@opt.config_argument
@opt.overrides
@click.option("--chips", type=click.IntRange(min=1), default=3, show_default=True, help="chips (seeds 0..N-1) per row")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.02, show_default=True,
              help="learning rate of the pairs' hidden weights (Adam)")
@click.option("--sweep", is_flag=True, help="accuracy against the bit error rate instead")
@click.option("--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="write the result as JSON to this file")
def command(config, overrides, chips, lr, sweep, output) -> int:
    from pathlib import Path

    import numpy as np

    from pipeline.config import load_config
    from pipeline.errors import OptionError
    from pipeline.hardware import pair_study
    path = config or Path(__file__).resolve().parents[2] / "experiments" / "iris.yaml"
    cfg = load_config(path, overrides)
    if cfg.hardware is not None:
        raise OptionError(f"mixsig ternary chooses the devices of each row; {path} has a hardware: section")

    def load(extra=()):
        return load_config(path, [*overrides, *extra])
    data = pair_study.volts(cfg)
    if sweep:
        result = pair_study.sweep(load, data, chips, lr)
    else:
        result = pair_study.compare(load, data, chips, lr)
        for label, row in result.items():
            print(f"{label:22s} {100 * np.mean(row['test']):5.1f} ± {100 * np.std(row['test']):.1f} %", flush=True)
    if output:
        Path(output).write_text(json.dumps({"task": cfg.name, "chips": chips, "lr": lr, "result": result}, indent=2))
        print(f"wrote {output}")
    return 0
