"""Ideal, hardware-aware and in-situ EP on the same block, then evaluated on programmed chips.

    .venv/bin/python experiments/hardware_training.py iris        # also xor, wine
    .venv/bin/python experiments/hardware_training.py fashion --epochs 2 --limit-train 20000

For each training mode the block starts from the same initial conductances and trains for
the same number of epochs; its test accuracy is then measured (a) on the ideal devices it
was trained for and (b) on `--chips` PCM chips programmed from it, read at 0 s, one day and
one year after programming (global drift compensation on, as the preset has it). Modes:
  ideal          EP on ideal conductances
  aware-pcm      EP whose solves see a fresh PCM programming-noise draw per mini-batch
  in-situ-pcm    EP updates as PCM-preset programming pulses (soft bounds, up/down asymmetry)
  in-situ-rram   EP updates as RRAM-preset programming pulses
The Fashion block sits behind a PCA encoder (150 components scaled to ±1 V), the weak front
end where the analog block has to carry the classification. Results: experiments/README.md.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from analog.hardware import program, resolve_hardware
from pipeline.analog_config import model_from_config
from pipeline.config import validate_config
from pipeline.data import load_dataset, tabular_to_volts

MODES = {"ideal": None, "aware-pcm": ("aware", "pcm"), "in-situ-pcm": ("in-situ", "pcm"),
         "in-situ-rram": ("in-situ", "rram")}
TIMES = {"0 s": 0.0, "1 day": 86400.0, "1 year": 3.15e7}


def _config(task: str, epochs: int | None, limit_train: int | None) -> dict:
    import yaml
    path = f"experiments/{'fashion_mnist' if task == 'fashion' else task}.yaml"
    raw = yaml.safe_load(open(path))
    if epochs:
        raw["training"]["epochs"] = epochs
    if task == "fashion":
        raw["data"]["limit_train"] = limit_train
        raw["training"]["optimizer"]["lr"] = 0.01
    return raw


def _data(cfg: dict):
    ds = load_dataset(cfg["data"], seed=cfg["seed"])
    if ds.x_train.ndim > 2:  # images → PCA embedding in volts, fitted on the training set
        from sklearn.decomposition import PCA
        flat = lambda a: a.reshape(len(a), -1).astype(float) / 255.0  # noqa: E731
        pca = PCA(n_components=cfg["digital"]["embedding_dim"], random_state=0).fit(flat(ds.x_train))
        z_tr, z_te = pca.transform(flat(ds.x_train)), pca.transform(flat(ds.x_test))
        sd = 3 * z_tr.std(0, keepdims=True) + 1e-12
        amp = cfg["analog"]["input_amplitude"]
        return (np.clip(z_tr / sd, -1, 1) * amp, ds.y_train.astype(int), np.clip(z_te / sd, -1, 1) * amp,
                ds.y_test.astype(int), ds.n_classes)
    x_tr, x_te = tabular_to_volts(ds.x_train, ds.x_test, amplitude=cfg["analog"]["input_amplitude"])
    return x_tr, ds.y_train.astype(int), x_te, ds.y_test.astype(int), ds.n_classes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=("xor", "iris", "wine", "fashion"))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--limit-train", type=int, default=20000)
    p.add_argument("--chips", type=int, default=3)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--json", default=None, help="write the results to this file")
    args = p.parse_args()
    raw = _config(args.task, args.epochs, args.limit_train)
    x_tr, y_tr, x_te, y_te, n_classes = _data(validate_config(raw))
    pcm = resolve_hardware("pcm")
    results = {}
    for mode in args.modes.split(","):
        cfg_raw = dict(raw)
        if MODES[mode]:
            cfg_raw["hardware"] = {"preset": MODES[mode][1], "training": MODES[mode][0]}
        cfg = validate_config(cfg_raw)
        model = model_from_config(cfg, x_tr.shape[1], n_classes)
        t0 = time.perf_counter()
        model.fit(x_tr, y_tr, epochs=cfg["training"]["epochs"], batch_size=cfg["training"]["batch_size"],
                  verbose=0, seed=cfg["seed"])
        row = {"train_seconds": time.perf_counter() - t0,
               "ideal_test_accuracy": model.evaluate(x_te, y_te)["accuracy"]}
        for label, t in TIMES.items():
            accs = []
            for seed in range(args.chips):
                accs.append(program(model, pcm, seed=seed).accuracy(x_te, y_te, t))
            row[f"pcm_chip_accuracy_{label}"] = (float(np.mean(accs)), float(np.std(accs)))
        results[mode] = row
        print(mode, json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"task": args.task, "epochs": raw["training"]["epochs"], "chips": args.chips,
                       "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
