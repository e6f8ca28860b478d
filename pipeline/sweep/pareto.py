"""The Pareto front of a sweep's finished trials over two metrics, and its plot.

A space file with `pareto: {x: digital_macs_per_image, y: end_to_end_test_accuracy}` gets,
on the sweep run, `plots/pareto.png` (every finished trial a point labelled with its swept
values, the front joined) and `pareto.csv`; by default x is minimised (a cost) and y
maximised (`x_mode`, `y_mode` change that).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import csv
import json
from pathlib import Path

if TYPE_CHECKING:
    from pipeline.sweep.space import Pareto


def front(points: list[tuple[float, float]], x_mode: str = "min", y_mode: str = "max") -> list[int]:
    """Indices of the points no other point dominates (at least as good in both, better in one)."""
    sx = 1 if x_mode == "min" else -1
    sy = 1 if y_mode == "max" else -1
    out = []
    for i, (xi, yi) in enumerate(points):
        dominated = any(sx * xj <= sx * xi and sy * yj >= sy * yi and (xj, yj) != (xi, yi)
                        for j, (xj, yj) in enumerate(points) if j != i)
        if not dominated:
            out.append(i)
    return sorted(out, key=lambda i: points[i][0])


def _text(v) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def write(rows: list[dict], keys: list[str], spec: Pareto, folder: Path, title: str) -> tuple[Path, Path, list]:
    """pareto.csv and plots/pareto.png from the trials' rows (those with both metrics)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x, y = spec.x, spec.y
    have = [r for r in rows if isinstance(r.get(x), (int, float)) and isinstance(r.get(y), (int, float))]
    pts = [(float(r[x]), float(r[y])) for r in have]
    best = front(pts, spec.x_mode, spec.y_mode)
    table = folder / "pareto.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["trial_id", *keys, x, y, "on_front"])
        for i, r in enumerate(have):
            w.writerow([r["trial_id"], *[_text(r.get(k)) for k in keys], r[x], r[y], int(i in best)])
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="tab:blue", zorder=2, label="trials")
    ax.plot([pts[i][0] for i in best], [pts[i][1] for i in best], "-o", color="tab:red", zorder=3,
            label="Pareto front")
    for r, (px, py) in zip(have, pts):
        label = ", ".join(f"{k.split('.')[-1]}={_text(r.get(k))}" for k in keys if k != "seed")
        right = bool(pts) and px > (min(p[0] for p in pts) + max(p[0] for p in pts)) / 2
        ax.annotate(label, (px, py), textcoords="offset points", xytext=(-4 if right else 4, 4), fontsize=7,
                    ha="right" if right else "left")
    if pts and min(p[0] for p in pts) > 0 and max(p[0] for p in pts) / min(p[0] for p in pts) > 20:
        ax.set_xscale("log")
    ax.margins(x=0.15, y=0.08)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    plot = folder / "plots" / "pareto.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=120)
    plt.close(fig)
    return table, plot, [have[i] for i in best]
