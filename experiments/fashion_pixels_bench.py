"""EP training rate of the Fashion pixel blocks (locally connected and dense), in samples per CPU-second (process time,
so other work on a shared machine does not count): `AnalogModel.fit` on 960 Fashion-MNIST
training images after a 64-image warm-up (`--warmup`: more, to measure a block part-trained,
where Newton needs more iterations from V_ref), for experiments/fashion_pixels_lc.yaml and
fashion_pixels_dense.yaml (the same code path as `mixsig train-analog`), the two blocks
measured alternately `--repeats` times (best rate of each kept), and the ratio of their
cost per conductance (`lc_vs_dense_cost_per_conductance`: above 1, the LC block costs more
per conductance than the dense one).

    .venv/bin/python experiments/fashion_pixels_bench.py [--batch-size 32] [--repeats 2] [--warmup 64]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=960)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=64)
    args = parser.parse_args()
    from pipeline.system.analog_block import model_from_config
    from pipeline.config import load_config
    from pipeline.data import load_dataset
    from pipeline.flow.stage_data import pixel_volts
    blocks, need = {}, args.warmup + args.samples     # images, before the validation split takes its tenth
    for name in ("fashion_pixels_lc", "fashion_pixels_dense"):
        cfg = load_config(HERE / f"{name}.yaml")
        sliced = cfg.data.model_copy(update={"limit_train": need + max(200, need // 8), "limit_test": 10})
        ds = load_dataset(sliced, seed=0)
        x, y = pixel_volts(ds.x_train, cfg.digital.v_low, cfg.digital.v_high), ds.y_train
        blocks[name] = (cfg, x, y)
    out = {}
    for _ in range(args.repeats):
        for name, (cfg, x, y) in blocks.items():
            model = model_from_config(cfg, x.shape[1], 10)
            w = args.warmup
            model.fit(x[:w], y[:w], epochs=1, batch_size=args.batch_size, verbose=0)
            n = args.samples
            cpu, wall = time.process_time(), time.perf_counter()
            model.fit(x[w:w + n], y[w:w + n], epochs=1, batch_size=args.batch_size, verbose=0)
            rate = {"conductances": int(sum(g.size for g in model.conductances)),
                    "samples_per_cpu_second": round(n / (time.process_time() - cpu), 1),
                    "samples_per_wall_second": round(n / (time.perf_counter() - wall), 1)}
            print(name, rate, flush=True)
            if name not in out or rate["samples_per_cpu_second"] > out[name]["samples_per_cpu_second"]:
                out[name] = rate
    lc, dense = out["fashion_pixels_lc"], out["fashion_pixels_dense"]
    out["lc_vs_dense_cost_per_conductance"] = round(
        (dense["samples_per_cpu_second"] * dense["conductances"]) / (lc["samples_per_cpu_second"] * lc["conductances"]), 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
