"""Liveness of a co-training: the process running it holds a lock; `cotrain --resume` of a
live run is refused naming that process; once the process is gone (SIGKILL) the run is
resumable; a run whose tags name another host needs --force."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HOLDER = """
import sys, time
from mlflow.tracking import MlflowClient
from pipeline.runtime import liveness
client = MlflowClient()
liveness.claim(client, client.get_run(sys.argv[1]))
print("held", flush=True)
time.sleep(300)
"""


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A tracking store with a co-training parent run left RUNNING, as a crash leaves it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    from mlflow.tracking import MlflowClient

    from pipeline.runtime.tracking import setup_mlflow
    setup_mlflow("live")
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("live")
    run = client.create_run(exp.experiment_id, tags={"mixsig.stage": "cotrain", "mixsig.status": "running"})
    yield tmp_path, client, run.info.run_id
    from pipeline.runtime import liveness
    liveness.release(run.info.run_id)
    liveness.FORCE["other_host"] = False


def test_resume_of_a_live_cotrain_is_refused_then_allowed_once_its_process_is_gone(store, capsys):
    tmp, client, run_id = store
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, run_id], cwd=tmp, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert holder.stdout.readline().strip() == "held"
        tags = client.get_run(run_id).data.tags
        assert tags["mixsig.pid"] == str(holder.pid) and tags["mixsig.host"] == socket.gethostname()
        assert abs(time.mktime(time.strptime(tags["mixsig.started"], "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())) < 120
        from pipeline import cli
        assert cli.main(["cotrain", "--resume", run_id]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert f"co-training {run_id} is still running in process {holder.pid} on host {socket.gethostname()}" in err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    from pipeline.runtime import liveness
    liveness.claim(client, client.get_run(run_id))          # the process is gone: resumable
    assert client.get_run(run_id).data.tags["mixsig.pid"] == str(os.getpid())


def test_a_run_of_another_host_needs_force(store):
    tmp, client, run_id = store
    client.set_tag(run_id, "mixsig.host", "elsewhere.invalid")
    client.set_tag(run_id, "mixsig.pid", "4242")
    from pipeline.runtime import liveness
    with pytest.raises(liveness.LivenessError, match=r"process 4242 on host elsewhere\.invalid .*--force"):
        liveness.claim(client, client.get_run(run_id))
    liveness.FORCE["other_host"] = True
    liveness.claim(client, client.get_run(run_id))
    assert client.get_run(run_id).data.tags["mixsig.host"] == socket.gethostname()


def test_force_goes_with_resume(capsys):
    from pipeline import cli
    assert cli.main(["cotrain", "experiments/smoke.yaml", "--force"]) == 2
    assert "--force goes with --resume" in capsys.readouterr().err
