"""Seconds per CNN training epoch (and per retraining-to-targets epoch, per embedding pass)
of CNNEncoder variants on a slice of Fashion-MNIST, in one process, so a tree's variants
can be compared by ratio on a shared machine.

    PYTHONPATH=$PWD .venv/bin/python experiments/digital_speed.py --n 12800 \
        --variant base --variant 'xla:jit=True' --variant 'lean:filters=(16,32,64)'

A variant is NAME[:k=v;...]; k=v are CNNEncoder params (Python literals), and jit=True
compiles every Keras train step with XLA (`compile(jit_compile=True)`; Keras leaves XLA off
on a CPU-only machine).  Prints one JSON line per variant: [wall, CPU] seconds scaled to
54,000 images of one `fit` epoch (after a first), one `fit_targets` epoch (after a first)
and one embedding pass (after a first).
"""
from __future__ import annotations

import argparse
import ast
import json
import time

import numpy as np


def _variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    params = {}
    for kv in filter(None, rest.split(";")):
        k, _, v = kv.partition("=")
        params[k.strip()] = ast.literal_eval(v)
    return name, params


def _clocks() -> tuple[float, float]:
    """(wall, CPU of this process): on a shared machine the CPU seconds are the steadier figure."""
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float], scale: float) -> list[float]:
    t1 = _clocks()
    return [round((t1[0] - t0[0]) * scale, 1), round((t1[1] - t0[1]) * scale, 1)]


def _time_variant(name, params, x, y, epochs):
    """[wall, CPU] seconds scaled to 54,000 images: the last `fit` epoch, one `fit_targets`
    epoch after a first one (compilation), one embedding pass after a first one."""
    import keras
    params = dict(params)
    compile_ = keras.Model.compile
    if params.pop("jit", False):
        keras.Model.compile = lambda self, *a, **k: compile_(self, *a, **{**k, "jit_compile": True})
    try:
        return _timed(name, params, x, y, epochs)
    finally:
        keras.Model.compile = compile_


def _timed(name, params, x, y, epochs):
    from digital import CNNEncoder
    enc = CNNEncoder(**params)
    scale = 54000 / len(x)
    enc.fit(x, y, epochs=epochs - 1, verbose=0)
    t0 = _clocks()
    enc.fit(x, y, epochs=1, verbose=0)    # a new compile and optimiser, as every stage does
    fit_s = _since(t0, scale)
    e = enc.embed(x)
    t0 = _clocks()
    e = enc.embed(x)
    embed_s = _since(t0, scale)
    enc.fit_targets(x, e + 0.01, y, epochs=1, verbose=0)
    t0 = _clocks()
    enc.fit_targets(x, e + 0.01, y, epochs=1, verbose=0)
    target_s = _since(t0, scale)
    return {"variant": name, "params": params, "n": len(x), "fit_epoch_s": fit_s,
            "fit_targets_epoch_s": target_s, "embed_s": embed_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--n", type=int, default=12800)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--variant", action="append", default=[])
    args = ap.parse_args()
    from digital.bench_cnn import load_fashion
    xtr, ytr, _, _ = load_fashion(args.data)
    x, y = xtr[:args.n], ytr[:args.n]
    for text in args.variant or ["base"]:
        name, params = _variant(text)
        print(json.dumps(_time_variant(name, params, x, y, args.epochs)), flush=True)


if __name__ == "__main__":
    main()
