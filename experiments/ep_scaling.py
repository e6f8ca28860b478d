"""EP step time against block size: dense blocks of growing hidden width and locally
connected blocks of growing image size, on the native engine at the main job's batch (64).

    PYTHONPATH=. python experiments/ep_scaling.py [--widths 50 100 200 400 800] [--sizes 8 12 16 20 28]

Prints one row per block (conductances, free nodes, seconds per EP step, seconds per step
and per million conductances), the exponent of a least-squares fit of log(time) against
log(conductances) per family, and draws experiments/ep_scaling.png. Times are CPU seconds
of this process (the machine may be shared), best of `--repeats` epochs of `--batches`
mini-batches."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from analog.builders import build_dense_network, build_network
from analog.specs import BlockSpec, DenseLayerSpec, LocalLayerSpec
from analog.ep import ep_gradients


def step_seconds(model, batches: int, repeats: int, batch: int = 64, seed: int = 0) -> float:
    model.compile(loss="mse", optimizer="adam", beta=1e-6)
    rng = np.random.default_rng(seed)
    n = model.circuit.n_features
    x = np.tanh(rng.normal(0.0, 1.0, (batches * batch, n)))
    y = rng.integers(0, 10, len(x))
    eng, best = model.engine, float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for lo in range(0, len(x), batch):
            g = ep_gradients(eng, model.circuit, model.conductances, x[lo:lo + batch], y[lo:lo + batch],
                             model.loss, model.beta)
            model.optimizer.apply(model.dense_layers, g.grads)
        best = min(best, time.process_time() - t0)
    return best / batches


def lc_block(size: int):
    layers = (LocalLayerSpec(2, kernel=(4, 4), strides=(2, 2), input_shape=(size, size, 1)), DenseLayerSpec(32))
    return build_network(size * size, 10, BlockSpec(layers=layers, seed=0, name=f"lc{size}"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[50, 100, 200, 400, 800])
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 12, 16, 20, 28])
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--plot", default=str(Path(__file__).with_name("ep_scaling.png")))
    args = ap.parse_args()
    families = {"dense 150 -> h -> 10": [build_dense_network(150, 10, hidden=(w,), seed=0, name=f"h{w}") for w in args.widths],
                "LC 4x4/2, 2 filters -> 32 -> 10": [lc_block(s) for s in args.sizes]}
    results = {}
    print(f"{'block':<36} {'conductances':>12} {'free nodes':>10} {'s/step':>9} {'s/step/M cond.':>15}")
    for family, models in families.items():
        rows = []
        for m in models:
            n_g = int(sum(g.size for g in m.conductances))
            s = step_seconds(m, args.batches, args.repeats)
            rows.append((n_g, m.circuit.n_free, s))
            print(f"{family + ' ' + m.name:<36} {n_g:>12} {m.circuit.n_free:>10} {s:>9.4f} {s / n_g * 1e6:>15.3f}")
        g, _, t = np.array(rows).T
        slope = np.polyfit(np.log(g), np.log(t), 1)[0]
        print(f"  {family}: time ~ conductances^{slope:.2f}")
        results[family] = (g, t, slope)
    _plot(results, args.plot)


def _plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for family, (g, t, slope) in results.items():
        ax.loglog(g, t * 1e3, "o-", label=f"{family} (exponent {slope:.2f})")
    ax.set_xlabel("conductances")
    ax.set_ylabel("CPU ms per EP step (batch 64, symmetric)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
