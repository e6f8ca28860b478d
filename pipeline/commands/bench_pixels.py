"""mixsig bench --lc-pixels: the EP training rate of the Fashion pixel blocks, locally
connected (experiments/fashion_pixels_lc.yaml) and dense of about the same conductance count
(fashion_pixels_dense.yaml), and the LC block's cost per conductance against the dense one's.

Each block is built from its config as `mixsig train-analog` builds it and trained by
`AnalogModel.fit` (the config's batch size) on pixel volts of the first training images:
`warmup` images untimed (more of them measure a part-trained block, where Newton needs more
iterations from V_ref), then `samples` images timed by this process's CPU clock, so other
work on a shared machine does not count. The blocks alternate `repeats` times; the best rate
of each is kept (docs/results-local.md)."""
from __future__ import annotations

import time
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
BLOCKS = ("fashion_pixels_lc", "fashion_pixels_dense")


def cost_per_conductance_ratio(lc: dict, dense: dict) -> float:
    """CPU time per sample per conductance of the LC block over the dense block's: above 1 the
    LC block costs more per conductance."""
    lc_cost = 1.0 / (lc["samples_per_cpu_second"] * lc["conductances"])
    dense_cost = 1.0 / (dense["samples_per_cpu_second"] * dense["conductances"])
    return lc_cost / dense_cost


def _pixel_data(name: str, images: int):
    """(config, pixel volts, labels) of the first `images` training images of a block's config."""
    from pipeline.config import load_config
    from pipeline.data import load_dataset
    from pipeline.flow.stage_data import pixel_volts
    cfg = load_config(EXPERIMENTS / f"{name}.yaml")
    # the validation split takes its share of limit_train: ask for enough that `images` remain
    sliced = cfg.data.model_copy(update={"limit_train": images + max(200, images // 8), "limit_test": 10})
    ds = load_dataset(sliced, seed=0)
    return cfg, pixel_volts(ds.x_train, cfg.digital.v_low, cfg.digital.v_high), ds.y_train


def fit_rate(cfg, x, y, warmup: int, samples: int) -> dict:
    """Samples per CPU second (and per wall second) of one `fit` epoch over x[warmup:warmup+samples]
    of a fresh block of `cfg`, after an untimed epoch over x[:warmup]."""
    from pipeline.system.analog_block import model_from_config
    model = model_from_config(cfg, x.shape[1], 10)
    batch = cfg.training.batch_size
    if warmup:
        model.fit(x[:warmup], y[:warmup], epochs=1, batch_size=batch, verbose=0)
    xs, ys = x[warmup:warmup + samples], y[warmup:warmup + samples]
    cpu, wall = time.process_time(), time.perf_counter()
    model.fit(xs, ys, epochs=1, batch_size=batch, verbose=0)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"conductances": int(sum(g.size for g in model.conductances)), "samples": len(xs),
            "samples_per_cpu_second": len(xs) / cpu, "samples_per_wall_second": len(xs) / wall}


def run_pixels_bench(samples: int, warmup: int, repeats: int) -> dict:
    data = {name: _pixel_data(name, warmup + samples) for name in BLOCKS}
    best: dict = {}
    runs: dict = {name: [] for name in BLOCKS}
    for _ in range(repeats):
        for name, (cfg, x, y) in data.items():
            rate = fit_rate(cfg, x, y, warmup, samples)
            runs[name].append(round(rate["samples_per_cpu_second"], 1))
            if name not in best or rate["samples_per_cpu_second"] > best[name]["samples_per_cpu_second"]:
                best[name] = rate
    lc, dense = (best[name] for name in BLOCKS)
    return {"lc_pixels": {"warmup": warmup, "samples": samples, "repeats": repeats, **best,
                          "samples_per_cpu_second_each_run": runs,
                          "lc_vs_dense_cost_per_conductance": cost_per_conductance_ratio(lc, dense)}}


def print_pixels_bench(res: dict) -> None:
    r = res["lc_pixels"]
    print(f"Fashion pixel blocks, EP training ({r['samples']} images after {r['warmup']} untimed, "
          f"best of {r['repeats']})")
    for name in BLOCKS:
        b = r[name]
        print(f"  {name:<22} {b['conductances']:>6} conductances  {b['samples_per_cpu_second']:>8.1f} samples/CPU-s"
              f"  ({b['samples_per_wall_second']:.1f} per wall s)")
    print(f"  LC / dense cost per conductance {r['lc_vs_dense_cost_per_conductance']:.2f}x")
