"""The co-training loop: one parent MLflow run, one nested run per stage and round.

The co-training is a plan, a list of (stage, round) steps built from the config:

    train-digital                                             (skipped if an encoder is given)
    embed → train-analog → optimize-inputs → retrain-digital  for round r = 0 .. rounds-1
    embed → train-analog → evaluate                           round = rounds

plus any stage whose declaration places itself after one of these (Stage.cotrain_after,
when Stage.cotrain_when(cfg)), so a new stage joins the co-training from its own module.

Round r trains the analog block on the embeddings of the encoder after r retrainings.
With a `hardware:` section, `program` follows every train-analog (pipeline/stages/program.py);
with `hardware.frozen` the block is trained and programmed in round 0 only, and the later
rounds co-train the encoder with one chip in the loop (hardware.loop_chip, default 0); the
parent run then gets the scenario metrics and the accuracy-vs-time plot (pipeline/hardware/chip_metrics.py).
Step i of the plan is tagged mixsig.step=i and works in the local folder
`<workdir>/<parent_run_id>/<i>-<stage>-r<round>/`; each stage's outputs are also MLflow
artifacts of its run. The plan is stored on the parent run (tag mixsig.plan), so
`resume` walks the same plan: it reopens the parent, skips every step whose child run is
tagged mixsig.status=finished (taking its outputs from the local folder, or downloading
them from MLflow if the folder is gone), marks children a killed process left RUNNING as
killed, and runs the rest.

The loop keeps what every step returns (its metrics, wall time and what it logged on the
parent) in a record (pipeline.flow.record); the parent's summary is built from it
(pipeline.cotraining.summary). Only the steps a resumed co-training finds finished are read
back, once, when they are found.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import json
import time
from pathlib import Path

from pipeline.flow import (STATUS_FINISHED, TAG, ArtifactRef, PipelineError, StageInputError, check_inputs,
                           config_from_run, dump_config, experiment_name, get_run, resolve_inputs)
from pipeline.hardware.settings import frozen
from pipeline.stages import STAGES, get_stage
from pipeline.runtime.liveness import claim
from pipeline.flow.loop import finished_steps, plan_steps, walk

if TYPE_CHECKING:
    from pipeline.config import RootConfig

START = ("train-digital",)                                                   # unless an encoder is given
ROUND = ("embed", "train-analog", "optimize-inputs", "retrain-digital")     # for each round r < rounds
FINISH = ("embed", "train-analog", "evaluate")                               # round = rounds

def make_plan(cfg: RootConfig, train_digital: bool = True, block_given: bool = False) -> list[tuple[str, int]]:
    """The (stage, round) steps of a co-training: START, ROUND × cotrain.rounds, FINISH, and
    each registered stage that asks for it (Stage.cotrain_after/cotrain_when) right after
    every step of the stage it follows, in the same round (and after those, the stages that
    follow them: program → finetune-chip).

    block_given (hardware.frozen, a trained block with its encoder and embeddings given, e.g.
    `--from-run` of a train-analog run): no train-digital, embed r0 or train-analog r0; the
    given block is programmed and the rounds co-train the encoder on its chips, so several
    cases can share one trained encoder and block."""
    rounds = cfg.cotrain.rounds
    # hardware.frozen: the block is trained (and programmed) once, in round 0; later rounds
    # co-train the encoder on the frozen chips
    trains = (lambda r: r == 0) if frozen(cfg) else (lambda r: True)
    # through-analog retrains the encoder from the block's input gradients, not from target
    # embeddings: optimising the targets of every training image would only cost time (it
    # took 30 min of the EBANA-setting run); the shift measurement on test images remains
    wanted = (lambda n: n != "optimize-inputs") if cfg.digital.retrain_method == "through-analog" \
        else (lambda n: True)
    base = [(name, 0) for name in START] if train_digital and not block_given else []
    for r in range(rounds):
        base += [(name, r) for name in ROUND if (name != "train-analog" or trains(r)) and wanted(name)]
    base += [(name, rounds) for name in FINISH if name != "train-analog" or trains(rounds)]
    if block_given:
        base = [(n, r) for n, r in base if not (r == 0 and n in ("embed", "train-analog"))]
        base.insert(0, ("train-analog", -1))       # a marker: the given block is where program follows
    extra = [s for s in STAGES.values() if s.in_cotrain(cfg)]
    plan = []

    def add(name, rnd):
        if rnd >= 0:
            plan.append((name, rnd))
        for s in extra:
            if s.cotrain_after == name:
                add(s.name, max(rnd, 0))
    for name, rnd in base:
        add(name, rnd)
    return plan


def _validate_start(cfg: RootConfig, state: dict, plan, cache: Path) -> None:
    """Everything that can be checked before work: data settings, given inputs, widths."""
    if cfg.data.dataset != "fashion_mnist":
        raise PipelineError(f"cotrain needs images (data.dataset: fashion_mnist), got {cfg.data.dataset!r}; "
                            f"use `mixsig train-analog` for tabular data")
    # a given encoder: present, loadable, in range; a configured one: builds and embeds
    check_inputs(get_stage(plan[0][0]), cfg, state, cache)
    for name in dict.fromkeys(n for n, _ in plan[1:]):   # the later stages' own config checks, before any run
        if get_stage(name).precheck is not None:
            try:
                get_stage(name).precheck(cfg)
            except ValueError as exc:
                raise StageInputError(f"{name}: {exc}") from None


def _resumed(client, resume: str, workdir: Path):
    """(cfg, plan, initial inputs, finished steps' records, finished?) of a co-training parent run."""
    parent = get_run(resume, what="--resume run")
    if parent.data.tags.get(f"{TAG}stage") != "cotrain":
        raise StageInputError(f"--resume run {resume} is a {parent.data.tags.get(f'{TAG}stage', 'non-mixsig')} "
                              f"run, not a co-training (mixsig cotrain) parent run")
    claim(client, parent)    # refused if a live process runs it; before its orphans are closed
    cfg = config_from_run(resume)
    plan = [tuple(s) for s in json.loads(parent.data.tags[f"{TAG}plan"])]
    initial = json.loads(parent.data.tags.get(f"{TAG}initial_inputs", "{}"))
    state = {k: ArtifactRef(k, run_id=v) for k, v in initial.items()}
    finished = parent.data.tags.get(f"{TAG}status") == STATUS_FINISHED
    done = finished_steps(client, parent.info.experiment_id, parent.info.run_id, workdir / resume)
    return cfg, plan, state, done, finished


def _block_given(cfg: RootConfig, state: dict) -> bool:
    """A frozen-chip co-training starts from a given trained block when one is given with
    its encoder and embeddings; a given block without them is refused by name."""
    if "analog" not in state or not frozen(cfg):
        return False
    missing = [k for k in ("encoder", "embeddings") if k not in state]
    if missing:
        raise StageInputError(f"cotrain: a given analog block ({state['analog'].describe()}) needs the "
                              f"{' and '.join(missing)} it was trained with: --from-run its train-analog run")
    return True


def _new(cfg: RootConfig, from_runs, explicit_inputs, cache: Path):
    """(plan, initial inputs) of a new co-training, checked before any run exists."""
    state = resolve_inputs(cfg, from_runs, explicit_inputs)
    for kind, ref in state.items():
        if ref.run_id is None:
            raise StageInputError(f"cotrain: input {kind} must come from an MLflow run (so the co-training can "
                                  f"be resumed and traced), not the folder {ref.local}")
    # a co-training starts from an encoder at most; with hardware.frozen also from a trained
    # block (with the encoder and embeddings it was trained with: --from-run of a train-analog run)
    keep = ("encoder", "embeddings", "analog") if _block_given(cfg, state) else ("encoder",)
    state = {k: v for k, v in state.items() if k in keep}
    plan = make_plan(cfg, train_digital="encoder" not in state, block_given="analog" in state)
    _validate_start(cfg, state, plan, cache)
    return plan, state


def run_cotrain(cfg: RootConfig | None = None, *, resume: str | None = None, workdir: Path = Path("runs"),
                from_runs=(), explicit_inputs: dict | None = None, run_name: str | None = None,
                verbose: int = 1, register: str | None = None, parent: str | None = None) -> str:
    """Run (or resume) a co-training; returns the parent run id. `register`: a model registry
    name for the trained system's MLflow model (default: the config's mlflow.register_model).
    `parent`: a run this co-training nests under (one chip's of pipeline.cotraining.per_chip)."""
    return cotrain(cfg, resume=resume, workdir=workdir, from_runs=from_runs, explicit_inputs=explicit_inputs,
                   run_name=run_name, verbose=verbose, register=register, parent=parent)[0]


def cotrain(cfg: RootConfig | None = None, *, resume: str | None = None, workdir: Path = Path("runs"),
            from_runs=(), explicit_inputs: dict | None = None, run_name: str | None = None,
            verbose: int = 1, register: str | None = None, parent: str | None = None) -> tuple[str, dict | None]:
    """run_cotrain, returning (parent run id, the parent's metrics as its run shows them once
    summarised; None when a resumed co-training had already finished)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipeline.cotraining.report import finished_message
    from pipeline.runtime.tracking import setup_mlflow, tracking_uri
    setup_mlflow()
    client = MlflowClient()
    workdir = Path(workdir).resolve()
    done: dict = {}
    if resume:
        cfg, plan, state, done, finished = _resumed(client, resume, workdir)
        setup_mlflow(experiment_name(cfg))
        if finished and len(done) == len(plan):
            print(f"co-training {resume} already finished; nothing to do")
            return resume, None
    else:
        if cfg is None:
            raise PipelineError("cotrain: give a config file or --resume RUN_ID")
        setup_mlflow(experiment_name(cfg))
        plan, state = _new(cfg, from_runs, explicit_inputs, workdir / "_cache")
    t_start = time.perf_counter()
    tags = None if resume else {f"{TAG}stage": "cotrain", f"{TAG}status": "running", f"{TAG}plan": json.dumps(plan),
                                f"{TAG}initial_inputs": json.dumps({k: v.run_id for k, v in state.items()}),
                                **({"mlflow.parentRunId": parent} if parent else {})}
    with mlflow.start_run(run_id=resume, run_name=None if resume else (run_name or cfg.name),
                          tags=tags) as parent_run:
        parent_id = parent_run.info.run_id
        claim(client, client.get_run(parent_id))    # host, pid, start time on the run (pipeline.runtime.liveness)
        root = workdir / parent_id
        root.mkdir(parents=True, exist_ok=True)
        _open(client, parent_id, cfg, plan, root, resume)
        # printed even with -q: the id is what --resume needs
        print(f"co-training {parent_id} ({'resumed' if resume else 'new'}), experiment "
              f"{experiment_name(cfg)!r}, {len(plan)} steps, local folder {root}", flush=True)
        metrics = _steps_and_summary(client, cfg, plan, done, state, root, workdir, parent_id, register, verbose,
                                     t_start)
    print(finished_message(parent_id, parent_run.info.experiment_id, metrics, experiment_name(cfg), tracking_uri()))
    return parent_id, metrics


def _open(client, parent_id: str, cfg: RootConfig, plan, root: Path, resume: str | None) -> None:
    """A new parent: its params, config and description; a resumed one: running again."""
    import mlflow

    from pipeline.config import flatten
    from pipeline.cotraining.report import describe
    if resume:
        mlflow.set_tag(f"{TAG}status", "running")
        return
    mlflow.log_params({k: ("" if v is None else v) for k, v in flatten(cfg).items()})
    mlflow.log_artifact(str(dump_config(cfg, root / "config.yaml")))
    mlflow.set_tag(f"{TAG}workdir", str(root))
    describe(client, parent_id, cfg, root, plan)     # what the run's page in the MLflow UI says


def _steps_and_summary(client, cfg: RootConfig, plan, done: dict, state: dict, root: Path, workdir: Path,
                       parent_id: str, register: str | None, verbose: int, t_start: float) -> dict:
    """Walk the plan, summarise the parent from the steps' record, log the trained system;
    returns the parent's metrics. An exception or signal ends the parent run killed or failed."""
    import mlflow

    from pipeline.cotraining.summary import summarize
    from pipeline.runtime.interrupts import end_active_run
    try:
        record = walk(plan_steps(plan), done, state, cfg, root, workdir, parent_id, verbose)
        metrics = summarize(client, parent_id, cfg, root, plan, record)
        _log_system(cfg, state, parent_id, register, workdir / "_cache", verbose)
        mlflow.log_metric("cotrain_seconds_this_session", time.perf_counter() - t_start)
        mlflow.set_tag(f"{TAG}status", STATUS_FINISHED)
    except BaseException as exc:
        end_active_run(exc, "interrupted")   # a signal: KILLED (pipeline.runtime.interrupts)
        raise
    return metrics


def _log_system(cfg: RootConfig, state: dict, parent_id: str, register: str | None, cache: Path, verbose: int) -> None:
    """The trained system (the final encoder, block and chips) as the parent run's MLflow model."""
    from pipeline.serving.mlflow_model import log_run_system, register_name
    parts = {k: state[k].path(cache) for k in ("analog", "encoder", "chips") if k in state}
    uri = log_run_system(cfg, parts, parent_id, register or register_name(cfg))
    if uri and verbose:
        print(f"MLflow model of the trained system: {uri}", flush=True)
