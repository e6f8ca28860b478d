"""The sweep driver: checks, Ray, the sweep's MLflow run, Ray Tune, the results.

    mixsig sweep CONFIG --space SPACE.yaml        a new sweep
    mixsig sweep --resume SWEEP_RUN_ID            continue a killed or interrupted one

Before any trial starts: the config and its `--set` overrides are validated, every value of
every space dimension is applied to it and validated (pipeline.sweep.space.check_space),
the stages and the metric are checked, and the Ray cluster is reached. Then one MLflow run
(mixsig.stage = sweep) is opened; it holds the base config, the space and the settings,
and Ray Tune runs the trials (pipeline.sweep.trial), each a run nested under it. Tune keeps
its own state in `<storage>/<sweep run id>/` (default storage: `<workdir>/sweeps`), which is
what `--resume` restores: trials Tune had seen finish are not started again, and a trial
started again finds its MLflow run (finished: reused; interrupted: continued).

At the end: the results table (printed, `results.csv`), the best config as a YAML file
`mixsig cotrain` takes (`best_config.yaml`: the base config with the best point's values;
with seeds, the point with the best mean over its seeds), both in `<workdir>/<sweep run id>/`
and as artifacts of the sweep run, and the sweep's metrics (best value, trials finished,
stopped early, failed, trials per hour).
"""
from __future__ import annotations

import csv
import json
import math
import os
import socket
import sys
import time
from pathlib import Path

import yaml

from pipeline.stages import PipelineError
from pipeline.sweep.space import EPOCH_METRICS, SweepSpace, check_space, parse_space, trial_config

SWEEP_STAGE = "sweep"
SETTINGS_TAG = "mixsig.sweep_settings"


# --------------------------------------------------------------------------------------- checks
def _read_base(config_path, overrides) -> dict:
    """The raw base config (YAML with --set applied); validated here once, whole."""
    from pipeline.config import apply_overrides, load_config
    load_config(config_path, list(overrides))          # the file's and the overrides' errors, named
    raw = yaml.safe_load(Path(config_path).read_text()) or {}
    return apply_overrides(raw, list(overrides))


def _stages(space: SweepSpace, cfg: dict):
    from pipeline.stages import is_image_data
    stages = space.stages or ("cotrain" if is_image_data(cfg) else ["train-analog", "evaluate"])
    if stages == "cotrain" and cfg["data"]["dataset"] != "fashion_mnist":
        raise PipelineError(f"sweep space {space.path}: stages: cotrain needs images (data.dataset: fashion_mnist), "
                            f"the config has {cfg['data']['dataset']!r}; use stages: [train-analog, evaluate]")
    if space.metric in EPOCH_METRICS and stages != "cotrain" and "train-analog" not in stages:
        raise PipelineError(f"sweep space {space.path}: metric {space.metric} comes from train-analog's epochs, "
                            f"which stages {stages} do not run")
    return stages


def _analog_epochs(cfg: dict, stages) -> int:
    """Epochs the analog block trains in one trial (ASHA's max_t)."""
    t = cfg["training"]["epochs"]
    if stages != "cotrain":
        return t * sum(1 for s in stages if s == "train-analog")
    rounds, later = cfg["cotrain"]["rounds"], cfg["cotrain"]["analog_epochs"] or t
    frozen = (cfg.get("hardware") or {}).get("frozen")
    return t + (0 if frozen else rounds * later)


def _max_epochs(space: SweepSpace, raw_base: dict, stages) -> int:
    counts = [_analog_epochs(trial_config(raw_base, {}), stages)]
    for dim in space.dimensions:
        if dim.key.startswith(("training.epochs", "cotrain.", "hardware")):
            for value in dim.probes():
                value = int(value) if dim.kind in ("uniform", "loguniform") and dim.key.endswith("epochs") else value
                counts.append(_analog_epochs(trial_config(raw_base, {dim.key: value}), stages))
    return max(counts)


