"""Ternary and binary weights on RRAM 2T2R pairs, against the 4-level and continuous devices.

    .venv/bin/python experiments/ternary.py iris --json experiments/ternary_iris.json
    .venv/bin/python experiments/ternary.py wine --json experiments/ternary_wine.json
    .venv/bin/python experiments/ternary.py iris --sweep --json experiments/ternary_ber_iris.json
    .venv/bin/python experiments/ternary.py fashion --epochs 3 --limit-train 5000 --chips 1

(fashion: a PCA embedding in volts feeding the main job's block, 150 → 100 → 10, on a slice of
the training images; the test set is the full 10,000.)

Rows (same block, same initial conductances, the task's config: experiments/<task>.yaml):
  continuous        ideal EP (model.fit), the block as trained
  4-level           in-situ EP, stochastic pulses of one level (`ebana-4level`), on the chip
  ternary, binary   EP on the chip (`rram-2t2r`, `rram-2t2r-binary`): each chip programmed from
                    the untrained block, then trained in the loop (`finetune` with PairOptimizer:
                    hidden weights, a pair reprogrammed when its hidden weight crosses the
                    threshold, programming bit errors on every write, read bit errors on every read)
  ternary (programmed)  the continuous block ternarised and programmed, no training on the chip
--sweep: accuracy against the bit error rate: (a) the states trained on chip 0 at the preset's
rates, programmed onto fresh chips with bit error rate p (programming and reading); (b) training
in the loop at rate p. docs/results-ternary.md holds the tables.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from analog.hardware import PairOptimizer, finetune, pair_maps, program, resolve_hardware
from pipeline.system.analog_block import model_from_config
from pipeline.config import validate_config

from pipeline.data import load_dataset, tabular_to_volts


def _config(task: str, epochs: int | None, limit_train: int | None) -> dict:
    """The task's shipped config as a raw mapping, with the script's epochs and slice."""
    import yaml
    with open(f"experiments/{'fashion_mnist' if task == 'fashion' else task}.yaml") as f:
        raw = yaml.safe_load(f)
    if epochs:
        raw["training"]["epochs"] = epochs
    if task == "fashion":
        raw["data"]["limit_train"] = limit_train
        raw["training"]["optimizer"]["lr"] = 0.01
    return raw


def _data(cfg):
    """(x_train, y_train, x_test, y_test, n_classes) in volts: tabular sets scaled to the input
    amplitude; images through a PCA to digital.embedding_dim fitted on the training set."""
    ds = load_dataset(cfg.data, seed=cfg.seed)
    amp = cfg.analog.input_amplitude
    if ds.x_train.ndim > 2:
        from sklearn.decomposition import PCA
        flat_tr = ds.x_train.reshape(len(ds.x_train), -1) / 255.0
        flat_te = ds.x_test.reshape(len(ds.x_test), -1) / 255.0
        pca = PCA(n_components=cfg.digital.embedding_dim, random_state=0).fit(flat_tr)
        z_tr, z_te = pca.transform(flat_tr), pca.transform(flat_te)
        sd = 3 * z_tr.std(0, keepdims=True) + 1e-12      # ±3 σ maps to ±amplitude
        return (np.clip(z_tr / sd, -1, 1) * amp, ds.y_train.astype(int), np.clip(z_te / sd, -1, 1) * amp,
                ds.y_test.astype(int), ds.n_classes)
    x_tr, x_te = tabular_to_volts(ds.x_train, ds.x_test, amplitude=amp)
    return x_tr, ds.y_train.astype(int), x_te, ds.y_test.astype(int), ds.n_classes

RATES = (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1)


def _block(raw, x_tr, n_classes, hardware=None):
    cfg = dict(raw)
    if hardware:
        cfg["hardware"] = hardware
    cfg = validate_config(cfg)
    return model_from_config(cfg, x_tr.shape[1], n_classes), cfg


def train_on_chip(model, spec, x, y, epochs, seed, lr, batch_size):
    """A chip programmed from `model`, trained in the loop with hidden weights."""
    chip = program(model, spec, seed=seed)
    opt = PairOptimizer(chip.spec, pair_maps(model.circuit), lr=lr, base="adam", seed=seed)
    finetune(chip, x, y, loss=model.loss, beta=model.beta, optimizer=opt, epochs=epochs, batch_size=batch_size,
             seed=seed)
    return chip, opt


def compare(raw, data, chips: int, lr: float) -> dict:
    x_tr, y_tr, x_te, y_te, n_classes = data
    epochs, bs = raw["training"]["epochs"], raw["training"]["batch_size"]
    rows = {}
    t0 = time.perf_counter()
    model, cfg = _block(raw, x_tr, n_classes)
    model.fit(x_tr, y_tr, epochs=epochs, batch_size=bs, verbose=0, seed=cfg.seed)
    rows["continuous"] = {"test": [model.evaluate(x_te, y_te)["accuracy"]], "seconds": time.perf_counter() - t0}
    ter = resolve_hardware("rram-2t2r")
    rows["ternary (programmed)"] = {"test": [program(model, ter, seed=s).accuracy(x_te, y_te, 0.0)
                                             for s in range(chips)]}
    t0 = time.perf_counter()
    four, cfg4 = _block(raw, x_tr, n_classes, {"preset": "ebana-4level", "training": "in-situ",
                                                "pulse_rule": "stochastic"})
    four.fit(x_tr, y_tr, epochs=epochs, batch_size=bs, verbose=0, seed=cfg4.seed)
    rows["4-level"] = {"test": [program(four, "ebana-4level", seed=0).accuracy(x_te, y_te, 0.0)],
                       "seconds": time.perf_counter() - t0}
    for label, preset in (("ternary", "rram-2t2r"), ("binary", "rram-2t2r-binary")):
        accs, reprog, t0 = [], [], time.perf_counter()
        for s in range(chips):
            fresh, _ = _block(raw, x_tr, n_classes)
            chip, opt = train_on_chip(fresh, resolve_hardware(preset), x_tr, y_tr, epochs, s, lr, bs)
            accs.append(chip.accuracy(x_te, y_te, 0.0))
            reprog.append(opt.reprogrammed)
        rows[label] = {"test": accs, "reprogrammed_pairs": reprog, "seconds": time.perf_counter() - t0}
    return rows


def sweep(raw, data, chips: int, lr: float) -> dict:
    x_tr, y_tr, x_te, y_te, n_classes = data
    epochs, bs = raw["training"]["epochs"], raw["training"]["batch_size"]
    base = resolve_hardware("rram-2t2r")
    model, _ = _block(raw, x_tr, n_classes)
    _, opt = train_on_chip(model, base, x_tr, y_tr, epochs, 0, lr, bs)
    model.set_conductances(opt.intended(model.dense_layers))
    out = {}
    for p in RATES:
        spec = dataclasses.replace(base, device=dataclasses.replace(base.device, bit_error=p, read_bit_error=p))
        deployed = [program(model, spec, seed=100 + s).accuracy(x_te, y_te, 0.0) for s in range(chips)]
        fresh, _ = _block(raw, x_tr, n_classes)
        chip, _ = train_on_chip(fresh, spec, x_tr, y_tr, epochs, 0, lr, bs)
        out[str(p)] = {"deployed": deployed, "trained_at_rate": chip.accuracy(x_te, y_te, 0.0)}
        print(p, json.dumps(out[str(p)]), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=("iris", "wine", "fashion"))
    p.add_argument("--epochs", type=int, default=None, help="instead of the config's")
    p.add_argument("--limit-train", type=int, default=5000, help="fashion: training images used")
    p.add_argument("--chips", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.02, help="learning rate of the hidden weights (Adam)")
    p.add_argument("--sweep", action="store_true", help="accuracy against the bit error rate")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    raw = _config(args.task, args.epochs, args.limit_train)
    data = _data(validate_config(raw))
    result = sweep(raw, data, args.chips, args.lr) if args.sweep else compare(raw, data, args.chips, args.lr)
    if not args.sweep:
        for label, row in result.items():
            print(f"{label:22s} {100 * np.mean(row['test']):5.1f} ± {100 * np.std(row['test']):.1f} %", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"task": args.task, "chips": args.chips, "lr": args.lr, "result": result}, fh, indent=2)


if __name__ == "__main__":
    main()
