"""One sweep trial, run by Ray Tune in a Ray worker process (on this machine or any node).

A trial is one MLflow run nested under the sweep's run (tags mixsig.sweep = the sweep run id,
mixsig.trial = Tune's trial id): a whole co-training (the trial run is then the co-training's
parent run, its stages nested under it as usual), or a list of stages run in order as nested
runs of the trial run (tabular data: train-analog, evaluate). The trial's config is the base
config with the trial's params applied, validated again by the config schema.

While the analog block trains, every epoch's metrics (val_accuracy, val_loss, accuracy,
loss) go to Ray Tune through a metric listener of the stages (pipeline.flow.runner
.METRIC_LISTENERS), so a scheduler (ASHA, median stopping) can stop a bad trial early; the
last report adds the trial run's final metrics and trial_done = 1.

Restarted by a resumed sweep, a trial first looks for its MLflow run: finished, it reports
that run's metrics again and trains nothing; interrupted, it continues that run (a
co-training skips its finished steps, as `cotrain --resume` does).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import json
import os
import time
from pathlib import Path

from pipeline.sweep.space import EPOCH_METRICS, trial_config

if TYPE_CHECKING:
    from pipeline.config import RootConfig

TRIAL_STAGE = "sweep-trial"      # mixsig.stage of a trial run that is not a co-training


def make_trainable(setup: dict):
    """The function Ray Tune calls with each trial's params (setup: see pipeline.sweep.driver)."""
    def mixsig_trial(params):
        return run_trial(params, setup)
    return mixsig_trial


class _EpochReporter:
    """A stage metric listener: the analog block's per-epoch metrics to Ray Tune."""

    def __init__(self, report, extra: dict, enabled: bool):
        self.report, self.extra, self.enabled = report, extra, enabled
        self.epochs, self.last = 0, {}

    def __call__(self, ctx, metrics: dict, step, final: bool) -> None:
        if ctx.stage != "train-analog" or final or step is None:
            return
        epoch = {k: v for k, v in metrics.items() if k in EPOCH_METRICS}
        if not epoch:
            return
        self.epochs += 1
        self.last.update(epoch)
        if self.enabled:
            self.report({**self.last, "analog_epoch": self.epochs, "round": ctx.round, **self.extra})


def _environment(setup: dict) -> None:
    # the trial's CPU budget for the thread pools of TensorFlow and the BLAS (Ray reserves the
    # CPUs, the libraries would otherwise start one thread per core of the machine)
    threads = str(max(1, int(setup.get("cpus_per_trial") or 1)))
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[name] = threads
    from threadpoolctl import threadpool_limits
    threadpool_limits(int(threads))
    os.environ["MIXSIG_HOME"] = setup["home"]
    if setup.get("tracking_uri"):
        os.environ["MLFLOW_TRACKING_URI"] = setup["tracking_uri"]
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from pipeline.runtime import allocator, quiet_start
    allocator.tune()           # a Ray worker is not started by the CLI, which tunes its own process
    quiet_start.setup(debug=False)


def _trial_run(client, experiment_id: str, sweep_id: str, trial_id: str):
    runs = client.search_runs([experiment_id], filter_string=f"tags.`mixsig.sweep` = '{sweep_id}' and "
                                                            f"tags.`mixsig.trial` = '{trial_id}'",
                              max_results=10, order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def _merge_children(client, run_id: str, experiment_id: str) -> dict:
    """The final metrics of a stage-list trial: its finished stages' metrics, later ones winning."""
    children = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
                                  max_results=1000)
    merged = {}
    for run in sorted(children, key=lambda r: int(r.data.tags.get("mixsig.step", 0))):
        merged.update(run.data.metrics)
    return merged


def _stage_list(cfg: RootConfig, stages: list, client, run_id: str, experiment_id: str, workdir: Path) -> dict:
    """Run the stages in order as nested runs of the trial run (pipeline.flow.loop: finished
    ones, from an earlier interrupted attempt, are skipped); returns their merged metrics,
    later stages winning."""
    from pipeline.flow.loop import finished_steps, plan_steps, walk
    from pipeline.flow import resolve_inputs
    done = finished_steps(client, experiment_id, run_id, workdir / run_id)
    record = walk(plan_steps([(name, 0) for name in stages]), done, resolve_inputs(cfg), cfg,
                  workdir / run_id, workdir, run_id, verbose=0)
    merged: dict = {}
    for step in record.steps:
        merged.update(step.metrics)
    return merged


