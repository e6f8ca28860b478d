"""Measure CNNEncoder on full Fashion-MNIST: time per epoch, test accuracy of its own
head, linear-probe accuracy on the embeddings (volts), embed throughput.

    .venv/bin/python -m digital.bench_cnn [--epochs N] [--data DIR] [--param k=v ...]

Reads the gzip IDX files itself (no dependency on pipeline/).
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import time
from pathlib import Path

import numpy as np


def _idx(path: Path, offset: int) -> np.ndarray:
    return np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8, offset=offset)


def load_fashion(directory: str | Path) -> tuple[np.ndarray, ...]:
    d = Path(directory)
    xtr = _idx(d / "train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    ytr = _idx(d / "train-labels-idx1-ubyte.gz", 8).astype(np.int64)
    xte = _idx(d / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    yte = _idx(d / "t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return xtr, ytr, xte, yte


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--param", action="append", default=[], help="CNNEncoder param, k=v (Python literal)")
    ap.add_argument("--probe-train", type=int, default=60000, help="train images for the linear probe")
    ap.add_argument("--save", default=None, help="save the trained encoder here")
    ap.add_argument("--verbose", type=int, default=2)
    return ap.parse_args(argv)


def _params(pairs: list[str]) -> dict:
    """``k=v`` pairs as a dict; v is a Python literal, else kept as the string."""
    params = {}
    for kv in pairs:
        k, _, v = kv.partition("=")
        try:
            params[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            params[k] = v
    return params


def _epoch_timer():
    """A Keras callback that records the seconds of every epoch in ``times``."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t0)

    return EpochTimer()


def _clocks() -> tuple[float, float]:
    """(wall, CPU of this process): on a shared machine the CPU seconds are the steadier figure."""
    return time.perf_counter(), time.process_time()


def _per_epoch(t0: tuple[float, float], scale: float) -> list[float]:
    t1 = _clocks()
    return [(t1[0] - t0[0]) * scale, (t1[1] - t0[1]) * scale]


def speed(params: dict, x: np.ndarray, y: np.ndarray, epochs: int = 2, per: int = 54000) -> dict:
    """[wall, CPU] seconds of a CNNEncoder(**params), scaled to `per` images: its last `fit`
    epoch of `epochs` (the first compiles; the last is a new `fit`, as every stage's is), one
    embedding pass and one `fit_targets` epoch, each after an untimed first one."""
    from digital import CNNEncoder
    enc, scale = CNNEncoder(**params), per / len(x)
    if epochs > 1:
        enc.fit(x, y, epochs=epochs - 1, verbose=0)
    t0 = _clocks()
    enc.fit(x, y, epochs=1, verbose=0)
    fit_s = _per_epoch(t0, scale)
    e = enc.embed(x)
    t0 = _clocks()
    e = enc.embed(x)
    embed_s = _per_epoch(t0, scale)
    enc.fit_targets(x, e + 0.01, y, epochs=1, verbose=0)
    t0 = _clocks()
    enc.fit_targets(x, e + 0.01, y, epochs=1, verbose=0)
    return {"params": params, "n": len(x), "fit_epoch_s": fit_s, "fit_targets_epoch_s": _per_epoch(t0, scale),
            "embed_s": embed_s}


def _linear_probe(etr: np.ndarray, ytr: np.ndarray, ete: np.ndarray, yte: np.ndarray) -> tuple[float, float]:
    """(test accuracy, seconds) of a logistic regression on standardised embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    scaler = StandardScaler().fit(etr)
    probe = LogisticRegression(max_iter=500).fit(scaler.transform(etr), ytr)
    return float(probe.score(scaler.transform(ete), yte)), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    args = _arguments(argv)
    from digital import CNNEncoder

    xtr, ytr, xte, yte = load_fashion(args.data)
    enc = CNNEncoder(**_params(args.param))
    epochs = args.epochs or enc.epochs
    timer = _epoch_timer()
    t0 = time.perf_counter()
    enc.fit(xtr, ytr, epochs=epochs, verbose=args.verbose, callbacks=[timer])
    train_s = time.perf_counter() - t0
    test_acc = enc.evaluate(xte, yte)

    enc.embed(xte[:256])  # warm-up
    t0 = time.perf_counter()
    ete = enc.embed(xte)
    embed_s = time.perf_counter() - t0
    probe_acc, probe_s = _linear_probe(enc.embed(xtr[: args.probe_train]), ytr[: args.probe_train], ete, yte)

    result = {
        "params": enc.get_params(),
        "epochs": epochs,
        "train_seconds": round(train_s, 1),
        "epoch_seconds": [round(t, 1) for t in timer.times],
        "test_accuracy": test_acc,
        "linear_probe_test_accuracy": probe_acc,
        "linear_probe_seconds": round(probe_s, 1),
        "embed_images_per_second": round(len(xte) / embed_s),
        "volts_range_seen": [float(ete.min()), float(ete.max())],
        "history": enc.history_,
    }
    print(json.dumps(result, indent=2, default=str))
    if args.save:
        enc.save(args.save)
    return result

if __name__ == "__main__":
    main()
