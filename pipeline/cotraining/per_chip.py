"""One encoder per chip in one command (hardware.encoder_per_chip): `mixsig cotrain` trains the
encoder and the block once, then co-trains one encoder per programmed chip, each through its
own chip, as parallel Ray tasks (pipeline.runtime.ray_cluster: the embedded Ray, or --address).

Runs: a parent run (tag mixsig.stage=cotrain-per-chip) holds the shared steps (train-digital,
embed, train-analog: one nested run each, unless `--from-run` gives a trained block) and one
nested run per chip k: a frozen co-training with hardware.loop_chip = k started from the shared
block (`--from-run` of its train-analog run), whose stages nest under it. Each chip's run is a
co-training parent of its own, so `mixsig cotrain --resume` continues it alone.

The parent gets the summary across chips (per_chip_summary.md and .json, artifacts): per chip,
its accuracy as programmed and after the rounds with its own encoder, the recovered fraction,
and the mean over all chips of that chip's encoder; and the metrics

  e2e_acc_programmed            mean over chips as programmed
  e2e_acc_per_chip_encoders     mean over chips, each behind its own encoder
  recovered_fraction_per_chip   (per-chip encoders − programmed) / (ideal − programmed)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import copy
import json
import time
from pathlib import Path

import numpy as np

if TYPE_CHECKING:
    from pipeline.config import RootConfig

__all__ = ["run_per_chip", "chip_config", "summary_rows", "summary_table"]

PREFIX = ("train-digital", "embed", "train-analog")


def chip_config(cfg: RootConfig, k: int) -> RootConfig:
    """The config of chip k's co-training: the same with hardware.loop_chip = k, one encoder
    (encoder_per_chip off) and no model registration (the chips' runs would race on one name)."""
    return cfg.model_copy(deep=True, update={
        "hardware": cfg.hardware.model_copy(update={"encoder_per_chip": False, "loop_chip": int(k)}),
        "mlflow": cfg.mlflow.model_copy(update={"register_model": None})})


def _chip_cotrain(cfg: RootConfig, block_run: str, workdir: str, parent_id: str, k: int,
                  verbose: int) -> tuple[str, dict]:
    """One chip's co-training (a Ray task); returns its run id and its parent metrics."""
    from pipeline.cotraining.run import cotrain
    from pipeline.runtime import allocator
    allocator.tune()           # a Ray worker is not started by the CLI, which tunes its own process
    return cotrain(cfg, workdir=Path(workdir), from_runs=(block_run,), run_name=f"{cfg.name} chip {k}",
                   verbose=verbose, parent=parent_id)


def _shared_block(cfg: RootConfig, state: dict, root: Path, workdir: Path, parent_id: str, verbose: int) -> str:
    """The train-analog run the chips start from: the given one, or the shared steps run here."""
    from pipeline.flow.loop import plan_steps, walk
    if "analog" in state:
        return state["analog"].run_id
    plan = [(name, 0) for name in PREFIX if name != "train-digital" or "encoder" not in state]
    walk(plan_steps(plan), {}, state, cfg, root, workdir, parent_id, verbose)
    return state["analog"].run_id


def run_per_chip(cfg: RootConfig, *, workdir: Path = Path("runs"), from_runs=(), explicit_inputs: dict | None = None,
                 run_name: str | None = None, verbose: int = 1, address: str | None = None,
                 num_cpus: int | None = None) -> str:
    """Run the per-chip co-trainings (module docstring); returns the parent run id."""
    import mlflow

    from pipeline.config import flatten
    from pipeline.cotraining.run import _new
    from pipeline.runtime.interrupts import end_active_run
    from pipeline.flow import TAG, dump_config, experiment_name
    from pipeline.runtime.tracking import setup_mlflow
    setup_mlflow(experiment_name(cfg))
    workdir = Path(workdir).resolve()
    _, state = _new(cfg, from_runs, explicit_inputs, workdir / "_cache")     # every check before any run
    chips = list(range(cfg.hardware.chips))
    session = _connect(address, num_cpus, verbose)
    t0 = time.perf_counter()
    try:
        with mlflow.start_run(run_name=run_name or f"{cfg.name} per chip",
                              tags={f"{TAG}stage": "cotrain-per-chip", f"{TAG}status": "running"}) as run:
            parent_id = run.info.run_id
            root = workdir / parent_id
            root.mkdir(parents=True, exist_ok=True)
            mlflow.log_params({k: ("" if v is None else v) for k, v in flatten(cfg).items()})
            mlflow.log_artifact(str(dump_config(cfg, root / "config.yaml")))
            print(f"co-training one encoder per chip {parent_id} ({len(chips)} chips), local folder {root}", flush=True)
            try:
                block_run = _shared_block(cfg, state, root, workdir, parent_id, verbose)
                runs = _run_chips(cfg, chips, block_run, workdir, parent_id, verbose)
                rows = summary_rows(runs)
                _log_summary(rows, root, cfg)
                mlflow.log_metric("cotrain_seconds_this_session", time.perf_counter() - t0)
                mlflow.set_tag(f"{TAG}status", "finished")
            except BaseException as exc:
                end_active_run(exc, "interrupted")
                raise
    finally:
        session.close()
    return parent_id


def _run_chips(cfg: RootConfig, chips: list[int], block_run: str, workdir: Path, parent_id: str, verbose: int) -> dict:
    """chip → (its co-training run id, that run's metrics), the chips' co-trainings run as parallel Ray tasks."""
    import ray
    task = ray.remote(num_cpus=1, max_retries=0)(_chip_cotrain)
    # a working folder per chip: the chips' co-trainings all fetch the shared block's artifacts,
    # and concurrent downloads into one cache folder overwrite each other's files
    refs = {k: task.remote(chip_config(cfg, k), block_run, str(workdir / parent_id / f"chip{k}"), parent_id, k,
                           max(0, verbose - 1)) for k in chips}
    try:
        return {k: ray.get(ref) for k, ref in refs.items()}
    except BaseException:
        for ref in refs.values():
            ray.cancel(ref, force=True)
        raise


def _connect(address: str | None, num_cpus: int | None, verbose: int, attempts: int = 3):
    """pipeline.runtime.ray_cluster.connect; an embedded Ray is started again when its node did not
    register within Ray's fixed 30 s (seen on a machine at load 20), up to `attempts` times."""
    import ray

    from pipeline.runtime import ray_cluster
    for attempt in range(1, attempts + 1):
        try:
            return ray_cluster.connect(address, num_cpus=num_cpus, env=_store_env(), verbose=verbose)
        except Exception as exc:
            if address or "timed out during startup" not in str(exc) or attempt == attempts:
                raise
            ray.shutdown()
            if verbose:
                print(f"the embedded Ray did not start in time (attempt {attempt} of {attempts}); starting it again",
                      flush=True)


def _store_env() -> dict:
    from pipeline.runtime.home import project_home
    from pipeline.runtime.tracking import user_tracking_uri
    env = {"MIXSIG_HOME": str(project_home())}
    if user_tracking_uri():
        env["MLFLOW_TRACKING_URI"] = user_tracking_uri()
    return env


def summary_rows(runs: dict) -> list[dict]:
    """One row per chip from what its co-training returned (run id, the run's metrics):
    programmed and after the last round on that chip (round_chip_e2e_accuracy), its recovered
    fraction, and the mean over all chips with its encoder (e2e_acc_cotrained)."""
    nan = float("nan")
    rows = []
    for k, (run_id, m) in sorted(runs.items()):
        rows.append({"chip": k, "run_id": run_id, "ideal": m.get("e2e_acc_ideal", nan),
                     "programmed": m.get("loop_chip_programmed_accuracy", nan),
                     "own_encoder": m.get("round_chip_e2e_accuracy", nan),
                     "recovered": m.get("recovered_fraction_loop", nan),
                     "all_chips_mean": m.get("e2e_acc_cotrained", nan)})
    return rows


def summary_table(rows: list[dict]) -> tuple[str, dict]:
    """(markdown table, summary metrics) across chips."""
    lines = ["| chip | programmed | own encoder | recovered | mean over all chips, this encoder | run |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['chip']} | {r['programmed']:.4f} | {r['own_encoder']:.4f} | {r['recovered']:.2f} | "
                     f"{r['all_chips_mean']:.4f} | `{r['run_id'][:8]}` |")
    prog = float(np.mean([r["programmed"] for r in rows]))
    own = float(np.mean([r["own_encoder"] for r in rows]))
    ideal = rows[0]["ideal"]
    metrics = {"e2e_acc_ideal": ideal, "e2e_acc_programmed": prog, "e2e_acc_per_chip_encoders": own}
    if ideal - prog > 0:
        metrics["recovered_fraction_per_chip"] = (own - prog) / (ideal - prog)
    lines.append(f"| mean | {prog:.4f} | {own:.4f} | {metrics.get('recovered_fraction_per_chip', float('nan')):.2f} "
                 f"| | ideal {ideal:.4f} |")
    return "\n".join(lines) + "\n", metrics


def _log_summary(rows: list[dict], root: Path, cfg: RootConfig) -> None:
    import mlflow
    table, metrics = summary_table(rows)
    (root / "per_chip_summary.md").write_text(f"# {cfg.name}: one encoder per chip\n\n{table}")
    (root / "per_chip_summary.json").write_text(json.dumps({"rows": rows, "summary": metrics}, indent=2))
    mlflow.log_artifact(str(root / "per_chip_summary.md"))
    mlflow.log_artifact(str(root / "per_chip_summary.json"))
    mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
    print(table, flush=True)