def run_trial(params: dict, setup: dict) -> None:
    _environment(setup)
    import mlflow
    from mlflow.tracking import MlflowClient
    from ray import tune

    from pipeline.flow import STATUS_FINISHED, TAG, experiment_name
    from pipeline.flow import runner
    from pipeline.runtime.tracking import setup_mlflow
    t0 = time.perf_counter()
    context = tune.get_context()
    trial_id, trial_name = context.get_trial_id(), context.get_trial_name()
    params = _trial_params(params, setup)
    cfg = trial_config(setup["raw_base"], params, f"trial {trial_name}")
    sweep_id, workdir = setup["sweep_run_id"], Path(setup["workdir"])
    setup_mlflow(experiment_name(cfg))        # the store's first use in this process: under its flock
    client = MlflowClient()
    experiment_id = mlflow.get_experiment_by_name(experiment_name(cfg)).experiment_id
    existing = _trial_run(client, experiment_id, sweep_id, trial_id)
    stages = setup["stages"]
    if existing is not None and existing.data.tags.get(f"{TAG}status") == STATUS_FINISHED:
        metrics = existing.data.metrics if stages == "cotrain" else {
            **_merge_children(client, existing.info.run_id, experiment_id), **existing.data.metrics}
        tune.report({**metrics, "trial_done": 1.0, "trial_reused": 1.0, "mlflow_run_id": existing.info.run_id})
        return
    if existing is not None and stages == "cotrain" and f"{TAG}plan" not in existing.data.tags:
        client.delete_run(existing.info.run_id)   # killed before its co-training began: start it again
        existing = None
    run_id = existing.info.run_id if existing is not None else \
        _new_trial_run(client, experiment_id, sweep_id, trial_id, trial_name, params, stages)
    reporter = _EpochReporter(tune.report, {"mlflow_run_id": run_id}, setup["report_epochs"])
    runner.METRIC_LISTENERS.append(reporter)
    try:
        if stages == "cotrain":
            metrics = _cotrain_trial(cfg, client, run_id, resume=existing is not None, workdir=workdir,
                                     trial_name=trial_name, reporter=reporter)
        else:
            metrics = _stages_trial(cfg, stages, client, run_id, experiment_id, workdir, new=existing is None, t0=t0)
    finally:
        runner.METRIC_LISTENERS.remove(reporter)
    tune.report({**reporter.last, **metrics, "analog_epoch": reporter.epochs, "trial_done": 1.0,
                 "trial_seconds": time.perf_counter() - t0, "mlflow_run_id": run_id})


def _trial_params(params: dict, setup: dict) -> dict:
    """The trial's config values; with optuna and seeds, Tune's Repeater numbers the repeats
    (`__trial_index__`), which picks the seed."""
    params = dict(params)
    index = params.pop("__trial_index__", None)
    if setup.get("seeds") and index is not None:
        params["seed"] = setup["seeds"][int(index)]
    return params


def _new_trial_run(client, experiment_id: str, sweep_id: str, trial_id: str, trial_name: str, params: dict,
                   stages) -> str:
    """A new trial run under the sweep run, tagged with its trial and the Ray node running it; its id."""
    import ray

    from pipeline.flow import TAG
    tags = {"mlflow.parentRunId": sweep_id, f"{TAG}sweep": sweep_id, f"{TAG}trial": trial_id,
            f"{TAG}trial_name": trial_name, f"{TAG}sweep_params": json.dumps(params, sort_keys=True),
            f"{TAG}ray_node": ray.get_runtime_context().get_node_id()}   # which node of the cluster ran it
    run = client.create_run(experiment_id, run_name=trial_name,
                            tags={**tags, f"{TAG}stage": "cotrain" if stages == "cotrain" else TRIAL_STAGE,
                                  f"{TAG}status": "running"})
    return run.info.run_id


def _cotrain_trial(cfg: RootConfig, client, run_id: str, *, resume: bool, workdir: Path, trial_name: str,
                   reporter) -> dict:
    """The trial as a co-training whose parent run is the trial run (resumed if it was begun); its metrics."""
    from pipeline.cotraining.run import run_cotrain
    if not resume:
        os.environ["MLFLOW_RUN_ID"] = run_id      # run_cotrain's new parent run is the trial run
        run_cotrain(cfg, workdir=workdir, run_name=trial_name, verbose=0)
    else:
        run_cotrain(resume=run_id, workdir=workdir, verbose=0)
    if reporter.last:   # the last block's epoch metrics on the trial run too (a reused trial reports them)
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in reporter.last.items()])
    return client.get_run(run_id).data.metrics


def _stages_trial(cfg: RootConfig, stages: list, client, run_id: str, experiment_id: str, workdir: Path, *,
                  new: bool, t0: float) -> dict:
    """The trial as a list of stages, nested runs of the trial run; their merged metrics."""
    import mlflow

    from pipeline.config import flatten
    from pipeline.flow import STATUS_FINISHED, TAG
    with mlflow.start_run(run_id=run_id):
        if new:
            mlflow.log_params({k: ("" if v is None else v) for k, v in flatten(cfg).items()})
        mlflow.set_tag(f"{TAG}status", "running")
        metrics = _stage_list(cfg, stages, client, run_id, experiment_id, workdir)
        mlflow.log_metrics({k: v for k, v in metrics.items() if not k.startswith("stage_seconds")})
        mlflow.log_metric("trial_seconds", time.perf_counter() - t0)
        mlflow.set_tag(f"{TAG}status", STATUS_FINISHED)
    return metrics
