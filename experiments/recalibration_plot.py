"""One plot of several recalibrations of the same co-training: accuracy against read time
without recalibration and with each one (mean over chips, ± the spread across chips).

    .venv/bin/python experiments/recalibration_plot.py runs/<recal 1>/recalibration.json \
        runs/<recal 2>/recalibration.json --output docs/recalibration.png

Each file is the `recalibration.json` a `mixsig recalibrate` run writes (and logs); the
"without" curves are taken from the first; per recalibration the mean over chips and the
chip the encoder was retrained through.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from pipeline.hardware.chip_metrics import spread
from pipeline.flow.plots import accuracy_vs_time


def _label(t: float) -> str:
    for unit, s in (("y", 3.15e7), ("d", 86400.0), ("h", 3600.0)):
        if t >= s:
            return f"{t / s:g} {unit}"
    return f"{t:g} s"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--output", required=True)
    p.add_argument("--title", default="accuracy over time, with and without recalibration")
    args = p.parse_args()
    runs = [json.load(open(f)) for f in args.files]
    first = runs[0]
    without = np.asarray(first["without"], float)
    k = first["loop_chip"]
    series = {"without recalibration, mean over chips": (first["times"], without.mean(1), [spread(r) for r in without]),
              f"without, chip {k}": (first["times"], without[:, k], None)}
    for r in runs:
        rows = [(t, np.asarray(a, float)) for t, a in zip(r["times"], r["with"]) if a is not None and a[0] is not None]
        name = f"recalibrated at {_label(r['t'])} ({r['mode']})"
        series[f"{name}, mean"] = ([t for t, _ in rows], [a.mean() for _, a in rows], None)
        series[f"{name}, chip {r['loop_chip']}"] = ([t for t, _ in rows], [a[r["loop_chip"]] for _, a in rows], None)
    print(accuracy_vs_time(series, args.output, title=args.title))


if __name__ == "__main__":
    main()
