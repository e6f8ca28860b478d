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

from typing import TYPE_CHECKING

import json
import os
import sys
import time
from pathlib import Path

import yaml

from pipeline.flow import PipelineError
from pipeline.sweep.results import finish
from pipeline.sweep.space import EPOCH_METRICS, SweepSpace, check_space, parse_space, trial_config
from pipeline.sweep.tune_setup import run_config, trainable, tune_config

if TYPE_CHECKING:
    from pipeline.config import RootConfig

SWEEP_STAGE = "sweep"
SETTINGS_TAG = "mixsig.sweep_settings"


# --------------------------------------------------------------------------------------- checks
def _read_base(config_path, overrides) -> dict:
    """The raw base config (YAML with --set applied); validated here once, whole."""
    from pipeline.config import apply_overrides, load_config
    load_config(config_path, list(overrides))          # the file's and the overrides' errors, named
    raw = yaml.safe_load(Path(config_path).read_text()) or {}
    return apply_overrides(raw, list(overrides))


def _stages(space: SweepSpace, cfg: RootConfig):
    from pipeline.flow import is_image_data
    stages = space.stages or ("cotrain" if is_image_data(cfg) else ["train-analog", "evaluate"])
    if stages == "cotrain" and cfg.data.dataset != "fashion_mnist":
        raise PipelineError(f"sweep space {space.path}: stages: cotrain needs images (data.dataset: fashion_mnist), "
                            f"the config has {cfg.data.dataset!r}; use stages: [train-analog, evaluate]")
    if space.metric in EPOCH_METRICS and stages != "cotrain" and "train-analog" not in stages:
        raise PipelineError(f"sweep space {space.path}: metric {space.metric} comes from train-analog's epochs, "
                            f"which stages {stages} do not run")
    return stages


def _analog_epochs(cfg: RootConfig, stages) -> int:
    """Epochs the analog block trains in one trial (ASHA's max_t)."""
    t = cfg.training.epochs
    if stages != "cotrain":
        return t * sum(1 for s in stages if s == "train-analog")
    rounds, later = cfg.cotrain.rounds, cfg.cotrain.analog_epochs or t
    frozen = cfg.hardware is not None and cfg.hardware.frozen
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
def connect(address: str | None, num_cpus: int | None, env: dict, verbose: int):
    """Ray for the trials (pipeline.runtime.ray_cluster); returns the cluster address (None: embedded)."""
    if verbose < 2:   # Ray Tune's new output engine prints its tables even when told to be silent
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ctrl-C is KeyboardInterrupt as in every command (exit 130, runs KILLED, `--resume` continues),
    # not Tune's own handler, which ends fit() as if the sweep were done
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    from pipeline.runtime import ray_cluster
    return ray_cluster.connect(address, num_cpus=num_cpus, env=env, verbose=verbose).address


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

# --------------------------------------------------------------------------------------- run
def _store_env() -> dict:
    from pipeline.runtime.home import project_home
    from pipeline.runtime.tracking import user_tracking_uri
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

    from pipeline.runtime.liveness import claim
    from pipeline.flow import experiment_name
    from pipeline.runtime.tracking import setup_mlflow, tracking_uri
    setup_mlflow(experiment_name(cfg))
    client = MlflowClient()
    workdir = Path(workdir).resolve()
    settings = {"stages": stages, "metric": space.metric, "mode": space.mode, "concurrency": concurrency,
                "cpus_per_trial": cpus, "max_epochs": max_epochs, "searcher": space.searcher,
                "samples": space.samples, "seeds": space.seeds, "config": str(Path(config).resolve()),
                "space": str(Path(space_path).resolve())}
    storage = str(storage or (workdir / "sweeps"))
    settings.update(storage=storage, workdir=str(workdir))
    sweep_id, folder = _open_run(cfg, raw_base, space, space_path, settings, address, run_name, workdir)
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
        tuner = tune.Tuner(trainable(setup, cpus), param_space=space.param_space(),
                           tune_config=tune_config(space, settings, cfg.seed),
                           run_config=run_config(sweep_id, storage, verbose, space.trial_count(), space.metric,
                                                  space.mode))
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    return _fit(tuner, client, sweep_id, space, raw_base, settings, folder, verbose)


