"""What the steps of a plan returned, kept in memory for the parent run's summary.

`walk` (pipeline.flow.loop) adds one StepRecord per step: the step's own metrics as its run
shows them (stage_seconds among them) and the metrics it logged on the parent run
(StageContext.log_parent), in the order it logged them. The co-training's summary
(pipeline.cotraining.summary) is built from the RunRecord alone.

A step finished by an earlier process (a resumed co-training or trial) is not in memory:
`finished_record` is the one place that reads such a step back, from the parent_metrics.json
the runner saved with it (its local folder, else its run's artifacts); for a step run before
that file existed, from the parent's metric points logged while the step's run was open.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.flow.runner import PARENT_FILE, local_artifact_root
from pipeline.runtime.tracking import TAG

__all__ = ["StepRecord", "RunRecord", "finished_record"]


@dataclass(frozen=True)
class StepRecord:
    index: int
    stage: str
    round: int
    run_id: str
    metrics: dict                 # the step's own metrics, the last value of each
    parent: tuple = ()            # ((key, step, value), ...) it logged on the parent, in order

    @property
    def seconds(self) -> float | None:
        return self.metrics.get("stage_seconds")


@dataclass
class RunRecord:
    """The steps of one parent run in plan order."""
    steps: list = field(default_factory=list)

    def points(self):
        for step in self.steps:
            yield from step.parent

    def series(self, key: str) -> dict:
        """{step: value} of a parent metric in step order (the last value logged at each step)."""
        by_step: dict = {}
        for k, step, value in self.points():
            if k == key:
                by_step[step] = value
        return dict(sorted(by_step.items()))

    def latest(self) -> dict:
        """{key: value} as the parent run shows its metrics: each at its highest step, the last logged there."""
        out: dict = {}
        at: dict = {}
        for k, step, value in self.points():
            if k not in at or step >= at[k]:
                out[k], at[k] = value, step
        return out

    def stage_seconds(self) -> dict:
        """{stage (with _ for -): {round: wall seconds}} of every step."""
        out: dict = {}
        for step in self.steps:
            if step.seconds is not None:
                out.setdefault(step.stage.replace("-", "_"), {})[step.round] = step.seconds
        return out


def _saved_points(client, run, folder: Path) -> list | None:
    """The step's parent_metrics.json: from its local folder, the local artifact store, or downloaded."""
    for base in (folder, local_artifact_root(run.info.artifact_uri)):
        if base is not None and (base / PARENT_FILE).is_file():
            return json.loads((base / PARENT_FILE).read_text())
    if PARENT_FILE not in {f.path for f in client.list_artifacts(run.info.run_id)}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(client.download_artifacts(run.info.run_id, PARENT_FILE, tmp)).read_text())


def _logged_while_open(run, parent_history: dict) -> list:
    """A step without the file (a run older than it): the parent's points timed within its run."""
    start, end = run.info.start_time or 0, run.info.end_time or float("inf")
    points = [(m.timestamp, k, m.step, m.value) for k, hist in parent_history.items() for m in hist
              if start <= m.timestamp <= end]
    return [(k, step, value) for _, k, step, value in sorted(points, key=lambda p: p[0])]


def finished_record(client, run, index: int, folder: Path, parent_history) -> StepRecord:
    """A finished step's record from its MLflow run (found by the loop's search) and saved file;
    `parent_history()` gives the parent's {key: metric history}, read only if the file is missing."""
    tags = run.data.tags
    points = _saved_points(client, run, folder)
    if points is None:
        points = _logged_while_open(run, parent_history())
    return StepRecord(index, tags.get(f"{TAG}stage", "stage"), int(tags.get(f"{TAG}round", 0)), run.info.run_id,
                      dict(run.data.metrics), tuple((str(k), int(s), float(v)) for k, s, v in points))
