"""A sweep's results: the table of trials, the best config, the Pareto front, and the
sweep run's metrics and artifacts."""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path

import yaml

from pipeline.config import config_dict
from pipeline.sweep.space import EPOCH_METRICS, SweepSpace, trial_config

def _status(result, tune_status: str | None) -> str:
    m = result.metrics or {}
    if result.error is not None or tune_status == "ERROR":
        return "error"
    if m.get("trial_done"):
        return "reused" if m.get("trial_reused") else "finished"
    if tune_status == "TERMINATED" or (tune_status is None and m.get("analog_epoch")):
        return "stopped early"      # ended by the scheduler before its last report
    return "unfinished"


def _tune_statuses(grid) -> dict:
    """Tune's trial id → status (TERMINATED, ERROR, RUNNING, PENDING, PAUSED)."""
    try:
        return {t.trial_id: t.status for t in grid._experiment_analysis.trials}
    except Exception:
        return {}


def _params(result, seeds=None) -> dict:
    """The trial's swept values (with optuna and seeds, the seed its repeat index picked)."""
    p = dict(result.config or {})
    index = p.pop("__trial_index__", None)
    if seeds and index is not None:
        p["seed"] = seeds[int(index)]
    return p


def _close_stopped(client, run_id: str, status: str, last: dict) -> None:
    """A trial Tune stopped (early stopping, error) leaves its runs RUNNING: close them, and
    put the epoch metrics it last reported on its trial run (as a finished trial has them)."""
    if not run_id:
        return
    try:
        run = client.get_run(run_id)
    except Exception:
        return
    from mlflow.entities import Metric
    now = int(time.time() * 1000)
    epoch = [Metric(k, float(last[k]), now, 0) for k in (*EPOCH_METRICS, "analog_epoch")
             if isinstance(last.get(k), (int, float))]
    if epoch:
        client.log_batch(run_id, metrics=epoch)
    kids = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", max_results=1000)
    for r in [run] + list(kids):
        if r.info.status == "RUNNING":
            client.set_terminated(r.info.run_id, "KILLED")
            client.set_tag(r.info.run_id, "mixsig.status", status)


def _rows(grid, client, space: SweepSpace) -> tuple[list[dict], list[str], list]:
    """One row per trial, best first; trials Tune stopped have their runs closed."""
    metric = space.metric
    results = [r for r in grid]
    statuses = _tune_statuses(grid)
    keys = sorted({k for r in results for k in _params(r, space.seeds)})
    rows = []
    for r in results:
        m = r.metrics or {}
        status = _status(r, statuses.get(m.get("trial_id")))
        if status in ("stopped early", "error"):
            _close_stopped(client, m.get("mlflow_run_id"),
                           "stopped-early" if status == "stopped early" else "failed", m)
        rows.append({"trial_id": m.get("trial_id") or Path(r.path or "").name, "status": status,
                     **{k: _params(r, space.seeds).get(k) for k in keys}, metric: m.get(metric),
                     "analog_epochs": m.get("analog_epoch"),
                     "test_accuracy": m.get("end_to_end_test_accuracy", m.get("test_accuracy",
                                                                              m.get("analog_test_accuracy"))),
                     "seconds": m.get("trial_seconds"), "mlflow_run_id": m.get("mlflow_run_id", ""),
                     "error": "" if r.error is None else " ".join(str(r.error).split())[-200:]})
    sign = 1 if space.mode == "max" else -1
    rows.sort(key=lambda row: (row[metric] is None or (isinstance(row[metric], float) and math.isnan(row[metric])),
                               -sign * (row[metric] or 0.0)))
    return rows, keys, results


