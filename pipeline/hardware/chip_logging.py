"""Chip accuracies logged on a stage's run and on the co-training parent (MLflow, through
the stage context): per read time and chip, and the scenario metrics (pipeline.hardware.chip_metrics)."""
from __future__ import annotations

import numpy as np

from pipeline.hardware.chip_metrics import spread


def log_grid(ctx, times, acc: np.ndarray, prefix: str = "chip_acc") -> dict:
    """Per read time (step = time index): time_s, mean/std/min/max over chips and each
    chip's accuracy on the stage's run; returns the t = 0 and t_max summaries."""
    for i, t in enumerate(times):
        row = acc[i]
        ctx.log({"time_s": t, f"{prefix}_mean": row.mean(), f"{prefix}_std": spread(row), f"{prefix}_min": row.min(),
                 f"{prefix}_max": row.max(), **{f"{prefix}_chip{j}": a for j, a in enumerate(row)}},
                step=i, final=False)
    summary = {f"{prefix}_mean_t0": acc[0].mean(), f"{prefix}_std_t0": spread(acc[0]),
               f"{prefix}_mean_tmax": acc[-1].mean(), f"{prefix}_std_tmax": spread(acc[-1]), "tmax_s": times[-1]}
    ctx.log(summary)
    return summary


def log_scenario(ctx, name: str, times, acc: np.ndarray | None = None, ideal: float | None = None) -> dict:
    """A scenario's metrics on the stage run and (in a co-training) on the parent run:
    e2e_acc_<name>[_std][_tmax[_std]] and its series per read time (scenario_acc_<name>,
    step = time index) for the accuracy-vs-time plot."""
    if acc is None:
        acc = np.full((len(times), 1), float(ideal))
    m = {f"e2e_acc_{name}": acc[0].mean(), f"e2e_acc_{name}_tmax": acc[-1].mean()}
    if name != "ideal":
        m.update({f"e2e_acc_{name}_std": spread(acc[0]), f"e2e_acc_{name}_tmax_std": spread(acc[-1])})
    ctx.log(m)
    ctx.log_parent(m)
    for i, t in enumerate(times):
        ctx.log_parent({f"scenario_acc_{name}": acc[i].mean(), f"scenario_std_{name}": spread(acc[i]),
                        "scenario_time_s": t}, step=i)
    return m


def plot_accuracy_vs_time(ctx, reference: dict, label: str, times, acc: np.ndarray, title: str) -> None:
    """plots/accuracy_vs_time.png of the stage: the `reference` curves ({label: (times,
    accuracies, spreads or None)}) and the chips' mean ± spread per read time under `label`,
    logged as the stage's `plots` artifact."""
    from pipeline.flow import plots
    plots.accuracy_vs_time({**reference, label: (times, acc.mean(1), [spread(r) for r in acc])},
                           ctx.folder / "plots" / "accuracy_vs_time.png", title=title)
    ctx.artifact(ctx.folder / "plots", "plots")


def trim_set(cfg, cal: tuple) -> tuple | None:
    """The first hardware.output_trim pairs of the calibration set `cal` (x_val, y_val) a
    chip's output trim is fitted on; None without a trim."""
    n = cfg.hardware.output_trim if cfg.hardware is not None else 0
    return (cal[0][:n], cal[1][:n]) if n and cal is not None else None


def log_trimmed(ctx, scenario: str, times, acc: np.ndarray) -> None:
    """The accuracy grid `acc` of the trimmed chips (hardware.output_trim = n: per-class output
    offsets fitted on n calibration pairs, chip_metrics.accuracy_grids) as the scenario
    <scenario>_trimmed (and its loop / held-out split)."""
    from pipeline.hardware.population import log_split
    log_grid(ctx, times, acc, prefix="chip_acc_trimmed")
    log_scenario(ctx, f"{scenario}_trimmed", times, acc)
    log_split(ctx, f"{scenario}_trimmed", acc)
    ctx.say(f"trimmed ({ctx.cfg.hardware.output_trim} calibration images per chip): {acc[0].mean():.4f} ± "
            f"{spread(acc[0]):.4f} at t = 0")
