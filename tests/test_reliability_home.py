"""One folder for a project's runs: MIXSIG_HOME (else the nearest folder up that holds
mlflow.db, else the current one) holds the tracking store, the MLflow artifacts and the run
folders, whatever folder a command starts from; a stage's outputs are stored once (in the
run's artifacts, linked from its run folder); run ids work by a unique start."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import cli

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "experiments" / "xor.yaml"


def _main(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_runs_live_in_the_project_folder_from_any_folder(tmp_path, monkeypatch, capsys):
    home, elsewhere, other = tmp_path / "project", tmp_path / "elsewhere", tmp_path / "unrelated"
    for folder in (elsewhere, other):
        folder.mkdir()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MIXSIG_HOME", str(home))
    monkeypatch.chdir(elsewhere)
    rc, out, err = _main(capsys, "train-analog", XOR, "--set", "training.epochs=1", "-q")
    assert rc == 0, err
    run_id = out.split("train-analog run ", 1)[1].split()[0]
    assert sorted(p.name for p in home.iterdir()) == ["mlflow.db", "mlflow.db.lock", "mlruns", "runs"]
    assert list(elsewhere.iterdir()) == []                      # nothing lands in the current folder

    # stored once: the run folder links to the run's artifact folder, which MLflow lists
    local = home / "runs" / run_id / "analog_model"
    assert local.is_symlink()
    target = local.resolve()
    assert target.is_relative_to((home / "mlruns").resolve()) and target.parent.name == "artifacts"
    assert {p.name for p in target.iterdir()} >= {"model.json", "arrays.npz"}
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    listed = {f.path for f in client.list_artifacts(run_id, "analog_model")}
    assert {"analog_model/model.json", "analog_model/arrays.npz"} <= listed
    copies = [p for p in home.rglob("arrays.npz") if not p.is_symlink() and p.resolve() == p]
    assert len(copies) == 1, copies

    # from a subfolder of the project, without MIXSIG_HOME: found by looking up; a unique
    # start of the id (8 characters, as compare prints them) continues the block
    monkeypatch.delenv("MIXSIG_HOME")
    (home / "sub").mkdir()
    monkeypatch.chdir(home / "sub")
    rc, out, err = _main(capsys, "train-analog", "--from-run", run_id[:8], "--set", "training.epochs=1", "-q")
    assert rc == 0, err
    second = out.split("train-analog run ", 1)[1].split()[0]
    assert client.get_run(second).data.tags["mixsig.artifact.analog"] == second
    assert not (home / "sub" / "runs").exists() and not (home / "sub" / "mlflow.db").exists()

    # from an unrelated folder the store is another one: the error says where it looked
    monkeypatch.chdir(other)
    rc, out, err = _main(capsys, "train-analog", "--from-run", run_id, "-q")
    assert rc == 2 and "does not exist in the tracking store" in err and "MIXSIG_HOME" in err, err


def test_mixsig_home_must_be_a_folder(tmp_path, monkeypatch, capsys):
    afile = tmp_path / "f"
    afile.write_text("")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MIXSIG_HOME", str(afile))
    rc, out, err = _main(capsys, "train-analog", XOR, "-q")
    assert rc == 2 and f"MIXSIG_HOME={afile}: not a folder" in err, err


def test_the_default_experiment_keeps_its_artifacts_in_the_project_folder(tmp_path, monkeypatch):
    home, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MIXSIG_HOME", str(home))
    monkeypatch.chdir(elsewhere)
    from mlflow.tracking import MlflowClient

    from pipeline.runtime.tracking import setup_mlflow
    setup_mlflow("x")
    default = MlflowClient(f"sqlite:///{home / 'mlflow.db'}").get_experiment("0")
    assert default.name == "Default"
    assert default.artifact_location == (home / "mlruns" / "0").as_uri(), default.artifact_location
    assert list(elsewhere.iterdir()) == []
