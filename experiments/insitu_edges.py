"""Which edge of the NeuRRAM-like chip makes in-situ EP lose (issue 26, docs/edges.md,
"In-situ training through the edges"): the main job's block (150 → 100 → 10, its loss, β
and optimiser) trained by EP on stand-in embeddings (an MLP encoder's tanh layer on
Fashion-MNIST, the bench's), programmed onto the chip of experiments/fashion_mnist_chip.yaml
with one edge on at a time, then one in-situ EP epoch per chip (Adam base, lr 0.002,
stochastic pulses: the config's), and test accuracy before and after. Prints one row per
case (with --cosine: cos(EP, exact) on the chip); --raw-targets: before the fix.
    PYTHONPATH=. .venv/bin/python experiments/insitu_edges.py [--harsh] [--cases dac,adc,wires]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

CHIP = Path(__file__).resolve().parent / "fashion_mnist_chip.yaml"
#: the chip without write-verify (fashion_mnist_harsh.yaml's devices)
HARSH = {"device.g_min": 4e-6, "device.prog_sigma": 1.2e-5, "device.stuck_g_min": 0.025, "device.stuck_g_max": 0.025}
#: the edges, each alone: what they set on the devices-only chip
EDGES = {"dac": {"dac.bits": 4}, "adc": {"adc.bits": 8, "adc.calibrate": True}, "wires": {"wires.r_segment": 2.5}}


def spec_for(case: str, harsh: bool, preset: str = "neurram"):
    """The neurram chip with only the edges named in `case` ('devices', 'dac+wires', 'all', …)."""
    from analog.hardware import resolve_hardware
    over = {"variation.gain_sigma": 0.0, "dac.bits": None, "adc.bits": None, "adc.calibrate": False,
            "wires.r_segment": 0.0, **(HARSH if harsh else {})}
    names = list(EDGES) if case == "all" else [c for c in case.split("+") if c != "devices"]
    for n in names:
        over.update(EDGES[n])
    return resolve_hardware(preset, over)


def block(n_train: int, n_test: int, epochs: int, cache: Path, run: str | None):
    """(model, x_train, y_train, x_test, y_test): a co-training's block and embeddings (`run`:
    its run folder), or the block trained once on stand-in embeddings, then loaded."""
    from analog.model import AnalogModel
    from pipeline.commands.bench_epoch import main_block, stand_in_embeddings
    model, batch, _ = main_block(CHIP)
    if run:
        from pipeline.flow.artifacts import load_embeddings
        emb = next(Path(run).glob("*-embed-*"))
        z = load_embeddings(emb / "embeddings")
        model.set_conductances(AnalogModel.load(next(Path(run).glob("*-train-analog-*")) / "analog_model").conductances)
        return (model, z["x_train"][:n_train], z["y_train"][:n_train].astype(int), z["x_test"][:n_test],
                z["y_test"][:n_test].astype(int))
    x, y, _ = stand_in_embeddings(n_train + n_test)
    if (cache / "model.json").is_file():
        model.set_conductances(AnalogModel.load(cache).conductances)
    else:
        t0 = time.perf_counter()
        model.fit(x[:n_train], y[:n_train], epochs=epochs, batch_size=batch, verbose=0)
        print(f"block trained {epochs} EP epochs on {n_train} samples in {time.perf_counter() - t0:.0f} s")
        model.save(cache)
    return model, x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def one_case(model, spec, seed, xtr, ytr, xte, yte, n_tune, lr, cosine, track=0, readable=True):
    from analog.hardware import PulsedOptimizer, finetune, program
    chip = program(model, spec, seed)
    chip.calibrate_adc(xtr[:2048])
    before = chip.accuracy(xte, yte)
    row = {"before": before, "adc_range": chip.converters.adc_range, "clip0": clipped(chip, xte)}
    if cosine:
        row["cos"] = gradient_cosine(chip, xtr[:256], ytr[:256])
    opt = PulsedOptimizer(spec, lr=lr, base="adam", rule="stochastic", seed=seed)
    step = track or n_tune       # --track: the epoch in chunks (one optimiser), test accuracy after each
    for lo in range(0, n_tune, step):
        h = finetune(chip, xtr[lo: min(lo + step, n_tune)], ytr[lo: min(lo + step, n_tune)], loss=model.loss,
                     beta=model.beta, nudging=model.nudging, optimizer=opt, epochs=1, batch_size=64, seed=seed,
                     readable_targets=readable)
        if track:
            print(f"  seed {seed} after {min(lo + step, n_tune)} samples: test {chip.accuracy(xte, yte):.4f} "
                  f"train (the reads) {h['accuracy'][-1]:.4f} loss {h['loss'][-1]:.4f}", flush=True)
    row.update(after=chip.accuracy(xte, yte), train_acc=h["accuracy"][-1], pulses=h["pulses_per_device"][-1],
               skipped=h["skipped"][-1], seconds=h["seconds"][-1], clip1=clipped(chip, xte))
    if cosine:
        row["cos1"] = gradient_cosine(chip, xtr[:256], ytr[:256])
    chip.close()
    return row


def clipped(chip, x) -> float:
    """Share of raw outputs at or beyond either end of the ADC's full scale (its codes cannot
    tell them apart there; the top end alone, checked first, missed the floor), 0 without an ADC."""
    if chip.spec.adc.bits is None:
        return 0.0
    return float((np.abs(chip.circuit.raw_outputs(chip.solve(x).v)) >= chip.converters.adc_range).mean())


def gradient_cosine(chip, x, y) -> float:
    """cos(EP, exact) on one noise-free read of the chip (both on the same conductances)."""
    from analog.block import block_gradients
    m = chip.model               # the compiled model the chip was programmed from
    eng = chip.engine("native")
    G = [g / k for g, k in zip(chip.device_conductances_at(0.0, noise=False), chip.scale)]
    g = [block_gradients(eng, eng, chip.circuit, G, x, y, m.loss, method=k, beta=m.beta, nudging=m.nudging,
                         input_grad=False).grads
         for k in ("ep", "exact")]
    a, b = (np.concatenate([v.ravel() for v in gs]) for gs in g)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train", type=int, default=6000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--tune", type=int, default=3000, help="in-situ samples (one epoch)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--chips", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--harsh", action="store_true", help="the chip without write-verify")
    p.add_argument("--cases", default="devices,devices+dac,devices+adc,devices+wires,all")
    p.add_argument("--cosine", action="store_true")
    p.add_argument("--raw-targets", action="store_true", help="MSE targets beyond the ADC's range (before the fix)")
    p.add_argument("--seeds", default=None, help="chip seeds, e.g. 0,2 (default: 0 .. chips-1)")
    p.add_argument("--track", type=int, default=0, help="print test accuracy every this many in-situ samples")
    p.add_argument("--cache", default="home/insitu_edges_block")
    p.add_argument("--run", help="a co-training's run folder: its embeddings and trained block")
    a = p.parse_args()
    model, xtr, ytr, xte, yte = block(a.train, a.test, a.epochs, Path(a.cache), a.run)
    print(f"ideal block: {model.evaluate(xte, yte)['accuracy']:.4f} on {a.test} test samples")
    for case in a.cases.split(","):
        seeds = [int(v) for v in a.seeds.split(",")] if a.seeds else range(a.chips)
        rows = [one_case(model, spec_for(case, a.harsh), s, xtr, ytr, xte, yte, a.tune, a.lr, a.cosine, a.track,
                         not a.raw_targets) for s in seeds]
        b, f = np.mean([r["before"] for r in rows]), np.mean([r["after"] for r in rows])
        extra = " ".join(f"{k}={'/'.join(f'{r[k]:.4g}' for r in rows)}" for k in rows[0] if k not in ("before", "after"))
        print(f"{case:16s} before {b:.4f} after {f:.4f} change {100 * (f - b):+.2f} pp | {extra}", flush=True)


if __name__ == "__main__":
    main()
