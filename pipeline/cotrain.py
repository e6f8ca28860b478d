"""The co-training loop: one parent MLflow run, one nested run per stage and round.

    train-digital → (embed → train-analog → optimize-inputs → retrain-digital) × rounds
                  → embed → train-analog → evaluate

Round r of the loop trains the analog block on the embeddings of the encoder after r
retrainings; the final embed/train-analog/evaluate is round `rounds`. Every step has a
fixed index in the plan (tag mixsig.step) and a local folder
`<workdir>/<parent_run_id>/<step>-<stage>-r<round>/`; each stage's outputs are also MLflow
artifacts of its run. `resume` reopens the parent, skips every step whose child run is
tagged mixsig.status=finished (taking its outputs from the local folder, or downloading
them from MLflow if the folder is gone) and runs the rest.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.stages import (KINDS, STATUS_FINISHED, TAG, ArtifactRef, PipelineError, StageInputError, STAGES,
                             check_inputs, config_from_run, dump_config, experiment_name, get_run, resolve_inputs,
                             run_stage)

ROUND_METRICS = {
    "digital-only": "round_digital_test_accuracy",
    "analog block (end to end)": "round_analog_test_accuracy",
    "retrained encoder → previous block": "round_retrained_end_to_end_test_accuracy",
}


def make_plan(rounds: int, train_digital: bool = True) -> list[tuple[str, int]]:
    steps = [("train-digital", 0)] if train_digital else []
    for r in range(rounds):
        steps += [("embed", r), ("train-analog", r), ("optimize-inputs", r), ("retrain-digital", r)]
    steps += [("embed", rounds), ("train-analog", rounds), ("evaluate", rounds)]
    return steps


def step_folder(root: Path, index: int, stage: str, rnd: int) -> Path:
    return root / f"{index:02d}-{stage}-r{rnd}"


def _children(client, parent) -> list:
    return client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                              max_results=5000)


def _finished_steps(client, parent) -> dict:
    """step index → finished child run (the latest, if a step finished more than once)."""
    done = {}
    for run in sorted(_children(client, parent), key=lambda r: r.info.start_time or 0):
        tags = run.data.tags
        if tags.get(f"{TAG}status") == STATUS_FINISHED and f"{TAG}step" in tags:
            done[int(tags[f"{TAG}step"])] = run
        elif run.info.status == "RUNNING":   # left behind by a killed process
            client.set_terminated(run.info.run_id, "KILLED")
            client.set_tag(run.info.run_id, f"{TAG}status", "killed")
    return done


def _validate_start(cfg: dict, state: dict, plan, cache: Path) -> None:
    """Everything that can be checked before work: data settings, given inputs, widths."""
    if cfg["data"]["dataset"] != "fashion_mnist":
        raise PipelineError(f"cotrain needs images (data.dataset: fashion_mnist), got {cfg['data']['dataset']!r}; "
                            f"use `mixsig train-analog` for tabular data")
    amp = cfg["analog"]["input_amplitude"]
    d = cfg["digital"]
    if d["v_low"] < -amp - 1e-12 or d["v_high"] > amp + 1e-12:
        raise PipelineError(f"digital.v_low/v_high = [{d['v_low']}, {d['v_high']}] V leave the analog block's input "
                            f"range ±analog.input_amplitude = ±{amp} V")
    # a given encoder: present, loadable, in range; a configured one: builds and embeds
    check_inputs(STAGES[plan[0][0]], cfg, state, cache)


def run_cotrain(cfg: dict | None = None, *, resume: str | None = None, workdir: Path = Path("runs"),
                from_runs=(), explicit_inputs: dict | None = None, run_name: str | None = None,
                verbose: int = 1) -> str:
    """Run (or resume) a co-training; returns the parent run id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipeline.config import flatten
    from pipeline.tracking import setup_mlflow
    setup_mlflow()
    client = MlflowClient()
    workdir = Path(workdir).resolve()
    cache = workdir / "_cache"
    done: dict = {}
    if resume:
        parent = get_run(resume, what="--resume run")
        if parent.data.tags.get(f"{TAG}stage") != "cotrain":
            raise StageInputError(f"--resume run {resume} is a {parent.data.tags.get(f'{TAG}stage', 'non-mixsig')} "
                                  f"run, not a co-training (mixsig cotrain) parent run")
        cfg = config_from_run(resume)
        plan = [tuple(s) for s in json.loads(parent.data.tags[f"{TAG}plan"])]
        state = {k: ArtifactRef(k, run_id=v) for k, v in json.loads(parent.data.tags.get(f"{TAG}initial_inputs", "{}")
                                                                         ).items()}
        done = _finished_steps(client, parent)
        setup_mlflow(experiment_name(cfg))
        if len(done) == len(plan) and parent.data.tags.get(f"{TAG}status") == STATUS_FINISHED:
            print(f"co-training {resume} already finished; nothing to do")
            return resume
    else:
        if cfg is None:
            raise PipelineError("cotrain: give a config file or --resume RUN_ID")
        setup_mlflow(experiment_name(cfg))
        state = resolve_inputs(cfg, from_runs, explicit_inputs)
        for kind, ref in state.items():
            if ref.run_id is None:
                raise StageInputError(f"cotrain: input {kind} must come from an MLflow run (so the co-training can "
                                      f"be resumed and traced), not the folder {ref.local}")
        state = {k: v for k, v in state.items() if k == "encoder"}   # a co-training starts from an encoder at most
        plan = make_plan(cfg["cotrain"]["rounds"], train_digital="encoder" not in state)
        _validate_start(cfg, state, plan, cache)
    t_start = time.perf_counter()
    with mlflow.start_run(run_id=resume, run_name=None if resume else (run_name or cfg["name"]),
                          tags=None if resume else {f"{TAG}stage": "cotrain", f"{TAG}status": "running",
                                                    f"{TAG}plan": json.dumps(plan),
                                                    f"{TAG}initial_inputs": json.dumps(
                                                        {k: v.run_id for k, v in state.items()})}) as parent_run:
        parent_id = parent_run.info.run_id
        root = workdir / parent_id
        root.mkdir(parents=True, exist_ok=True)
        if not resume:
            mlflow.log_params({k: ("" if v is None else v) for k, v in flatten(cfg).items()})
            mlflow.log_artifact(str(dump_config(cfg, root / "config.yaml")))
            mlflow.set_tag(f"{TAG}workdir", str(root))
        else:
            mlflow.set_tag(f"{TAG}status", "running")
        # printed even with -q: the id is what --resume needs
        print(f"co-training {parent_id} ({'resumed' if resume else 'new'}), experiment "
              f"{experiment_name(cfg)!r}, {len(plan)} steps, local folder {root}", flush=True)
        try:
            for index, (name, rnd) in enumerate(plan):
                folder = step_folder(root, index, name, rnd)
                if index in done:
                    child = done[index]
                    for kind in STAGES[name].produces:
                        state[kind] = ArtifactRef(kind, run_id=child.info.run_id, local=folder / KINDS[kind][0])
                    if verbose:
                        print(f"step {index + 1}/{len(plan)} {name} r{rnd}: finished in run {child.info.run_id}, "
                              f"skipped", flush=True)
                    continue
                if verbose:
                    print(f"\n=== step {index + 1}/{len(plan)}: {name} (round {rnd}) ===", flush=True)
                outcome = run_stage(name, cfg, dict(state), round=rnd, folder=folder, workdir=workdir,
                                    parent_run_id=parent_id, step=index, verbose=verbose)
                for kind in STAGES[name].produces:
                    state[kind] = outcome.outputs[kind]
            summarize(client, parent_id, cfg, root)
            mlflow.log_metric("cotrain_seconds_this_session", time.perf_counter() - t_start)
            mlflow.set_tag(f"{TAG}status", STATUS_FINISHED)
        except BaseException:
            mlflow.set_tag(f"{TAG}status", "interrupted")
            raise
    print(f"\nco-training {parent_id} finished; resume with `mixsig cotrain --resume {parent_id}` if a stage "
          f"fails, inspect with `mlflow ui --backend-store-uri <tracking uri>`")
    return parent_id