def _write_table(rows: list[dict], keys: list[str], metric: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "results.csv"
    columns = ["trial_id", "status", *keys, metric, "analog_epochs", "test_accuracy", "seconds", "mlflow_run_id",
               "error"]
    with open(table, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    _print_table(rows, columns[:-1])
    return table


def finish(grid, client, sweep_id, space: SweepSpace, raw_base, settings, folder: Path, seconds: float) -> dict:
    """Results table, best config, the sweep run's metrics and artifacts."""
    import mlflow
    metric = space.metric
    rows, keys, results = _rows(grid, client, space)
    table = _write_table(rows, keys, metric, folder)
    counts = {s: sum(1 for row in rows if row["status"] == s)
              for s in ("finished", "reused", "stopped early", "error", "unfinished")}
    done = [row for row in rows if row["status"] in ("finished", "reused") and row[metric] is not None]
    summary = {"trials_total": len(rows), "trials_finished": counts["finished"] + counts["reused"],
               "trials_stopped_early": counts["stopped early"], "trials_failed": counts["error"],
               "trials_unfinished": counts["unfinished"], "sweep_seconds_this_session": seconds}
    if counts["finished"]:
        summary["trials_per_hour"] = counts["finished"] / seconds * 3600.0
    missing = [row["trial_id"] for row in rows if row["status"] in ("finished", "reused") and row[metric] is None]
    if missing:
        print(f"warning: metric {metric} was not reported by {len(missing)} finished trial(s) "
              f"({', '.join(missing[:5])}); see results.csv for the metrics they have", file=sys.stderr)
    best_path = _write_best(done, keys, space, raw_base, sweep_id, folder, summary) if done else None
    if space.pareto:
        _pareto(rows, keys, space, folder, sweep_id, results)
    mlflow.log_metrics(summary)
    mlflow.log_artifact(str(table))
    print(f"{summary['trials_finished']} finished, {summary['trials_stopped_early']} stopped early, "
          f"{summary['trials_failed']} failed"
          + (f", {summary['trials_unfinished']} unfinished" if summary["trials_unfinished"] else "")
          + f" in {seconds:.0f} s" + (f" ({summary['trials_per_hour']:.0f} trials/hour)"
                                       if "trials_per_hour" in summary else "")
          + f"\nresults: {table}" + (f"\nbest config: {best_path}" if best_path else "")
          + f"\ncompare the trials: mixsig compare --sweep {sweep_id}", flush=True)
    errors = [row for row in rows if row["status"] == "error"]
    for row in errors[:3]:
        print(f"trial {row['trial_id']} failed: {row['error']}", file=sys.stderr)
    return summary


def _write_best(done: list[dict], keys: list[str], space: SweepSpace, raw_base, sweep_id, folder: Path,
                summary: dict) -> Path:
    """best_config.yaml: the base config at the point with the best value (mean over seeds)."""
    import mlflow
    metric, mode, sign = space.metric, space.mode, 1 if space.mode == "max" else -1
    groups: dict = {}
    for row in done:
        point = {k: row[k] for k in keys if k != "seed" or not space.seeds}
        groups.setdefault(json.dumps(point, sort_keys=True, default=str), []).append(row[metric])
    best_key = max(groups, key=lambda k: sign * sum(groups[k]) / len(groups[k]))
    best_point, values = json.loads(best_key), groups[best_key]
    best_value = sum(values) / len(values)
    summary[f"best_{metric}"] = best_value
    cfg = trial_config(raw_base, best_point, "best config")
    best_path = folder / "best_config.yaml"
    header = (f"# best point of sweep {sweep_id} ({metric} = {best_value:.6g}"
              f"{f', mean of {len(values)} seeds' if len(values) > 1 else ''}, mode {mode}):\n"
              + "".join(f"#   {k}: {json.dumps(v)}\n" for k, v in best_point.items())
              + f"# run it: mixsig cotrain {best_path.name}\n")
    best_path.write_text(header + yaml.safe_dump(config_dict(cfg), sort_keys=False))
    mlflow.log_artifact(str(best_path))
    mlflow.set_tag("mixsig.sweep_best", json.dumps(best_point))
    print(f"\nbest {metric} = {best_value:.4f}"
          f"{f' (mean of {len(values)} seeds)' if len(values) > 1 else ''} at "
          + ", ".join(f"{k}={json.dumps(v)}" for k, v in best_point.items()))
    return best_path


def _pareto(rows, keys, space: SweepSpace, folder: Path, sweep_id: str, results) -> None:
    """The Pareto front of the finished trials over space.pareto's two metrics, on the sweep run."""
    import mlflow

    from pipeline.sweep import pareto
    x, y = space.pareto.x, space.pareto.y
    by_id = {row["trial_id"]: row for row in rows}
    full = []
    for r in results:
        m = r.metrics or {}
        row = by_id.get(m.get("trial_id") or Path(r.path or "").name)
        if row is not None and row["status"] in ("finished", "reused"):
            full.append({**row, x: m.get(x), y: m.get(y)})
    table, plot, best = pareto.write(full, keys, space.pareto, folder, f"sweep {sweep_id[:8]}: {y} against {x}")
    mlflow.log_artifact(str(table))
    mlflow.log_artifact(str(plot), artifact_path="plots")
    print(f"Pareto front ({x} {space.pareto.x_mode}, {y} {space.pareto.y_mode}): "
          + "; ".join(", ".join(f"{k}={json.dumps(b.get(k))}" for k in keys) + f" → {x}={b[x]:.4g}, {y}={b[y]:.4f}"
                      for b in best) + f" (plot: {plot})")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def _print_table(rows: list[dict], columns: list[str]) -> None:
    cells = [columns] + [[_fmt(row.get(c)) if c != "mlflow_run_id" else str(row.get(c) or "-")[:8]
                          for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for i, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
