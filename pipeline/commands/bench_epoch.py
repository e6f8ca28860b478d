"""The training epoch users run, measured against backprop: one EP epoch of the main job's
block (experiments/fashion_mnist.yaml: 150 → 100 → 10, its batch size, optimiser and loss)
on 150-d embeddings, and one Keras backprop epoch of a 150 → 100 → 10 network on the same
data and batch, in the same process; with `profile`, where the EP epoch spends its time.

Embeddings: an `embeddings.npz` from `mixsig embed` when given, else a stand-in with the
statistics of the main job's: the tanh layer (150 units, in volts on [-1, 1]) of an MLP
encoder trained for two epochs on the first Fashion-MNIST training images (a synthetic set
of tanh class clusters when Fashion-MNIST is not installed)."""
from __future__ import annotations

import cProfile
import pstats
import time
from pathlib import Path

import numpy as np

MAIN_CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "fashion_mnist.yaml"


def stand_in_embeddings(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(x (n, 150) volts, labels, what they are)."""
    from pipeline.data import DataError, load_fashion_mnist
    try:
        images, labels = load_fashion_mnist()[:2]
    except (DataError, OSError):
        rng = np.random.default_rng(seed)
        centres = rng.normal(0.0, 1.2, (10, 150))
        y = rng.integers(0, 10, n)
        return np.tanh(centres[y] + rng.normal(0.0, 0.8, (n, 150))), y, "synthetic tanh class clusters"
    from digital import MLPEncoder
    enc = MLPEncoder(embedding_dim=150, hidden=(256,), epochs=2, batch_size=128, seed=seed)
    enc.fit(images[:n], labels[:n], verbose=0)
    return enc.embed(images[:n]), labels[:n].astype(np.int64), "MLP encoder's tanh embedding of Fashion-MNIST"


def load_embedding_file(path: str, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    from pipeline.flow.artifacts import load_embeddings
    z = load_embeddings(Path(path).parent if Path(path).is_file() else Path(path))
    return z["x_train"][:n].astype(float), z["y_train"][:n].astype(np.int64), f"embeddings from {path}"


def embedding_stats(x: np.ndarray) -> dict:
    return {"embedding_mean_abs": float(np.abs(x).mean()), "embedding_std": float(x.std()),
            "embedding_fraction_above_0.9": float((np.abs(x) > 0.9).mean())}


def main_block(config: Path = MAIN_CONFIG, n_classes: int = 10):
    """The main job's analog block, compiled for its first training (epochs from the config)."""
    from pipeline.system import build
    from pipeline.config import load_config
    cfg = load_config(config)
    model = build.analog_model(cfg, cfg.digital.embedding_dim, n_classes)
    return model, cfg.training.batch_size, cfg.analog.hidden


def ep_epoch_seconds(model, x, y, batch: int) -> float:
    """One epoch of `AnalogModel.fit` (its own clock: `epoch_seconds`)."""
    model.fit(x, y, epochs=1, batch_size=batch, verbose=0)
    return float(model.history.history["epoch_seconds"][-1])


def backprop_epoch_seconds(x, y, hidden, batch: int, seed: int = 0) -> float:
    """One Keras epoch of Dense(hidden, relu) → Dense(10) with Adam on the same data and
    batch, after a first epoch that traces and compiles the step (not counted)."""
    import keras
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((x.shape[1],))] + [keras.layers.Dense(int(h), activation="relu") for h in hidden]
    net = keras.Sequential(layers + [keras.layers.Dense(int(y.max()) + 1)])
    net.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    xf = x.astype(np.float32)
    net.fit(xf, y, batch_size=batch, epochs=1, verbose=0)
    t0 = time.perf_counter()
    net.fit(xf, y, batch_size=batch, epochs=1, verbose=0)
    return time.perf_counter() - t0


