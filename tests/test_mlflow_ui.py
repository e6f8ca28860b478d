"""What the MLflow UI shows of the project's runs, checked in the tracking store: experiments
are model-training experiments, a co-training's parent run has a description saying what
was run and where the plots are, per-round figures are one metric with a point per round.
(docs/ui_check.py checks the same pages in a real browser.)"""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipeline.cotraining import report
from pipeline.runtime.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, setup_mlflow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path, monkeypatch):
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.setenv("MIXSIG_HOME", str(tmp_path))
    from mlflow.tracking import MlflowClient
    return db, MlflowClient(f"sqlite:///{db}")


def _experiment_tags(db: Path, name: str) -> dict:
    """The experiment's tags read from the SQLite file itself, not through MLflow's client."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT t.key, t.value FROM experiment_tags t JOIN experiments e "
                           "ON t.experiment_id = e.experiment_id WHERE e.name = ?", (name,)).fetchall()
    finally:
        con.close()
    return dict(rows)


def test_a_new_experiment_is_a_model_training_one(store):
    db, _ = store
    setup_mlflow("kind-new")
    tags = _experiment_tags(db, "kind-new")
    assert tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    assert "Model training" in tags["mlflow.note.content"] and "`kind-new`" in tags["mlflow.note.content"]


def test_an_experiment_without_a_kind_gets_one_and_a_chosen_kind_stays(store):
    db, client = store
    client.create_experiment("kind-old")
    client.create_experiment("kind-genai", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    assert EXPERIMENT_KIND_TAG not in _experiment_tags(db, "kind-old")
    setup_mlflow("kind-old")
    setup_mlflow("kind-genai")
    assert _experiment_tags(db, "kind-old")[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert _experiment_tags(db, "kind-genai")[EXPERIMENT_KIND_TAG] == "genai_development"
    assert "mlflow.note.content" not in _experiment_tags(db, "kind-old")     # not the project's to describe


def test_a_series_is_logged_once_per_step_even_when_logged_again(store):
    _, client = store
    exp = client.create_experiment("series")
    run_id = client.create_run(exp).info.run_id
    report.log_series(client, run_id, "round_e2e_accuracy", {0: 0.5, 1: 0.6})
    report.log_series(client, run_id, "round_e2e_accuracy", {0: 0.5, 1: 0.6, 2: 0.7})   # a resumed summary
    points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "round_e2e_accuracy"))
    assert points == [(0, 0.5), (1, 0.6), (2, 0.7)]


def test_the_parent_description_says_what_was_run_and_where_the_plots_are(store, tmp_path):
    from pipeline.config import load_config
    _, client = store
    cfg = load_config(ROOT / "experiments" / "smoke_hw.yaml")
    plan = [("train-digital", 0), ("embed", 0), ("train-analog", 0), ("program", 0)]
    exp = client.create_experiment("describe")
    run_id = client.create_run(exp).info.run_id
    root = tmp_path / "runs" / run_id
    (root / "plots").mkdir(parents=True)
    for name in ("accuracy_per_round.png", "accuracy_vs_time.png"):
        (root / "plots" / name).write_bytes(b"png")
    report.describe(client, run_id, cfg, root, plan)
    first = client.get_run(run_id).data.tags["mlflow.note.content"]
    assert first.startswith("**Co-training `smoke_hw`**: 1 round(s)") and "Results" not in first
    assert "train-digital r0 → embed r0 → train-analog r0 → program r0" in first
    assert "2 simulated `pcm` chip(s)" in first and "frozen, chip 0 in the loop" in first
    assert f"local folder `{root}`" in first
    report.describe(client, run_id, cfg, root, plan, {"end_to_end_test_accuracy": 0.8125, "round_e2e_accuracy": 0.75})
    text = client.get_run(run_id).data.tags["mlflow.note.content"]
    assert text.startswith(first)
    assert "- end to end (last round): 0.8125 (`end_to_end_test_accuracy`)" in text
    assert "- `plots/accuracy_per_round.png`: test accuracy per round" in text
    assert "- `plots/accuracy_vs_time.png`: each scenario's" in text
    assert "step = round: `round_e2e_accuracy`." in text


def test_the_ui_link_opens_the_model_training_view():
    assert report.ui_link("3") == "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning"
    assert report.ui_link("3", "abc", base="http://h:1/") == \
        "http://h:1/#/experiments/3/runs/abc?workflowType=machine_learning"


def test_page_text_keeps_what_a_person_reads():
    import importlib.util
    spec = importlib.util.spec_from_file_location("ui_check", ROOT / "docs" / "ui_check.py")
    ui_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ui_check)
    dom = "<html><head><style>p{}</style><script>var Traces=1;</script></head><body><p>Runs</p> <b>smoke</b></body>"
    assert ui_check.page_text(dom) == "Runs | smoke"
