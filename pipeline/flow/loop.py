"""The one loop that runs a plan of stages as nested runs of a parent run, and resumes it.

`mixsig cotrain` (its rounds) and sweep trials (a stage list) both run their plan here. A step
whose nested run finished is not run again: it hands on its outputs. A nested run left
RUNNING by a killed process is closed as KILLED. Each step's metrics, and what it logged on
the parent, come back from the stage itself into the loop's RunRecord (pipeline.flow.record);
a step finished by an earlier process is read back once, when the finished steps are found.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pipeline.flow.artifacts import ArtifactRef, artifact_dir
from pipeline.flow.record import RunRecord, StepRecord, finished_record
from pipeline.flow.runner import get_stage, run_stage
from pipeline.runtime.tracking import STATUS_FINISHED, TAG

if TYPE_CHECKING:
    from pipeline.config import RootConfig

__all__ = ["Step", "plan_steps", "step_folder", "finished_steps", "walk"]


@dataclass(frozen=True)
class Step:
    index: int
    stage: str
    round: int

    def folder(self, root: Path) -> Path:
        return root / f"{self.index:02d}-{self.stage}-r{self.round}"

    def __str__(self) -> str:
        return f"{self.stage} r{self.round}"


def plan_steps(plan) -> list[Step]:
    """[(stage name, round), ...] → numbered steps."""
    return [Step(i, name, int(rnd)) for i, (name, rnd) in enumerate(plan)]


def step_folder(root: Path, index: int, stage: str, rnd: int) -> Path:
    return Step(index, stage, rnd).folder(root)


def finished_steps(client, experiment_id: str, parent_id: str, root: Path) -> dict[int, StepRecord]:
    """step index → the record of that step's finished nested run (the latest started, if a
    step finished more than once; its files under `root`); nested runs a killed process left
    RUNNING are closed."""
    children = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
                                  max_results=5000)
    done = {}
    for run in sorted(children, key=lambda r: r.info.start_time or 0):
        tags = run.data.tags
        if tags.get(f"{TAG}status") == STATUS_FINISHED and f"{TAG}step" in tags:
            done[int(tags[f"{TAG}step"])] = run
        elif run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, "KILLED")
            client.set_tag(run.info.run_id, f"{TAG}status", "killed")

    @cache
    def parent_history() -> dict:     # only for steps that saved no parent_metrics.json
        keys = client.get_run(parent_id).data.metrics
        return {k: client.get_metric_history(parent_id, k) for k in keys}

    def folder(i: int, tags: dict) -> Path:
        return step_folder(root, i, tags.get(f"{TAG}stage", "stage"), int(tags.get(f"{TAG}round", 0)))
    return {i: finished_record(client, run, i, folder(i, run.data.tags), parent_history)
            for i, run in sorted(done.items())}


def walk(steps: list[Step], done: dict[int, StepRecord], state: dict, cfg: RootConfig, root: Path, workdir: Path,
         parent_id: str, verbose: int = 1) -> RunRecord:
    """Run the steps in order, updating `state` (kind → ArtifactRef) with what each produces;
    returns the record of every step (those in `done`, from finished_steps, are not run again)."""
    record = RunRecord()
    for step in steps:
        stage, folder = get_stage(step.stage), step.folder(root)
        if step.index in done:
            finished = done[step.index]
            for kind in stage.produces:
                state[kind] = ArtifactRef(kind, run_id=finished.run_id, local=folder / artifact_dir(kind))
            record.steps.append(finished)
            if verbose:
                print(f"step {step.index + 1}/{len(steps)} {step}: finished in run {finished.run_id}, skipped",
                      flush=True)
            continue
        if verbose:
            print(f"\n=== step {step.index + 1}/{len(steps)}: {step.stage} (round {step.round}) ===", flush=True)
        outcome = run_stage(stage, cfg, dict(state), round=step.round, folder=folder, workdir=workdir,
                            parent_run_id=parent_id, step=step.index, verbose=verbose)
        for kind in stage.produces:
            state[kind] = outcome.outputs[kind]
        record.steps.append(StepRecord(step.index, step.stage, step.round, outcome.run_id,
                                       dict(outcome.latest or outcome.metrics), tuple(outcome.to_parent)))
    return record
