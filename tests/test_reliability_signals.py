"""SIGTERM and SIGINT sent to a real `mixsig` process in the middle of a stage: the stage run
and the co-training's parent run end KILLED (tag mixsig.status=killed), the stage's finished
metrics are logged, the process exits 128 + signal number, and `cotrain --resume` ends with
the same final metrics as an uninterrupted run of the same config."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "smoke.yaml"
FASHION = Path(os.environ.get("MIXSIG_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
SHORT = ["--set", "cotrain.rounds=0", "--set", "baseline.enabled=false"]   # train-digital, embed, train-analog, evaluate
FINAL = ("end_to_end_test_accuracy", "analog_test_accuracy", "analog_test_loss", "digital_test_accuracy")

pytestmark = pytest.mark.slow
needs_fashion = pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                                   reason="Fashion-MNIST not available")


# Exit 130, or death by SIGINT itself (a shell shows both as 130). CPython keeps a
# process-wide "unhandled KeyboardInterrupt" flag, set when the interrupt escapes code run
# from C (PyRun_String, as some extensions do while TensorFlow starts); when it is set,
# Python re-raises SIGINT at exit even though mixsig caught the interrupt and returned 130
# (see CPython gh-128130). Seen once in CI, with the SIGINT sent 3 s in.
SIGINT_EXITS = (128 + signal.SIGINT, -signal.SIGINT)


def _env(tmp: Path) -> dict:
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}", PYTHONPATH=str(ROOT))


def _client(tmp: Path):
    from mlflow.tracking import MlflowClient
    return MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")


def _mixsig(tmp: Path, *args):
    proc = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=tmp, env=_env(tmp),
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def _default_sigint() -> None:
    """As in a terminal: SIGINT at its default, whatever this test run inherited. (A shell
    starts background jobs with SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler, so the child would never see the Ctrl-C this test sends.)"""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal_when(tmp: Path, args, when: str, signum: int, timeout: float = 300):
    """Start `mixsig *args`, send `signum` to it (the process itself, as `kill` does) when a
    line of its output contains `when`; (return code, output)."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *map(str, args)], cwd=tmp, env=_env(tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)
    watchdog = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    watchdog.start()
    seen, sent = [], False
    try:
        for line in proc.stdout:
            seen.append(line)
            if not sent and when in line:
                os.kill(proc.pid, signum)
                sent = True
        proc.wait(60)
    finally:
        watchdog.cancel()
    out = "".join(seen)
    assert sent, out[-3000:]
    return proc.returncode, out


def _evaluate_metrics(client, parent_id: str) -> dict:
    parent = client.get_run(parent_id)
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}' and tags.`mixsig.stage` = 'evaluate'")
    (ev,) = [r for r in runs if r.data.tags.get("mixsig.status") == "finished"]
    return {k: ev.data.metrics[k] for k in FINAL}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    out = _mixsig(tmp, "cotrain", SMOKE, *SHORT, "-q").stdout
    parent_id = out.split("co-training ", 1)[1].split()[0]
    return _evaluate_metrics(_client(tmp), parent_id)


@needs_fashion
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_stage_marks_killed_then_resume_matches(tmp_path, uninterrupted, signum):
    rc, out = _signal_when(tmp_path, ["cotrain", SMOKE, *SHORT], "[train-analog r0] new analog block", signum)
    assert rc == 128 + signum, (rc, out[-3000:])
    assert ("terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted (SIGINT)") in out
    assert "Traceback" not in out, out[-3000:]
    parent_id = out.split("co-training ", 1)[1].split()[0]
    client = _client(tmp_path)
    parent = client.get_run(parent_id)
    assert parent.info.status == "KILLED" and parent.data.tags["mixsig.status"] == "killed"
    kids = sorted(client.search_runs([parent.info.experiment_id],
                                     filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"),
                  key=lambda r: r.info.start_time)
    assert [k.data.tags["mixsig.stage"] for k in kids] == ["train-digital", "embed", "train-analog"]
    assert [k.info.status for k in kids] == ["FINISHED", "FINISHED", "KILLED"]
    stopped = kids[-1]
    assert stopped.data.tags["mixsig.status"] == "killed"
    assert "mixsig.artifact.analog" not in stopped.data.tags          # nothing downstream can take it
    # what the stage had finished was flushed: its metrics and the reason
    assert "stage_seconds_until_stopped" in stopped.data.metrics
    local = Path(client.download_artifacts(stopped.info.run_id, "metrics.json", str(tmp_path)))
    assert "stage_seconds_until_stopped" in json.loads(local.read_text())
    assert {f.path for f in client.list_artifacts(stopped.info.run_id)} >= {"config.yaml", "interrupted.txt"}

    _mixsig(tmp_path, "cotrain", "--resume", parent_id, "-q")
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["mixsig.status"] == "finished"
    assert _evaluate_metrics(client, parent_id) == pytest.approx(uninterrupted, abs=1e-6)


def test_sigterm_stops_a_standalone_stage_as_killed(tmp_path):
    rc, out = _signal_when(tmp_path, ["train-analog", ROOT / "experiments" / "iris.yaml", "--set",
                                      "training.epochs=400"], "[train-analog r0] run ", signal.SIGTERM)
    assert rc == 143 and "terminated (SIGTERM)" in out and "Traceback" not in out, out[-3000:]
    client = _client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("iris").experiment_id])
    assert run.info.status == "KILLED" and run.data.tags["mixsig.status"] == "killed"


SWALLOWED = '''
import gc, os, signal, sys, time, weakref
from pipeline.runtime import interrupts as signals
signals.install()

class Node:
    pass

def on_collect(_ref):               # a weakref callback, run by the garbage collector
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)                 # the handler runs here: its KeyboardInterrupt is swallowed

a, b = Node(), Node()
a.other, b.other = b, a             # a cycle: only gc frees it
keep = weakref.ref(a, on_collect)
del a, b
gc.collect()
print("after gc", flush=True)
try:
    signals.raise_pending()
except KeyboardInterrupt:
    print("pending interrupt raised", flush=True)
    sys.exit(130)
sys.exit(0)
'''


@pytest.mark.parametrize("attempt", range(3))
def test_an_interrupt_swallowed_by_a_gc_callback_is_raised_again(tmp_path, attempt):
    """The mechanism: KeyboardInterrupt raised inside a weakref callback during gc is printed
    as "Exception ignored" and dropped; the recorded signal is raised at the next check."""
    proc = subprocess.run([sys.executable, "-c", SWALLOWED], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=60, preexec_fn=_default_sigint)
    assert "after gc" in proc.stdout and "Exception ignored" in proc.stderr, (proc.stdout, proc.stderr)
    assert proc.returncode == 130 and "pending interrupt raised" in proc.stdout, (proc.stdout, proc.stderr)


@needs_fashion
@pytest.mark.parametrize("delay", [1.5, 3.0, 4.5])
def test_ctrl_c_early_in_train_digital_is_never_lost(tmp_path, delay):
    """SIGINT in the first seconds (imports, TensorFlow's start-up, its gc-run finalizers):
    the process never finishes with exit 0, and a run it started ends KILLED."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "train-digital", SMOKE, "-q"], cwd=tmp_path,
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)
    try:
        proc.wait(delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode in SIGINT_EXITS and "interrupted (SIGINT)" in out, (proc.returncode, out[-3000:])
    if (tmp_path / "mlflow.db").exists():
        client = _client(tmp_path)
        runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
        assert all(r.info.status == "KILLED" for r in runs), [r.info.status for r in runs]
