"""One encoder for many chips, measured on a slice: from one trained encoder and block (the
folders of a co-training's train-digital and train-analog steps), program `--chips` chips of
the config's preset (seeds hardware.seed + i), then retrain a copy of the encoder through the
loop chips in three ways and measure every chip end to end:

  one chip      through chip 0 alone (a `Chip`)
  population    through chips 0 .. loop-1 together (a `ChipPopulation`: the mean gradient)
  own encoder   each of --own chips (held-out ones) through itself: the per-chip bound
  ideal block   (--control) through the ideal block: what retraining gains without a chip

Held out = chips loop .. chips-1, never read by any retraining here except the `own` runs of
their own chip. The retraining is the pipeline's (pipeline.system.through_analog.grad_fn_for +
fit_through, the config's digital.* settings), on the first --train images of the config's
training set, for --epochs epochs; the accuracies are on the first --test test images.

    python experiments/population_probe.py experiments/fashion_mnist_harsh.yaml \
        --encoder RUNS/00-train-digital-r0/encoder --analog RUNS/02-train-analog-r0/analog_model \
        --set data.limit_train=4000 --set data.limit_test=2000 --chips 12 --loop 4 --train 1000 --test 500
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--encoder", required=True, help="encoder folder (a train-digital step's)")
    p.add_argument("--analog", required=True, help="analog_model folder (a train-analog step's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    p.add_argument("--chips", type=int, default=12)
    p.add_argument("--loop", type=int, default=4, help="chips 0 .. loop-1 are the population")
    p.add_argument("--own", type=int, default=0, help="held-out chips retrained through themselves")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--test", type=int, default=500)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--control", action="store_true",
                   help="also retrain through the ideal block: what retraining gains with no chip to compensate")
    p.add_argument("--json", help="write the figures here")
    return p.parse_args()


def _retrain(cfg, encoder_dir, block, x, y, epochs):
    """A fresh copy of the encoder retrained through `block` (the pipeline's through-analog step)."""
    from pipeline.system.build import load_encoder
    from pipeline.system.through_analog import grad_fn_for, through_cost
    d = cfg.digital
    enc = load_encoder(cfg, encoder_dir)
    grad_fn = grad_fn_for(block, y, cfg.input_optimization.method, loss=through_cost(cfg))
    t0 = time.perf_counter()
    enc.fit_through(x, y, grad_fn, epochs=epochs, batch_size=d.batch_size, learning_rate=d.through_lr,
                    class_weight=d.class_weight, verbose=0)
    return enc, time.perf_counter() - t0


def _row(chips, enc, x_test, y_test):
    e = enc.embed(x_test)
    return [c.accuracy(e, y_test) for c in chips]


def main() -> None:
    a = _args()
    from analog.hardware import ChipPopulation, program
    from pipeline.system.analog_block import hardware_spec
    from pipeline.system.build import load_encoder
    from pipeline.flow import load_config_with_overrides
    from pipeline.flow.artifacts import load_analog
    from pipeline.flow.inputs import dataset
    cfg = load_config_with_overrides(a.config, a.overrides)
    ds = dataset(cfg)
    x, y = ds.x_train[:a.train], ds.y_train[:a.train]
    xt, yt = ds.x_test[:a.test], ds.y_test[:a.test]
    model = load_analog(a.analog)
    base = int(cfg.hardware.seed or cfg.seed)
    chips = [program(model, hardware_spec(cfg), base + i) for i in range(a.chips)]
    enc0 = load_encoder(cfg, a.encoder)
    ideal = model.accuracy(enc0.embed(xt), yt)
    out = {"ideal": ideal, "seeds": [c.seed for c in chips], "programmed": _row(chips, enc0, xt, yt), "own": {}}
    _say(out, "programmed", a.json)
    enc, out["population_seconds"] = _retrain(cfg, a.encoder, ChipPopulation(chips[:a.loop]), x, y, a.epochs)
    out["population"] = _row(chips, enc, xt, yt)
    _say(out, "population", a.json)
    enc, out["one_chip_seconds"] = _retrain(cfg, a.encoder, chips[0], x, y, a.epochs)
    out["one_chip"] = _row(chips, enc, xt, yt)
    _say(out, "one_chip", a.json)
    if a.control:
        enc, out["ideal_block_seconds"] = _retrain(cfg, a.encoder, model, x, y, a.epochs)
        out["ideal_block"] = _row(chips, enc, xt, yt)
        out["ideal_block_ideal"] = model.accuracy(enc.embed(xt), yt)
        _say(out, "ideal_block", a.json)
    for k in range(a.loop, a.loop + a.own):
        enc, _ = _retrain(cfg, a.encoder, chips[k], x, y, a.epochs)
        out["own"][k] = chips[k].accuracy(enc.embed(xt), yt)
        _say(out, "own", a.json)
    _report(out, a.loop)


def _say(out: dict, what: str, path: str | None) -> None:
    """Each case as it finishes (a slow machine may not see the last)."""
    print(what, json.dumps(out.get(what, "")), flush=True)
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=2)


def _report(out: dict, loop: int) -> None:
    ideal, prog = out["ideal"], np.array(out["programmed"])
    held = list(range(loop, len(prog)))
    print(f"ideal {ideal:.4f}; programmed " + " ".join(f"{v:.4f}" for v in prog))
    for case in [c for c in ("population", "one_chip", "ideal_block") if c in out]:
        acc = np.array(out[case])
        for name, idx in (("loop", list(range(loop))), ("held-out", held), ("chip 0", [0])):
            p, c = prog[idx].mean(), acc[idx].mean()
            print(f"{case:10s} {name:8s}: programmed {p:.4f} → {c:.4f}, recovered {(c - p) / (ideal - p):.3f}")
        print(f"{case:10s} retraining {out[case + '_seconds']:.0f} s; per chip " + " ".join(f"{v:.4f}" for v in acc))
    for k, v in out["own"].items():
        print(f"own encoder chip {k}: programmed {prog[k]:.4f} → {v:.4f}, recovered {(v - prog[k]) / (ideal - prog[k]):.3f}")


if __name__ == "__main__":
    main()
