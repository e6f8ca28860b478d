"""Why a block trained in situ with PCM pulses loses far more to drift than one trained ideally.

    .venv/bin/python experiments/insitu_drift.py                     # Fashion slice, ~5 min on a quiet machine
    .venv/bin/python experiments/insitu_drift.py --limit-train 6000 --limit-test 1000   # quicker, noisier

The Fashion block of experiments/fashion_mnist.yaml (150 → 100 → 10) behind the PCA encoder
(digital.PCAEncoder, 150 components to ±1 V), trained 3 EP epochs (Adam 0.01) ideally and in
situ (hardware.training: in-situ, preset pcm: pulses with rounded counts), then programmed
onto PCM chips and read at 0 s, 1 day and 1 year. Each row switches one effect on or off, so
the loss after a year is split into its causes: programming error, read noise, drift, the
drift compensation; drift of one layer at a time; the drift exponents with their spread
about the mean and without. It ends with the class margins the drift has to flip.
Results: docs/results-recalibration.md.
"""
from __future__ import annotations

import argparse
import copy

import numpy as np
import yaml

from analog.hardware import program, resolve_hardware
from analog.hardware import statistics as st
from digital.pca import PCAEncoder
from pipeline.system.analog_block import model_from_config
from pipeline.config import validate_config
from pipeline.data import load_dataset

TIMES = {"0 s": 0.0, "1 day": 86400.0, "1 year": 3.15e7}
CASES = {   # name → (spec overrides, how the chip's drift exponents are set)
    "pcm preset": ({}, None),
    "no drift": ({"device.drift": "none"}, None),
    "drift only (no programming error, no read noise)": ({"device.prog_noise": "none", "device.read_noise": "none"}, None),
    "drift only, compensation off": ({"device.prog_noise": "none", "device.read_noise": "none",
                                      "drift_compensation": False}, None),
    "drift only, first layer alone": ({"device.prog_noise": "none", "device.read_noise": "none"}, "first"),
    "drift only, output layer alone": ({"device.prog_noise": "none", "device.read_noise": "none"}, "last"),
    "drift only, ν = μ_ν(G) (no spread)": ({"device.prog_noise": "none", "device.read_noise": "none"}, "mean"),
}


def _nu(chip, how: str | None):
    if how == "first":
        return [chip.nu[0]] + [np.zeros_like(n) for n in chip.nu[1:]]
    if how == "last":
        return [np.zeros_like(n) for n in chip.nu[:-1]] + [chip.nu[-1]]
    if how == "mean":
        return [np.where(n > 0, st.nu_moments(chip.spec.device, g)[0], 0.0) for n, g in zip(chip.nu, chip.G_prog)]
    return chip.nu


def _blocks(args):
    raw = yaml.safe_load(open("experiments/fashion_mnist.yaml"))
    raw["data"].update(limit_train=args.limit_train, limit_test=args.limit_test)
    raw["training"].update(epochs=args.epochs)
    raw["training"]["optimizer"]["lr"] = 0.01
    cfg = validate_config(raw)
    ds = load_dataset(cfg.data, seed=cfg.seed)
    enc = PCAEncoder(embedding_dim=150).fit(ds.x_train, ds.y_train, verbose=0)
    x_tr, x_te = enc.embed(ds.x_train), enc.embed(ds.x_test)
    blocks = {}
    for mode in ("ideal", "in-situ"):
        r = copy.deepcopy(raw)
        if mode == "in-situ":
            r["hardware"] = {"preset": "pcm", "training": "in-situ"}
        c = validate_config(r)
        model = model_from_config(c, x_tr.shape[1], ds.n_classes)
        model.fit(x_tr, ds.y_train, epochs=args.epochs, batch_size=c.training.batch_size, verbose=0,
                  seed=c.seed)
        blocks[mode] = model
    return blocks, x_te, np.asarray(ds.y_test, int)


def _margins(model, x, y) -> str:
    spec = resolve_hardware("pcm", {"device.prog_noise": "none", "device.read_noise": "none"})
    chip = program(model, spec, seed=0)
    y0, y1 = chip.predict(x, t=0.0), chip.predict(x, t=3.15e7)
    s = np.sort(y0, 1)
    top = y0.argmax(1)
    shift = np.abs(y1 - y0)
    dm = np.abs(shift[np.arange(len(y0)), top][:, None] + shift).max(1)
    g = [np.asarray(G) * chip.scale[k] / chip.spec.device.g_max for k, G in enumerate(model.conductances)]
    w = g[-1] / g[-1].sum()
    return (f"class scores sd {y0.std() * 1e3:.0f} mV; median margin top-1 − top-2 {np.median(s[:, -1] - s[:, -2]) * 1e3:.0f} mV;"
            f" median bound on a year's change of a margin {np.median(dm) * 1e3:.0f} mV; decisions flipped "
            f"{np.mean(y1.argmax(1) != top):.1%}; output layer: current share of devices below 0.1 g_max "
            f"{np.sum(w * (g[-1] < 0.1)):.2f}, current-weighted σ_ν {np.sum(w * st.nu_moments(chip.spec.device, g[-1] * chip.spec.device.g_max)[1]):.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit-train", type=int, default=20000)
    p.add_argument("--limit-test", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--chips", type=int, default=2)
    args = p.parse_args()
    blocks, x, y = _blocks(args)
    print(f"| case | block | {' | '.join(TIMES)} |\n|---|---|{'---|' * len(TIMES)}")
    for mode, model in blocks.items():
        print(f"| trained block, ideal devices | {mode} | {model.evaluate(x, y)['accuracy']:.4f} | | |")
        for name, (over, how) in CASES.items():
            spec = resolve_hardware("pcm", over)
            acc = {k: [] for k in TIMES}
            for seed in range(args.chips):
                chip = program(model, spec, seed=seed)
                chip.nu = [np.asarray(n, float) for n in _nu(chip, how)]
                for k, t in TIMES.items():
                    acc[k].append(chip.accuracy(x, y, t))
            print(f"| {name} | {mode} | {' | '.join(f'{np.mean(v):.4f}' for v in acc.values())} |", flush=True)
    for mode, model in blocks.items():
        print(f"{mode}: {_margins(model, x, y)}")


if __name__ == "__main__":
    main()