def round_series(client, run_id: str) -> dict:
    """{label: [(round, value), ...]} of a co-training parent's per-round accuracies."""
    out = {}
    for label, key in ROUND_METRICS.items():
        hist = client.get_metric_history(run_id, key)
        if hist:
            by_step = {}
            for m in sorted(hist, key=lambda m: m.timestamp):
                by_step[m.step] = m.value
            out[label] = sorted(by_step.items())
    return out


def summarize(client, parent_id: str, cfg: dict, root: Path) -> dict:
    """Parent's summary metrics (first and last round accuracies) and the accuracy-per-round plot."""
    import mlflow

    from pipeline import plots
    series = round_series(client, parent_id)
    summary = {}
    analog = dict(series.get("analog block (end to end)", []))
    digital = dict(series.get("digital-only", []))
    if analog:
        summary["analog_first_test_accuracy"] = analog[min(analog)]
        summary["end_to_end_test_accuracy"] = analog[max(analog)]
    if digital:
        summary["digital_first_test_accuracy"] = digital[min(digital)]
        summary["digital_last_test_accuracy"] = digital[max(digital)]
    run = client.get_run(parent_id)
    for key in ("final_baseline_test_accuracy", "final_end_to_end_test_accuracy", "final_digital_test_accuracy"):
        if key in run.data.metrics:
            summary[key.replace("final_", "")] = run.data.metrics[key]
    if summary:
        mlflow.log_metrics(summary)
    path = plots.accuracy_per_round(series, root / "plots" / "accuracy_per_round.png",
                                    title=f"{cfg['name']}: test accuracy per round")
    mlflow.log_artifact(str(path), artifact_path="plots")
    (root / "summary.json").write_text(json.dumps({"summary": summary, "rounds": series}, indent=2))
    mlflow.log_artifact(str(root / "summary.json"))
    return summary
