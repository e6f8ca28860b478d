"""mixsig bench --scaling: EP step time against block size. Dense blocks 150 → h → 10 of
growing hidden width and locally connected blocks (4×4 kernels, stride 2, 2 filters → 32 →
10) of growing image size, on the native engine at the main job's batch (64), with the
exponent of a least-squares fit of log(time) against log(conductances) per family
(experiments/ep_speed.md, "Scaling with block size"); and, for sign-off planning, ngspice's
operating points per CPU-second of one worker process (what one sign-off actor does: a loaded
circuit, alter + dc sweep) on the same blocks, with its exponent."""
from __future__ import annotations

import time

import numpy as np

WIDTHS, SIZES = (50, 100, 200, 400, 800), (8, 12, 16, 20, 28)
DENSE, LOCAL = "dense 150 -> h -> 10", "LC 4x4/2, 2 filters -> 32 -> 10"


def step_seconds(model, batches: int, repeats: int, batch: int = 64, seed: int = 0) -> float:
    """CPU seconds of this process per EP step (symmetric nudging, Adam update) on random tanh
    inputs: the best of `repeats` epochs of `batches` mini-batches (the machine may be shared),
    after one untimed step (the first pays the engine's caches and numba's compilation)."""
    from analog.ep import ep_gradients
    model.compile(loss="mse", optimizer="adam", beta=1e-6)
    rng = np.random.default_rng(seed)
    x = np.tanh(rng.normal(0.0, 1.0, (batches * batch, model.circuit.n_features)))
    y = rng.integers(0, 10, len(x))
    eng, best = model.engine, float("inf")
    ep_gradients(eng, model.circuit, model.conductances, x[:batch], y[:batch], model.loss, model.beta)
    for _ in range(repeats):
        t0 = time.process_time()
        for lo in range(0, len(x), batch):
            g = ep_gradients(eng, model.circuit, model.conductances, x[lo:lo + batch], y[lo:lo + batch],
                             model.loss, model.beta)
            model.optimizer.apply(model.dense_layers, g.grads)
        best = min(best, time.process_time() - t0)
    return best / batches


def ngspice_seconds(model, samples: int, seed: int = 0) -> dict:
    """One loaded ngspice worker on `samples` random tanh inputs after one untimed sample (the
    netlist load): CPU and wall seconds per operating point inside the worker (its own
    process_time around the sweep), and the netlist load's wall seconds."""
    from analog.ngspice import NgspiceEngine
    rng = np.random.default_rng(seed)
    x = np.tanh(rng.normal(0.0, 1.0, (samples + 1, model.circuit.n_features)))
    G = model.conductances
    with NgspiceEngine(model.circuit, processes=1, mode="loaded") as eng:
        t0 = time.perf_counter()
        eng.solve(G, x[:1])
        load_s = time.perf_counter() - t0
        before = eng.last_worker_info[0]["stats"]
        sol = eng.solve(G, x[1:])
        after = eng.last_worker_info[0]["stats"]
    ops = after["ops"] - before["ops"]
    return {"cpu_s": (after["op_cpu_s"] - before["op_cpu_s"]) / ops,
            "wall_s": (after["op_wall_s"] - before["op_wall_s"]) / ops,
            "load_s": load_s, "nonconverged": int((~sol.converged).sum())}


def scaling_blocks(widths=WIDTHS, sizes=SIZES) -> dict:
    """The two families of blocks, by family name: [(label, model), ...]."""
    from analog.builders import build_dense_network, build_network
    from analog.specs import BlockSpec, DenseLayerSpec, LocalLayerSpec

    def lc(size):
        layers = (LocalLayerSpec(2, kernel=(4, 4), strides=(2, 2), input_shape=(size, size, 1)), DenseLayerSpec(32))
        return build_network(size * size, 10, BlockSpec(layers=layers, seed=0, name=f"lc{size}"))

    return {DENSE: [(f"h{w}", build_dense_network(150, 10, hidden=(w,), seed=0, name=f"h{w}")) for w in widths],
            LOCAL: [(f"{s}x{s}", lc(s)) for s in sizes]}


