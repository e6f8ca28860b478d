"""Robustness map of the chip's edges (DAC bits, ADC bits, ADC range, wire resistance) on the
main job's block (experiments/fashion_mnist.yaml: 150 → 100 → 10), trained by EP on 150-d
embeddings of Fashion-MNIST (the bench's stand-in: an MLP encoder's tanh layer), with
ngspice spot checks of the wire axis. Prints the map as a table and the spot checks.

    PYTHONPATH=. .venv/bin/python experiments/edges_map.py [--train 6000] [--test 1000] [--epochs 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from pipeline.hardware import robustness as rb
    from pipeline.commands.bench_epoch import main_block, stand_in_embeddings
    p = argparse.ArgumentParser()
    p.add_argument("--train", type=int, default=6000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--spot", type=int, default=20)
    a = p.parse_args()
    x, y, what = stand_in_embeddings(a.train + a.test)
    xtr, ytr, xte, yte = x[: a.train], y[: a.train], x[a.train:], y[a.train:]
    model, batch, _ = main_block()
    t0 = time.perf_counter()
    model.fit(xtr, ytr, epochs=a.epochs, batch_size=batch, verbose=0)
    print(f"{what}; block trained {a.epochs} EP epochs on {a.train} samples in {time.perf_counter() - t0:.0f} s")
    grid = {k: rb.AXES[k][0] for k in ("dac_bits", "adc_bits", "adc_range", "r_segment")}
    ideal, results = rb.sweep(model, xte, yte, grid, seeds=a.seeds, more=3, progress=print)
    print(f"ideal block: {ideal:.4f}")
    for row in rb.table(ideal, results):
        print(" | ".join(row))
    for r in results:
        at = rb.spot_value(r)
        if at is not None and r.axis == "r_segment":
            s = rb.spot_check(model, r.axis, at, xte[: a.spot], yte[: a.spot], processes=1)
            print(f"ngspice spot check {r.axis}={at:g}: max |dy| {s['max_abs_dy']:.2e} V, accuracy native "
                  f"{s['acc_native']:.3f} / ngspice {s['acc_ngspice']:.3f} ({s['both_converged']} converged)")


if __name__ == "__main__":
    main()