def _open_run(cfg, raw_base, space: SweepSpace, space_path, settings: dict, address, run_name, workdir: Path):
    """The sweep's MLflow run (left active) with its config, space and settings; its local folder."""
    import mlflow

    from pipeline.flow import dump_config
    stages, concurrency, cpus = settings["stages"], settings["concurrency"], settings["cpus_per_trial"]
    run = mlflow.start_run(run_name=run_name or f"sweep {cfg.name}",
                           tags={"mixsig.stage": SWEEP_STAGE, "mixsig.status": "running"})
    sweep_id = run.info.run_id
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
                       "sweep.scheduler": json.dumps({"type": space.scheduler.type, **space.scheduler.options()}),
                       "sweep.stages": json.dumps(stages),
                       "sweep.concurrency": concurrency, "sweep.cpus_per_trial": cpus,
                       "sweep.seeds": json.dumps(space.seeds), "sweep.address": address or "embedded",
                       **{f"space.{d.key}": d.describe()[:500] for d in space.dimensions}})
    return sweep_id, folder


def _setup(raw_base, stages, space: SweepSpace, sweep_id, workdir, env, cpus: float = 1) -> dict:
    return {"raw_base": raw_base, "cpus_per_trial": cpus, "stages": stages, "sweep_run_id": sweep_id,
            "workdir": str(workdir),
            "home": env["MIXSIG_HOME"], "tracking_uri": env.get("MLFLOW_TRACKING_URI"),
            "seeds": space.seeds if space.searcher == "optuna" else None,
            "report_epochs": space.metric in EPOCH_METRICS}

def resume(sweep_ref: str, *, address=None, num_cpus=None, workdir=None, verbose: int = 1) -> str:
    """Continue a sweep from Ray Tune's saved state; finished trials are not run again."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipeline.runtime.liveness import claim
    from pipeline.flow import StageInputError, get_run
    from pipeline.runtime.tracking import setup_mlflow
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
    from pipeline.flow import experiment_name
    setup_mlflow(experiment_name(cfg))
    env = _store_env()
    connect(address, num_cpus, env, verbose)
    from ray import tune
    setup = _setup(raw_base, settings["stages"], space, sweep_id, Path(settings["workdir"]), env,
                   settings["cpus_per_trial"])
    path = str(Path(settings["storage"]) / sweep_id) if "://" not in settings["storage"] \
        else f"{settings['storage'].rstrip('/')}/{sweep_id}"
    body = trainable(setup, settings["cpus_per_trial"])
    mlflow.start_run(run_id=sweep_id)
    mlflow.set_tag("mixsig.status", "running")
    if tune.Tuner.can_restore(path):
        print(f"sweep {sweep_id}: resuming from {path} (finished trials are kept)", flush=True)
        tuner = tune.Tuner.restore(path, trainable=body, resume_unfinished=True, resume_errored=True)
    else:   # killed before Tune saved anything: start its trials again
        print(f"sweep {sweep_id}: no saved Tune state in {path}; starting its trials again", flush=True)
        tuner = tune.Tuner(body, param_space=space.param_space(),
                           tune_config=tune_config(space, settings, cfg.seed),
                           run_config=run_config(sweep_id, settings["storage"], verbose, space.trial_count(),
                                                  space.metric, space.mode))
    return _fit(tuner, client, sweep_id, space, raw_base, settings, folder, verbose)


def _fit(tuner, client, sweep_id, space, raw_base, settings, folder: Path, verbose: int) -> str:
    import mlflow

    from pipeline.runtime.interrupts import end_active_run
    t0 = time.perf_counter()
    try:
        grid = tuner.fit()
        summary = finish(grid, client, sweep_id, space, raw_base, settings, folder, time.perf_counter() - t0)
    except BaseException as exc:
        from pipeline.runtime.interrupts import Terminated
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