# --------------------------------------------------------------------------------------- Ray
def _reachable(address: str) -> None:
    """A host:port (or ray://host:port) address answers a TCP connection within 5 s."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise PipelineError(f"--address {address!r}: expected HOST:PORT (the head node's GCS address, e.g. "
                            f"10.0.0.5:6379), ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise PipelineError(f"Ray cluster at {address} is unreachable ({exc.strerror or exc}); start it with "
                            f"`ray start --head` there, or check --address / RAY_ADDRESS") from None


def connect(address: str | None, num_cpus: int | None, env: dict, verbose: int):
    """ray.init: the cluster at `address` (or RAY_ADDRESS), else an embedded local Ray."""
    if verbose < 2:   # Ray Tune's new output engine prints its tables even when told to be silent
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ctrl-C is KeyboardInterrupt as in every command (exit 130, runs KILLED, `--resume` continues),
    # not Tune's own handler, which ends fit() as if the sweep were done
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    import logging

    import ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return address
    runtime_env = {"env_vars": env}
    level = {} if verbose > 1 else {"logging_level": logging.ERROR}   # its token-authentication notice
    if address:
        _reachable(address)
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=verbose > 1, **level)
        except Exception as exc:
            raise PipelineError(f"cannot join the Ray cluster at {address}: {' '.join(str(exc).split())[:300]}") \
                from None
    else:
        # worker_niceness 0: Ray's default (15) leaves the trials only the CPU that other work on
        # the machine leaves over (as pipeline/signoff.py found for its actors)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env,
                 log_to_driver=verbose > 1, _system_config={"worker_niceness": 0}, **level)
    return address


def _budget(concurrency, cpus_per_trial) -> tuple[int, float]:
    """(concurrency, cpus per trial): by default one CPU per trial and as many trials at once
    as the cluster has CPUs; a trial larger than every node is refused."""
    import ray
    total = ray.cluster_resources().get("CPU", 1.0)
    largest = max((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=total)
    cpus = float(cpus_per_trial or 1)
    if cpus > largest:
        raise PipelineError(f"--cpus-per-trial {cpus:g}: no node has that many CPUs (largest: {largest:g})")
    if concurrency is None:
        concurrency = max(1, int(total // cpus))
    return int(concurrency), cpus


# --------------------------------------------------------------------------------------- Tune
def _tune_config(space: SweepSpace, settings: dict, seed: int):
    from ray import tune
    search_alg, scheduler = None, None
    if space.searcher == "optuna":
        from ray.tune.search.optuna import OptunaSearch
        search_alg = OptunaSearch(metric=space.metric, mode=space.mode, seed=seed)
        if space.seeds:
            from ray.tune.search import Repeater
            search_alg = Repeater(search_alg, repeat=len(space.seeds), set_index=True)
    elif space.searcher == "random":
        from ray.tune.search.basic_variant import BasicVariantGenerator
        search_alg = BasicVariantGenerator(random_state=seed)
    sched = dict(space.scheduler)
    kind = sched.pop("type")
    if kind == "asha":
        from ray.tune.schedulers import ASHAScheduler
        # time axis: Tune's own report count, present in every result (= the analog epoch until the last report)
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=settings["max_epochs"] + 2,
                                  grace_period=sched.get("grace_period", 1),
                                  reduction_factor=sched.get("reduction_factor", 2))
    elif kind == "median":
        from ray.tune.schedulers import MedianStoppingRule
        # min_time_slice: never PAUSE a trial to yield to pending ones (the rule's default when it has
        # too few others to compare with): a trial has no checkpoint, so a paused one starts again
        scheduler = MedianStoppingRule(time_attr="training_iteration", grace_period=sched.get("grace_period", 1),
                                       min_samples_required=sched.get("min_samples_required", 3),
                                       min_time_slice=10 ** 9)
    return tune.TuneConfig(metric=space.metric, mode=space.mode, search_alg=search_alg, scheduler=scheduler,
                           num_samples=space.samples * (len(space.seeds) if space.seeds and
                                                        space.searcher == "optuna" else 1),
                           max_concurrent_trials=settings["concurrency"])


def _trainable(setup: dict, cpus: float):
    from ray import tune

    from pipeline.sweep.trial import make_trainable
    return tune.with_resources(make_trainable(setup), {"cpu": cpus})


# --------------------------------------------------------------------------------------- run
def _store_env() -> dict:
    from pipeline.home import project_home
    from pipeline.tracking import user_tracking_uri
    env = {"MIXSIG_HOME": str(project_home())}
    if user_tracking_uri():
        env["MLFLOW_TRACKING_URI"] = user_tracking_uri()
    return env


def start(config, space_path, overrides=(), *, address=None, concurrency=None, cpus_per_trial=None,
          num_cpus=None, workdir: Path, storage=None, run_name=None, searcher=None, samples=None,
          verbose: int = 1) -> str:
    """Check everything, then run a new sweep; returns the sweep run id."""
    raw_base = _read_base(config, overrides)
    space = parse_space(space_path, {"searcher": searcher, "samples": samples})
    checked = check_space(space, raw_base)
    cfg = trial_config(raw_base, {}, str(config))
    stages = _stages(space, cfg)
    max_epochs = _max_epochs(space, raw_base, stages)
    if concurrency is not None and concurrency < 1:
        raise PipelineError(f"--concurrency {concurrency}: at least 1")
    env = _store_env()
    address = connect(address, num_cpus, env, verbose)
    concurrency, cpus = _budget(concurrency, cpus_per_trial)
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipeline.liveness import claim
    from pipeline.stages import dump_config, experiment_name
    from pipeline.tracking import setup_mlflow, tracking_uri
    setup_mlflow(experiment_name(cfg))
    client = MlflowClient()
    workdir = Path(workdir).resolve()
    settings = {"stages": stages, "metric": space.metric, "mode": space.mode, "concurrency": concurrency,
                "cpus_per_trial": cpus, "max_epochs": max_epochs, "searcher": space.searcher,
                "samples": space.samples, "seeds": space.seeds, "config": str(Path(config).resolve()),
                "space": str(Path(space_path).resolve())}
    run = mlflow.start_run(run_name=run_name or f"sweep {cfg['name']}",
                           tags={"mixsig.stage": SWEEP_STAGE, "mixsig.status": "running"})
    sweep_id = run.info.run_id
    storage = str(storage or (workdir / "sweeps"))
    settings.update(storage=storage, workdir=str(workdir))
    folder = workdir / sweep_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(yaml.safe_dump(raw_base, sort_keys=False))
    (folder / "space.yaml").write_text(Path(space_path).read_text())
    mlflow.log_artifact(str(folder / "base.yaml"))
    mlflow.log_artifact(str(folder / "space.yaml"))
    mlflow.log_artifact(str(dump_config(cfg, folder / "config.yaml")))
    mlflow.set_tags({SETTINGS_TAG: json.dumps(settings), "mixsig.workdir": str(folder)})
    mlflow.log_params({"sweep.searcher": space.searcher, "sweep.samples": space.samples,
                       "sweep.metric": space.metric, "sweep.mode": space.mode,
                       "sweep.scheduler": json.dumps(space.scheduler), "sweep.stages": json.dumps(stages),
                       "sweep.concurrency": concurrency, "sweep.cpus_per_trial": cpus,
                       "sweep.seeds": json.dumps(space.seeds), "sweep.address": address or "embedded",
                       **{f"space.{d.key}": d.describe()[:500] for d in space.dimensions}})
    try:
        claim(client, client.get_run(sweep_id))
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    print(f"sweep {sweep_id}: {space.trial_count()} trials ({space.searcher}, {len(space.dimensions)} key(s), "
          f"{checked} value(s) checked against the schema), {concurrency} at a time × {cpus:g} CPU, "
          f"{'stages ' + ','.join(stages) if stages != 'cotrain' else 'cotrain'} each, on "
          f"{'the Ray cluster at ' + address if address else 'an embedded Ray'}; experiment "
          f"{experiment_name(cfg)!r} in {tracking_uri()}", flush=True)
    if address and "MLFLOW_TRACKING_URI" not in env:
        print(f"warning: trials on other nodes of the cluster cannot write to this machine's SQLite store "
              f"({tracking_uri()}); run an MLflow server and set MLFLOW_TRACKING_URI (docs/scaleout.md)",
              file=sys.stderr)
    from ray import tune
    setup = _setup(raw_base, stages, space, sweep_id, workdir, env, cpus)
    try:
        tuner = tune.Tuner(_trainable(setup, cpus), param_space=space.param_space(),
                           tune_config=_tune_config(space, settings, cfg["seed"]),
                           run_config=_run_config(sweep_id, storage, verbose, space.trial_count(), space.metric,
                                                  space.mode))
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    return _fit(tuner, client, sweep_id, space, raw_base, settings, folder, verbose)


def _setup(raw_base, stages, space: SweepSpace, sweep_id, workdir, env, cpus: float = 1) -> dict:
    return {"raw_base": raw_base, "cpus_per_trial": cpus, "stages": stages, "sweep_run_id": sweep_id,
            "workdir": str(workdir),
            "home": env["MIXSIG_HOME"], "tracking_uri": env.get("MLFLOW_TRACKING_URI"),
            "seeds": space.seeds if space.searcher == "optuna" else None,
            "report_epochs": space.metric in EPOCH_METRICS}


def _progress_callback(total: int, metric: str, mode: str):
    """A Tune callback: one progress bar over the trials (Tune's own tables stay off), the
    best value so far and each trial's end."""
    from ray import tune

    from analog.progress import progress

    class Progress(tune.Callback):
        def __init__(self):
            self.bar, self.best, self.ended = None, None, set()

        def setup(self, **info):
            self.bar = progress(total, "trials", "trial", every=None)   # off a terminal: a line per trial

        def _end(self, trial, how: str):
            if trial.trial_id in self.ended:
                return
            self.ended.add(trial.trial_id)
            value = (trial.last_result or {}).get(metric)
            if isinstance(value, (int, float)) and (self.best is None or (value > self.best) == (mode == "max")):
                self.best = value
            self.bar.update(1)
            if self.best is not None:
                self.bar.set_postfix_str(f"best {metric} {self.best:.4f}")
            shown = f" {metric} {value:.4f}" if isinstance(value, (int, float)) else ""
            self.bar.write(f"trial {trial.trial_id} {how}{shown}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            done = (trial.last_result or {}).get("trial_done")
            self._end(trial, "finished" if done else "stopped early")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._end(trial, "failed")

        def on_experiment_end(self, trials, **info):
            if self.bar is not None:
                self.bar.close()

    return Progress()


def _run_config(sweep_id: str, storage: str, verbose: int, total: int = 0, metric: str = "", mode: str = "max"):
    from ray import tune
    callbacks = [_progress_callback(total, metric, mode)] if verbose == 1 else []
    return tune.RunConfig(name=sweep_id, storage_path=storage, verbose=0 if verbose < 2 else 1,
                          failure_config=tune.FailureConfig(max_failures=0), callbacks=callbacks)


def resume(sweep_ref: str, *, address=None, num_cpus=None, workdir=None, verbose: int = 1) -> str:
    """Continue a sweep from Ray Tune's saved state; finished trials are not run again."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipeline.liveness import claim
    from pipeline.stages import StageInputError, get_run
    from pipeline.tracking import setup_mlflow
    setup_mlflow()
    run = get_run(sweep_ref, what="--resume sweep run")
    sweep_id = run.info.run_id
    if run.data.tags.get("mixsig.stage") != SWEEP_STAGE or SETTINGS_TAG not in run.data.tags:
        raise StageInputError(f"--resume run {sweep_ref} is a {run.data.tags.get('mixsig.stage', 'non-mixsig')} "
                              f"run, not a sweep (mixsig sweep) run")
    settings = json.loads(run.data.tags[SETTINGS_TAG])
    if workdir is not None:     # the stages' local folders of the trials still to run
        settings["workdir"] = str(Path(workdir).resolve())
    client = MlflowClient()
    claim(client, run)          # refused while the sweep's own process lives
    folder = Path(settings["workdir"]) / sweep_id
    if not (folder / "base.yaml").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("base.yaml", "space.yaml"):
            mlflow.artifacts.download_artifacts(run_id=sweep_id, artifact_path=name, dst_path=str(folder))
    raw_base = yaml.safe_load((folder / "base.yaml").read_text())
    space = parse_space(folder / "space.yaml", {"searcher": settings["searcher"], "samples": settings["samples"]})
    cfg = trial_config(raw_base, {}, "base config")
    from pipeline.stages import experiment_name
    setup_mlflow(experiment_name(cfg))
    env = _store_env()
    connect(address, num_cpus, env, verbose)
    from ray import tune
    setup = _setup(raw_base, settings["stages"], space, sweep_id, Path(settings["workdir"]), env,
                   settings["cpus_per_trial"])
    path = str(Path(settings["storage"]) / sweep_id) if "://" not in settings["storage"] \
        else f"{settings['storage'].rstrip('/')}/{sweep_id}"
    trainable = _trainable(setup, settings["cpus_per_trial"])
    mlflow.start_run(run_id=sweep_id)
    mlflow.set_tag("mixsig.status", "running")
    if tune.Tuner.can_restore(path):
        print(f"sweep {sweep_id}: resuming from {path} (finished trials are kept)", flush=True)
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:   # killed before Tune saved anything: start its trials again
        print(f"sweep {sweep_id}: no saved Tune state in {path}; starting its trials again", flush=True)
        tuner = tune.Tuner(trainable, param_space=space.param_space(),
                           tune_config=_tune_config(space, settings, cfg["seed"]),
                           run_config=_run_config(sweep_id, settings["storage"], verbose, space.trial_count(),
                                                  space.metric, space.mode))
    return _fit(tuner, client, sweep_id, space, raw_base, settings, folder, verbose)


def _fit(tuner, client, sweep_id, space, raw_base, settings, folder: Path, verbose: int) -> str:
    import mlflow

    from pipeline.signals import end_active_run
    t0 = time.perf_counter()
    try:
        grid = tuner.fit()
        summary = finish(grid, client, sweep_id, space, raw_base, settings, folder, time.perf_counter() - t0)
    except BaseException as exc:
        from pipeline.signals import Terminated
        cause = exc
        while cause is not None and not isinstance(cause, (KeyboardInterrupt, Terminated)):
            cause = cause.__cause__ or cause.__context__
        end_active_run(cause or exc, "failed")
        if mlflow.active_run() is not None:     # an error: the sweep run is not in a `with` block
            mlflow.end_run("FAILED")
        print(f"sweep {sweep_id} stopped; continue it with `mixsig sweep --resume {sweep_id}`", file=sys.stderr)
        if cause is not None and cause is not exc:
            raise cause from None       # Tune wraps it: the signal's own exit code (130, 143)
        raise
    interrupted = summary["trials_unfinished"] > 0
    mlflow.set_tag("mixsig.status", "interrupted" if interrupted else "finished")
    mlflow.end_run("KILLED" if interrupted else "FINISHED")
    if interrupted:
        print(f"sweep {sweep_id} interrupted with {summary['trials_unfinished']} trial(s) unfinished; continue it "
              f"with `mixsig sweep --resume {sweep_id}`", file=sys.stderr)
        raise PipelineError(f"sweep {sweep_id} interrupted")
    return sweep_id


# --------------------------------------------------------------------------------------- results
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


def finish(grid, client, sweep_id, space: SweepSpace, raw_base, settings, folder: Path, seconds: float) -> dict:
    """Results table, best config, the sweep run's metrics and artifacts."""
    import mlflow
    metric, mode = space.metric, space.mode
    results = [r for r in grid]
    statuses = _tune_statuses(grid)
    keys = sorted({k for r in results for k in _params(r, space.seeds)})
    rows = []
    for r in results:
        m = r.metrics or {}
        trial_id = m.get("trial_id") or Path(r.path or "").name
        status = _status(r, statuses.get(m.get("trial_id")))
        if status in ("stopped early", "error"):
            _close_stopped(client, m.get("mlflow_run_id"),
                           "stopped-early" if status == "stopped early" else "failed", m)
        value = m.get(metric)
        rows.append({"trial_id": trial_id, "status": status,
                     **{k: _params(r, space.seeds).get(k) for k in keys}, metric: value,
                     "analog_epochs": m.get("analog_epoch"),
                     "test_accuracy": m.get("end_to_end_test_accuracy", m.get("test_accuracy",
                                                                              m.get("analog_test_accuracy"))),
                     "seconds": m.get("trial_seconds"), "mlflow_run_id": m.get("mlflow_run_id", ""),
                     "error": "" if r.error is None else " ".join(str(r.error).split())[-200:]})
    sign = 1 if mode == "max" else -1
    rows.sort(key=lambda row: (row[metric] is None or (isinstance(row[metric], float) and math.isnan(row[metric])),
                               -sign * (row[metric] or 0.0)))
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "results.csv"
    columns = ["trial_id", "status", *keys, metric, "analog_epochs", "test_accuracy", "seconds", "mlflow_run_id",
               "error"]
    with open(table, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    _print_table(rows, ["trial_id", "status", *keys, metric, "analog_epochs", "test_accuracy", "seconds",
                        "mlflow_run_id"])
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
    best_path = None
    if done:
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
        best_path.write_text(header + yaml.safe_dump(cfg, sort_keys=False))
        mlflow.log_artifact(str(best_path))
        mlflow.set_tag("mixsig.sweep_best", json.dumps(best_point))
        print(f"\nbest {metric} = {best_value:.4f}"
              f"{f' (mean of {len(values)} seeds)' if len(values) > 1 else ''} at "
              + ", ".join(f"{k}={json.dumps(v)}" for k, v in best_point.items()))
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


def _pareto(rows, keys, space: SweepSpace, folder: Path, sweep_id: str, results) -> None:
    """The Pareto front of the finished trials over space.pareto's two metrics, on the sweep run."""
    import mlflow

    from pipeline.sweep import pareto
    x, y = space.pareto["x"], space.pareto["y"]
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
    print(f"Pareto front ({x} {space.pareto.get('x_mode', 'min')}, {y} {space.pareto.get('y_mode', 'max')}): "
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