def run_scaling_bench(widths=WIDTHS, sizes=SIZES, batches: int = 4, repeats: int = 2,
                      ngspice_samples: int = 0) -> dict:
    """{"scaling": {family: {"rows": [...], "exponent": e, "ngspice_exponent": e}}}; a family
    of fewer than two blocks has no exponent (None); ngspice_samples 0: no ngspice figures."""
    out = {}
    for family, blocks in scaling_blocks(widths, sizes).items():
        rows = []
        for label, m in blocks:
            n_g = int(sum(g.size for g in m.conductances))
            s = step_seconds(m, batches, repeats)
            row = {"block": label, "conductances": n_g, "free_nodes": int(m.circuit.n_free),
                   "s_per_step": s, "us_per_step_per_conductance": s / n_g * 1e6}
            if ngspice_samples:
                sp = ngspice_seconds(m, ngspice_samples)
                row.update({"ngspice_cpu_s_per_sample": sp["cpu_s"], "ngspice_wall_s_per_sample": sp["wall_s"],
                            "ngspice_samples_per_cpu_s": 1.0 / sp["cpu_s"], "ngspice_load_s": sp["load_s"],
                            "ngspice_nonconverged": sp["nonconverged"]})
            rows.append(row)
        g = [r["conductances"] for r in rows]
        out[family] = {"rows": rows, "exponent": fit_exponent(g, [r["s_per_step"] for r in rows])}
        if ngspice_samples:
            out[family]["ngspice_exponent"] = fit_exponent(g, [r["ngspice_cpu_s_per_sample"] for r in rows])
    return {"scaling": out}


def fit_exponent(conductances, seconds) -> float | None:
    """The slope of a least-squares line through log(seconds) against log(conductances); None
    for fewer than two distinct sizes."""
    g = np.asarray(conductances, float)
    if len(np.unique(g)) < 2:
        return None
    return float(np.polyfit(np.log(g), np.log(np.asarray(seconds, float)), 1)[0])


def print_scaling_bench(res: dict) -> None:
    print(f"{'block':<44} {'conductances':>12} {'free nodes':>10} {'s/step':>9} {'µs/step/cond.':>14} "
          f"{'ngspice /CPU-s':>15}")
    for family, f in res["scaling"].items():
        for r in f["rows"]:
            spice = f"{r['ngspice_samples_per_cpu_s']:>15.1f}" if "ngspice_samples_per_cpu_s" in r else f"{'–':>15}"
            print(f"{family + ' ' + r['block']:<44} {r['conductances']:>12} {r['free_nodes']:>10} "
                  f"{r['s_per_step']:>9.4f} {r['us_per_step_per_conductance']:>14.3f} {spice}")
        if f["exponent"] is not None:
            print(f"  {family}: EP step time ~ conductances^{f['exponent']:.2f}")
        if f.get("ngspice_exponent") is not None:
            print(f"  {family}: ngspice CPU-s per operating point (one sign-off actor) ~ "
                  f"conductances^{f['ngspice_exponent']:.2f}")


def plot_scaling(res: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    spice = any("ngspice_cpu_s_per_sample" in r for f in res["scaling"].values() for r in f["rows"])
    fig, axes = plt.subplots(1, 2 if spice else 1, figsize=(11 if spice else 6, 4), squeeze=False)
    panels = [("s_per_step", "exponent", "CPU ms per EP step (batch 64, symmetric)")]
    if spice:
        panels.append(("ngspice_cpu_s_per_sample", "ngspice_exponent",
                       "ngspice CPU ms per operating point"))
    titles = ["native EP step", "ngspice, one sign-off actor (loaded circuit)"]
    for ax, (key, exp_key, ylabel), title in zip(axes[0], panels, titles):
        ax.set_title(title, fontsize=9)
        for family, f in res["scaling"].items():
            rows = [r for r in f["rows"] if key in r]
            e = f.get(exp_key)
            label = family if e is None else f"{family} (exponent {e:.2f})"
            ax.loglog([r["conductances"] for r in rows], [r[key] * 1e3 for r in rows], "o-", label=label)
        ax.set_xlabel("conductances")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
