"""The co-training's summary comes from what its steps returned (pipeline.flow.record), not from
a read of the store: its figures equal the figures each stage logged on its own run (read here
from MLflow, independently of the summary), and a co-training killed in its last round and
resumed gives the summary of one that ran through."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.test_pipeline_smoke import FASHION, SMOKE, _start_and_kill, children, client_for, mixsig

TIMES = ("seconds_", "stage_seconds", "cotrain_seconds", "final_baseline_seconds", "round_inputopt_seconds")


def _finished(client, parent) -> dict:
    """(stage, round) → the finished nested run of that step."""
    return {(k.data.tags["mixsig.stage"], int(k.data.tags["mixsig.round"])): k for k in children(client, parent)
            if k.data.tags["mixsig.status"] == "finished"}


def _summary(tmp, parent_id) -> dict:
    return json.loads((tmp / "runs" / parent_id / "summary.json").read_text())


def _untimed(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith(TIMES)}


needs_fashion = pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                                   reason="Fashion-MNIST not available")


@pytest.mark.slow
@needs_fashion
def test_summary_equals_what_the_stages_logged_on_their_runs(smoke):
    tmp, client, parent = smoke
    parent = client.get_run(parent.info.run_id)
    by = _finished(client, parent)
    s = _summary(tmp, parent.info.run_id)
    summary, pm = s["summary"], parent.data.metrics
    first, last = by[("train-analog", 0)].data.metrics, by[("train-analog", 1)].data.metrics
    ev = by[("evaluate", 1)].data.metrics
    assert summary["analog_first_test_accuracy"] == first["test_accuracy"]
    assert summary["digital_first_test_accuracy"] == by[("train-digital", 0)].data.metrics["digital_test_accuracy"]
    assert summary["digital_last_test_accuracy"] == by[("retrain-digital", 0)].data.metrics["digital_test_accuracy"]
    for key in ("end_to_end_test_accuracy", "digital_test_accuracy", "baseline_test_accuracy"):
        assert summary[key] == ev[key], key
    assert summary["round_e2e"] == {"0": first["test_accuracy"], "1": last["test_accuracy"]}
    assert s["rounds"]["analog block (end to end)"] == [[0, first["test_accuracy"]], [1, last["test_accuracy"]]]
    assert s["rounds"]["retrained encoder → previous block"] == \
        [[0, by[("retrain-digital", 0)].data.metrics["end_to_end_test_accuracy"]]]
    assert pm["round_inputopt_reached_fraction"] == by[("optimize-inputs", 0)].data.metrics["reached_fraction"]
    gain = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "round_gain")}
    assert gain == {1: last["test_accuracy"] - first["test_accuracy"]}
    # stage times: each step's own stage_seconds, summed per stage and over all steps
    per_stage: dict = {}
    for (stage, _), run in by.items():
        per_stage.setdefault(stage.replace("-", "_"), []).append(run.data.metrics["stage_seconds"])
    for name, seconds in per_stage.items():
        assert summary[f"seconds_{name}"] == pytest.approx(sum(seconds), rel=1e-12)
    assert summary["seconds_stages"] == pytest.approx(sum(map(sum, per_stage.values())), rel=1e-12)
    # what summary.json says is what the parent run shows
    for key, value in summary.items():
        if key != "round_e2e":
            assert pm[key] == value, key


@pytest.mark.slow
@needs_fashion
def test_every_step_saved_what_it_logged_on_the_parent(smoke):
    """The file a resumed co-training reads a finished step from holds exactly the parent's points."""
    tmp, client, parent = smoke
    points = set()
    for run in children(client, parent):
        step = run.data.tags["mixsig.step"]
        folder = next((tmp / "runs" / parent.info.run_id).glob(f"{int(step):02d}-*"))
        points |= {tuple(p) for p in json.loads((folder / "parent_metrics.json").read_text())}
    logged = {(m.key, m.step, m.value) for key in {k for k, _, _ in points}
              for m in client.get_metric_history(parent.info.run_id, key)}
    assert points == logged and len(points) > 10


@pytest.mark.slow
@needs_fashion
def test_killed_in_the_last_round_then_resumed_gives_the_same_summary(smoke, tmp_path):
    """SIGKILL while train-analog r1 runs, the local folder lost too: the resumed co-training reads
    the six finished steps back (from their runs' artifacts) and summarises as the smoke run did."""
    _, client0, parent0 = smoke
    out = _start_and_kill(tmp_path, ["cotrain", SMOKE], when="[train-analog r1] run ", timeout=900)
    parent_id = out.split("co-training ", 1)[1].split()[0]
    shutil.rmtree(tmp_path / "runs")
    proc = mixsig(tmp_path, "cotrain", "--resume", parent_id)
    assert proc.stdout.count(", skipped") == 6, proc.stdout[-3000:]
    client = client_for(tmp_path)
    parent = client.get_run(parent_id)
    assert parent.data.tags["mixsig.status"] == "finished"
    resumed, through = _summary(tmp_path, parent_id), _summary(smoke[0], parent0.info.run_id)
    assert _untimed(resumed["summary"]) == _untimed(through["summary"])
    assert resumed["rounds"] == through["rounds"]
    assert _untimed(parent.data.metrics) == _untimed(client0.get_run(parent0.info.run_id).data.metrics)
    # the times are those of the steps that finished, across both processes (not the killed attempt)
    by = _finished(client, parent)
    assert len(by) == 8
    assert resumed["summary"]["seconds_stages"] == \
        pytest.approx(sum(r.data.metrics["stage_seconds"] for r in by.values()), rel=1e-12)
    # the description shows the same figures
    note = parent.data.tags["mlflow.note.content"].split("**Results**")[1]
    assert note == client0.get_run(parent0.info.run_id).data.tags["mlflow.note.content"].split("**Results**")[1]


def test_a_step_without_the_saved_file_takes_the_parent_points_logged_while_it_ran(tmp_path):
    """A co-training started before steps saved parent_metrics.json: its finished steps' parent
    metrics are the parent's points timed within each step's run (MLflow's own timestamps)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from pipeline.flow.record import RunRecord, finished_record
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("old", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(exp).info.run_id
    client.log_batch(parent, metrics=[Metric("round_analog_test_accuracy", 0.1, 500, 0)])   # before any step
    steps = []
    for i, (start, end, value) in enumerate([(1000, 2000, 0.5), (3000, 4000, 0.6)]):
        run = client.create_run(exp, start_time=start,
                                tags={"mixsig.stage": "train-analog", "mixsig.round": str(i), "mixsig.step": str(i)})
        client.log_batch(run.info.run_id, metrics=[Metric("stage_seconds", 1.0 + i, start + 10, 0)])
        client.log_batch(parent, metrics=[Metric("round_analog_test_accuracy", value, start + 500, i)])
        client.set_terminated(run.info.run_id, end_time=end)
        steps.append(client.get_run(run.info.run_id))
    history = {"round_analog_test_accuracy": client.get_metric_history(parent, "round_analog_test_accuracy")}
    record = RunRecord([finished_record(client, run, i, tmp_path / "none", lambda: history)
                        for i, run in enumerate(steps)])
    assert [s.parent for s in record.steps] == [(("round_analog_test_accuracy", 0, 0.5),),
                                                (("round_analog_test_accuracy", 1, 0.6),)]
    assert record.series("round_analog_test_accuracy") == {0: 0.5, 1: 0.6}
    assert record.stage_seconds() == {"train_analog": {0: 1.0, 1: 2.0}}