#: profile categories: (name, "module:function" entries whose own time counts there); a
#: compiled kernel (analog/kernels.py, analog/fused.py) and numpy's ufuncs count in the
#: Python function that calls them (cProfile sees neither as a call of its own)
CATEGORIES = (
    ("Schur complement: formed (GEMM), factorised, solved", (
        "schur:solve", "schur:_solve", "schur:_direct", "schur:_schur_matrices", "schur:_inverse_solve", "schur:_pcg",
        "schur:cholesky_solve", "_linalg:solve", "_linalg:cholesky", "_linalg:inv", "native:linear_solve",
        "native:_cholesky_solve", "kernels:_packed_spd_solve")),
    ("device evaluation (currents, conductances, co-content, limiting)",
     ("newton:add_to", "newton:device_values", "newton:step_scale", "newton:branch", "newton:offsets", "newton:_gather",
      "devices:current", "devices:cocontent", "devices:limit", "native:_devices", "native:_branch",
      "fused:evaluate", "fused:_exponent_args", "fused:_scatter", "fused:relax_sweeps", "fused:_relax_args",
      "fused:_relax_step", "relax:_compiled_sweeps")),
    ("Newton loop (K matvec, line search, convergence tests)",
     ("newton:damped_newton", "newton:__call__", "newton:keep", "newton:_line_search", "relax:relax_eliminated",
      "relax:_relax_block", "relax:_block_devices", "relax:devices", "relax:restricted", "newton:direction",
      "newton:stepped", "newton:moved_by", "newton:retire", "newton:finish", "schur:times",
      "operators:__rmatmul__", "native:_solve_chunk", "native:_from_last_free_solve", "native:_kcl_ok")),
    ("nudged-phase predictor (linear response)", ("native:linear_response",)),
    ("K rebuild after each update", ("native:_linear", "native:_build_K", "native:_source_map",
                                     "native:_offset_residual_direct", "assembly:conductance_matrix",
                                     "assembly:source_map", "assembly:_scatter_add", "assembly:_distinct",
                                     "schur:__init__", "schur:as_slice")),
    ("EP gradient (squared drops)", ("ep:ep_gradients", "ep:_nudged_pair", "ep:_drop_difference",
                                     "crossbar:squared_drop_difference", "crossbar:edge_outer",
                                     "circuit:terminal_voltages")),
    ("optimiser update", ("optimizers:apply", "optimizers:_direction", "optimizers:step")),
    ("solution extras (power)", ("native:power", "native:source_currents", "solution:dissipated_power",
                                 "crossbar:quadratic", "native:extras")),
)


def profile_ep_epoch(model, x, y, batch: int) -> tuple[list[tuple[str, float]], float]:
    """cProfile of one EP epoch: own time per category (the rest: Python and numpy
    overhead elsewhere) and the total, in seconds (profiling slows everything alike)."""
    prof = cProfile.Profile()
    prof.enable()
    model.fit(x, y, epochs=1, batch_size=batch, verbose=0)
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = sum(v[2] for v in stats.values())
    rows, counted = [], 0.0
    for name, funcs in CATEGORIES:
        own = sum(v[2] for (file, _, fn), v in stats.items() if f"{Path(file).stem}:{fn}" in funcs)
        rows.append((name, own))
        counted += own
    rows.append(("other (Python overhead, numpy calls outside the above)", total - counted))
    return rows, total


def run_epoch_bench(samples: int, embeddings: str | None, profile: bool) -> dict:
    model, batch, hidden = main_block()
    x, y, what = load_embedding_file(embeddings, samples) if embeddings else stand_in_embeddings(samples)
    out: dict = {"epoch_data": what, "epoch_samples": len(x), "epoch_batch": batch, **embedding_stats(x)}
    out["backprop_epoch_s"] = backprop_epoch_seconds(x, y, hidden, batch)
    out["ep_train_epoch_s"] = ep_epoch_seconds(model, x, y, batch)
    out["backprop_epoch_again_s"] = backprop_epoch_seconds(x, y, hidden, batch)
    bp = 0.5 * (out["backprop_epoch_s"] + out["backprop_epoch_again_s"])
    out["ep_vs_backprop_ratio"] = out["ep_train_epoch_s"] / bp
    if profile:
        rows, total = profile_ep_epoch(model, x, y, batch)
        out["ep_profile_s"] = {name: round(s, 3) for name, s in rows}
        out["ep_profile_total_s"] = total
    return out


def print_epoch_bench(res: dict) -> None:
    print(f"Training epoch, main job's block and batch ({res['epoch_samples']} samples, batch {res['epoch_batch']}; "
          f"{res['epoch_data']}: mean |x| {res['embedding_mean_abs']:.2f} V)")
    print(f"  EP epoch (symmetric)     {res['ep_train_epoch_s']:>10.2f} s")
    print(f"  Keras backprop epoch     {res['backprop_epoch_s']:>10.2f} s, again after EP "
          f"{res['backprop_epoch_again_s']:.2f} s")
    print(f"  EP / backprop            {res['ep_vs_backprop_ratio']:>10.1f}x (target <= 8)")
    if "ep_profile_s" in res:
        total = res["ep_profile_total_s"]
        print(f"  profile of one EP epoch (cProfile, own time; {total:.2f} s under the profiler):")
        for name, s in res["ep_profile_s"].items():
            print(f"    {name:<58} {s:>7.2f} s {100 * s / total:>5.1f} %")
