"""EP training rate of the issue-17 pixel blocks, in samples per CPU-second (process time,
so other work on a shared machine does not count): `AnalogModel.fit` on 960 Fashion-MNIST
training images after a 64-image warm-up, for experiments/fashion_pixels_lc.yaml and
fashion_pixels_dense.yaml (the same code path as `mixsig train-analog`).

    .venv/bin/python experiments/fashion_pixels_bench.py [--batch-size 32]
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
    args = parser.parse_args()
    from pipeline.system.analog_block import model_from_config
    from pipeline.config import load_config
    from pipeline.data import load_dataset
    from pipeline.flow.stage_data import pixel_volts
    out = {}
    for name in ("fashion_pixels_lc", "fashion_pixels_dense"):
        cfg = load_config(HERE / f"{name}.yaml")
        ds = load_dataset({**cfg["data"], "limit_train": 64 + args.samples + 200, "limit_test": 10}, seed=0)
        x, y = pixel_volts(cfg, ds.x_train), ds.y_train
        model = model_from_config(cfg, x.shape[1], 10)
        model.fit(x[:64], y[:64], epochs=1, batch_size=args.batch_size, verbose=0)     # warm-up
        n = args.samples
        cpu, wall = time.process_time(), time.perf_counter()
        model.fit(x[64:64 + n], y[64:64 + n], epochs=1, batch_size=args.batch_size, verbose=0)
        out[name] = {"conductances": int(sum(g.size for g in model.conductances)),
                     "samples_per_cpu_second": round(n / (time.process_time() - cpu), 1),
                     "samples_per_wall_second": round(n / (time.perf_counter() - wall), 1)}
        print(name, out[name], flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
