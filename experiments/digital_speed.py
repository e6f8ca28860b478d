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

    --feeding: instead, one `fit` epoch of the main job's CNN fed numpy arrays (what the
    stages do) against a tf.data pipeline (from_tensor_slices → cache → shuffle → batch(128) →
    prefetch), twice each, alternating, in one process; run it again with --threads 2,1 (TF
    intra-/inter-op threads; default: TF's choice) to compare thread settings by CPU seconds.
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


def _feeding(x, y, rounds: int = 2) -> list[dict]:
    """[wall, CPU] s per 54,000 images of one fit epoch: numpy arrays against tf.data."""
    import keras
    import tensorflow as tf
    from digital import CNNEncoder
    from digital.inputs import prepare_images
    x, y = prepare_images(x), np.asarray(y, dtype=np.int64)
    model = CNNEncoder().model
    clf = keras.Model(model.inputs, model.outputs[1])
    clf.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = (tf.data.Dataset.from_tensor_slices((x, y)).cache().shuffle(len(x), seed=0)
          .batch(128).prefetch(tf.data.AUTOTUNE))
    clf.fit(x[:1024], y[:1024], batch_size=128, epochs=1, verbose=0)     # compile both paths
    clf.fit(ds.take(4), epochs=1, verbose=0)
    out, scale = [], 54000 / len(x)
    for _ in range(rounds):
        t0 = _clocks()
        clf.fit(x, y, batch_size=128, epochs=1, shuffle=True, verbose=0)
        numpy_s = _since(t0, scale)
        t0 = _clocks()
        clf.fit(ds, epochs=1, verbose=0)
        out.append({"n": len(x), "numpy_fit_epoch_s": numpy_s, "tfdata_fit_epoch_s": _since(t0, scale)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--n", type=int, default=12800)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--feeding", action="store_true", help="numpy against tf.data feeding (see above)")
    ap.add_argument("--threads", default=None, help="INTRA,INTER TF op threads (default: TF's choice)")
    args = ap.parse_args()
    if args.threads:
        import tensorflow as tf
        intra, inter = (int(v) for v in args.threads.split(","))
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    from digital.bench_cnn import load_fashion
    xtr, ytr, _, _ = load_fashion(args.data)
    x, y = xtr[:args.n], ytr[:args.n]
    if args.feeding:
        for row in _feeding(x, y):
            print(json.dumps({"threads": args.threads or "default", **row}), flush=True)
        return
    for text in args.variant or ["base"]:
        name, params = _variant(text)
        print(json.dumps(_time_variant(name, params, x, y, args.epochs)), flush=True)


if __name__ == "__main__":
    main()
