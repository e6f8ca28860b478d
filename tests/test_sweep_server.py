"""A sweep against a real MLflow tracking server (the path for a cluster, whose nodes cannot
share a SQLite file): `mlflow server` started here on a free port with its own SQLite backend
and artifact folder in tmp, the sweep's trials logging to it through MLFLOW_TRACKING_URI,
the nested runs and artifacts read back from the server, the server stopped.

The same sweep checks early stopping: two trials one at a time, ASHA on the per-epoch
val_loss; the second trial's learning rate is too small to move the block, so after its
first epoch its loss is above the first trial's at that epoch and ASHA stops it (Tune holds
a trial at each report until the driver asks for more, so it cannot run past the stop).
"""
from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_sweep import TINY, client, mixsig, ok, write

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    exe = Path(sys.executable).with_name("mlflow")
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([str(exe), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", str(tmp_path / "server-artifacts"),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not start:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_sweep_logs_to_an_mlflow_server_and_stops_a_bad_trial(tmp_path, mlflow_server):
    space = {"searcher": "grid", "stages": ["train-analog"], "metric": "val_loss", "mode": "min",
             "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
             "space": {"training.optimizer.lr": [0.05, 1.0e-6]}}
    cfg, spc = write(tmp_path, config={**TINY, "training": {**TINY["training"], "epochs": 4}}, space=space)
    proc = ok(mixsig(tmp_path, "sweep", cfg, "--space", spc, "--num-cpus", "2", "--concurrency", "1", "-q",
                     MLFLOW_TRACKING_URI=mlflow_server))
    assert mlflow_server in proc.stdout
    assert not (tmp_path / "home" / "mlflow.db").exists()       # nothing went to the embedded store
    c = client(mlflow_server)
    exp = c.get_experiment_by_name("sweep-tiny")
    runs = c.search_runs([exp.experiment_id], max_results=100)
    sweep = next(r for r in runs if r.data.tags.get("mixsig.stage") == "sweep")
    trials = {r.data.params["training.optimizer.lr"]: r for r in runs
              if r.data.tags.get("mixsig.sweep") == sweep.info.run_id}
    assert set(trials) == {"0.05", "1e-06"}
    good, bad = trials["0.05"], trials["1e-06"]
    assert good.data.tags["mlflow.parentRunId"] == sweep.info.run_id == bad.data.tags["mlflow.parentRunId"]
    assert good.data.tags["mixsig.status"] == "finished" and good.info.status == "FINISHED"
    assert bad.data.tags["mixsig.status"] == "stopped-early" and bad.info.status == "KILLED"
    assert bad.data.metrics["analog_epoch"] < 4
    kid = next(r for r in runs if r.data.tags.get("mlflow.parentRunId") == good.info.run_id)
    assert kid.data.tags["mixsig.stage"] == "train-analog" and kid.data.metrics["epochs_total"] == 4
    first = {m.step: m.value for m in c.get_metric_history(kid.info.run_id, "val_loss")}[1]
    assert bad.data.metrics["val_loss"] > first      # why ASHA stopped it
    assert sweep.data.metrics["trials_stopped_early"] == 1 and sweep.data.metrics["trials_finished"] == 1
    # artifacts went through the server too
    assert {"best_config.yaml", "results.csv"} <= {a.path for a in c.list_artifacts(sweep.info.run_id)}
    local = c.download_artifacts(sweep.info.run_id, "results.csv", str(tmp_path))
    rows = {r["training.optimizer.lr"]: r["status"] for r in csv.DictReader(open(local))}
    assert rows == {"0.05": "finished", "1e-06": "stopped early"}
